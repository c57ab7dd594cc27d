"""The pre-trade rules: every order passes :func:`check_order`; a denial is a Verdict, never an exception.

Orders that only reduce or close a position are always allowed: risk never
blocks an exit. New exposure is denied, each time with a sentence that
carries the numbers, when the deployment is paused, the signal's confidence
is under ``min_confidence``, ``max_open_positions`` is reached, the symbol
already holds a position in that direction (``one_position_per_direction``),
the symbol's notional would exceed ``max_position_quote``, total leverage
(gross notional / equity) would exceed ``max_leverage``, the amount is under
the venue's minimums, or an input is not a finite positive number.
"""
from __future__ import annotations

import math
from datetime import datetime

from ..markets import MarketRules
from .limits import RiskLimits
from .model import (
    Assessment,
    Level,
    OrderIntent,
    PortfolioView,
    PositionView,
    Verdict,
    finite_number,
    positive_number,
)
from .sizing import below_minimum

TOL = 1e-9  # relative slack so an order exactly at a limit passes despite float rounding
HIGH_USE = 0.8  # a limit at least this used makes an order HIGH risk
MEDIUM_USE = 0.5
LEVERAGE_REFERENCE = 3.0  # what counts as "fully used" leverage when max_leverage is off


def check_order(
    intent: OrderIntent,
    view: PortfolioView,
    limits: RiskLimits,
    market: MarketRules,
    now: float | datetime,
    paused: bool | str = False,
) -> Verdict:
    """Allow or deny `intent` against `view` under `limits` and the venue's `market` rules.

    `paused` is True (or the pause's reason) while the deployment's
    :class:`~workbench.risk.guard.RiskGuard` forbids new exposure. `now` is
    the time of the check, so a rule that depends on time needs no new
    signature; the rules here do not read it. An allowed verdict's amount is
    floored to the venue's step; a flip (closing and reversing in one order)
    whose new part is denied is allowed as a close only.
    """
    del now
    allowed, amount, reasons = _decide(intent, view, limits, market, paused)
    level, _, _ = _measure(intent, amount if allowed else intent.amount, view, limits, market, explain=False)
    return Verdict(allowed, amount if allowed else 0.0, tuple(reasons), level)


def assess(intent: OrderIntent, view: PortfolioView, limits: RiskLimits, market: MarketRules) -> Assessment:
    """How risky `intent` would leave the books: LOW/MEDIUM/HIGH, whether it can trade, and why.

    The level is the highest use of a limit after the order: total leverage
    against ``max_leverage``, the symbol's notional against
    ``max_position_quote`` and against equity (concentration), and the
    distance travelled towards ``daily_loss_limit`` and ``drawdown_limit``.
    A use of 80% or more is HIGH, 50% or more MEDIUM. The pause state is the
    guard's business, so it is not part of an assessment.
    """
    allowed, amount, denials = _decide(intent, view, limits, market, False)
    level, metrics, notes = _measure(intent, amount if allowed else intent.amount, view, limits, market)
    return Assessment(level, allowed, tuple(denials) + tuple(notes), metrics)


# -- the decision -------------------------------------------------------------
def _decide(
    intent: OrderIntent, view: PortfolioView, limits: RiskLimits, market: MarketRules, paused: bool | str
) -> tuple[bool, float, list[str]]:
    pos = view.open_positions().get(intent.symbol)
    if intent.reduce_only:
        if pos is None or pos.side == intent.direction:
            held = f"the {pos.side} position" if pos is not None else "no position"
            return True, intent.amount, [f"Reduce-only {intent.side} on {intent.symbol} with {held}: "
                                         "allowed, but the venue will not fill it (it cannot reduce anything)."]
        return True, intent.amount, ["Reduce-only order: exits are always allowed."]
    if pos is None or pos.side == intent.direction:
        amount, denials = _new_exposure(intent, intent.amount, view, limits, market, paused)
        if denials:
            return False, amount, denials
        moved = abs(amount - intent.amount) > 1e-12 * max(1.0, abs(intent.amount))
        return True, amount, [f"Amount {intent.amount:.8g} floored to {amount:.8g} (venue step {market.amount_step:g})."] if moved else []
    # An order against the open position closes it; any excess opens the other way.
    held = abs(pos.amount)
    if intent.amount <= held * (1 + TOL):
        return True, intent.amount, [f"Closes {intent.amount:.8g} of the {pos.side} {intent.symbol} position: exits are always allowed."]
    rest = PortfolioView(view.equity, view.cash, view.day_start_equity, view.peak_equity,
                         {s: p for s, p in view.positions.items() if s != intent.symbol})
    extra, denials = _new_exposure(intent, intent.amount - held, rest, limits, market, paused)
    if denials:
        return True, held, [f"Only the close of the {pos.side} {intent.symbol} position ({held:.8g}) is allowed; "
                            f"the reversal is denied: " + "; ".join(denials)]
    return True, round(held + extra, 12), [f"Closes the {pos.side} {intent.symbol} position and opens {extra:.8g} {intent.direction}."]


def _new_exposure(
    intent: OrderIntent, amount: float, view: PortfolioView, limits: RiskLimits, market: MarketRules,
    paused: bool | str,
) -> tuple[float, list[str]]:
    """The amount to send and the reasons to deny an order that adds exposure (none = allowed)."""
    sym, price = intent.symbol, intent.price
    bad = _bad_inputs(intent, amount, view)
    if bad:
        return 0.0, bad
    reasons: list[str] = []
    if paused:
        why = paused if isinstance(paused, str) else "the deployment is paused by risk"
        reasons.append(f"New exposure is not allowed while paused ({why}).")
    if limits.min_confidence is not None and intent.confidence < limits.min_confidence:
        reasons.append(f"Signal confidence {intent.confidence:.2f} is below min_confidence {limits.min_confidence:.2f}.")
    positions = view.open_positions()
    pos = positions.get(sym)
    if pos is not None and limits.one_position_per_direction:
        reasons.append(f"{sym} already has an open {pos.side} position ({abs(pos.amount):.8g}); "
                       "one_position_per_direction allows no second one.")
    if pos is None and limits.max_open_positions is not None and len(positions) >= limits.max_open_positions:
        reasons.append(f"{len(positions)} positions are open, the max_open_positions limit is {limits.max_open_positions}.")
    amount = _to_step(market, amount)
    small = below_minimum(market, amount, price)
    if small:
        reasons.append(f"Order amount {small}.")
    elif market.max_amount and amount > market.max_amount * (1 + TOL):
        reasons.append(f"Order amount {amount:.8g} is above the venue maximum {market.max_amount:g} for {sym}; split the order.")
    notional = amount * price * (market.contract_size or 1.0)
    held = pos.notional if pos is not None else 0.0
    if limits.max_position_quote is not None and held + notional > limits.max_position_quote * (1 + TOL):
        reasons.append(f"{sym} notional would be {held + notional:,.2f} {market.quote}, above max_position_quote "
                       f"{limits.max_position_quote:,.2f}.")
    gross = view.gross_notional() + notional
    leverage = gross / view.equity
    if limits.max_leverage is not None and leverage > limits.max_leverage * (1 + TOL):
        reasons.append(f"Total leverage would be {leverage:.2f}x ({gross:,.2f} notional on {view.equity:,.2f} equity), "
                       f"above max_leverage {limits.max_leverage:g}x.")
    return amount, reasons


def _to_step(market: MarketRules, amount: float) -> float:
    """`amount` floored to the venue's step, leaving an amount already on the step as it is.

    Flooring twice with ``//`` is not idempotent in floating point (0.003 // 0.001 == 2.0),
    and a sized amount is already floored once, exactly as the backtest floors it.
    """
    step = market.amount_step
    if step:
        units = amount / step
        if abs(units - round(units)) <= 1e-9 * max(1.0, abs(units)):
            return round(round(units) * step, 12)
    return market.round_amount(amount)


def _bad_inputs(intent: OrderIntent, amount: float, view: PortfolioView) -> list[str]:
    out = []
    if not (finite_number(amount) and amount >= 0):  # 0 is a sized entry below the venue's minimums
        out.append(f"Order amount is {amount!r}; it must be a finite positive number, so no new exposure is taken.")
    for name, v in (("price", intent.price), ("equity", view.equity)):
        if not positive_number(v):
            out.append(f"{name.capitalize()} is {v!r}; it must be a finite positive number, so no new exposure is taken.")
    if not finite_number(intent.confidence):
        out.append(f"Signal confidence is {intent.confidence!r}; it must be a finite number.")
    for s, p in view.open_positions().items():
        if not (finite_number(p.amount) and positive_number(p.mark_price) and positive_number(p.contract_size)):
            out.append(f"The {s} position has amount {p.amount!r} at mark {p.mark_price!r}, not finite positive numbers: "
                       "exposure cannot be measured, so no new exposure is taken.")
    return out


# -- measurement ------------------------------------------------------------
def _measure(
    intent: OrderIntent, amount: float, view: PortfolioView, limits: RiskLimits, market: MarketRules, explain: bool = True
) -> tuple[Level, dict[str, float | None], list[str]]:
    """Level, metrics and the notes behind the level (none unless `explain`), for the books after `amount` of `intent`."""
    nan = math.nan
    equity = view.equity if finite_number(view.equity) else nan
    price = intent.price if finite_number(intent.price) else nan
    amount = amount if finite_number(amount) else nan
    unit = market.contract_size or 1.0
    positions = view.open_positions()
    pos = positions.get(intent.symbol)
    before = _signed(pos)
    delta = (1 if intent.side == "buy" else -1) * amount * price * unit
    after = before + delta
    if intent.reduce_only and after * before <= 0:
        after = 0.0  # a reduce-only order never opens or reverses a position
    if intent.reduce_only and abs(after) > abs(before):
        after = before  # nor adds to one
    sym_after = abs(after)
    gross = sum(p.notional for s, p in positions.items() if s != intent.symbol) + sym_after
    opened = len(positions) - (pos is not None) + (sym_after > 0)
    lev = gross / equity if equity > 0 else nan
    day_loss = _loss(view.day_start_equity, equity)
    drawdown = _loss(view.peak_equity, equity)
    m: dict[str, float | None] = {
        "equity": equity, "order_notional": abs(delta), "symbol_notional": sym_after, "gross_notional": gross,
        "leverage": lev, "open_positions": float(opened),
        "concentration": sym_after / equity if equity > 0 else nan,
        "leverage_use": lev / limits.max_leverage if limits.max_leverage else None,
        "position_use": sym_after / limits.max_position_quote if limits.max_position_quote else None,
        "daily_loss": day_loss, "daily_loss_use": day_loss / limits.daily_loss_limit if limits.daily_loss_limit else None,
        "drawdown": drawdown, "drawdown_use": drawdown / limits.drawdown_limit if limits.drawdown_limit else None,
    }
    lev_use = m["leverage_use"] if m["leverage_use"] is not None else lev / LEVERAGE_REFERENCE
    cap = "max_leverage {max_lev:g}x" if limits.max_leverage else "the {ref_lev:g}x reference"
    sym = "{symbol} notional {sym_after:,.2f}"
    uses = [  # (use, what, limit); the words are only formatted for a note
        (lev_use, "total leverage {lev:.2f}x", cap),
        (m["position_use"], sym, "max_position_quote {mpq:,.2f}"),
        (m["concentration"], sym, "equity {equity:,.2f}"),
        (m["daily_loss_use"], "today's loss {day_loss:.2%}", "daily_loss_limit {dll:.2%}"),
        (m["drawdown_use"], "drawdown {drawdown:.2%}", "drawdown_limit {ddl:.2%}"),
    ]
    words = {"lev": lev, "max_lev": limits.max_leverage or 0, "ref_lev": LEVERAGE_REFERENCE, "symbol": intent.symbol,
             "sym_after": sym_after, "mpq": limits.max_position_quote or 0, "equity": equity, "day_loss": day_loss,
             "dll": limits.daily_loss_limit or 0, "drawdown": drawdown, "ddl": limits.drawdown_limit or 0}
    top = 0.0
    notes = []
    for use, what, limit in uses:
        if use is None:
            continue
        top = max(top, use) if finite_number(use) else math.inf
        if explain and finite_number(use) and use >= MEDIUM_USE:
            notes.append(f"Risk: {what.format(**words)} uses {use:.0%} of {limit.format(**words)}.")
    if not finite_number(equity) or equity <= 0:
        top, notes = math.inf, [*notes, f"Risk: equity is {view.equity!r}."]
    level: Level = "HIGH" if top >= HIGH_USE else "MEDIUM" if top >= MEDIUM_USE else "LOW"
    return level, m, notes


def _signed(pos: PositionView | None) -> float:
    if pos is None or not finite_number(pos.notional):
        return 0.0
    return pos.notional if pos.side == "long" else -pos.notional


def _loss(reference: float, equity: float) -> float:
    if not (positive_number(reference) and finite_number(equity)):
        return 0.0
    return max(0.0, (reference - equity) / reference)
