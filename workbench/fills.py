"""The fill rules, defined once for the backtest, the paper venue and the engine.

* Market orders fill at the current price (in a bar replay: the close of the
  bar the decision was made on) moved against the taker by ``slippage``.
* Protective stops (stop loss, take profit) become active on the bar after the
  entry fill. On each later bar: if the bar *opens* beyond a level, the exit is
  at the open (a gap); else if the bar's range touches a level, the exit is at
  that level. When one bar crosses both stop loss and take profit, the stop
  loss wins: a bar's path is unknown, so we assume the worse outcome. Stop
  exits are market orders once triggered: taker fee and slippage apply.
* Limit orders fill at their limit price (or the open, if the bar opens
  through it) when the bar trades through the limit; maker fee, no slippage.
* Fees are a rate on the traded notional, charged in the quote currency.

These are the semantics of vectorbt's ``Portfolio.from_signals`` with
``price=close``, ``stop_entry_price='fillprice'`` and
``stop_exit_price='stopmarket'``, which :mod:`workbench.backtest` uses; the
parity tests check the paper venue against it trade by trade.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class Costs:
    """Trading costs as fractions: taker and maker fee rates and slippage."""

    taker_fee: float = 0.001
    maker_fee: float = 0.001
    slippage: float = 0.0

    def __post_init__(self) -> None:
        for name in ("taker_fee", "maker_fee", "slippage"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v < 0.1:
                raise ConfigError(f"{name} must be a fraction in [0, 0.1) (0.001 = 0.1%), got {v!r}.")


def market_fill_price(side: str, price: float, slippage: float) -> float:
    """The price a market order of `side` ('buy'/'sell') gets at `price`."""
    return price * (1 + slippage) if side == "buy" else price * (1 - slippage)


def fee(notional: float, rate: float) -> float:
    """The fee on a trade of `notional` quote value."""
    return abs(notional) * rate


def stop_levels(side: str, entry_price: float, sl: float | None, tp: float | None) -> tuple[float, float]:
    """Absolute stop-loss and take-profit prices (NaN when off) for a position."""
    nan = float("nan")
    if side == "long":
        return (entry_price * (1 - sl) if sl else nan, entry_price * (1 + tp) if tp else nan)
    return (entry_price * (1 + sl) if sl else nan, entry_price * (1 - tp) if tp else nan)


def stop_exit(
    side: str, sl_price: float, tp_price: float, open_: float, high: float, low: float
) -> tuple[float, str] | None:
    """Where a bar triggers a position's stop, as (trigger price, reason), or None.

    Stop loss is tested first (see module docstring). The trigger price is the
    level, or the open when the bar gapped past it; slippage comes after.
    """
    long = side == "long"
    if sl_price == sl_price:  # not NaN
        if (long and open_ <= sl_price) or (not long and open_ >= sl_price):
            return open_, "stop_loss"
        if low <= sl_price <= high:
            return sl_price, "stop_loss"
    if tp_price == tp_price:
        if (long and tp_price <= open_) or (not long and tp_price >= open_):
            return open_, "take_profit"
        if low <= tp_price <= high:
            return tp_price, "take_profit"
    return None


def limit_fill(side: str, limit: float, open_: float, high: float, low: float) -> float | None:
    """Fill price of a resting limit order over one bar, or None."""
    if side == "buy":
        if open_ <= limit:
            return open_
        return limit if low <= limit else None
    if open_ >= limit:
        return open_
    return limit if high >= limit else None


def stop_order_trigger(side: str, stop: float, open_: float, high: float, low: float) -> float | None:
    """Trigger price of a resting stop (market) order over one bar, or None."""
    if side == "buy":
        if open_ >= stop:
            return open_
        return stop if high >= stop else None
    if open_ <= stop:
        return open_
    return stop if low <= stop else None


def bar_envelope(open_: Any, high: Any, low: Any, close: Any) -> tuple[Any, Any]:
    """Each bar's (lowest, highest) of open, high, low and close, for arrays of bars; NaN where a price is NaN.

    A bar whose lowest is above L and highest below H reaches no level
    outside (L, H) (a gap at the open reaches one too): the test every rule
    here starts with, for a whole stretch of bars at once.
    """
    import numpy as np

    return np.minimum(np.minimum(open_, low), close), np.maximum(np.maximum(open_, high), close)


def floor_to_step(amount: float, step: float | None) -> float:
    """Round an amount down to the venue's step.

    Float residue is tolerated (0.0852 / 0.0001 is 851.9999...): an amount
    already on the step stays on it instead of losing one step. The result is
    the float nearest to the exact multiple of the step, so rounding it again
    (to 12 places, say) changes nothing.
    """
    if not step:
        return amount
    n = math.floor(amount / step * (1 + 1e-12))
    form = _STEP_FORMS.get(step)
    if form is None:
        form = _STEP_FORMS[step] = _step_form(step)
    divisor, decimals = form
    # a power of ten: the division is correctly rounded, as round() is, for a fraction of the cost
    return n / divisor if divisor else round(n * step, decimals)


def _step_form(step: float) -> tuple[float | None, int]:
    """(10**k when `step` is 10**-k, else None; the decimals a multiple of `step` is rounded to)."""
    k = round(-math.log10(step))
    divisor = 10.0 ** k if 0 <= k <= 22 and float(f"1e-{k}") == step else None
    return divisor, max(0, -math.floor(math.log10(step)) + 2)


_STEP_FORMS: dict[float, tuple[float | None, int]] = {}  # per step, how floor_to_step rounds to it
