"""Engine speed: a paper replay through the full live path vs backtesting.py and nautilus_trader,
the live loop's bar-to-order latency, and the CPU one engine needs to follow 100 symbols.

Replay: SMA 10/30 cross, long only, stop loss 2%, take profit 4%, 50% of equity per entry, fees 0.1%,
on one-minute bars of the BTC/USDT sample; workbench runs strategy decision -> risk -> paper venue
-> fills -> store on a real SQLite file. Peers run the same strategy on the same bars (nautilus_trader
in its own virtualenv, see ``peers/nautilus_peer.py``). Trade counts are compared as a sanity check;
the replay's equality with the vectorbt backtest is what ``tests/test_parity.py`` proves.

    python -m benchmarks.bench_engine [--quick] [--bars 500000]   (or $BENCH_ENGINE_BARS, $BENCH_ENGINE_REPEAT)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FAST, SLOW, SL, TP, FEE, SIZE = 10, 30, 0.02, 0.04, 0.001, 0.5
RISK = {"daily_loss_limit": None, "drawdown_limit": None, "size_pct": SIZE, "stop_loss": SL, "take_profit": TP, "max_leverage": None}
NAUTILUS_ENV = "BENCH_NAUTILUS_PYTHON"


def bars(n: int) -> pd.DataFrame:
    from workbench.data import sample_ohlcv

    return sample_ohlcv("BTC/USDT", "1m", n)


def spec(symbols: tuple[str, ...] = ("BTC/USDT",)) -> Any:
    from workbench.engine import DeploymentSpec
    from workbench.fills import Costs

    return DeploymentSpec(strategy="sma_cross", symbols=symbols, timeframe="1m", params={"fast": FAST, "slow": SLOW},
                          risk=dict(RISK), costs=Costs(taker_fee=FEE, maker_fee=FEE, slippage=0.0))


# -- replay throughput ---------------------------------------------------------------------------
def workbench_replay(df: pd.DataFrame) -> dict[str, Any]:
    """The full live path on a SQLite file; seconds include signals, every bar, every store write."""
    from workbench.engine import replay

    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        res = replay(spec(), data={"BTC/USDT": df}, store=str(Path(d) / "bench.sqlite"))
        seconds = time.perf_counter() - t0
        out = {"seconds": seconds, "bars": len(df), "trades": int(res.summary["trades"]), "final_equity": res.summary["final_equity"]}
        res.store.close()
    return out


def backtesting_run(df: pd.DataFrame) -> dict[str, Any]:
    os.environ.setdefault("TQDM_DISABLE", "1")
    from .peers import backtesting_peer

    return backtesting_peer.run(df, FAST, SLOW, SL, TP, FEE, SIZE)


def nautilus_python() -> str | None:
    """The interpreter that has nautilus_trader: $BENCH_NAUTILUS_PYTHON, else this one if it imports."""
    exe = os.environ.get(NAUTILUS_ENV)
    if exe:
        return exe if Path(exe).exists() else None
    try:
        import nautilus_trader  # noqa: F401
    except ImportError:
        return None
    return sys.executable


def nautilus_run(df: pd.DataFrame) -> dict[str, Any] | None:
    exe = nautilus_python()
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bars.npz"
        np.savez(path, ts=df.index.as_unit("ms").asi8, **{k: df[k].to_numpy() for k in ("open", "high", "low", "close", "volume")})
        script = Path(__file__).with_name("peers") / "nautilus_peer.py"
        proc = subprocess.run([exe, str(script), str(path)], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict[str, Any] | None]) -> dict[str, Any]:
    """The median run (by seconds) of `runs`, with the median seconds and its throughput; {} or the error if none ran."""
    runs = [r for r in runs if r is not None]
    if not runs or "error" in runs[0]:
        return runs[0] if runs else {}
    out = dict(runs[len(runs) // 2])
    out["seconds"] = statistics.median(r["seconds"] for r in runs)
    out["bars_per_s"] = out["bars"] / out["seconds"]
    return out


def paired_rounds(df: pd.DataFrame, repeat: int, nautilus_rounds: int) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any] | None]]]:
    """Run ours and each peer in turn, `repeat` rounds: a slow spell of the machine hits a round, not one engine.

    Each round's ratios compare runs made within seconds of each other; the
    table reports the median of those paired ratios.
    """
    ours: list[dict[str, Any]] = []
    peers: dict[str, list[dict[str, Any] | None]] = {"backtesting.py Backtest.run": [], "nautilus_trader BacktestEngine": []}
    workbench_replay(df.iloc[:2_000])  # imports and first-call costs, for both in-process engines
    backtesting_run(df.iloc[:2_000])
    for k in range(repeat):
        ours.append(workbench_replay(df))
        peers["backtesting.py Backtest.run"].append(backtesting_run(df))
        peers["nautilus_trader BacktestEngine"].append(nautilus_run(df) if k < nautilus_rounds else None)
    return ours, peers


def paired_ratio(ours: list[dict[str, Any]], theirs: list[dict[str, Any] | None]) -> tuple[float, list[float]]:
    """Median over rounds of (their seconds / our seconds), and each round's ratio."""
    ratios = [t["seconds"] / o["seconds"] for o, t in zip(ours, theirs, strict=True) if t is not None and "error" not in t]
    return (statistics.median(ratios) if ratios else float("nan")), ratios


# -- live loop ------------------------------------------------------------------------------------
def live_latency(n_bars: int = 3000) -> dict[str, Any]:
    """Median time from a closed bar reaching the engine to the order handed to the venue (live decide())."""
    from workbench.engine import Engine, ManualClock
    from workbench.store import Store

    df = bars(n_bars)
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d) / "live.sqlite")
        clock = ManualClock(df.index[0].timestamp())
        engine = Engine(store, clock=clock)
        rt = engine.deploy(spec())
        sent: list[float] = []
        real_create = rt.venue.create_order

        def create(req):
            sent.append(time.perf_counter())
            return real_create(req)

        rt.venue.create_order = create
        latencies, per_bar = [], []
        for ts, row in zip(df.index.as_unit("ms").asi8, df.itertuples(index=False, name=None), strict=True):
            clock.set(int(ts) / 1000 + 60)
            before = len(sent)
            t0 = time.perf_counter()
            engine.on_bar("BTC/USDT", int(ts), *row)
            per_bar.append(time.perf_counter() - t0)
            if len(sent) > before:
                latencies.append(sent[before] - t0)
        store.close()
    return {"orders": len(latencies), "median_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
            "p90_ms": float(np.percentile(latencies, 90)) * 1000 if latencies else float("nan"),
            "bar_median_ms": statistics.median(per_bar) * 1000}


def follow_100_symbols(minutes: int = 30, symbols: int = 100) -> dict[str, Any]:
    """Process CPU seconds per simulated minute for one engine following `symbols` 1-minute series.

    Each minute the engine gets one closed bar per symbol through Engine.on_bar (live decide(), risk,
    paper venue, store), then handles commands and its heartbeat, as Engine.run does on each tick.
    """
    from workbench.engine import Engine, ManualClock
    from workbench.store import Store

    rng = np.random.default_rng(0)
    warm = SLOW + 1
    n = warm + minutes
    names = [f"S{k:03d}/USDT" for k in range(symbols)]
    start = 1_704_067_200_000
    series = {}
    for name in names:
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
        open_ = np.r_[close[0], close[:-1]]
        series[name] = np.c_[open_, np.maximum(open_, close) * 1.001, np.minimum(open_, close) * 0.999, close, np.full(n, 1000.0)]
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d) / "follow.sqlite")
        clock = ManualClock(start / 1000)
        refs = {s: float(v[0, 3]) for s, v in series.items()}
        from workbench.venues.paper_venue import paper_venue

        engine = Engine(store, clock=clock, venue_factory=lambda dep_id, sp: paper_venue(dep_id, sp, store, refs))
        rt = engine.deploy(spec(tuple(names)))
        for name, v in series.items():
            rt.warm_up(name, [[start + i * 60_000, *v[i]] for i in range(warm)])
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i in range(warm, n):
            ts = start + i * 60_000
            clock.set(ts / 1000 + 60)
            for name in names:
                engine.on_bar(name, ts, *series[name][i])
            engine.process_commands()
            engine.heartbeat()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        trades = len(store.trades(rt.id))
        store.close()
    per_min = cpu / minutes
    return {"symbols": symbols, "minutes": minutes, "cpu_s_per_min": per_min, "core_share": per_min / 60.0,
            "wall_s_per_min": wall / minutes, "orders_or_trades": trades}


# -- the benchmark ---------------------------------------------------------------------------------
def run(quick: bool = False, n_bars: int | None = None, repeat: int | None = None) -> list[dict[str, Any]]:
    """Rows: replay throughput (workbench, backtesting.py, nautilus_trader), live latency, 100-symbol CPU."""
    n = n_bars or int(os.environ.get("BENCH_ENGINE_BARS", 0)) or (3_000 if quick else 500_000)
    repeat = repeat or int(os.environ.get("BENCH_ENGINE_REPEAT", 0)) or (1 if quick else 3)
    df = bars(n)
    rows: list[dict[str, Any]] = []
    our_runs, peer_runs = paired_rounds(df, repeat, 1 if quick else repeat)
    ours = median_of(list(our_runs))
    rows.append({"benchmark": "engine", "case": "workbench replay (full live path, SQLite file)", "bars": n,
                 "seconds": ours["seconds"], "bars_per_s": ours["bars_per_s"], "trades": ours["trades"], "ours_vs_peer": 1.0,
                 "note": f"{repeat} rounds, each running ours then the peers; our seconds by round: "
                         + ", ".join(f"{r['seconds']:.2f}" for r in our_runs)})
    for name, runs in peer_runs.items():
        r = median_of(runs) or {"error": f"not installed (set ${NAUTILUS_ENV})"}
        if "error" in r:
            rows.append({"benchmark": "engine", "case": name, "bars": n, "note": r["error"]})
            continue
        ratio, each = paired_ratio(our_runs, runs)
        rows.append({"benchmark": "engine", "case": name, "bars": n, "seconds": r["seconds"], "bars_per_s": r["bars_per_s"],
                     "trades": r["trades"], "ours_vs_peer": ratio,
                     "note": "median of the rounds' paired ratios: " + ", ".join(f"{x:.2f}" for x in each)})
    lat = live_latency(600 if quick else 5_000)
    rows.append({"benchmark": "engine", "case": "live: closed bar -> order at venue (median ms)", "value": lat["median_ms"],
                 "note": f"p90 {lat['p90_ms']:.3f} ms over {lat['orders']} orders; median bar {lat['bar_median_ms']:.3f} ms"})
    cpu = follow_100_symbols(minutes=3 if quick else 30, symbols=20 if quick else 100)
    rows.append({"benchmark": "engine", "case": f"live: {cpu['symbols']} symbols x 1m, share of one core", "value": cpu["core_share"],
                 "note": f"{cpu['cpu_s_per_min']:.3f} CPU s per simulated minute over {cpu['minutes']} minutes; {cpu['orders_or_trades']} trades"})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--bars", type=int, default=None)
    p.add_argument("--repeat", type=int, default=None)
    args = p.parse_args(argv)
    for row in run(args.quick, args.bars, args.repeat):
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
