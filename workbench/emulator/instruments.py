"""Instruments the emulator lists: a spot pair and a linear USDT perpetual per feed symbol.

Precision and limits follow Bybit's real ones for the sample symbols, and a
price-scaled rule for any other (CSV) symbol. Fees are Bybit's base tier.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

SPOT_FEES = (0.001, 0.001)  # taker, maker
LINEAR_FEES = (0.00055, 0.0002)
MIN_NOTIONAL = 5.0

#: base: (spot tick, spot qty step, spot min qty, linear tick, linear qty step, linear min qty, max leverage)
_SPECS: dict[str, tuple[float, float, float, float, float, float, float]] = {
    "BTC": (0.01, 0.000001, 0.000048, 0.1, 0.001, 0.001, 100),
    "ETH": (0.01, 0.00001, 0.00062, 0.01, 0.01, 0.01, 100),
    "SOL": (0.01, 0.001, 0.054, 0.01, 0.1, 0.1, 100),
    "XRP": (0.0001, 0.01, 1.0, 0.0001, 1.0, 1.0, 75),
}


@dataclass(frozen=True)
class Instrument:
    """One tradable market: `feed` is the price series it trades on ('BTC/USDT')."""

    feed: str
    id: str
    category: str  # 'spot' | 'linear'
    base: str
    quote: str
    tick: float
    qty_step: float
    min_qty: float
    max_qty: float
    min_notional: float
    max_leverage: float
    taker: float
    maker: float

    @property
    def spot(self) -> bool:
        return self.category == "spot"

    def round_price(self, price: float) -> float:
        return round(round(price / self.tick) * self.tick, decimals(self.tick))

    def floor_qty(self, qty: float) -> float:
        return round(math.floor(qty / self.qty_step + 1e-9) * self.qty_step, decimals(self.qty_step))

    def on_step(self, qty: float) -> bool:
        return abs(qty / self.qty_step - round(qty / self.qty_step)) < 1e-6


def decimals(step: float) -> int:
    """Decimal places of a step (0.001 -> 3, 1 -> 0)."""
    return max(0, -math.floor(math.log10(step) + 1e-9))


def instruments_for(feed_symbol: str, price: float) -> list[Instrument]:
    """The spot and linear instruments of a feed symbol 'BASE/QUOTE' whose price is about `price`."""
    base, quote = feed_symbol.split(":")[0].split("/")
    if base in _SPECS:
        s_tick, s_step, s_min, l_tick, l_step, l_min, max_lev = _SPECS[base]
    else:
        mag = math.floor(math.log10(price))
        s_tick = l_tick = 10.0 ** (mag - 4)
        s_step = s_min = 10.0 ** math.floor(math.log10(1 / price))
        l_step = l_min = 10.0 ** math.ceil(math.log10(MIN_NOTIONAL / price))
        max_lev = 50
    sym = f"{base}{quote}"
    return [
        Instrument(feed_symbol, sym, "spot", base, quote, s_tick, s_step, s_min, s_min * 1e6, MIN_NOTIONAL, 1, *SPOT_FEES),
        Instrument(feed_symbol, sym, "linear", base, quote, l_tick, l_step, l_min, l_min * 1e5, MIN_NOTIONAL, max_lev, *LINEAR_FEES),
    ]
