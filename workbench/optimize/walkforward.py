"""Walk-forward analysis: optimize in-sample, trade the winner out-of-sample, roll forward.

Fold *k* trains on ``train_bars`` bars and tests on the ``test_bars`` bars
right after them; the next fold moves both windows by ``test_bars``, so test
windows tile the data without overlap and a test window is never part of its
own training window. Out-of-sample signals are computed over the training and
test bars together (strategies are causal, so this only gives the indicators
their history) and trades happen only inside the test window; a position
still open on its last bar is closed there, so each fold's result is realized
and the folds chain into one out-of-sample equity curve.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..backtest import BacktestConfig, ann_factor, bar_freq
from ..errors import ConfigError
from ..strategies import Strategy, get_strategy
from .grid import (
    METRICS,
    check_config,
    check_metric,
    check_min_trades,
    load_frames,
    optimize,
    resolve_grid,
    signal_arrays,
    simulate,
)


@dataclass
class WalkForwardResult:
    """Folds (windows, chosen parameters, in- and out-of-sample metrics) and the stitched OOS equity."""

    strategy: Strategy
    symbol: str
    timeframe: str
    folds: pd.DataFrame
    equity: pd.Series = field(repr=False)
    metrics: dict[str, float]
    config: BacktestConfig
    metric: str
    min_trades: int

    def __repr__(self) -> str:
        m = self.metrics
        return (f"<WalkForwardResult {self.strategy.name} {self.symbol} {self.timeframe}: {len(self.folds)} folds, "
                f"OOS return {m['total_return']:.2%}, sharpe {m['sharpe']:.2f}, max drawdown {m['max_drawdown']:.2%}, "
                f"{int(m['trades'])} trades>")

    def plot(self):
        """Stitched out-of-sample equity and drawdown with the test windows shaded (plotly)."""
        from .plots import walk_forward_figure

        title = f"Walk-forward {self.strategy.name} {self.symbol} {self.timeframe}: out-of-sample equity"
        return walk_forward_figure(self.equity, self.folds, title)


def fold_windows(n: int, train_bars: int, test_bars: int, anchored: bool = False) -> list[tuple[int, int, int]]:
    """(train_start, test_start, test_end) bar positions of each fold; test windows tile [train_bars, n)."""
    for name, v in (("train_bars", train_bars), ("test_bars", test_bars)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 2:
            raise ConfigError(f"{name} must be a whole number >= 2, got {v!r}.")
    if n < train_bars + test_bars:
        raise ConfigError(
            f"Walk-forward needs at least train_bars + test_bars = {train_bars + test_bars} bars, the data has {n}. "
            "Use more bars or smaller windows."
        )
    out = []
    test_start = train_bars
    while test_start + test_bars <= n:
        out.append((0 if anchored else test_start - train_bars, test_start, test_start + test_bars))
        test_start += test_bars
    return out


def walk_forward(
    strategy: str | Strategy,
    symbol: str,
    timeframe: str,
    data: pd.DataFrame | Mapping[str, pd.DataFrame] | None = None,
    train_bars: int = 1000,
    test_bars: int = 250,
    ranges: Mapping[str, Any] | None = None,
    config: BacktestConfig | None = None,
    metric: str = "sharpe",
    min_trades: int = 5,
    source: str = "sample",
    start: Any = None,
    end: Any = None,
    bars: int | None = None,
    anchored: bool = False,
    progress: bool = True,
    engine: str = "auto",
) -> WalkForwardResult:
    """Rolling in-sample optimization and out-of-sample test of `strategy` on one symbol.

    With ``anchored=True`` every training window starts at the first bar
    (expanding) instead of rolling. A fold whose training window has no
    combination with `min_trades` trades stays flat out of sample. `engine` as
    :func:`optimize`'s: with the fused kernel, the folds' tests run on it too, so
    a built-in's walk-forward imports no vectorbt unless a fold falls back to it
    (prices not all finite and positive, a partly funded short cover); the
    numbers are the same either way (tested).
    """
    strat = get_strategy(strategy)
    metric = check_metric(metric)
    min_trades = check_min_trades(min_trades)
    config = check_config(config)
    resolve_grid(strat, ranges)  # fail early on bad ranges
    df = load_frames([symbol], timeframe, data, source, start, end, bars)[symbol]
    windows = fold_windows(len(df), train_bars, test_bars, anchored)

    rows, pieces = [], []
    level = config.init_cash
    iterator = windows
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(windows, desc="walk-forward", unit="fold")
    for k, (a, b, c) in enumerate(iterator):
        train = df.iloc[a:b]
        res = optimize(strat, [symbol], timeframe, data={symbol: train}, ranges=ranges, config=config,
                       metric=metric, min_trades=min_trades, progress=False, engine=engine)
        best = res.best(skip_missing=True).get(symbol)
        row: dict[str, Any] = {
            "fold": k, "train_start": df.index[a], "train_end": df.index[b - 1],
            "test_start": df.index[b], "test_end": df.index[c - 1],
        }
        if best is None:
            row.update({p: math.nan for p in strat.params})
            row.update({f"is_{m}": math.nan for m in METRICS})
            oos = {"total_return": 0.0, "sharpe": math.nan, "max_drawdown": 0.0, "win_rate": math.nan,
                   "trades": 0.0, "final_value": config.init_cash}
            value = pd.Series(config.init_cash, index=df.index[b:c])
        else:
            params, is_metrics = best
            row.update(params)
            row.update({f"is_{m}": v for m, v in is_metrics.items()})
            oos, value = _out_of_sample(strat, df.iloc[a:c], c - b, params, config, res.engine == "kernel")
        row.update({f"oos_{m}": v for m, v in oos.items()})
        rows.append(row)
        if config.size_pct is not None:
            pieces.append(value * (level / config.init_cash))
        else:
            pieces.append(value + (level - config.init_cash))
        level = float(pieces[-1].iloc[-1])

    folds = pd.DataFrame(rows)
    equity = pd.concat(pieces)
    equity.name = "equity"
    return WalkForwardResult(
        strategy=strat, symbol=symbol, timeframe=timeframe, folds=folds, equity=equity,
        metrics=_overall(equity, folds, config, df), config=config, metric=metric, min_trades=min_trades,
    )


def _out_of_sample(strat: Strategy, window: pd.DataFrame, test_bars: int, params: Mapping[str, float],
                   config: BacktestConfig, kernel: bool) -> tuple[dict[str, float], pd.Series]:
    """Metrics and value of `params` traded on the last `test_bars` of `window`, signals computed over all of it,
    flat at the end: by the fused kernel when `kernel` and it can, else by a vectorbt backtest (the same, to rounding)."""
    if kernel:
        from .kernels import out_of_sample

        done = out_of_sample(strat, window, test_bars, params, config)
        if done is not None:
            return done
    from ..backtest import metrics

    arrays = {k: v[-test_bars:].copy() for k, v in signal_arrays(strat, window, [params], config).items()}
    arrays["entries"][-1] = arrays["short_entries"][-1] = False
    arrays["exits"][-1] = arrays["short_exits"][-1] = True
    pf = simulate(window.iloc[-test_bars:], config, arrays)[0]
    return metrics(pf), pf.value()


def _overall(equity: pd.Series, folds: pd.DataFrame, config: BacktestConfig, df: pd.DataFrame) -> dict[str, float]:
    """Metrics of the stitched out-of-sample equity, computed as vectorbt does for one portfolio."""

    freq = bar_freq(df, config)
    prev = np.concatenate(([config.init_cash], equity.to_numpy()[:-1]))
    returns = equity.to_numpy() / prev - 1.0
    trades = float(folds["oos_trades"].sum())
    wins = float((folds["oos_win_rate"].fillna(0.0) * folds["oos_trades"]).sum())
    return {
        "total_return": float(equity.iloc[-1] / config.init_cash - 1.0),
        "sharpe": sharpe_ratio(returns, freq),
        "max_drawdown": float((equity / equity.cummax() - 1.0).min()),
        "win_rate": wins / trades if trades else math.nan,
        "trades": trades,
        "final_value": float(equity.iloc[-1]),
    }


def sharpe_ratio(returns: np.ndarray, freq: Any) -> float:
    """vectorbt's ``returns.vbt.returns(freq=freq).sharpe_ratio()`` with its default year of 365 days (ddof 1, NaN
    returns skipped, inf when they do not vary), as the kernel computes it, without importing vectorbt."""
    if len(returns) < 2:
        return math.nan
    valid = returns[~np.isnan(returns)]
    mean = float(np.mean(valid)) if len(valid) else math.nan
    std = float(np.std(valid, ddof=1)) if len(valid) > 1 else math.nan
    if std == 0.0:
        return math.inf
    return mean / std * math.sqrt(ann_factor(freq))
