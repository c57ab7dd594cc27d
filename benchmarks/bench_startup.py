"""Start-up: `import workbench` (wall time, and what -X importtime says dominates) vs `import pandas`,
and each notebook's headless run (papermill, fresh kernel, sample data): first run on an empty numba
cache, then a second run on the warm cache (target: under 10 s each after the first compile).

    python -m benchmarks.bench_startup [--quick]
"""
from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("vectorbt", "numba", "ccxt", "sqlalchemy", "plotly", "ipywidgets", "papermill", "scipy", "matplotlib")


def import_seconds(module: str, repeat: int) -> float:
    """Median wall time of a fresh interpreter importing `module`, minus an empty interpreter's start."""
    def once(code: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
        return time.perf_counter() - t0

    base = statistics.median(once("pass") for _ in range(repeat))
    return max(statistics.median(once(f"import {module}") for _ in range(repeat)) - base, 0.0)


def heavy_imported(module: str) -> list[str]:
    """Which heavy libraries `import module` pulls in (they should load where used)."""
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT).stdout.strip()
    return [m for m in out.split(",") if m]


def importtime_top(module: str, n: int = 5) -> list[tuple[str, int]]:
    """The `n` packages with the largest cumulative import time (µs) under -X importtime."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], check=True, capture_output=True,
                         text=True, cwd=ROOT).stderr
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cum, name = (p.strip() for p in line[len("import time:"):].split("|"))
        if "." not in name.strip():
            rows.append((name.strip(), int(cum)))
    return sorted(rows, key=lambda r: -r[1])[:n]


NOTEBOOKS = ("01_optimize", "02_paper_deploy", "03_live_monitor", "04_reconcile", "05_report")


def notebook_parameters(name: str, folder: Path) -> dict[str, Any]:
    """Parameters that keep a notebook's files (param store, SQLite store, reports) inside `folder`."""
    paths = {"params_dir": str(folder / "params"), "store_path": str(folder / "workbench.sqlite")}
    return {
        "01_optimize": {"params_dir": paths["params_dir"]},
        "02_paper_deploy": paths,
        "03_live_monitor": {"store_path": paths["store_path"]},
        "04_reconcile": {"store_path": paths["store_path"]},
        "05_report": {"store_path": paths["store_path"], "reports_dir": str(folder / "reports")},
    }[name]


def _kernel_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)  # papermill's kernels are reaped children of this process
    return r.ru_utime + r.ru_stime


def notebooks_seconds(rounds: int = 2, timeout: int = 900) -> list[dict[str, Any]]:
    """Run notebooks 01..05 headless in order (each in a fresh kernel, on the sample data), `rounds` times.

    Round 1 starts from an empty numba cache (the kernels get a new NUMBA_CACHE_DIR): the first compile
    a new machine pays. Later rounds reuse that cache, as every later run does. Each row: the round,
    wall seconds, the kernel's CPU seconds (less sensitive to other load on the machine) and the load.
    """
    import papermill as pm

    out: list[dict[str, Any]] = []
    old = os.environ.get("NUMBA_CACHE_DIR")
    with tempfile.TemporaryDirectory() as d:
        os.environ["NUMBA_CACHE_DIR"] = str(Path(d) / "numba")
        try:
            for rnd in range(1, rounds + 1):
                for name in NOTEBOOKS:
                    nb = ROOT / "notebooks" / f"{name}.ipynb"
                    if not nb.exists():
                        continue
                    secs = cpu = err = None
                    c0, t0 = _kernel_cpu(), time.perf_counter()
                    try:
                        pm.execute_notebook(str(nb), str(Path(d) / f"{name}.{rnd}.ipynb"), parameters=notebook_parameters(name, Path(d)),
                                            cwd=d, progress_bar=False, kernel_name="python3", execution_timeout=timeout,
                                            store_widget_state=False, log_output=False)
                        secs, cpu = time.perf_counter() - t0, _kernel_cpu() - c0
                    except Exception as exc:  # a failing notebook is a result to report, not a crash of the benchmark
                        err = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
                    out.append({"notebook": name, "round": rnd, "seconds": secs, "cpu": cpu, "load": os.getloadavg()[0],
                                "error": err})
        finally:
            if old is None:
                os.environ.pop("NUMBA_CACHE_DIR", None)
            else:
                os.environ["NUMBA_CACHE_DIR"] = old
    return out


def run(quick: bool = False) -> list[dict[str, Any]]:
    repeat = 3 if quick else 7
    wb = import_seconds("workbench", repeat)
    pd_ = import_seconds("pandas", repeat)
    top = importtime_top("workbench")
    rows = [
        {"benchmark": "startup", "case": "import workbench (s, median of fresh interpreters)", "value": wb,
         "note": f"{wb / pd_:.2f}x import pandas; heavy modules loaded: {', '.join(heavy_imported('workbench')) or 'none'}; "
                 f"top: {', '.join(f'{m} {us / 1e6:.2f}s' for m, us in top)}"},
        {"benchmark": "startup", "case": "import pandas (s)", "value": pd_},
    ]
    if not quick:
        logging.getLogger("papermill").setLevel(logging.ERROR)
        for r in notebooks_seconds():
            which = "first run, empty numba cache" if r["round"] == 1 else f"run {r['round']}, warm cache"
            note = r["error"] or f"kernel CPU {r['cpu']:.1f} s; load {r['load']:.1f}; target < 10 s after the first compile"
            rows.append({"benchmark": "startup", "case": f"notebook {r['notebook']} headless ({which})", "seconds": r["seconds"],
                         "note": note})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    for row in run(args.quick):
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
