"""Replays: a deployment over historical bars, as fast as possible, through the full live path.

Each bar goes to the paper exchange first (resting orders and stops fill
inside it), then to the deployment (decision -> risk -> order -> fill ->
store). Signals are computed once with the strategy's vectorized form, which
equals its bar-by-bar form on every bar (tested). A replay can stop and a new
engine on the same store can resume it where it stopped.
"""
from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np
import pandas as pd

from ..data import load_ohlcv
from ..store import Store
from ..timeframes import timeframe_seconds
from .clock import ManualClock
from .core import Engine
from .deployment import BarSeries, DeploymentRuntime
from .spec import DeploymentSpec

#: bars per transaction in a replay: a crash loses at most these (the restart replays them identically)
COMMIT_EVERY = 1000
#: step quiet stretches of a one-symbol replay at once (False: every bar through the per-bar path, for comparison)
SKIP_QUIET = True


@dataclass
class ReplayResult:
    """What a replay did: its deployment id, trades, equity curve and summary."""

    deployment_id: str
    store: Store
    trades: pd.DataFrame
    equity: pd.Series
    summary: dict[str, Any]
    completed: bool

    def __repr__(self) -> str:
        s = self.summary
        return (f"<ReplayResult {self.deployment_id}: {s['trades']} trades, P&L {s['pnl']:.2f}, "
                f"return {s['total_return']:.2%}, max drawdown {s['max_drawdown']:.2%}>")

    def plot(self):
        """Equity and drawdown (plotly)."""
        from ..reports.figures import equity_figure

        return equity_figure(self.equity, title=f"Replay {self.deployment_id}")


def replay(
    spec: DeploymentSpec | Mapping[str, Any],
    data: Mapping[str, pd.DataFrame] | None = None,
    store: Store | str = ":memory:",
    start: str | None = None,
    end: str | None = None,
    bars: int | None = None,
    resume: str | None = None,
    stop_after: int | None = None,
    progress: bool = False,
    engine: Engine | None = None,
    markets: list[Any] | None = None,
) -> ReplayResult:
    """Run `spec` over historical bars on the paper venue and return the result.

    `data` maps symbols to OHLCV frames (default: the embedded sample for
    [start, end) or `bars`). `resume` continues an earlier replay's
    deployment from the store. `stop_after` stops after that many bars
    (without closing positions), for restart tests. `markets` gives the paper
    venue's market specs (precision, minimums) for symbols it should not infer.
    """
    if not isinstance(spec, DeploymentSpec):
        spec = DeploymentSpec.from_dict(spec)
    if spec.venue != "paper":
        from ..errors import ConfigError

        raise ConfigError("A replay runs on the paper venue: set venue='paper'.")
    frames = {s: (data[s] if data is not None else load_ohlcv(s.split(":")[0], spec.timeframe, start=start, end=end, bars=bars)) for s in spec.symbols}
    store = store if isinstance(store, Store) else Store(store)
    first = min(int(df.index[0].value // 1_000_000) for df in frames.values())
    clock = ManualClock(first / 1000.0)
    if engine is None:
        from ..venues.paper_venue import paper_venue

        refs = {s: float(df["close"].iloc[0]) for s, df in frames.items()}
        engine = Engine(store, clock=clock, venue_factory=lambda dep_id, sp: paper_venue(dep_id, sp, store, refs, markets))
    engine.clock = clock
    if resume:
        engine.recover()
        rt = engine.get(resume)
        rt.clock = clock
    else:
        rt = engine.deploy(spec, actor="replay")
    for sym, df in frames.items():
        rt.precompute(sym, df)
    step_ms = timeframe_seconds(spec.timeframe) * 1000
    with _older_objects_frozen():
        completed = _drive(rt, frames, clock, step_ms, stop_after, progress)
    rt.flush()
    _persist_venue(rt)
    return result_of(rt.id, store, completed)


def _drive(rt: DeploymentRuntime, frames: Mapping[str, pd.DataFrame], clock: ManualClock, step_ms: int, stop_after: int | None, progress: bool) -> bool:
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(df) for df in frames.values()), desc=f"replay {rt.id}", unit="bar", mininterval=0.5)
    try:
        if len(frames) == 1 and SKIP_QUIET:
            ((sym, df),) = frames.items()
            return _run_spans(rt, sym, df, clock, step_ms, stop_after, bar)
        return _run_groups(rt, _merged_rows(frames), clock, step_ms, stop_after, bar)
    finally:
        if bar is not None:
            bar.close()


@contextmanager
def _older_objects_frozen() -> Iterator[None]:
    """Leave the objects alive before the replay out of the cycle collector's passes while it runs (:func:`gc.freeze`).

    A full pass walks every tracked object of the process (pandas, numba, ccxt...: ~0.3 million); the
    orders and trades a replay keeps trigger one every so often, ~0.14 s each (measured on 100k bars).
    Nothing is leaked: the objects are unfrozen after, and the replay's own garbage is collected as usual.
    A caller that froze objects itself keeps its freeze untouched.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _merged_rows(frames: Mapping[str, pd.DataFrame]) -> Any:
    """Every symbol's bars as (ts, symbol, o, h, l, c, v) rows in time order."""
    merged = []
    for sym, df in frames.items():
        ts = df.index.as_unit("ms").asi8
        merged.append(pd.DataFrame({"ts": ts, "sym": sym, "o": df["open"].to_numpy(), "h": df["high"].to_numpy(),
                                    "l": df["low"].to_numpy(), "c": df["close"].to_numpy(), "v": df["volume"].to_numpy()}))
    allbars = pd.concat(merged, ignore_index=True).sort_values(["ts", "sym"], kind="stable")
    return zip(*(allbars[k].tolist() for k in ("ts", "sym", "o", "h", "l", "c", "v")), strict=True)


def _run_spans(rt: DeploymentRuntime, sym: str, df: pd.DataFrame, clock: ManualClock, step_ms: int, stop_after: int | None, progress: Any) -> bool:
    """One symbol's bars, quiet stretches at once (:meth:`DeploymentRuntime.skip_quiet`), the rest bar by bar.

    The same transactions as :func:`_run_groups`: each COMMIT_EVERY bars commit together.
    """
    bars = BarSeries.of(df, step_ms)
    now = bars.close_times
    n, done = len(now), 0
    for group in range(0, n, COMMIT_EVERY):
        end = min(n, group + COMMIT_EVERY)
        i = max(group, int(np.searchsorted(bars.arrays[0], rt.cursor.get(sym, -1), side="right")))
        with rt.store.batch():
            while i < end:
                if stop_after is not None and done >= stop_after:
                    return False
                limit = end if stop_after is None else min(end, i + stop_after - done)
                j = rt.skip_quiet(sym, bars, i, limit)
                if j > i:
                    clock.set(now[j - 1])
                    done += j - i
                    i = j
                if i < limit:  # the first bar that is not quiet (skip_quiet's answer): stepped without asking again
                    clock.set(now[i])
                    rt.step(sym, *bars.row(i))
                    done += 1
                    i += 1
        if progress is not None:
            progress.update(end - group)
    return True


def _run_groups(rt: DeploymentRuntime, bars: Any, clock: ManualClock, step_ms: int, stop_after: int | None, progress: Any) -> bool:
    """Step through `bars`; each group of COMMIT_EVERY is one transaction. False if stopped by `stop_after`."""
    done = 0
    while True:
        with rt.store.batch():  # a group's bars, the books and the venue state commit together
            seen = 0
            for ts, sym, o, h, lo, c, v in islice(bars, COMMIT_EVERY):
                seen += 1
                ts = int(ts)
                if ts <= rt.cursor.get(sym, -1):
                    continue
                if stop_after is not None and done >= stop_after:
                    return False
                clock.set((ts + step_ms) / 1000.0)
                rt.step(sym, ts, o, h, lo, c, v)
                done += 1
        if progress is not None:
            progress.update(seen)
        if seen < COMMIT_EVERY:
            return True


def _persist_venue(rt: DeploymentRuntime) -> None:
    exchange = getattr(rt.venue, "exchange", None)
    if exchange is None or not hasattr(exchange, "snapshot"):
        return
    if getattr(exchange, "_on_delta", None) is not None:
        exchange.persist()  # the head with the last prices: orders and trades were saved as they happened
    else:
        rt.store.save_venue_state(rt.venue.id, exchange.snapshot())


def result_of(dep_id: str, store: Store, completed: bool = True) -> ReplayResult:
    """Summarize a deployment from the store."""
    row = store.deployment(dep_id) or {}
    trades = store.trades(dep_id)
    eq = store.equity(dep_id, columns=("at", "equity"))
    curve = pd.Series(eq["equity"].to_numpy(), index=pd.to_datetime(eq["at"], unit="s", utc=True), name="equity") if len(eq) else pd.Series(dtype=float, name="equity")
    curve = curve[~curve.index.duplicated(keep="last")]  # one row per symbol per bar: keep the bar's last
    initial = float((row.get("config") or {}).get("initial_cash", 10_000.0))
    pnl = float(trades["pnl"].sum()) if len(trades) else 0.0
    final = float(curve.iloc[-1]) if len(curve) else initial
    peak = curve.cummax() if len(curve) else curve
    summary = {
        "trades": int(len(trades)),
        "pnl": pnl,
        "fees": float(trades["fees"].sum()) if len(trades) else 0.0,
        "win_rate": float((trades["pnl"] > 0).mean()) if len(trades) else float("nan"),
        "total_return": final / initial - 1.0,
        "max_drawdown": float(((curve - peak) / peak).min()) if len(curve) else 0.0,
        "final_equity": final,
        "exit_reasons": trades["exit_reason"].value_counts().to_dict() if len(trades) else {},
        "status": row.get("status"),
    }
    return ReplayResult(dep_id, store, trades, curve, summary, completed)


__all__ = ["ReplayResult", "replay", "result_of"]
