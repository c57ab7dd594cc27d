"""The grid optimizer on a Dask cluster: the same grid, chunks of combinations per symbol as tasks.

    optimize("sma_cross", symbols, "1m", cluster="local")               # a LocalCluster on 127.0.0.1 for this call
    optimize("sma_cross", symbols, "1m", cluster="tcp://10.0.0.5:8786")  # an existing scheduler
    optimize("sma_cross", symbols, "1m", cluster=client)                 # a distributed.Client you manage

Every combination's metrics depend only on its own parameters and the
symbol's bars, so splitting the grid into tasks changes no result: the table
equals the in-process one exactly. Frames are loaded on the client and
scattered once per symbol; workers need workbench installed (same version)
and, for a user strategy, whatever its module imports (it travels by
cloudpickle; built-in strategies travel by name, so workers use their fused
kernels). Scripts that ask for ``cluster='local'`` need the usual
``if __name__ == "__main__":`` guard, since worker processes re-import them;
that cluster (scheduler, workers, dashboard) listens on 127.0.0.1 only.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from ..backtest import BacktestConfig
from ..errors import ConfigError
from ..strategies import BUILTINS, Strategy, get_strategy

#: tasks per worker thread a grid is split into when no chunk_size is given (keeps all threads busy)
TASKS_PER_THREAD = 2


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ConfigError(
            'cluster= needs Dask: pip install "dask[distributed]" (or drop cluster= to run in process).'
        ) from None
    return distributed


def connect(cluster: Any) -> tuple[Any, Callable[[], None]]:
    """(distributed.Client, close) for `cluster`: 'local', a scheduler address, a Cluster or a Client.

    `close` shuts down only what this call created: a Client you pass in stays open.
    """
    distributed = _distributed()
    if isinstance(cluster, distributed.Client):
        return cluster, lambda: None
    if isinstance(cluster, str) and cluster == "local":
        lc = distributed.LocalCluster(
            n_workers=os.cpu_count() or 1, threads_per_worker=1, processes=True,
            host="127.0.0.1", dashboard_address="127.0.0.1:0",
        )
        client = distributed.Client(lc)

        def close() -> None:
            client.close()
            lc.close()

        return client, close
    if isinstance(cluster, str) and "://" in cluster:
        try:
            client = distributed.Client(cluster, timeout="10s")
        except OSError as exc:
            raise ConfigError(
                f"Cannot reach the Dask scheduler at {cluster!r} ({exc}); start one with `dask scheduler` "
                "and workers with `dask worker <address>`, or use cluster='local'."
            ) from None
        return client, client.close
    if hasattr(cluster, "scheduler_address") and not isinstance(cluster, str):
        client = distributed.Client(cluster)
        return client, client.close
    raise ConfigError(
        f"cluster must be None (in process), 'local' (a LocalCluster on this machine), a scheduler address "
        f"like 'tcp://host:8786', a dask Cluster or a distributed.Client; got {cluster!r}."
    )


def _strategy_ref(strat: Strategy) -> str | Strategy:
    """Built-ins travel by name (workers resolve the same object, so their kernels apply)."""
    return strat.name if BUILTINS.get(strat.name) is strat else strat


def run_chunk(strat_ref: str | Strategy, df: pd.DataFrame, combos: Sequence[Mapping[str, float]],
              config: BacktestConfig, engine: str) -> pd.DataFrame:
    """One task: the metrics of `combos` on `df` (one row per combination, in order)."""
    from .grid import pick_engine

    strat = get_strategy(strat_ref)
    return pick_engine(engine, strat, config)(strat, df, list(combos), config)


def task_chunk(n_bars: int, n_combos: int, n_symbols: int, threads: int, chunk_size: int | None) -> int:
    """Combinations per task: `chunk_size`, else enough tasks to keep every thread busy, memory-bounded."""
    from .grid import auto_chunk

    if chunk_size:
        return chunk_size
    per_symbol = max(1, math.ceil(TASKS_PER_THREAD * max(1, threads) / max(1, n_symbols)))
    return max(1, min(auto_chunk(n_bars, n_combos), math.ceil(n_combos / per_symbol)))


def run_on_cluster(
    strat: Strategy,
    frames: Mapping[str, pd.DataFrame],
    combos: Sequence[Mapping[str, float]],
    config: BacktestConfig,
    engine: str,
    cluster: Any,
    chunk_size: int | None = None,
    on_task: Callable[[], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> list[pd.DataFrame]:
    """Per symbol (in order), the metric table of every combination, computed as Dask tasks."""
    distributed = _distributed()
    client, close = connect(cluster)
    futures: list[Any] = []
    try:
        threads = sum(client.nthreads().values()) or 1
        ref = _strategy_ref(strat)
        per_symbol: list[list[Any]] = []
        for df in frames.values():
            chunk = task_chunk(len(df), len(combos), len(frames), threads, chunk_size)
            data = client.scatter(df, hash=False)
            fs = [client.submit(run_chunk, ref, data, list(combos[lo : lo + chunk]), config, engine, pure=False)
                  for lo in range(0, len(combos), chunk)]
            per_symbol.append(fs)
            futures += fs
        if on_total is not None:
            on_total(len(futures))
        for _ in distributed.as_completed(futures):
            if on_task is not None:
                on_task()
        return [pd.concat(client.gather(fs), ignore_index=True) for fs in per_symbol]
    finally:
        if futures:
            client.cancel(futures)
        close()
