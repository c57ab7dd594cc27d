"""Market rules a venue imposes on orders: steps, minimums, contract type."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .fills import floor_to_step


@dataclass(frozen=True)
class MarketRules:
    """Precision and limits of one market, as risk sizing and order checks need them."""

    symbol: str
    amount_step: float | None = None
    price_step: float | None = None
    min_amount: float | None = None
    max_amount: float | None = None
    min_notional: float | None = None
    contract: bool = False
    contract_size: float = 1.0
    quote: str = "USDT"
    base: str = ""

    @classmethod
    def from_ccxt(cls, market: Mapping[str, Any]) -> MarketRules:
        """Rules from a ccxt unified market (precision in TICK_SIZE mode, as ccxt ≥ 4 uses)."""
        prec = market.get("precision") or {}
        lim = market.get("limits") or {}

        def num(x: Any) -> float | None:
            return None if x is None else float(x)

        return cls(
            symbol=market["symbol"],
            amount_step=num(prec.get("amount")),
            price_step=num(prec.get("price")),
            min_amount=num((lim.get("amount") or {}).get("min")),
            max_amount=num((lim.get("amount") or {}).get("max")),
            min_notional=num((lim.get("cost") or {}).get("min")),
            contract=bool(market.get("contract")),
            contract_size=float(market.get("contractSize") or 1.0),
            quote=str(market.get("quote") or ""),
            base=str(market.get("base") or ""),
        )

    def round_amount(self, amount: float) -> float:
        """Amount floored to the step (never rounds up: we never buy more than sized)."""
        return floor_to_step(amount, self.amount_step) if self.amount_step else round(amount, 12)

    def round_price(self, price: float) -> float:
        """Price rounded to the nearest tick."""
        if not self.price_step:
            return price
        return round(round(price / self.price_step) * self.price_step, 12)

    def check(self, amount: float, price: float, reduce_only: bool = False) -> None:
        """Raise ConfigError if `amount` at `price` breaks this market's limits.

        A `reduce_only` order (an exit, a stop) is not held to the minimum order
        value: derivatives venues exempt it, a position worth less than the
        minimum must still be closable, and a venue that does hold it to the
        minimum says so itself.
        """
        if not (isinstance(amount, (int, float)) and math.isfinite(amount) and amount > 0):
            raise ConfigError(f"Order amount must be a positive number, got {amount!r}.")
        if self.min_amount and amount < self.min_amount * (1 - 1e-9):
            raise ConfigError(f"{self.symbol}: amount {amount} is below the minimum {self.min_amount}; increase it.")
        if self.max_amount and amount > self.max_amount * (1 + 1e-9):
            raise ConfigError(f"{self.symbol}: amount {amount} is above the maximum {self.max_amount}; split the order.")
        notional = amount * price * self.contract_size
        if self.min_notional and not reduce_only and notional < self.min_notional * (1 - 1e-9):
            raise ConfigError(
                f"{self.symbol}: order value {notional:.4f} {self.quote} is below the minimum {self.min_notional}; "
                "increase the amount."
            )
