"""The values risk works on and answers with: intents, portfolio views, verdicts, assessments, events."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

from ..errors import ConfigError

Level = Literal["LOW", "MEDIUM", "HIGH"]
EVENT_KINDS = ("denied", "paused", "resumed", "unprotected")


@dataclass(frozen=True)
class OrderIntent:
    """An order the engine wants to send: `price` is the reference price it was sized at."""

    symbol: str
    side: str
    amount: float
    price: float
    reduce_only: bool = False
    confidence: float = 1.0

    def __post_init__(self) -> None:
        if self.side not in ("buy", "sell"):
            raise ConfigError(f"OrderIntent side must be 'buy' or 'sell', got {self.side!r}.")

    @property
    def direction(self) -> str:
        """The position side this order adds to: 'long' for a buy, 'short' for a sell."""
        return "long" if self.side == "buy" else "short"


@dataclass(frozen=True)
class PositionView:
    """One open position as risk sees it; `amount` is in the venue's units (contracts on a contract market)."""

    symbol: str
    side: str
    amount: float
    entry_price: float
    mark_price: float
    contract_size: float = 1.0

    def __post_init__(self) -> None:
        if self.side not in ("long", "short"):
            raise ConfigError(f"PositionView side must be 'long' or 'short', got {self.side!r}.")

    @property
    def notional(self) -> float:
        """Quote value at the mark price."""
        return abs(self.amount) * self.mark_price * self.contract_size


@dataclass(frozen=True)
class PortfolioView:
    """A deployment's books at one moment: what every risk rule reads."""

    equity: float
    cash: float
    day_start_equity: float
    peak_equity: float
    positions: Mapping[str, PositionView] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "positions", MappingProxyType(dict(self.positions)))

    def open_positions(self) -> dict[str, PositionView]:
        """Positions with a non-zero amount."""
        return {s: p for s, p in self.positions.items() if p.amount}

    def gross_notional(self) -> float:
        return sum(p.notional for p in self.open_positions().values())


@dataclass(frozen=True)
class Verdict:
    """Risk's answer to one order: allowed (with the amount to send) or denied, always with reasons."""

    allowed: bool
    amount: float
    reasons: tuple[str, ...] = ()
    level: Level = "LOW"

    def event(self, intent: OrderIntent, now: float | datetime) -> RiskEvent | None:
        """The 'denied' event to record for a denial, or None when the order is allowed."""
        if self.allowed:
            return None
        return RiskEvent(
            "denied", "; ".join(self.reasons),
            {"symbol": intent.symbol, "side": intent.side, "amount": intent.amount, "price": intent.price,
             "reduce_only": intent.reduce_only, "confidence": intent.confidence, "level": self.level},
            as_seconds(now),
        )


@dataclass(frozen=True)
class Assessment:
    """How risky an order would leave the deployment, and whether it may trade, with the numbers behind it."""

    level: Level
    can_trade: bool
    reasons: tuple[str, ...]
    metrics: Mapping[str, float | None]


@dataclass(frozen=True)
class RiskEvent:
    """Something risk did that the engine records and the panels show."""

    kind: str
    reason: str
    details: dict[str, Any]
    at: float

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ConfigError(f"RiskEvent kind must be one of {EVENT_KINDS}, got {self.kind!r}.")


def as_seconds(now: float | datetime) -> float:
    """Epoch seconds of `now` (a float, or a datetime; a naive one is taken as UTC)."""
    if isinstance(now, datetime):
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return now.timestamp()
    if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
        raise ConfigError(f"now must be epoch seconds or a datetime, got {now!r}.")
    return float(now)


def finite_number(v: object) -> bool:
    """True for an int or float (not a bool) that is finite."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def positive_number(v: object) -> bool:
    """True for a finite number above zero."""
    return finite_number(v) and v > 0  # type: ignore[operator]
