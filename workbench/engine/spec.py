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
        from ..strategies import Strategy

        if not isinstance(self.strategy, (str, Strategy)):
            raise ConfigError(f"strategy must be a name such as 'sma_cross' (or a Strategy), got {self.strategy!r}.")
        strat = get_strategy(self.strategy)
        symbols = (self.symbols,) if isinstance(self.symbols, str) else self.symbols
        if not isinstance(symbols, (list, tuple)) or not symbols or not all(isinstance(s, str) and "/" in s for s in symbols):
            raise ConfigError(f"symbols must be a non-empty list like ['BTC/USDT'], got {self.symbols!r}.")
        symbols = tuple(symbols)
        if len(set(symbols)) != len(symbols):
            raise ConfigError(f"symbols has duplicates: {list(symbols)}.")
        object.__setattr__(self, "symbols", symbols)
        if not isinstance(self.timeframe, str):
            raise ConfigError(f"timeframe must be a string such as '1h', got {self.timeframe!r}.")
        timeframe_seconds(self.timeframe)
        if self.params is not None:
            if not isinstance(self.params, Mapping):
                raise ConfigError(f"params must be a mapping such as {strat.defaults}, or None for the param store; got {self.params!r}.")
            strat.validate_params(self.params)
        for name, value, choices in (("venue", self.venue, VENUES), ("mode", self.mode, MODES), ("direction", self.direction, DIRECTIONS)):
            if not isinstance(value, str) or value not in choices:
                hint = did_you_mean(value, choices) if isinstance(value, str) else ""
                raise ConfigError(f"Unknown {name} {value!r}.{hint} Use one of {choices}.")
        if self.mode == "live" and self.venue == "paper":
            raise ConfigError("mode='live' needs a real venue ('ccxt' or 'ib') and a live account, not the paper venue.")
        cash = self.initial_cash
        if isinstance(cash, bool) or not isinstance(cash, (int, float)) or not math.isfinite(cash) or cash <= 0:
            raise ConfigError(f"initial_cash must be a positive number, got {cash!r}.")
        if isinstance(self.costs, Mapping):
            unknown = set(self.costs) - {"taker_fee", "maker_fee", "slippage"}
            if unknown:
                raise ConfigError(f"Unknown cost field(s) {sorted(unknown)}; use taker_fee, maker_fee, slippage.")
            object.__setattr__(self, "costs", Costs(**self.costs))
        elif not isinstance(self.costs, Costs):
            raise ConfigError(f"costs must be a Costs or a mapping of taker_fee/maker_fee/slippage, got {self.costs!r}.")
        for name in ("account", "name"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a string or None, got {getattr(self, name)!r}.")
        if not isinstance(self.params_dir, str) or not isinstance(self.quote, str):
            raise ConfigError("params_dir and quote must be strings.")
        if not isinstance(self.live_confirmed, bool):
            raise ConfigError(f"live_confirmed must be True or False, got {self.live_confirmed!r}.")
        if not isinstance(self.risk, Mapping):
            raise ConfigError(f"risk must be a mapping of risk limits such as {{'size_pct': 0.02}}, got {self.risk!r}.")
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
