"""The vectorized backtest of one strategy on one or many symbols, with vectorbt.

Execution follows :mod:`workbench.fills`: fills on the signal bar's close with
slippage, stops relative to the fill price and active from the next bar, stop
loss before take profit, taker fees. Sizing follows :mod:`workbench.risk`:
a fraction of available cash (``size_pct``, 1.0 = all in, as vectorbt's
default) or a fixed quote amount times leverage (``size_quote``).

``amount_step`` (vectorbt's ``size_granularity``) is off by default: vectorbt
floors exits too, and float residue of a non-dyadic step (0.1185 // 1e-5 ==
11849) can strand a sliver of position that blocks later entries. Venue
rounding is a paper/live concern; the parity tests run the paper venue with
fine steps so that only the trading rules are compared.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from .errors import ConfigError
from .fills import Costs
from .strategies import Signals, Strategy, get_strategy

Direction = Literal["long", "short", "both"]


@dataclass(frozen=True)
class BacktestConfig:
    """How a backtest trades: costs, direction, stops, sizing and starting cash."""

    costs: Costs = field(default_factory=Costs)
    direction: Direction = "long"
    sl: float | None = None
    tp: float | None = None
    size_pct: float | None = 1.0
    size_quote: float | None = None
    leverage: float = 1.0
    init_cash: float = 10_000.0
    amount_step: float | None = None
    min_confidence: float = 0.0
    freq: str | None = None

    def __post_init__(self) -> None:
        if self.direction not in ("long", "short", "both"):
            raise ConfigError(f"direction must be 'long', 'short' or 'both', got {self.direction!r}.")
        for name in ("sl", "tp"):
            v = getattr(self, name)
            if v is not None and (not math.isfinite(v) or not 0 < v < 1):
                raise ConfigError(f"{name} must be a fraction in (0, 1) such as 0.02 for 2%, or None; got {v!r}.")
        if (self.size_pct is None) == (self.size_quote is None):
            raise ConfigError("Give exactly one of size_pct (fraction of cash) or size_quote (quote amount).")
        if self.size_pct is not None and not 0 < self.size_pct <= 1:
            raise ConfigError(f"size_pct must be in (0, 1], got {self.size_pct!r}.")
        if self.size_quote is not None and not self.size_quote > 0:
            raise ConfigError(f"size_quote must be positive, got {self.size_quote!r}.")
        if not self.leverage >= 1:
            raise ConfigError(f"leverage must be >= 1, got {self.leverage!r}.")
        if not self.init_cash > 0:
            raise ConfigError(f"init_cash must be positive, got {self.init_cash!r}.")
        if self.direction == "both" and self.size_pct is not None:
            raise ConfigError(
                "direction='both' needs size_quote: a position sized as a percent of cash cannot be reversed "
                "in one order (vectorbt's rule). Pass size_pct=None, size_quote=<quote amount>."
            )
        if not 0 <= self.min_confidence <= 1:
            raise ConfigError(f"min_confidence must be in [0, 1], got {self.min_confidence!r}.")

    def with_(self, **changes: Any) -> BacktestConfig:
        return replace(self, **changes)


def directional(sig: Signals, config: BacktestConfig) -> dict[str, pd.Series]:
    """Entry/exit arrays for vectorbt after direction and confidence filters."""
    gate = sig.confidence >= config.min_confidence
    out: dict[str, pd.Series] = {}
    if config.direction in ("long", "both"):
        out["entries"], out["exits"] = sig.entries & gate, sig.exits
    if config.direction in ("short", "both"):
        out["short_entries"], out["short_exits"] = sig.short_entries & gate, sig.short_exits
    return out


def portfolio_kwargs(df: pd.DataFrame, config: BacktestConfig) -> dict[str, Any]:
    """The keyword arguments of vectorbt's from_signals that encode our fill rules."""
    kw: dict[str, Any] = dict(
        close=df["close"],
        open=df["open"],
        high=df["high"],
        low=df["low"],
        fees=config.costs.taker_fee,
        slippage=config.costs.slippage,
        init_cash=config.init_cash,
        stop_entry_price="fillprice",
        stop_exit_price="stopmarket",
        freq=bar_freq(df, config),
    )
    if config.size_quote is not None:
        kw.update(size=config.size_quote * config.leverage, size_type="value")
    else:
        kw.update(size=config.size_pct, size_type="percent")
    if config.amount_step:
        kw["size_granularity"] = config.amount_step
    if config.sl:
        kw["sl_stop"] = config.sl
    if config.tp:
        kw["tp_stop"] = config.tp
    return kw


def backtest(
    strategy: str | Strategy,
    df: pd.DataFrame,
    params: Mapping[str, Any] | None = None,
    config: BacktestConfig | None = None,
):
    """Run `strategy` with `params` over `df` and return the vectorbt Portfolio."""
    from .startup import defer_slow_imports

    defer_slow_imports()  # vectorbt imports plotly -> nbformat -> jsonschema, which would build IRI grammars
    import vectorbt as vbt

    from .numba_cache import cache_vectorbt_kernels

    cache_vectorbt_kernels()  # from_signals' simulator compiles once per machine, not once per process
    strat = get_strategy(strategy)
    config = config or BacktestConfig()
    sig = strat.signals(df, params)
    return vbt.Portfolio.from_signals(**portfolio_kwargs(df, config), **directional(sig, config))


def metrics(pf: Any) -> dict[str, float]:
    """The headline metrics of a vectorbt Portfolio (one column)."""
    trades = pf.trades
    n = int(trades.count())
    return {
        "total_return": float(pf.total_return()),
        "sharpe": float(pf.sharpe_ratio()),
        "max_drawdown": float(pf.max_drawdown()),
        "win_rate": float(trades.win_rate()) if n else math.nan,
        "trades": float(n),
        "final_value": float(pf.final_value()),
    }


#: the year vectorbt annualizes returns over (its default ``returns.year_freq``)
YEAR = pd.Timedelta(days=365)


def ann_factor(freq: Any) -> float:
    """Bars per year for a bar period `freq` read as vectorbt reads it ('1h', 'h', a Timedelta, a DateOffset);
    NaN when there is none. Annualizes the Sharpe ratio of both engines."""
    if freq is None:
        return math.nan
    if isinstance(freq, str) and not freq[:1].isdigit():
        period = pd.Timedelta(1, unit=freq)  # pd.Timedelta("h") would raise "unit abbreviation w/o a number"
    elif isinstance(freq, pd.DateOffset):
        period = pd.Timedelta(freq.nanos)
    else:
        period = pd.Timedelta(freq)
    return YEAR / period


def bar_freq(df: pd.DataFrame, config: BacktestConfig) -> Any:
    """The bar period vectorbt is given (its Sharpe's annualization): ``config.freq``, else inferred from `df`."""
    return config.freq or _infer_freq(df.index)


def _infer_freq(index: pd.Index) -> pd.Timedelta | None:
    """The median gap between the first 1000 timestamps, truncated to the index's unit as pandas' median is."""
    if isinstance(index, pd.DatetimeIndex) and len(index) > 1:
        head = index[: min(len(index), 1000)]
        if head.hasnans:
            return pd.Timedelta((head[1:] - head[:-1]).median())
        return pd.Timedelta(int(np.median(np.diff(head.asi8))), unit=head.unit)  # the same, without pandas' overhead
    return None
