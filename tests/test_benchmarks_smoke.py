"""The benchmark harness works on tiny data and its sides agree (no timing assertions)."""
from __future__ import annotations

import pytest

from benchmarks import bench_engine, bench_startup, run


@pytest.fixture(scope="module")
def df():
    return bench_engine.bars(2_000)


def test_replay_and_backtesting_py_make_the_same_trades(df):
    pytest.importorskip("backtesting", reason="benchmark extra: pip install backtesting")
    ours = bench_engine.workbench_replay(df)
    theirs = bench_engine.backtesting_run(df)
    assert ours["bars"] == theirs["bars"] == len(df)
    assert ours["trades"] > 5
    # backtesting.py also counts a trade still open at the end (finalize_trades)
    assert 0 <= theirs["trades"] - ours["trades"] <= 1


def test_replay_venue_state_in_the_store_is_the_exchange_snapshot(df, tmp_path):
    from workbench.engine import replay

    res = replay(bench_engine.spec(), data={"BTC/USDT": df}, store=str(tmp_path / "s.sqlite"))
    rt_store = res.store
    from workbench.store import Store

    stored = Store(tmp_path / "s.sqlite").load_venue_state(f"paper:{res.deployment_id}")
    assert len(stored["orders"]) == len(rt_store.orders(res.deployment_id))
    assert [int(o["id"]) for o in stored["orders"]] == sorted(int(o["id"]) for o in stored["orders"])
    assert len(stored["trades"]) == len(rt_store.fills(res.deployment_id))
    from workbench.venues.paper import PaperExchange

    again = PaperExchange({"state": stored})  # a restart resumes from what the store holds
    assert again.snapshot()["cash"] == pytest.approx(stored["cash"])


def test_live_latency_and_many_symbols_run():
    lat = bench_engine.live_latency(400)
    assert lat["orders"] > 0 and lat["median_ms"] > 0
    cpu = bench_engine.follow_100_symbols(minutes=2, symbols=5)
    assert cpu["symbols"] == 5 and cpu["cpu_s_per_min"] > 0


def test_import_workbench_loads_no_heavy_library():
    assert not set(bench_startup.heavy_imported("workbench")) & {"vectorbt", "numba", "ccxt", "sqlalchemy", "plotly"}


def test_runner_keeps_other_sections(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("<!-- bench_optimize -->\nkeep me\n<!-- /bench_optimize -->\n\n## Reconciliation\n\nalso me\n")
    rows = [{"benchmark": "engine", "case": "x", "bars": 10, "seconds": 0.5, "bars_per_s": 20.0, "note": "a|b"}]
    run.write(run.markdown(rows, quick=True, seconds=1.0), path)
    run.write(run.markdown(rows, quick=True, seconds=2.0), path)
    text = path.read_text()
    assert text.count(run.START) == 1 and "keep me" in text and "also me" in text
    assert "| engine | x | 10 |" in text and "a/b" in text


def test_runner_skips_missing_and_reports_failures(monkeypatch):
    assert run.rows_of("bench_does_not_exist", quick=True) == []

    def boom(quick: bool):
        raise RuntimeError("broken")

    monkeypatch.setattr(bench_startup, "run", boom)
    rows = run.rows_of("bench_startup", quick=True)
    assert rows[0]["case"] == "FAILED" and "broken" in rows[0]["note"]
