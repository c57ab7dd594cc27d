"""The daily report: files written, offline HTML, numbers from the store, no secrets, PNG optional."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

import workbench.cli as cli
from workbench.engine.replay import replay
from workbench.errors import ConfigError
from workbench.reports.build import build_report, deployment_metrics, drawdown, equity_curve, trade_list
from workbench.runner import remote_assets
from workbench.store import Store

SECRET = "sk-TOP-SECRET-7f3a9c"


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    """A store with two paper deployments replayed over the sample, one carrying a secret in its config."""
    path = tmp_path_factory.mktemp("store") / "wb.sqlite"
    store = Store(path)
    a = replay({"strategy": "sma_cross", "symbols": ["BTC/USDT", "ETH/USDT"], "timeframe": "1h",
                "params": {"fast": 5, "slow": 20}}, bars=400, store=store)
    replay({"strategy": "rsi_reversion", "symbols": ["BTC/USDT"], "timeframe": "1h", "params": {}}, bars=300, store=store)
    cfg = dict(store.deployment(a.deployment_id)["config"])
    store.update_deployment(a.deployment_id, config={**cfg, "apiKey": SECRET, "secret": SECRET})
    store.audit("test", "account_added", "acct", params={"api_secret": SECRET})
    store.close()
    return path


@pytest.fixture
def store(store_path):
    s = Store(store_path)
    yield s
    s.close()


def test_report_writes_every_file_offline(store, tmp_path):
    rep = build_report(store, tmp_path, day="2025-01-02", png=False)
    folder = tmp_path / "2025-01-02"
    assert rep.folder == folder and rep.index == folder / "index.html"
    ids = list(rep.metrics["deployment"])
    expected = {"index.html", "returns.html", "plotly.min.js", "metrics.csv", "trades.csv", "summary.json",
                *(f"equity_{i}.html" for i in ids)}
    assert expected <= {p.name for p in folder.iterdir()}
    assert all(p.exists() for p in rep.files)
    assert (folder / "plotly.min.js").stat().st_size > 1_000_000  # the one shared local copy
    for page in folder.glob("*.html"):
        text = page.read_text()
        assert remote_assets(text) == [], page
        assert "plotly.min.js" in text and "Plotly.newPlot" in text
    index = rep.index.read_text()
    assert index.count("Plotly.newPlot") == 1 + len(ids)  # returns + one equity/drawdown per deployment
    assert "Reconciliation" in index and "Trades" in index


def test_metrics_and_trades_match_the_store(store, tmp_path):
    rep = build_report(store, tmp_path, png=False)
    trades = store.trades()
    assert len(rep.trades) == len(trades) > 0
    assert rep.trades["exit_at"].is_monotonic_decreasing
    for row in rep.metrics.itertuples():
        mine = trades[trades["deployment_id"] == row.deployment]
        assert row.trades == len(mine)
        assert row.pnl == pytest.approx(mine["pnl"].sum())
        assert row.win_rate == pytest.approx((mine["pnl"] > 0).mean())
        curve = equity_curve(store, row.deployment)
        assert row.max_drawdown == pytest.approx(drawdown(curve).min()) and row.max_drawdown <= 0
    csv = pd.read_csv(rep.folder / "metrics.csv")
    assert list(csv["deployment"]) == list(rep.metrics["deployment"])
    summary = json.loads((rep.folder / "summary.json").read_text())
    assert summary["trades"] == len(trades) and len(summary["deployments"]) == 2


def test_drawdown_is_zero_at_highs_and_negative_below():
    eq = pd.Series([100.0, 110.0, 99.0, 121.0, 110.0])
    assert list(drawdown(eq).round(6)) == [0.0, 0.0, round(99 / 110 - 1, 6), 0.0, round(110 / 121 - 1, 6)]


def test_no_secret_reaches_any_report_file(store, tmp_path):
    build_report(store, tmp_path, day="2025-01-03", png=False)
    for path in (tmp_path / "2025-01-03").iterdir():
        if path.name != "plotly.min.js":
            assert SECRET not in path.read_text(errors="replace"), path


def test_selected_deployments_only_and_unknown_id_refused(store, tmp_path):
    first = deployment_metrics(store)["deployment"].iloc[0]
    rep = build_report(store, tmp_path, deployments=[first], png=False)
    assert list(rep.metrics["deployment"]) == [first]
    assert set(rep.trades["deployment_id"]) <= {first}
    with pytest.raises(ConfigError, match="Unknown deployment"):
        trade_list(store, ["nope"])
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        build_report(store, tmp_path, day="yesterday", png=False)


def test_reconciliation_summary_counts_stored_runs(store, tmp_path):
    from workbench.sync import Difference
    from workbench.sync.records import record_run

    dep = deployment_metrics(store)["deployment"].iloc[0]
    diffs = [Difference(kind=k, deployment_id=dep, symbol="BTC/USDT", key=f"k{i}", detail="test", evidence={})
             for i, k in enumerate(["missing_fill", "missing_fill", "position_mismatch"])]
    record_run(store, "paper:x", dep, None, {"fills": 3}, diffs, applied={0: "applied"}, seconds=0.1, at=1_700_000_000)
    rec = build_report(store, tmp_path, png=False).reconciliation
    assert rec["available"] and rec["runs"] >= 1 and rec["last_run_differences"] == 3
    assert rec["by_kind"]["missing_fill"]["found"] >= 2 and rec["by_kind"]["missing_fill"]["applied"] >= 1
    assert "interventions" in rec["learning"]


def test_report_degrades_without_workbench_sync(store, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "workbench.sync", None)  # import fails as if the package were absent
    rep = build_report(store, tmp_path, png=False)
    assert rep.reconciliation is None
    assert any("workbench.sync" in n for n in rep.notes)
    assert "workbench.sync is not installed" in rep.index.read_text()


def test_png_failure_is_a_note_not_a_failure(store, tmp_path, monkeypatch):
    import plotly.io as pio

    def broken(*a, **k):
        raise RuntimeError("Chrome not found\nlong trace")

    monkeypatch.setattr(pio, "write_images", broken)
    rep = build_report(store, tmp_path, png=True)
    assert rep.index.exists() and not list(rep.folder.glob("*.png"))
    assert any("PNG export skipped (RuntimeError: Chrome not found)" in n for n in rep.notes)
    assert "PNG export skipped" in rep.index.read_text()


def test_png_written_when_kaleido_and_chromium_work(store, tmp_path):
    pytest.importorskip("kaleido")
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("Debian chromium missing: apt-get install -y chromium (the CI script installs it)")
    first = deployment_metrics(store)["deployment"].iloc[0]
    rep = build_report(store, tmp_path, deployments=[first], png=True)
    pngs = sorted(p.name for p in rep.folder.glob("*.png"))
    assert pngs == sorted([f"equity_{first}.png", "returns.png"]), rep.notes
    assert all((rep.folder / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_report_cli(store_path, tmp_path, monkeypatch, capsys):
    if "workbench.cli.run" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "workbench.cli.run"))
    rc = cli.main(["report", "--store", str(store_path), "--reports-dir", str(tmp_path), "--date", "2025-02-03", "--no-png"])
    assert rc == 0
    assert "2025-02-03/index.html (2 deployments" in capsys.readouterr().out
