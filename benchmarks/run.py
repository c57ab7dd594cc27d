"""Run every benchmark present and write the combined table (date, versions, machine) into RESULTS.md.

    python -m benchmarks.run            # full sizes (minutes)
    python -m benchmarks.run --quick    # tiny sizes: proves the harness works
    python -m benchmarks.run --only engine,startup

Each bench module exposes ``run(quick: bool) -> list[dict]``; modules written before that contract
(bench_optimize, bench_reconcile) are adapted here. Sections other benchmarks write into RESULTS.md
are kept; this one lives between ``<!-- run -->`` markers.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import inspect
import os
import platform
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("RESULTS.md")
MODULES = ("bench_optimize", "bench_engine", "bench_reconcile", "bench_startup")
PACKAGES = ("numpy", "pandas", "numba", "vectorbt", "SQLAlchemy", "ccxt", "backtesting", "nautilus_trader")
START, END = "<!-- run -->", "<!-- /run -->"


def _optimize_rows(mod: Any, quick: bool) -> list[dict[str, Any]]:
    from workbench.data import sample_ohlcv

    n, repeat = (5_000, 1) if quick else (50_000, 5)
    df = sample_ohlcv("BTC/USDT", "1m", n)
    t_vbt, theirs = mod.timed(mod.standard_vectorbt, df, repeat)
    t_wb, ours = mod.timed(mod.workbench_optimizer, df, repeat)
    err = mod.agree(ours, theirs)
    return [
        {"benchmark": "optimize", "case": f"vectorbt standard pipeline, {len(theirs)} combos x {n:,} bars", "seconds": t_vbt, "ours_vs_peer": t_vbt / t_wb},
        {"benchmark": "optimize", "case": "workbench.optimize", "seconds": t_wb, "note": f"max rel. diff vs vectorbt {err:.1e}"},
    ]


def _reconcile_rows(mod: Any, quick: bool) -> list[dict[str, Any]]:
    table = mod.run([10_000] if quick else [10_000, 100_000, 1_000_000], repeat=1 if quick else 3)
    return [{"benchmark": "reconcile", "case": f"diff {int(r['fills']):,} fills", "seconds": float(r["seconds"]),
             "note": f"{int(r['fills_per_s']):,} fills/s, {int(r['differences'])} differences found"} for r in table.to_dict("records")]


ADAPTERS: dict[str, Callable[[Any, bool], list[dict[str, Any]]]] = {"bench_optimize": _optimize_rows, "bench_reconcile": _reconcile_rows}


def rows_of(name: str, quick: bool) -> list[dict[str, Any]]:
    """Import benchmarks.<name> and return its rows (an error row if it fails)."""
    try:
        mod = importlib.import_module(f"benchmarks.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"benchmarks.{name}":
            return []  # not written (yet)
        raise
    fn = getattr(mod, "run", None)
    try:
        if fn is not None and "quick" in inspect.signature(fn).parameters:
            return list(fn(quick=quick))
        if name in ADAPTERS:
            return ADAPTERS[name](mod, quick)
    except Exception as exc:  # one broken benchmark should not hide the others
        return [{"benchmark": name, "case": "FAILED", "note": f"{type(exc).__name__}: {exc}"}]
    return [{"benchmark": name, "case": "skipped", "note": "no run(quick) and no adapter"}]


def versions() -> str:
    out = [f"Python {platform.python_version()}"]
    for pkg in PACKAGES:
        try:
            out.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            if pkg == "nautilus_trader" and os.environ.get("BENCH_NAUTILUS_PYTHON"):
                out.append("nautilus_trader (own venv: $BENCH_NAUTILUS_PYTHON)")
    return ", ".join(out)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return "" if v is None else str(v).replace("|", "/")


def _sizes(quick: bool) -> str:
    text = "quick sizes" if quick else "full sizes"
    overrides = [f"{k}={os.environ[k]}" for k in ("BENCH_ENGINE_BARS", "BENCH_ENGINE_REPEAT") if os.environ.get(k)]
    return text + (f" ({', '.join(overrides)})" if overrides else "")


def markdown(rows: list[dict[str, Any]], quick: bool, seconds: float) -> str:
    cols = ["benchmark", "case", "bars", "seconds", "bars_per_s", "trades", "value", "ours_vs_peer", "note"]
    used = [c for c in cols if any(c in r for r in rows)]
    lines = [
        "## Combined run (`python -m benchmarks.run`)", "",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {_sizes(quick)}, {seconds:.0f} s; {machine()}; {versions()}.",
        "Ratios are ours / peer's throughput (or peer's time / ours), medians, same process, same bars.", "",
        "| " + " | ".join(used) + " |", "|" + "|".join("---" if c in ("benchmark", "case", "note") else "---:" for c in used) + "|",
    ]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in used) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write(text: str, path: Path = RESULTS) -> None:
    """Replace the combined section (between markers) of RESULTS.md, keeping every other section."""
    old = path.read_text() if path.exists() else ""
    block = f"{START}\n{text}{END}"
    if START in old and END in old:
        new = old[: old.index(START)] + block + old[old.index(END) + len(END):]
    else:
        new = block + "\n\n" + old.lstrip()
    path.write_text(new.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    p.add_argument("--only", default="", help="comma-separated: optimize,engine,reconcile,startup")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    wanted = [m for m in MODULES if not args.only or m.removeprefix("bench_") in args.only.split(",")]
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for name in wanted:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows += rows_of(name, args.quick)
    text = markdown(rows, args.quick, time.perf_counter() - t0)
    print(text)
    if not args.no_write:
        write(text)
    return 1 if any(r.get("case") == "FAILED" for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
