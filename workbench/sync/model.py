"""The vocabulary of reconciliation: differences, corrections, tolerances and auto-apply rules."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import ConfigError, WorkbenchError, did_you_mean

#: every kind of difference `diff` can report
KINDS = (
    "missing_fill",               # the venue has a fill we lack: an external or manual trade (or one we missed)
    "phantom_fill",               # we have a fill the venue does not
    "fill_mismatch",              # same fill, different amount / price / fee (compared in the fee's own currency)
    "order_status_mismatch",      # an order we think working that the venue has settled (or the reverse)
    "position_mismatch",          # a position whose size or side differs
    "position_closed_externally",  # we think open, the venue has none: closed by hand
    "unknown_position",           # the venue holds one we do not know
)

#: what a correction does when applied
ACTIONS = ("record_fill", "update_fill", "mark_order", "close_position", "resize_position",
           "adopt_position", "ignore_position", "review")


class ReconcileError(WorkbenchError):
    """Reconciliation could not run (the venue did not answer) or left differences that block trading."""


@dataclass(frozen=True)
class Correction:
    """What to do about a difference; applied only by choice (see :class:`ApplyRules`)."""

    action: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ConfigError(f"Unknown correction {self.action!r}.{did_you_mean(self.action, ACTIONS)}")

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "params": dict(self.params)}


@dataclass(frozen=True)
class Difference:
    """One disagreement between our ledger and the venue, with the rows that show it."""

    kind: str
    symbol: str | None
    key: str  # stable identity: trade id, client order id, position id or symbol
    detail: str
    evidence: Mapping[str, Any] = field(default_factory=dict)  # {'ours': [...rows], 'venue': [...rows]}
    correction: Correction | None = None
    deployment_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "symbol": self.symbol, "key": self.key, "deployment_id": self.deployment_id,
                "detail": self.detail, "evidence": dict(self.evidence),
                "correction": self.correction.to_dict() if self.correction else None}


@dataclass(frozen=True)
class Tolerances:
    """How far two numbers may differ and still agree, in the market's precision units.

    ``amount_steps`` of the amount step, ``price_ticks`` of the price tick;
    where a market has no step, ``relative`` of the value. Fees compare in
    their own currency within ``fee_relative`` of the larger one or ``fee_abs``.
    ``steps`` maps symbol -> (amount_step, price_step), from :func:`tolerances_from_markets`.
    """

    amount_steps: float = 0.5
    price_ticks: float = 0.5
    relative: float = 1e-9
    fee_relative: float = 1e-6
    fee_abs: float = 1e-12
    steps: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name == "steps":
                continue
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"Tolerances.{f.name} must be a non-negative number, got {v!r}.")


def tolerances_from_markets(markets: Mapping[str, Any], **kw: Any) -> Tolerances:
    """Tolerances whose units are each market's amount step and price tick (MarketRules or ccxt markets)."""
    steps: dict[str, tuple[float | None, float | None]] = {}
    for sym, m in markets.items():
        if hasattr(m, "amount_step"):
            steps[sym] = (m.amount_step, m.price_step)
        else:
            prec = (m or {}).get("precision") or {}
            steps[sym] = (_num(prec.get("amount")), _num(prec.get("price")))
    return Tolerances(steps=steps, **kw)


def _num(x: Any) -> float | None:
    return None if x is None else float(x)


#: the corrections a sync service applies on its own unless told otherwise: recording what the venue
#: did (external fills, settled orders, manual closes). Resizing, adopting and ignoring wait for a person.
SAFE_KINDS = ("missing_fill", "order_status_mismatch", "position_closed_externally")


@dataclass(frozen=True)
class ApplyRules:
    """Which kinds of difference have their correction applied automatically.

    ``ApplyRules()`` applies the safe ones (:data:`SAFE_KINDS`); ``ApplyRules.none()``
    nothing; ``ApplyRules.of(...)`` exactly the kinds named. ``unknown_position``
    takes ``'adopt'`` or ``'ignore'`` as its action (``unknown_position_action``).
    """

    kinds: frozenset[str] = frozenset(SAFE_KINDS)
    unknown_position_action: str = "ignore"

    def __post_init__(self) -> None:
        bad = [k for k in self.kinds if k not in KINDS]
        if bad:
            raise ConfigError(f"ApplyRules: unknown kind {bad[0]!r}.{did_you_mean(bad[0], KINDS)} Kinds: {', '.join(KINDS)}.")
        if self.unknown_position_action not in ("adopt", "ignore"):
            raise ConfigError(f"unknown_position_action must be 'adopt' or 'ignore', got {self.unknown_position_action!r}.")

    @classmethod
    def none(cls) -> ApplyRules:
        return cls(frozenset())

    @classmethod
    def of(cls, *kinds: str, unknown_position_action: str = "ignore") -> ApplyRules:
        return cls(frozenset(kinds), unknown_position_action)

    @classmethod
    def coerce(cls, value: ApplyRules | bool | str | Any | None) -> ApplyRules:
        """True/'safe' -> the safe rules, False/None -> none, 'all' -> every kind, an iterable -> those kinds."""
        if isinstance(value, ApplyRules):
            return value
        if value is None or value is False:
            return cls.none()
        if value is True or value == "safe":
            return cls()
        if value == "all":
            return cls(frozenset(KINDS))
        if isinstance(value, str):
            raise ConfigError(f"apply must be True, False, 'safe', 'all', a list of kinds or ApplyRules; got {value!r}.")
        return cls(frozenset(value))

    def wants(self, diff: Difference) -> bool:
        return diff.kind in self.kinds and diff.correction is not None and diff.correction.action != "review"
