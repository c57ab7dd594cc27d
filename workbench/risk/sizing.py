"""Entry sizing and protective stop prices, with the same arithmetic as the vectorbt backtest."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError
from ..fills import Costs, stop_levels
from ..markets import MarketRules
from .limits import RiskLimits

_TOL = 1e-9


@dataclass(frozen=True)
class Sizing:
    """A sized entry: the amount to send (0 when it cannot be traded), the unrounded amount, and why."""

    amount: float
    raw_amount: float
    reason: str = ""


def size_position(limits: RiskLimits, equity: float, price: float, market: MarketRules, costs: Costs) -> Sizing:
    """The entry amount for a new position, floored to the venue's step.

    ``pct_equity``: ``size_pct * equity / (price * (1 + slippage) * (1 + taker_fee))``,
    what vectorbt's ``SizeType.Percent`` buys on a flat column (the fill and its
    fee spend exactly that share of equity). ``fixed_quote``:
    ``size_quote * leverage / price`` (vectorbt's ``SizeType.Value``). On a
    contract market the amount is in contracts (divided by ``contract_size``).
    A result below the venue's minimum amount or order value is 0, with the reason.
    """
    for name, v in (("equity", equity), ("price", price)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            return Sizing(0.0, 0.0, f"cannot size an entry: {name} is {v!r}, it must be a positive number")
    unit = market.contract_size or 1.0
    if limits.size_mode == "fixed_quote":
        raw = limits.size_quote * limits.leverage / price
    else:
        raw = limits.size_pct * equity / (price * (1 + costs.slippage) * (1 + costs.taker_fee))
    raw /= unit
    amount = market.round_amount(raw)
    notes = []
    if market.max_amount and amount > market.max_amount:
        amount = market.round_amount(market.max_amount)
        notes.append(f"capped at the venue maximum {market.max_amount:g}")
    why = below_minimum(market, amount, price)
    if why:
        return Sizing(0.0, raw, f"sized amount {raw:.8g} {why}")
    return Sizing(amount, raw, "; ".join(notes))


def size_entry(limits: RiskLimits, equity: float, price: float, market: MarketRules, costs: Costs) -> float:
    """Only the amount of :func:`size_position` (0 when it cannot be traded)."""
    return size_position(limits, equity, price, market, costs).amount


def below_minimum(market: MarketRules, amount: float, price: float) -> str:
    """Why `amount` at `price` is below the venue's minimums ('' when it is not)."""
    unit = market.contract_size or 1.0
    step = f" after flooring to the step {market.amount_step:g}" if market.amount_step else ""
    if amount <= 0:
        mins = [f"min amount {market.min_amount:g}"] if market.min_amount else []
        if market.min_notional:
            mins.append(f"min order value {market.min_notional:g} {market.quote}")
        extra = f" ({', '.join(mins)})" if mins else ""
        return f"is 0{step}: below venue minimum{extra}; raise size_pct/size_quote or add equity"
    if market.min_amount and amount < market.min_amount * (1 - _TOL):
        return (f"is below venue minimum amount {market.min_amount:g} for {market.symbol}{step}; "
                "raise size_pct/size_quote or add equity")
    notional = amount * price * unit
    if market.min_notional and notional < market.min_notional * (1 - _TOL):
        return (f"is worth {notional:.4g} {market.quote}, below venue minimum order value "
                f"{market.min_notional:g} {market.quote} for {market.symbol}; raise size_pct/size_quote or add equity")
    return ""


def stop_prices(side: str, entry_price: float, limits: RiskLimits) -> tuple[float, float]:
    """Stop-loss and take-profit prices (NaN when off) of a position, by :func:`workbench.fills.stop_levels`.

    `side` is the position side ('long'/'short'); an order side ('buy'/'sell') is accepted too.
    """
    pos_side = {"buy": "long", "sell": "short"}.get(side, side)
    if pos_side not in ("long", "short"):
        raise ConfigError(f"side must be 'long' or 'short' (or 'buy'/'sell'), got {side!r}.")
    return stop_levels(pos_side, entry_price, limits.stop_loss, limits.take_profit)
