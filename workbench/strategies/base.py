"""The strategy contract: one definition for the backtest and the engine.

A strategy is a *causal* function from an OHLCV DataFrame to :class:`Signals`
(boolean entry/exit Series aligned to the bars, optionally short signals and a
confidence in [0, 1]). "Causal" means the value on bar *i* depends only on bars
``<= i``. That one function serves both worlds:

* the vectorized backtest and optimizer call it once over the whole history;
* the engine calls :meth:`Strategy.decide` on each newly closed bar, which runs
  the same function over the trailing ``warmup(params)`` bars and reads its
  last row.

Both give the same decision on every bar as long as ``warmup`` covers the
indicators' memory: exactly for rolling windows (SMA, rolling max...), and to
within ~1e-9 relative for recursive ones (EMA, Wilder RSI) when the warmup is
at least ten times their period (``tests/test_strategies.py`` checks every
built-in on every bar of the sample data).

Orders are filled on the signal bar's close (see :mod:`workbench.fills`), so a
decision never uses a price it could not have seen.

A user strategy in a notebook cell::

    from workbench import Param, Signals, strategy

    @strategy(fast=Param(10, 5, 50, 5), slow=Param(30, 20, 200, 10),
              warmup=lambda p: p["slow"] + 1, constraint=lambda p: p["fast"] < p["slow"])
    def my_cross(df, fast, slow):
        f, s = df.close.rolling(fast).mean(), df.close.rolling(slow).mean()
        return Signals(entries=(f > s) & (f.shift() <= s.shift()),
                       exits=(f < s) & (f.shift() >= s.shift()))
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class Param:
    """One tunable parameter: its default and its grid (low..high by step)."""

    default: float
    low: float
    high: float
    step: float = 1
    doc: str = ""

    def __post_init__(self) -> None:
        if not (self.low <= self.default <= self.high) or self.step <= 0:
            raise ConfigError(
                f"Param(default={self.default}, low={self.low}, high={self.high}, step={self.step}): "
                "need low <= default <= high and step > 0."
            )

    @property
    def is_int(self) -> bool:
        return all(float(x).is_integer() for x in (self.default, self.low, self.high, self.step))

    def grid(self) -> list[float]:
        """Every value from low to high (inclusive) by step."""
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        values = [self.low + k * self.step for k in range(n)]
        return [int(round(v)) for v in values] if self.is_int else [round(v, 12) for v in values]

    def coerce(self, name: str, value: Any) -> float:
        """Check and convert one value for this parameter."""
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ConfigError(f"Parameter {name!r} must be a number, got {value!r}.")
        if not math.isfinite(float(value)):
            raise ConfigError(f"Parameter {name!r} must be finite, got {value!r}.")
        if not self.low <= float(value) <= self.high:
            raise ConfigError(
                f"Parameter {name!r}={value!r} is outside its declared range {self.low}..{self.high}; "
                "pick a value inside it (or declare a wider Param range for the strategy)."
            )
        if self.is_int:
            if not float(value).is_integer():
                raise ConfigError(f"Parameter {name!r} must be a whole number, got {value!r}.")
            return int(value)
        return float(value)


@dataclass
class Signals:
    """What a strategy says about every bar.

    ``entries``/``exits`` are long signals; ``short_entries``/``short_exits``
    are optional; ``confidence`` (0..1, NaN = 1) scales how sure the strategy is
    of an entry on that bar.
    """

    entries: pd.Series
    exits: pd.Series
    short_entries: pd.Series | None = None
    short_exits: pd.Series | None = None
    confidence: pd.Series | None = None

    def aligned(self, index: pd.Index) -> Signals:
        """Return a copy with every series boolean/float, aligned to `index`, NaN-free."""

        def flag(s: pd.Series | None) -> pd.Series:
            if s is None:
                return pd.Series(False, index=index)
            return pd.Series(s, index=index).fillna(False).astype(bool)

        conf = (
            pd.Series(1.0, index=index)
            if self.confidence is None
            else pd.Series(self.confidence, index=index).astype(float).fillna(1.0).clip(0.0, 1.0)
        )
        return Signals(flag(self.entries), flag(self.exits), flag(self.short_entries), flag(self.short_exits), conf)

    def newest(self, index: pd.Index) -> tuple[bool, bool, bool, bool, float]:
        """The last row of :meth:`aligned` (four flags, then confidence), without aligning every bar.

        The live loop reads only the newest bar: a Series already on `index`
        is read at its end; anything else is aligned as :meth:`aligned` does
        (tested equal on Series, arrays, scalars, NaN and foreign indexes).
        """

        def last(s: Any) -> Any:
            if isinstance(s, pd.Series) and (s.index is index or s.index.equals(index)):
                return s.iat[-1]  # reindexing onto an equal index changes nothing
            return pd.Series(s, index=index).iat[-1]

        def flag(s: Any) -> bool:
            if s is None:
                return False
            v = last(s)
            return False if pd.isna(v) else bool(v)

        conf = 1.0 if self.confidence is None else last(self.confidence)
        conf = 1.0 if pd.isna(conf) else float(conf)
        return flag(self.entries), flag(self.exits), flag(self.short_entries), flag(self.short_exits), min(max(conf, 0.0), 1.0)


@dataclass(frozen=True, init=False)
class Decision:
    """The strategy's word on one closed bar."""

    timestamp: pd.Timestamp
    enter_long: bool = False
    exit_long: bool = False
    enter_short: bool = False
    exit_short: bool = False
    confidence: float = 1.0

    def __init__(self, timestamp: pd.Timestamp, enter_long: bool = False, exit_long: bool = False, enter_short: bool = False,
                 exit_short: bool = False, confidence: float = 1.0) -> None:
        # one update of the instance dict (a frozen dataclass's own __init__ sets each field apart): a replay makes thousands
        self.__dict__.update(timestamp=timestamp, enter_long=enter_long, exit_long=exit_long, enter_short=enter_short,
                             exit_short=exit_short, confidence=confidence)

    @property
    def any(self) -> bool:
        return self.enter_long or self.exit_long or self.enter_short or self.exit_short


@dataclass(frozen=True)
class Strategy:
    """A named signal function with its parameter space.

    `fn(df, **params) -> Signals`; `warmup(params) -> bars` it needs to decide
    exactly; `constraint(params) -> bool` filters grid combinations (e.g.
    fast < slow).
    """

    name: str
    fn: Callable[..., Signals]
    params: Mapping[str, Param]
    warmup_fn: Callable[[Mapping[str, float]], int]
    constraint: Callable[[Mapping[str, float]], bool] | None = None
    doc: str = ""
    tags: tuple[str, ...] = field(default=())
    #: optional fast form for the live loop: ``last(bars, **params)`` -> (enter_long, exit_long,
    #: enter_short, exit_short, confidence) on the newest of `bars` ([ts, o, h, l, c, v] rows, oldest
    #: first, at least ``warmup`` of them once warm). It must agree with ``fn`` on every bar (tested).
    last: Callable[..., tuple[bool, bool, bool, bool, float]] | None = None

    def __repr__(self) -> str:
        space = ", ".join(f"{k}={p.default}" for k, p in self.params.items())
        return f"<Strategy {self.name}({space})>"

    @property
    def defaults(self) -> dict[str, float]:
        return {k: p.default for k, p in self.params.items()}

    def validate_params(self, params: Mapping[str, Any] | None = None) -> dict[str, float]:
        """Defaults overlaid with `params`, each checked; unknown names rejected."""
        params = dict(params or {})
        for key in params:
            if key not in self.params:
                raise ConfigError(
                    f"Strategy {self.name!r} has no parameter {key!r}.{did_you_mean(key, self.params)} "
                    f"Its parameters: {', '.join(self.params)}."
                )
        merged = {k: p.coerce(k, params.get(k, p.default)) for k, p in self.params.items()}
        if self.constraint is not None and not self.constraint(merged):
            raise ConfigError(f"Parameters {merged} break the constraint of strategy {self.name!r}.")
        return merged

    def warmup(self, params: Mapping[str, Any] | None = None) -> int:
        """Bars of history :meth:`decide` needs to agree with :meth:`signals`."""
        return int(self.warmup_fn(self.validate_params(params)))

    def signals(self, df: pd.DataFrame, params: Mapping[str, Any] | None = None) -> Signals:
        """Signals over the whole frame (the vectorized form)."""
        p = self.validate_params(params)
        return self._raw_signals(df, p).aligned(df.index)

    def _raw_signals(self, df: pd.DataFrame, p: Mapping[str, float]) -> Signals:
        out = self.fn(df, **p)
        if not isinstance(out, Signals):
            raise ConfigError(f"Strategy {self.name!r} must return Signals, returned {type(out).__name__}.")
        return out

    def decide(self, df: pd.DataFrame, params: Mapping[str, Any] | None = None) -> Decision:
        """The decision on the newest bar of `df` (the bar-by-bar form).

        Runs the same function over the trailing warmup window and reads the
        last row, so it equals ``signals(full_history)`` on that bar.
        """
        p = self.validate_params(params)
        if not len(df):
            raise ConfigError("decide() needs at least one bar.")
        window = df.iloc[-int(self.warmup_fn(p)):]
        return Decision(window.index[-1], *self._raw_signals(window, p).newest(window.index))

    def grid(self, ranges: Mapping[str, Any] | None = None) -> list[dict[str, float]]:
        """All parameter combinations of the space (or of `ranges`) that pass the constraint.

        `ranges` maps a name to a list of values or a Param; names left out
        keep their full grid.
        """
        import itertools

        ranges = dict(ranges or {})
        for key in ranges:
            if key not in self.params:
                raise ConfigError(f"Strategy {self.name!r} has no parameter {key!r}.{did_you_mean(key, self.params)}")
        axes = {}
        for key, p in self.params.items():
            r = ranges.get(key, p)
            values = r.grid() if isinstance(r, Param) else list(r) if np.iterable(r) else [r]
            if not values:
                raise ConfigError(f"Parameter {key!r} has an empty range.")
            axes[key] = [p.coerce(key, v) for v in values]
        combos = [dict(zip(axes, vals, strict=True)) for vals in itertools.product(*axes.values())]
        if self.constraint is not None:
            combos = [c for c in combos if self.constraint(c)]
        if not combos:
            raise ConfigError(f"No parameter combination of {self.name!r} satisfies its constraint.")
        return combos


def strategy(
    warmup: Callable[[Mapping[str, float]], int] | int,
    constraint: Callable[[Mapping[str, float]], bool] | None = None,
    name: str | None = None,
    last: Callable[..., tuple[bool, bool, bool, bool, float]] | None = None,
    **params: Param,
) -> Callable[[Callable[..., Signals]], Strategy]:
    """Decorator that turns a signal function into a :class:`Strategy` (`last`: see :attr:`Strategy.last`)."""
    warmup_fn = warmup if callable(warmup) else (lambda _p, _n=int(warmup): _n)

    def wrap(fn: Callable[..., Signals]) -> Strategy:
        return Strategy(
            name=name or fn.__name__,
            fn=fn,
            params=dict(params),
            warmup_fn=warmup_fn,
            constraint=constraint,
            doc=(fn.__doc__ or "").strip(),
            last=last,
        )

    return wrap


def crossed_above(a: pd.Series, b: pd.Series | float) -> pd.Series:
    """True on the bar where `a` moves from <= b to > b."""
    b_prev = b.shift() if isinstance(b, pd.Series) else b
    return (a > b) & (a.shift() <= b_prev)


def crossed_below(a: pd.Series, b: pd.Series | float) -> pd.Series:
    """True on the bar where `a` moves from >= b to < b."""
    b_prev = b.shift() if isinstance(b, pd.Series) else b
    return (a < b) & (a.shift() >= b_prev)
