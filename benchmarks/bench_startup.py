"""Start-up: `import workbench` (wall time, and what -X importtime says dominates) vs `import pandas`,
and the notebooks' headless run time (papermill) when notebooks/ holds any.

    python -m benchmarks.bench_startup [--quick]
"""
from __future__ import annotations

import argparse
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


def notebooks_seconds(timeout: int = 600) -> list[dict[str, Any]]:
    """Run each notebook headless twice (the second after compile caches are warm); seconds of the second."""
    out = []
    nbs = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if not nbs:
        return out
    import papermill as pm

    with tempfile.TemporaryDirectory() as d:
        for nb in nbs:
            secs, err = None, None
            for _ in range(2):
                t0 = time.perf_counter()
                try:
                    pm.execute_notebook(str(nb), str(Path(d) / nb.name), cwd=str(nb.parent), progress_bar=False,
                                        kernel_name="python3", execution_timeout=timeout)
                    secs = time.perf_counter() - t0
                except Exception as exc:  # a failing notebook is a result to report, not a crash of the benchmark
                    err = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
                    break
            out.append({"notebook": nb.name, "seconds": secs, "error": err})
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
        for r in notebooks_seconds():
            rows.append({"benchmark": "startup", "case": f"notebook {r['notebook']} headless (s, warm)", "value": r["seconds"],
                         "note": r["error"] or ""})
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
