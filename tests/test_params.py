"""The parameter store: atomic files, freshness, history, corrupt files isolated."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from workbench.errors import ParamsError
from workbench.params import Freshness, ParamSet, ParamStore, safe_symbol


def rec(symbol="BTC/USDT", days_ago=0.0, fast=10, sharpe=1.5):
    return ParamSet("sma_cross", symbol, "1h", {"fast": fast, "slow": 30},
                    datetime.now(UTC) - timedelta(days=days_ago), "2024-01-01", "2024-06-01",
                    {"sharpe": sharpe, "trades": 20.0, "nan_metric": float("nan")}, {"metric": "sharpe"})


def test_save_and_load_latest(tmp_path):
    store = ParamStore(tmp_path)
    path = store.save(rec())
    assert path == tmp_path / "sma_cross" / "BTC-USDT_1h.json"
    got = store.load_latest("sma_cross", "BTC/USDT", "1h")
    assert got.params == {"fast": 10, "slow": 30} and got.freshness == "fresh"
    assert got.metrics["sharpe"] == 1.5 and got.metrics["nan_metric"] != got.metrics["nan_metric"]
    assert not list(tmp_path.rglob(".*.json*")), "no temp files left behind"


def test_history_keeps_earlier_optimizations(tmp_path):
    store = ParamStore(tmp_path)
    for fast in (5, 10, 15):
        store.save(rec(fast=fast))
    hist = store.history("sma_cross", "BTC/USDT", "1h")
    assert [h.params["fast"] for h in hist] == [15, 10, 5]


@pytest.mark.parametrize("days,expected", [(1, "fresh"), (10, "stale"), (40, "expired")])
def test_freshness(tmp_path, days, expected):
    store = ParamStore(tmp_path, Freshness(timedelta(days=7), timedelta(days=30)))
    store.save(rec(days_ago=days))
    assert store.load_latest("sma_cross", "BTC/USDT", "1h").freshness == expected


def test_corrupt_file_named_and_does_not_block_others(tmp_path):
    store = ParamStore(tmp_path)
    store.save(rec("BTC/USDT"))
    store.save(rec("ETH/USDT"))
    bad = store.path_for("sma_cross", "ETH/USDT", "1h")
    bad.write_text('{"latest": {"strategy": "sma_cross", ')
    with pytest.raises(ParamsError, match="ETH-USDT_1h.json.*not valid JSON"):
        store.load_latest("sma_cross", "ETH/USDT", "1h")
    records, errors = store.list()
    assert [r.symbol for r in records] == ["BTC/USDT"] and len(errors) == 1
    assert store.load_latest("sma_cross", "BTC/USDT", "1h").params["fast"] == 10


def test_saving_over_a_corrupt_file_keeps_it_aside(tmp_path):
    store = ParamStore(tmp_path)
    bad = store.path_for("sma_cross", "BTC/USDT", "1h")
    bad.parent.mkdir(parents=True)
    bad.write_text("garbage")
    store.save(rec())
    assert any(".corrupt-" in p.name for p in bad.parent.iterdir())
    assert store.load_latest("sma_cross", "BTC/USDT", "1h").params["fast"] == 10


def test_missing_fields_give_clear_error(tmp_path):
    store = ParamStore(tmp_path)
    path = store.path_for("sma_cross", "BTC/USDT", "1h")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"schema_version": 1, "latest": {"strategy": "sma_cross"}}))
    with pytest.raises(ParamsError, match="Invalid parameter record"):
        store.load_latest("sma_cross", "BTC/USDT", "1h")


def test_missing_key_says_how_to_create_it(tmp_path):
    with pytest.raises(ParamsError, match="workbench optimize --strategy sma_cross"):
        ParamStore(tmp_path).load_latest("sma_cross", "SOL/USDT", "1h")


def test_safe_symbol():
    assert safe_symbol("BTC/USDT:USDT") == "BTC-USDT-USDT"
