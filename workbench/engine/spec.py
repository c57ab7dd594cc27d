"""What a deployment is: strategy + parameters + symbols + timeframe + venue + risk + mode."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, did_you_mean
from ..fills import Costs
from ..strategies import get_strategy
from ..timeframes import timeframe_seconds

VENUES = ("paper", "ccxt", "ib")
MODES = ("paper", "live")
DIRECTIONS = ("long", "short", "both")


@dataclass(frozen=True)
class DeploymentSpec:
    """A deployment's configuration, frozen and checked on creation.

    `params=None` loads the newest optimized parameters from the param store
    (their freshness is recorded). `risk` is a mapping of RiskLimits fields.
    A live deployment needs `mode='live'`, a live account, and
    `live_confirmed=True`.
    """

    strategy: str
    symbols: tuple[str, ...]
    timeframe: str = "1h"
    params: Mapping[str, Any] | None = None
    venue: str = "paper"
    account: str | None = None
    mode: str = "paper"
    risk: Mapping[str, Any] = field(default_factory=dict)
    direction: str = "long"
    initial_cash: float = 10_000.0
    quote: str = "USDT"
    costs: Costs = field(default_factory=Costs)
    name: str | None = None
    params_dir: str = "params"
    live_confirmed: bool = False

    def __post_init__(self) -> None:
        get_strategy(self.strategy)
        symbols = (self.symbols,) if isinstance(self.symbols, str) else tuple(self.symbols)
        if not symbols or not all(isinstance(s, str) and "/" in s for s in symbols):
            raise ConfigError(f"symbols must be a non-empty list like ['BTC/USDT'], got {self.symbols!r}.")
        if len(set(symbols)) != len(symbols):
            raise ConfigError(f"symbols has duplicates: {list(symbols)}.")
        object.__setattr__(self, "symbols", symbols)
        timeframe_seconds(self.timeframe)
        if self.venue not in VENUES:
            raise ConfigError(f"Unknown venue {self.venue!r}.{did_you_mean(self.venue, VENUES)} Use one of {VENUES}.")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be 'paper' or 'live', got {self.mode!r}.")
        if self.mode == "live" and self.venue == "paper":
            raise ConfigError("mode='live' needs a real venue ('ccxt' or 'ib') and a live account, not the paper venue.")
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}.")
        if not (isinstance(self.initial_cash, (int, float)) and math.isfinite(self.initial_cash) and self.initial_cash > 0):
            raise ConfigError(f"initial_cash must be a positive number, got {self.initial_cash!r}.")
        if isinstance(self.costs, Mapping):
            object.__setattr__(self, "costs", Costs(**self.costs))
        from ..risk import RiskLimits

        RiskLimits.from_dict(dict(self.risk))  # validate now, at the boundary

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeploymentSpec:
        """Build from a plain mapping, rejecting unknown fields with a suggestion."""
        names = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in names:
                raise ConfigError(f"Unknown deployment field {key!r}.{did_you_mean(key, names)} Fields: {', '.join(sorted(names))}.")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["symbols"] = list(self.symbols)
        d["params"] = dict(self.params) if self.params is not None else None
        d["risk"] = dict(self.risk)
        return d

    def risk_limits(self):  # -> RiskLimits
        from ..risk import RiskLimits

        return RiskLimits.from_dict(dict(self.risk))
