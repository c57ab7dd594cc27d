"""The store on PostgreSQL: the same code as on SQLite gives the same rows (a real server, tests/postgres_fixture.py)."""
from __future__ import annotations

import numpy as np
import pytest
from test_store import _fill, _order  # the same rows as the SQLite tests

from workbench.data import sample_ohlcv
from workbench.engine import DeploymentSpec, replay
from workbench.errors import StoreError
from workbench.fills import Costs
from workbench.store import Store

pytestmark = pytest.mark.postgres


def _position(sym: str) -> dict:
    return {"deployment_id": "d1", "symbol": sym, "side": "long", "amount": 1.0, "entry_price": 100.0, "entry_at": 1.0, "entry_fee": 0.1}


TRADE = {"deployment_id": "d1", "symbol": "ETH/USDT", "side": "long", "amount": 1.0, "entry_price": 100.0, "entry_at": 1.0,
         "exit_price": 110.0, "exit_at": 2.0, "fees": 0.2, "pnl": 9.8, "pnl_pct": 0.098, "exit_reason": "signal"}


def _exercise(store: Store) -> dict:
    """Every kind of write the engine, panels and sync make, and what reading it back gives."""
    seen: dict = {}
    store.insert_deployment({
        "id": "d1", "name": "x", "strategy": "sma_cross", "params": {"fast": 10}, "symbols": ["BTC/USDT"], "timeframe": "1h",
        "venue": "paper", "account": None, "mode": "paper", "risk": {"stop_loss": None}, "config": {"initial_cash": 1e4},
        "status": "active", "created_at": 1.0, "updated_at": 1.0, "cursor": {}, "risk_state": {},
    })
    store.set_status("d1", "paused", "daily loss")
    store.set_status("d1", "active", "resumed")
    with pytest.raises(StoreError):
        store.set_status("d1", "flying")
    store.update_deployment("d1", cursor={"BTC/USDT": 123}, risk_state={"day": "2024-01-01"})
    seen["deployment"] = {k: v for k, v in store.deployment("d1").items() if k not in ("created_at", "updated_at", "started_at")}
    seen["status_changes"] = store.frame("status_changes", ["old", "new", "reason"], deployment_id="d1").to_dict("records")

    store.insert_order(_order("c1"))
    store.update_order("c1", status="open", at=6.0, venue_order_id="v1")
    store.update_order("c1", status="filled", at=7.0, filled=1.0, avg_price=100.0)
    with pytest.raises(StoreError, match="already recorded"):
        store.insert_order(_order("c1"))
    seen["fill_twice"] = [store.insert_fill(_fill("t1")), store.insert_fill(_fill("t1"))]
    with store.batch():
        store.insert_order(_order("c2", reduce_only=True), defer=True)
        store.insert_fill(_fill("t2"), defer=True)
        store.update_order("c2", status="cancelled", at=8.0)
        seen["read_in_batch"] = store.order("c2")["status"]
    with pytest.raises(RuntimeError), store.batch():
        store.insert_order(_order("never"), defer=True)
        raise RuntimeError("crash")
    # ids are surrogates: a PostgreSQL sequence keeps the value a refused insert took (SQLite gives it again)
    seen["orders"] = [{k: v for k, v in o.items() if k != "id"} for o in store.orders("d1")]
    seen["fills"] = [{k: v for k, v in f.items() if k != "id"} for f in store.fills("d1")]

    with store.batch():
        ids = [store.open_position(_position(sym), defer=True) for sym in ("BTC/USDT", "ETH/USDT", "SOL/USDT")]
        store.update_position(ids[2], tp_price=120.0)
        store.close_position(ids[1], TRADE, defer=True)
        seen["open_in_batch"] = [p["symbol"] for p in store.positions("d1")]
    with pytest.raises(RuntimeError), store.batch():
        store.close_position(ids[2], TRADE | {"symbol": "SOL/USDT"}, defer=True)
        raise RuntimeError("crash")
    seen["position_ids"] = ids
    seen["positions"] = store.positions("d1", status=None)
    seen["trades"] = store.trades("d1").to_dict("records")

    store.add_equity_rows("d1", [(60.0, 9_999.5, 9_000.0, 0.5), (120.0, 10_001.0, 9_000.0, 2.0)])
    store.add_equity_rows("d1", np.array([[180.0, 10_002.0, 9_000.0, 3.0]]))
    seen["equity"] = store.equity("d1").values.tolist()
    store.add_risk_event("d1", "denied", "too big", {"limit": float("inf"), "note": "NaN in words"}, symbol="BTC/USDT", at=9.0)
    seen["risk_events"] = store.frame("risk_events", ["kind", "reason", "details", "symbol", "at"]).to_dict("records")

    cid = store.submit_command("pause", "d1", {"reason": "lunch"}, actor="cli")
    seen["pending"] = [c["command"] for c in store.pending_commands()]
    store.finish_command(cid, "done", "ok")
    seen["command"] = {k: store.command(cid)[k] for k in ("command", "status", "result", "args")}
    seen["audit"] = store.frame("audit", ["actor", "action", "target", "params"]).to_dict("records")

    store.save_venue_state("paper:d1", {"cash": {"USDT": 1.5}, "orders": [], "trades": []})
    store.save_venue_delta("paper:d1", {"head": {"cash": {"USDT": 2.5}}, "orders": [{"id": "1", "status": "open"}], "trades": [{"id": "1"}]})
    store.save_venue_delta("paper:d1", {"head": {"cash": {"USDT": 3.5}}, "orders": [{"id": "1", "status": "closed"}], "trades": []})
    seen["venue_state"] = store.load_venue_state("paper:d1")
    return seen


def test_every_store_operation_gives_the_same_rows_on_postgresql_as_on_sqlite(tmp_path, postgres_url):
    """Orders with their status history, fills deduplicated, batches (deferred rows, a failed batch), positions,
    trades, equity blocks, risk events, commands, audit, venue state: PostgreSQL reads back what SQLite does."""
    pg, lite = Store(postgres_url), Store(tmp_path / "wb.sqlite")
    on_pg, on_sqlite = _exercise(pg), _exercise(lite)
    for key, want in on_sqlite.items():
        assert on_pg[key] == want, key
    assert [h for _, h in pg.order("c1")["status_history"]] == ["pending", "open", "filled"]
    assert on_pg["venue_state"]["cash"] == {"USDT": 3.5} and on_pg["venue_state"]["orders"] == [{"id": "1", "status": "closed"}]
    pg.close()
    again = Store(postgres_url)  # a second client, after the first closed: migrated once, everything there
    assert again.deployment("d1")["cursor"] == {"BTC/USDT": 123} and len(again.orders("d1")) == 2
    again.close()


def _rows(store: Store) -> dict:
    wall = {"venue_state": ["updated_at"], "status_changes": ["at"], "deployments": ["created_at", "updated_at", "started_at", "id", "name"]}
    out = {}
    for table in ("orders", "fills", "positions", "trades", "risk_events", "venue_state", "status_changes", "deployments"):
        df = store.frame(table).drop(columns=wall.get(table, []))
        for col in ("deployment_id", "venue_id", "client_order_id", "venue"):
            if col in df.columns:
                df[col] = df[col].astype(str).str.replace(store.deployments()[0]["id"], "DEP", regex=False)
        rows = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in df.to_dict("records")]
        out[table] = sorted(rows, key=lambda r: str(r.get("venue_id", ""))) if table == "venue_state" else rows
    out["equity"] = store.equity(store.deployments()[0]["id"], columns=("at", "equity", "cash", "unrealized")).values.tolist()
    return out


@pytest.mark.parametrize("case", ["long, SL/TP, loss limits that pause", "perpetual both ways, leverage"])
def test_a_replay_on_postgresql_stores_what_it_stores_on_sqlite(tmp_path, postgres_url, case):
    """The full live path (strategy, risk, paper venue, fills) on PostgreSQL: every stored row equals the SQLite run's."""
    import re

    if case.startswith("long"):
        sym, df = "BTC/USDT", sample_ohlcv("BTC/USDT", "1m", 6_000)
        spec = DeploymentSpec(strategy="sma_cross", symbols=(sym,), timeframe="1m", params={"fast": 10, "slow": 30},
                              risk={"stop_loss": 0.004, "take_profit": 0.008, "daily_loss_limit": 0.0005,
                                    "drawdown_limit": 0.004, "cooldown_seconds": 600})
    else:
        sym, df = "ETH/USDT:USDT", sample_ohlcv("ETH/USDT", "1h", 1_500)
        spec = DeploymentSpec(strategy="rsi_reversion", symbols=(sym,), timeframe="1h", params={}, direction="both",
                              risk={"stop_loss": 0.03, "take_profit": 0.05, "leverage": 3, "max_leverage": 5,
                                    "daily_loss_limit": None, "drawdown_limit": None},
                              costs=Costs(taker_fee=0.0006, maker_fee=0.0002, slippage=0.0005))
    runs = {}
    for name, target in (("postgresql", postgres_url), ("sqlite", str(tmp_path / "r.sqlite"))):
        res = replay(spec, data={sym: df}, store=target)
        runs[name] = _rows(res.store)
        runs[name]["summary"] = res.summary
        res.store.close()
    assert runs["sqlite"]["summary"]["trades"] > 10
    if case.startswith("long"):
        assert {r["kind"] for r in runs["sqlite"]["risk_events"]} >= {"paused", "resumed"}

    def same_ids(value):  # client order ids embed the deployment's random id, also inside the venue's JSON
        if isinstance(value, str):
            return re.sub(r"wb[0-9a-f]{8}-", "wbX-", value)
        if isinstance(value, dict):
            return {k: same_ids(v) for k, v in value.items()}
        return [same_ids(v) for v in value] if isinstance(value, list) else value

    for table, want in runs["sqlite"].items():
        got = runs["postgresql"][table]
        if isinstance(want, list) and want and isinstance(want[0], dict):
            want = [{k: same_ids(v) for k, v in r.items()} for r in want]
            got = [{k: same_ids(v) for k, v in r.items()} for r in got]
        assert got == want, table
