"""The notebooks: committed clean, and executed headless with papermill in order on the sample data.

01 optimizes and saves parameters, 02 replays a paper deployment with them into a store (and, in an appended
cell, deploys from the deploy panel inside the kernel), 03 monitors the store, 04 reconciles, 05 writes the report.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from workbench.params import ParamStore
from workbench.store import Store

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ["01_optimize", "02_paper_deploy", "03_live_monitor", "04_reconcile", "05_report"]
SYMBOLS = ["BTC/USDT", "ETH/USDT"]
KERNEL_CHECK = """dp = deploy_panel(engine, params_dir=params_dir, symbols=("SOL/USDT",), warm_up=False)
dp.review.click(); dp.confirm.click()
monitor.refresh()
print("KERNEL", dp.last_deployment, len(monitor.cards), monitor._task is not None)"""


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebooks_have_no_outputs_and_a_parameters_cell(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1
    assert nb.metadata["kernelspec"]["name"] == "python3"
    text = "\n".join(c.source for c in nb.cells)
    machine_dirs = ["/" + d + "/" for d in ("work", "tmp", "home")]
    assert not any(d in text for d in machine_dirs), "paths come from parameters"


@pytest.mark.parametrize("name", NAMES)
def test_papermill_reads_every_parameter(name):
    """An unparsed line (a comment holding '=' or quotes) makes papermill warn 'unknown parameter' on every run."""
    import ast

    import papermill as pm

    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = [t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign) for t in node.targets]
    assert list(pm.inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb"))) == assigned


def run(name: str, tmp: Path, parameters: dict, source: Path | None = None) -> dict:
    import papermill as pm

    out = tmp / "out" / f"{name}.ipynb"
    out.parent.mkdir(exist_ok=True)
    pm.execute_notebook(str(source or NOTEBOOKS / f"{name}.ipynb"), str(out), parameters=parameters, kernel_name="python3",
                        progress_bar=False, cwd=str(tmp), store_widget_state=False)
    return json.loads(out.read_text())


def texts(nb: dict) -> str:
    parts = []
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            for chunk in (o.get("text", ""), o.get("data", {}).get("text/plain", "")):
                parts.append("".join(chunk) if isinstance(chunk, list) else chunk)
    return "\n".join(parts)


def mimes(nb: dict) -> set[str]:
    return {k for c in nb["cells"] for o in c.get("outputs", []) for k in o.get("data", {})}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("notebooks")
    paths = {"params_dir": str(tmp / "params"), "store_path": str(tmp / "wb.sqlite")}
    out = {}
    out["01_optimize"] = run("01_optimize", tmp, {"params_dir": paths["params_dir"], "symbols": SYMBOLS, "bars": 800, "min_trades": 3,
                                                 "train_bars": 400, "test_bars": 200})
    deploy = nbformat.read(NOTEBOOKS / "02_paper_deploy.ipynb", as_version=4)
    deploy.cells.append(nbformat.v4.new_code_cell(KERNEL_CHECK))
    nbformat.write(deploy, tmp / "02_with_click.ipynb")
    out["02_paper_deploy"] = run("02_paper_deploy", tmp, {**paths, "symbols": SYMBOLS, "bars": 600}, source=tmp / "02_with_click.ipynb")
    out["03_live_monitor"] = run("03_live_monitor", tmp, {"store_path": paths["store_path"]})
    out["04_reconcile"] = run("04_reconcile", tmp, {"store_path": paths["store_path"]})
    out["05_report"] = run("05_report", tmp, {"store_path": paths["store_path"], "reports_dir": str(tmp / "reports")})
    return tmp, paths, out


def test_optimize_notebook_saves_fresh_parameters_and_draws(chain):
    tmp, paths, out = chain
    records, errors = ParamStore(paths["params_dir"]).list()
    assert not errors and {r.symbol for r in records} == set(SYMBOLS) and {r.freshness for r in records} == {"fresh"}
    assert "application/vnd.plotly.v1+json" in mimes(out["01_optimize"])
    assert "application/vnd.jupyter.widget-view+json" in mimes(out["01_optimize"])
    assert "<WalkForwardResult sma_cross BTC/USDT 1h: 2 folds" in texts(out["01_optimize"])


def test_paper_deploy_notebook_replays_with_the_stored_parameters_and_the_panel_deploys_in_the_kernel(chain):
    tmp, paths, out = chain
    store = Store(paths["store_path"])
    rows = store.deployments()
    replayed = [r for r in rows if r["symbols"] == SYMBOLS]
    assert len(replayed) == 1 and replayed[0]["params_freshness"] == "fresh"
    newest = ParamStore(paths["params_dir"]).load_latest("sma_cross", SYMBOLS[0], "1h")
    assert replayed[0]["params"] == newest.params and len(store.trades(replayed[0]["id"])) > 0
    line = next(x for x in texts(out["02_paper_deploy"]).splitlines() if x.startswith("KERNEL"))
    _, dep_id, cards, timer = line.split()
    assert dep_id != "None" and store.deployment(dep_id)["symbols"] == ["SOL/USDT"]
    assert int(cards) == 2 and timer == "True", "the monitor refreshes itself on the kernel's event loop"


def test_monitor_notebook_shows_the_stores_deployments(chain):
    tmp, paths, out = chain
    text = texts(out["03_live_monitor"])
    for row in Store(paths["store_path"]).deployments():
        assert row["id"] in text
    assert "application/vnd.jupyter.widget-view+json" in mimes(out["03_live_monitor"])


def test_reconcile_notebook_runs_a_sync_per_paper_deployment(chain):
    from workbench.sync import runs

    tmp, paths, out = chain
    store = Store(paths["store_path"])
    done = runs(store)
    assert set(done["venue_id"]) == {f"paper:{r['id']}" for r in store.deployments()}
    assert "interventions" in texts(out["04_reconcile"])


def test_report_notebook_writes_offline_figures_and_tables(chain):
    tmp, paths, out = chain
    folders = list((tmp / "reports" / "report").iterdir())
    assert len(folders) == 1
    files = {p.name for p in folders[0].iterdir()}
    deps = [r["id"] for r in Store(paths["store_path"]).deployments()]
    assert {f"equity_{d}.html" for d in deps} <= files and {"plotly.min.js", "metrics.csv", "trades.csv"} <= files
    html = (folders[0] / f"equity_{deps[0]}.html").read_text()
    assert 'src="plotly.min.js"' in html and "cdn.plot.ly" not in html
