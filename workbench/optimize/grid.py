"""The parameter grid optimizer: every combination on every symbol, vectorized with vectorbt.

The strategy's signal function is called once per combination (a user strategy
is an arbitrary function), but the portfolio runs once per chunk of
combinations, each combination a column of one ``Portfolio.from_signals`` with
the execution semantics of :func:`workbench.backtest.portfolio_kwargs`. So each
row of the result table equals a direct :func:`workbench.backtest.backtest` of
that combination. Chunks keep memory bounded on large grids.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..backtest import BacktestConfig, backtest, directional, portfolio_kwargs
from ..errors import ConfigError, DataError, unknown
from ..params import ParamSet, ParamStore
from ..strategies import Param, Strategy, get_strategy

#: the metric columns of a result table; every one is "higher is better"
#: (max_drawdown is negative, so -0.1 beats -0.3)
METRICS = ("total_return", "sharpe", "max_drawdown", "win_rate", "trades", "final_value")

#: upper bound on bars x combinations held by one portfolio run (about 160 MB per float array)
MAX_CELLS = 4_000_000


class NoQualifyingCombination(ConfigError):
    """No combination of a grid made the minimum number of trades."""


def resolve_grid(strat: Strategy, ranges: Mapping[str, Any] | None) -> list[dict[str, float]]:
    """The combinations of `ranges` over the strategy's space, with clear errors for bad input."""
    if ranges is None:
        return strat.grid()
    if not isinstance(ranges, Mapping):
        raise ConfigError(
            f"ranges must be a dict of parameter name -> values, e.g. {{'fast': [5, 10, 20]}}; got {type(ranges).__name__}."
        )
    for key, r in ranges.items():
        if isinstance(r, (str, bytes)) or (not isinstance(r, Param) and not np.iterable(r) and not _is_number(r)):
            raise ConfigError(
                f"ranges[{key!r}] must be a list of numbers, a range() or a Param(default, low, high, step); got {r!r}."
            )
    return strat.grid(ranges)


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise unknown("metric", metric, METRICS)
    return metric


def check_min_trades(min_trades: Any) -> int:
    if isinstance(min_trades, bool) or not isinstance(min_trades, (int, np.integer)) or min_trades < 0:
        raise ConfigError(f"min_trades must be a whole number >= 0, got {min_trades!r}.")
    return int(min_trades)


def check_config(config: BacktestConfig | None) -> BacktestConfig:
    config = config or BacktestConfig()
    if not isinstance(config, BacktestConfig):
        raise ConfigError(f"config must be a workbench BacktestConfig, got {type(config).__name__}.")
    if config.direction == "both" and config.size_pct is not None:
        raise ConfigError(
            "direction='both' reverses positions, which vectorbt cannot do with percent sizing; "
            "use size_quote=<quote amount> (BacktestConfig(direction='both', size_pct=None, size_quote=1000)) "
            "or a single direction."
        )
    return config


def load_frames(
    symbols: str | Sequence[str] | None,
    timeframe: str,
    data: Mapping[str, pd.DataFrame] | pd.DataFrame | None,
    source: str,
    start: Any,
    end: Any,
    bars: int | None,
) -> dict[str, pd.DataFrame]:
    """symbol -> OHLCV frame, from `data` or workbench.data.load_ohlcv."""
    from ..data import load_ohlcv

    if isinstance(symbols, str):
        symbols = [symbols]
    if isinstance(data, pd.DataFrame):
        if not symbols or len(symbols) != 1:
            raise ConfigError("A single DataFrame as data needs exactly one symbol; pass data={symbol: frame} for several.")
        data = {symbols[0]: data}
    if symbols is None:
        if not data:
            raise ConfigError("Give symbols, e.g. ['BTC/USDT'], or data={symbol: frame}.")
        symbols = list(data)
    symbols = list(symbols)
    if not symbols:
        raise ConfigError("symbols is empty; give at least one, e.g. ['BTC/USDT'].")
    if len(set(symbols)) != len(symbols):
        raise ConfigError(f"symbols has duplicates: {symbols}.")
    frames: dict[str, pd.DataFrame] = {}
    for sym in symbols:
        if data is not None:
            if sym not in data:
                raise ConfigError(f"data has no frame for {sym!r}; it has {sorted(data)}.")
            df = data[sym]
        else:
            df = load_ohlcv(sym, timeframe, start=start, end=end, bars=bars, source=source)
        missing = {"open", "high", "low", "close"} - set(getattr(df, "columns", ()))
        if missing:
            raise DataError(f"Data for {sym!r} lacks columns {sorted(missing)}; need open, high, low, close.")
        if len(df) < 2:
            raise DataError(f"Data for {sym!r} has {len(df)} bar(s); the optimizer needs at least 2.")
        frames[sym] = df
    return frames


def auto_chunk(n_bars: int, n_combos: int) -> int:
    return max(1, min(n_combos, MAX_CELLS // max(1, n_bars)))


def run_grid(
    strat: Strategy,
    df: pd.DataFrame,
    combos: Sequence[Mapping[str, float]],
    config: BacktestConfig,
    chunk_size: int | None = None,
    on_chunk: Any = None,
) -> pd.DataFrame:
    """Metrics of every combination on one frame: one row per combination, in order."""
    chunk = chunk_size or auto_chunk(len(df), len(combos))
    parts = []
    for lo in range(0, len(combos), chunk):
        part = combos[lo : lo + chunk]
        parts.append(_run_chunk(strat, df, part, config))
        if on_chunk is not None:
            on_chunk()
    return pd.concat(parts, ignore_index=True)


def _run_chunk(strat: Strategy, df: pd.DataFrame, combos: Sequence[Mapping[str, float]], config: BacktestConfig) -> pd.DataFrame:
    pf = simulate(df, config, signal_arrays(strat, df, combos, config))
    return portfolio_metrics(pf).iloc[: len(combos)].reset_index(drop=True)


def simulate(df: pd.DataFrame, config: BacktestConfig, arrays: Mapping[str, np.ndarray]):
    """vectorbt's from_signals over the signal columns, with our fill rules.

    A single column is run next to a copy of itself: vectorbt lays out one
    column differently from several, and each layout costs a fresh ~15 s numba
    compile per process; the copy costs microseconds.
    """
    import vectorbt as vbt

    from ..numba_cache import cache_vectorbt_kernels

    cache_vectorbt_kernels()  # its simulator compiles once per machine, not once per process
    if next(iter(arrays.values())).shape[1] == 1:
        arrays = {k: np.ascontiguousarray(np.repeat(v, 2, axis=1)) for k, v in arrays.items()}
    return vbt.Portfolio.from_signals(**portfolio_kwargs(df, config), **arrays)


def signal_arrays(
    strat: Strategy, df: pd.DataFrame, combos: Sequence[Mapping[str, float]], config: BacktestConfig
) -> dict[str, np.ndarray]:
    """The four signal arrays (bars x combinations, C order) of `combos` after direction and confidence filters.

    Always all four, so vectorbt runs its long/short signal mode with one
    compiled signature for every direction and chunk size; absent sides are
    all False, which trades exactly as leaving them out.
    """
    arrays = {k: np.zeros((len(df), len(combos)), dtype=bool) for k in SIGNAL_KEYS}
    for j, params in enumerate(combos):
        for key, s in directional(strat.signals(df, params), config).items():
            arrays[key][:, j] = s.to_numpy()
    return arrays


SIGNAL_KEYS = ("entries", "exits", "short_entries", "short_exits")


def portfolio_metrics(pf: Any) -> pd.DataFrame:
    """The metrics of :func:`workbench.backtest.metrics` for every column of a Portfolio."""
    trades = pf.trades
    n = np.asarray(trades.count(), dtype=float).reshape(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        win = np.asarray(trades.win_rate(), dtype=float).reshape(-1)
    return pd.DataFrame({
        "total_return": np.asarray(pf.total_return(), dtype=float).reshape(-1),
        "sharpe": np.asarray(pf.sharpe_ratio(), dtype=float).reshape(-1),
        "max_drawdown": np.asarray(pf.max_drawdown(), dtype=float).reshape(-1),
        "win_rate": np.where(n > 0, win, np.nan),
        "trades": n,
        "final_value": np.asarray(pf.final_value(), dtype=float).reshape(-1),
    })


@dataclass
class OptimizeResult:
    """Every combination's metrics, and the winners per symbol.

    ``table`` has one row per (symbol, combination): symbol, each parameter,
    then :data:`METRICS`.
    """

    strategy: Strategy
    timeframe: str
    table: pd.DataFrame
    combos: list[dict[str, float]]
    data: dict[str, pd.DataFrame] = field(repr=False)
    config: BacktestConfig
    metric: str = "sharpe"
    min_trades: int = 10
    ranges: dict[str, list[float]] = field(default_factory=dict)
    engine: str = "vectorbt"

    def __repr__(self) -> str:
        return (f"<OptimizeResult {self.strategy.name} {self.timeframe}: {len(self.combos)} combinations x "
                f"{len(self.data)} symbol(s), metric={self.metric}, min_trades={self.min_trades}>")

    @property
    def symbols(self) -> list[str]:
        return list(self.data)

    @property
    def param_names(self) -> list[str]:
        return list(self.strategy.params)

    def _qualifying(self, symbol: str, metric: str, min_trades: int) -> pd.DataFrame:
        rows = self.table[self.table["symbol"] == symbol]
        return rows[(rows["trades"] >= min_trades) & np.isfinite(rows[metric])]

    def best(
        self, metric: str | None = None, min_trades: int | None = None, skip_missing: bool = False
    ) -> dict[str, tuple[dict[str, float], dict[str, float]]]:
        """symbol -> (params, metrics) of the highest `metric` among combinations with >= `min_trades` trades.

        A combination with fewer trades is never picked. If a symbol has none,
        raise :class:`NoQualifyingCombination` (or leave the symbol out with
        ``skip_missing=True``).
        """
        metric = check_metric(metric or self.metric)
        min_trades = self.min_trades if min_trades is None else check_min_trades(min_trades)
        out: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
        missing: list[str] = []
        for sym in self.symbols:
            rows = self._qualifying(sym, metric, min_trades)
            if rows.empty:
                most = self.table.loc[self.table["symbol"] == sym, "trades"].max()
                missing.append(f"{sym} (most trades: {int(most)})")
                continue
            row = rows.loc[rows[metric].idxmax()]
            out[sym] = (self._params_of(row), {m: float(row[m]) for m in METRICS})
        if missing and not skip_missing:
            raise NoQualifyingCombination(
                f"No combination of {self.strategy.name} {self.timeframe} made at least {min_trades} trades "
                f"with a finite {metric} on: {', '.join(missing)}. Lower min_trades, widen the ranges, "
                "or use more bars."
            )
        return out

    def missing(self, metric: str | None = None, min_trades: int | None = None) -> list[str]:
        """Symbols where no combination qualifies for :meth:`best`."""
        return [s for s in self.symbols if s not in self.best(metric, min_trades, skip_missing=True)]

    def _params_of(self, row: pd.Series) -> dict[str, float]:
        return self.strategy.validate_params({k: row[k] for k in self.param_names})

    def _symbol(self, symbol: str | None) -> str:
        if symbol is None:
            return self.symbols[0]
        if symbol not in self.data:
            raise unknown("symbol", symbol, self.symbols)
        return symbol

    def portfolio(self, symbol: str | None = None, params: Mapping[str, float] | None = None):
        """The vectorbt Portfolio of `params` (default: the winner) on `symbol`."""
        symbol = self._symbol(symbol)
        return backtest(self.strategy, self.data[symbol], params or self.winner(symbol), self.config)

    def winner(self, symbol: str | None = None) -> dict[str, float]:
        """The winning parameters on `symbol` (see :meth:`best`)."""
        symbol = self._symbol(symbol)
        best = self.best(skip_missing=True)
        if symbol not in best:
            self.best()  # raises the explanation
        return best[symbol][0]

    def heatmap(self, x: str, y: str, metric: str | None = None, symbol: str | None = None):
        """Plotly heatmap of `metric` over parameters `x` and `y`, the others fixed at the winner's values."""
        from .plots import heatmap_figure

        metric = check_metric(metric or self.metric)
        symbol = self._symbol(symbol)
        for name in (x, y):
            if name not in self.param_names:
                raise unknown("parameter", name, self.param_names)
        if x == y:
            raise ConfigError(f"heatmap needs two different parameters, got x=y={x!r}.")
        rows = self.table[self.table["symbol"] == symbol]
        fixed = self._anchor(symbol, metric)
        for name in self.param_names:
            if name not in (x, y):
                rows = rows[rows[name] == fixed[name]]
        title = f"{self.strategy.name} {symbol} {self.timeframe}: {metric}"
        others = {k: v for k, v in fixed.items() if k not in (x, y)}
        if others:
            title += " at " + ", ".join(f"{k}={v}" for k, v in others.items())
        return heatmap_figure(rows, x, y, metric, self.min_trades, title)

    def _anchor(self, symbol: str, metric: str) -> dict[str, float]:
        best = self.best(metric, skip_missing=True)
        if symbol in best:
            return best[symbol][0]
        return self.best(metric, min_trades=0, skip_missing=True).get(symbol, (self.combos[0], {}))[0]

    def equity(self, symbol: str | None = None):
        """Plotly figure of the winner's equity curve and drawdown on `symbol`."""
        from ..reports.figures import equity_figure

        symbol = self._symbol(symbol)
        params = self.winner(symbol)
        value = None
        if self.engine == "kernel":  # the same curve, without importing vectorbt (seconds of a notebook's run)
            from . import kernels

            value = kernels.value_series(self.strategy, self.data[symbol], params, self.config)
        if value is None:
            value = backtest(self.strategy, self.data[symbol], params, self.config).value()
        label = ", ".join(f"{k}={v}" for k, v in params.items())
        return equity_figure(value, title=f"{self.strategy.name} {symbol} {self.timeframe} ({label})")

    def settings(self) -> dict[str, Any]:
        """The optimizer settings as stored with each saved parameter set."""
        return {
            "method": "grid",
            "engine": self.engine,
            "metric": self.metric,
            "min_trades": self.min_trades,
            "combinations": len(self.combos),
            "ranges": {k: list(v) for k, v in self.ranges.items()},
            "config": config_dict(self.config),
        }

    def save(self, store: ParamStore | str | Path = "params", skip_missing: bool = False) -> list[Path]:
        """Write each symbol's winner to the parameter store; return the files written."""
        store = store if isinstance(store, ParamStore) else ParamStore(store)
        now = datetime.now(UTC)
        paths = []
        for sym, (params, mets) in self.best(skip_missing=skip_missing).items():
            df = self.data[sym]
            record = ParamSet(
                strategy=self.strategy.name, symbol=sym, timeframe=self.timeframe, params=params,
                optimized_at=now, data_start=_iso(df.index[0]), data_end=_iso(df.index[-1]),
                metrics=mets, optimizer=self.settings(),
            )
            paths.append(store.save(record))
        return paths


def config_dict(config: BacktestConfig) -> dict[str, Any]:
    """A JSON-safe dict of a BacktestConfig."""
    d = asdict(config)
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def optimize(
    strategy: str | Strategy,
    symbols: str | Sequence[str] | None,
    timeframe: str,
    data: Mapping[str, pd.DataFrame] | pd.DataFrame | None = None,
    ranges: Mapping[str, Any] | None = None,
    config: BacktestConfig | None = None,
    metric: str = "sharpe",
    min_trades: int = 10,
    source: str = "sample",
    start: Any = None,
    end: Any = None,
    bars: int | None = None,
    progress: bool = True,
    chunk_size: int | None = None,
    engine: str = "auto",
    cluster: Any = None,
) -> OptimizeResult:
    """Backtest every parameter combination of `strategy` on every symbol and tabulate the metrics.

    `ranges` maps parameter names to lists of values (or a Param); parameters
    left out keep the strategy's own grid. `data` is a dict symbol -> OHLCV
    frame; without it the frames come from :func:`workbench.data.load_ohlcv`
    (`source`, `start`, `end`, `bars`). `engine` is 'auto' (the fused numba
    kernel for built-in strategies when it supports the config, else
    vectorbt), 'vectorbt' or 'kernel'.

    `cluster` runs the grid as Dask tasks (chunks of combinations per
    symbol) with results identical to the in-process run: None (default) runs
    in this process; 'local' starts a LocalCluster on 127.0.0.1 (one worker
    process per core) for this call; 'tcp://host:port' connects to a running
    scheduler; a ``distributed.Client`` (or Cluster) you created is used and
    left open. See :mod:`workbench.optimize.distributed`.
    """
    strat = get_strategy(strategy)
    metric = check_metric(metric)
    min_trades = check_min_trades(min_trades)
    config = check_config(config)
    combos = resolve_grid(strat, ranges)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ConfigError(f"chunk_size must be a positive whole number, got {chunk_size!r}.")
    frames = load_frames(symbols, timeframe, data, source, start, end, bars)
    runner = pick_engine(engine, strat, config)
    engine_name = getattr(runner, "engine_name", "vectorbt")

    if cluster is not None:
        from .distributed import run_on_cluster

        with _progress(progress, 0) as bar:
            per_symbol = run_on_cluster(strat, frames, combos, config, engine_name, cluster, chunk_size,
                                        on_task=bar.update, on_total=bar.reset)
    else:
        total = sum(-(-len(combos) // (chunk_size or auto_chunk(len(df), len(combos)))) for df in frames.values())
        with _progress(progress, total) as bar:
            many = getattr(runner, "many", None)  # fused kernels: every symbol in one parallel call
            per_symbol = (many(strat, list(frames.values()), combos, config, chunk_size, bar.update)
                          if many is not None else
                          [runner(strat, df, combos, config, chunk_size, bar.update) for df in frames.values()])
    table = _tabulate(list(frames), pd.DataFrame(combos, columns=list(strat.params)), per_symbol)
    axes = {k: sorted({c[k] for c in combos}) for k in strat.params}
    return OptimizeResult(
        strategy=strat, timeframe=timeframe, table=table, combos=list(combos), data=frames, config=config,
        metric=metric, min_trades=min_trades, ranges=axes, engine=engine_name,
    )


def _tabulate(symbols: list[str], params: pd.DataFrame, per_symbol: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One row per (symbol, combination): the symbol, the parameters, the metrics; symbols in order (one concat
    per column block rather than per symbol: a grid over many symbols assembles in milliseconds)."""
    n = len(params)
    block = pd.concat([params] * len(symbols), ignore_index=True) if symbols else params.iloc[:0]
    mets = pd.concat(per_symbol, ignore_index=True) if per_symbol else pd.DataFrame(columns=list(METRICS))
    names = pd.DataFrame({"symbol": [sym for sym in symbols for _ in range(n)]})
    return pd.concat([names, block, mets], axis=1)


def pick_engine(engine: str, strat: Strategy, config: BacktestConfig):
    """The grid runner for `engine` ('auto', 'vectorbt' or 'kernel'); run_grid's signature."""
    if engine not in ("auto", "vectorbt", "kernel"):
        raise unknown("engine", engine, ("auto", "vectorbt", "kernel"))
    if engine == "vectorbt":
        return run_grid
    from . import kernels

    runner = kernels.runner_for(strat, config)
    if runner is not None:
        return runner
    if engine == "kernel":
        raise ConfigError(
            f"No fused kernel for strategy {strat.name!r} with this config ({kernels.why_unsupported(strat, config)}); "
            "use engine='auto' or 'vectorbt'."
        )
    return run_grid


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def reset(self, total: int | None = None) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def _progress(progress: bool, total: int):
    if not progress:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="optimize", unit="chunk")


def _iso(ts: Any) -> str:
    return ts.isoformat() if hasattr(ts, "isoformat") else str(ts)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)
