"""Risk limits of a deployment: one frozen, validated record; every rule can be switched off with None."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, did_you_mean

SIZE_MODES = ("pct_equity", "fixed_quote")
_OFF_WORDS = ("none", "off", "null", "")


@dataclass(frozen=True)
class RiskLimits:
    """How big each position is and when new exposure is refused or trading pauses.

    Sizing: ``pct_equity`` spends ``size_pct`` of equity per entry (fees and
    slippage included, as vectorbt's ``SizeType.Percent``); ``fixed_quote``
    commits ``size_quote`` of margin times ``leverage`` (vectorbt's
    ``SizeType.Value``). Every limit below is off when None.
    """

    size_mode: str = "pct_equity"
    size_pct: float = 0.02
    size_quote: float = 200.0
    leverage: float = 1.0
    max_leverage: float | None = 3.0
    max_position_quote: float | None = None
    max_open_positions: int | None = 3
    daily_loss_limit: float | None = 0.01
    drawdown_limit: float | None = 0.05
    cooldown_seconds: float | None = 60.0
    stop_loss: float | None = 0.02
    take_profit: float | None = 0.05
    min_confidence: float | None = None
    one_position_per_direction: bool = True

    def __post_init__(self) -> None:
        if self.size_mode not in SIZE_MODES:
            raise ConfigError(
                f"size_mode must be one of {SIZE_MODES}, got {self.size_mode!r}.{did_you_mean(self.size_mode, SIZE_MODES)}"
            )
        _number(self, "size_pct", lo=0.0, hi=1.0, hint="a fraction of equity per entry, e.g. 0.02 for 2%")
        _number(self, "size_quote", lo=0.0, hint="the quote-currency margin per position, e.g. 200")
        _number(self, "leverage", lo=1.0, lo_open=False, hint="1 for no leverage, e.g. 10 for 10x")
        _number(self, "max_leverage", lo=0.0, hint="the cap on total notional / equity, e.g. 3", optional=True)
        _number(self, "max_position_quote", lo=0.0, hint="the largest notional per symbol in quote currency", optional=True)
        _count(self, "max_open_positions")
        _number(self, "daily_loss_limit", lo=0.0, hi=1.0, hi_open=True, optional=True,
                hint="a fraction of the day's starting equity, e.g. 0.01 for 1%")
        _number(self, "drawdown_limit", lo=0.0, hi=1.0, hi_open=True, optional=True,
                hint="a fraction of peak equity, e.g. 0.05 for 5%")
        _number(self, "cooldown_seconds", lo=0.0, lo_open=False, optional=True, hint="seconds, e.g. 60")
        _number(self, "stop_loss", lo=0.0, hi=1.0, hi_open=True, optional=True, hint="a fraction of the entry price, e.g. 0.02")
        _number(self, "take_profit", lo=0.0, hi=1.0, hi_open=True, optional=True, hint="a fraction of the entry price, e.g. 0.05")
        _number(self, "min_confidence", lo=0.0, hi=1.0, lo_open=False, optional=True, hint="a signal confidence in [0, 1]")
        if not isinstance(self.one_position_per_direction, bool):
            raise ConfigError(f"one_position_per_direction must be true or false, got {self.one_position_per_direction!r}.")
        if self.max_leverage is not None and self.leverage > self.max_leverage:
            raise ConfigError(
                f"leverage {self.leverage:g} is above max_leverage {self.max_leverage:g}: "
                f"raise max_leverage to at least {self.leverage:g} or lower leverage to {self.max_leverage:g} or less."
            )

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The names of the limits, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RiskLimits:
        """Limits from a plain mapping (a panel, a CLI, a stored deployment).

        Unknown fields are refused with a suggestion; missing fields take the
        defaults; the strings "none"/"off" switch a rule off.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError(f"Risk limits must be a mapping of field names to values, got {type(data).__name__}.")
        names = cls.fields()
        for key in data:
            if key not in names:
                raise ConfigError(
                    f"Unknown risk limit {key!r}.{did_you_mean(key, names)} Valid limits: {', '.join(names)}."
                )
        clean = {k: (None if isinstance(v, str) and v.strip().lower() in _OFF_WORDS else v) for k, v in data.items()}
        return cls(**clean)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping that :meth:`from_dict` turns back into equal limits."""
        return dataclasses.asdict(self)

    def with_(self, **changes: Any) -> RiskLimits:
        """A copy with some limits changed (validated again)."""
        return self.from_dict(self.to_dict() | changes)


def _number(
    obj: RiskLimits,
    name: str,
    *,
    lo: float,
    hi: float | None = None,
    lo_open: bool = True,
    hi_open: bool = False,
    optional: bool = False,
    hint: str,
) -> None:
    v = getattr(obj, name)
    if v is None:
        if optional:
            return
        raise ConfigError(f"{name} cannot be off (None); give {hint}.")
    off = " (or None to switch it off)" if optional else ""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{name} must be a number: {hint}{off}; got {v!r}.")
    low_bad = v <= lo if lo_open else v < lo
    high_bad = hi is not None and (v >= hi if hi_open else v > hi)
    if low_bad or high_bad:
        lbr, rbr = ("(" if lo_open else "["), (")" if hi_open else "]")
        rng = f"{lbr}{lo:g}, {hi:g}{rbr}" if hi is not None else f"{'>' if lo_open else '>='} {lo:g}"
        raise ConfigError(f"{name} must be {'in ' if hi is not None else ''}{rng}: {hint}{off}; got {v!r}.")
    object.__setattr__(obj, name, float(v))


def _count(obj: RiskLimits, name: str) -> None:
    v = getattr(obj, name)
    if v is None:
        return
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{name} must be a whole number >= 1 (or None to switch it off), got {v!r}.")
    object.__setattr__(obj, name, v)
