"""The store: a real SQLite file, migrations, atomic writes, clear errors."""
from __future__ import annotations

import sqlite3

import pytest

from workbench.errors import StoreError
from workbench.store import Store
from workbench.store.migrations import LATEST


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "wb.sqlite")


def dep(store, dep_id="d1"):
    store.insert_deployment({
        "id": dep_id, "name": "x", "strategy": "sma_cross", "params": {"fast": 10}, "symbols": ["BTC/USDT"],
        "timeframe": "1h", "venue": "paper", "account": None, "mode": "paper", "risk": {}, "config": {},
        "status": "active", "created_at": 1.0, "updated_at": 1.0, "cursor": {}, "risk_state": {},
    })


def test_file_is_sqlite_in_wal_mode_with_schema_version(tmp_path, store):
    con = sqlite3.connect(tmp_path / "wb.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT max(version) FROM schema_version").fetchone()[0] == LATEST
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"deployments", "orders", "fills", "positions", "trades", "equity", "risk_events", "audit", "commands"} <= tables


def test_reopening_does_not_migrate_twice(tmp_path, store):
    dep(store)
    again = Store(tmp_path / "wb.sqlite")
    assert again.deployment("d1")["strategy"] == "sma_cross"
    con = sqlite3.connect(tmp_path / "wb.sqlite")
    assert con.execute("SELECT count(*) FROM schema_version").fetchone()[0] == LATEST


def test_status_changes_are_recorded(store):
    dep(store)
    store.set_status("d1", "paused", "daily loss")
    store.set_status("d1", "active", "resumed")
    changes = store.frame("status_changes", deployment_id="d1")
    assert list(changes["new"]) == ["paused", "active"] and list(changes["old"]) == ["active", "paused"]
    with pytest.raises(StoreError):
        store.set_status("d1", "flying")


def test_order_status_history_and_duplicate_client_id(store):
    store.insert_order({"deployment_id": "d1", "client_order_id": "c1", "symbol": "BTC/USDT", "side": "buy",
                        "type": "market", "amount": 1.0, "purpose": "entry", "status": "pending", "reduce_only": False})
    store.update_order("c1", status="open")
    store.update_order("c1", status="filled", filled=1.0, avg_price=100.0)
    row = store.order("c1")
    assert [s for _, s in row["status_history"]] == ["pending", "open", "filled"]
    with pytest.raises(StoreError, match="already recorded"):
        store.insert_order({"deployment_id": "d1", "client_order_id": "c1", "symbol": "BTC/USDT", "side": "buy",
                            "type": "market", "amount": 1.0, "purpose": "entry", "status": "pending", "reduce_only": False})


def test_fill_dedup_by_venue_trade_id(store):
    row = {"deployment_id": "d1", "venue": "paper", "venue_trade_id": "t1", "symbol": "BTC/USDT", "side": "buy",
           "amount": 1.0, "price": 100.0, "fee": 0.1, "fee_currency": "USDT", "at": 1.0}
    assert store.insert_fill(row) is True
    assert store.insert_fill(row) is False
    assert len(store.fills("d1")) == 1


def test_close_position_is_atomic(store):
    pid = store.open_position({"deployment_id": "d1", "symbol": "BTC/USDT", "side": "long", "amount": 1.0,
                               "entry_price": 100.0, "entry_at": 1.0, "entry_fee": 0.1})
    trade = {"deployment_id": "d1", "symbol": "BTC/USDT", "side": "long", "amount": 1.0, "entry_price": 100.0,
             "entry_at": 1.0, "exit_price": 110.0, "exit_at": 2.0, "fees": 0.2, "pnl": 9.8, "pnl_pct": 0.098,
             "exit_reason": "bogus"}
    with pytest.raises(StoreError):
        store.close_position(pid, trade)
    assert store.positions("d1")[0]["status"] == "open" and store.trades("d1").empty
    store.close_position(pid, trade | {"exit_reason": "take_profit"})
    assert store.positions("d1") == [] and store.trades("d1")["pnl"].tolist() == [9.8]
    with pytest.raises(StoreError, match="already recorded"):
        store.close_position(pid, trade | {"exit_reason": "signal"})  # one trade per position
    assert len(store.trades("d1")) == 1


def test_commands_queue(store):
    cid = store.submit_command("pause", "d1", {"reason": "lunch"}, actor="cli")
    assert [c["id"] for c in store.pending_commands()] == [cid]
    store.finish_command(cid, "done", "ok")
    assert store.pending_commands() == [] and store.command(cid)["status"] == "done"
    assert store.frame("audit")["action"].tolist() == ["command:pause"]
    with pytest.raises(StoreError, match="Unknown command"):
        store.submit_command("launch_rockets")


def test_corrupt_store_gives_clear_error(tmp_path):
    path = tmp_path / "bad.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="corrupt"):
        Store(path)
    assert path.read_bytes() == b"this is not a database" * 100


def test_locked_store_gives_clear_error(tmp_path):
    import sqlalchemy

    path = tmp_path / "wb.sqlite"
    store = Store(path)
    store.engine = sqlalchemy.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked"):
            store.audit("me", "x")
    finally:
        con.execute("ROLLBACK")
    store.audit("me", "x")
    assert len(store.frame("audit")) == 1


def test_venue_state_round_trip(store):
    store.save_venue_state("paper:d1", {"balances": {"USDT": 1.5}, "x": float("nan")})
    store.save_venue_state("paper:d1", {"balances": {"USDT": 2.5}})
    assert store.load_venue_state("paper:d1") == {"balances": {"USDT": 2.5}}
    assert store.load_venue_state("nope") is None


def test_json_columns_take_non_finite_numbers_and_keep_text_intact(store):
    import numpy as np

    store.audit("me", "odd", params={"lo": float("-inf"), "hi": np.float64("inf"), "nan": float("nan"), "note": "NaN here"})
    store.submit_command("pause", "d1", {"limit": float("-inf"), "why": "Infinity and NaN in words"})
    params = store.frame("audit")["params"].tolist()
    assert params[0] == {"lo": None, "hi": None, "nan": None, "note": "NaN here"}
    assert params[1] == {"limit": None, "why": "Infinity and NaN in words"}


def _order(cid: str, **kw) -> dict:
    return {"deployment_id": "d1", "client_order_id": cid, "symbol": "BTC/USDT", "side": "buy", "type": "market",
            "amount": 1.0, "purpose": "entry", "status": "pending", "reduce_only": False, "created_at": 5.0, **kw}


def _fill(tid: str) -> dict:
    return {"deployment_id": "d1", "venue": "paper", "venue_trade_id": tid, "symbol": "BTC/USDT", "side": "buy",
            "amount": 1.0, "price": 100.0, "fee": 0.1, "fee_currency": "USDT", "at": 1.0}


def test_deferred_rows_are_seen_by_reads_and_equal_immediate_writes(tmp_path, store):
    """Rows written with defer=True inside a batch wait in memory, yet every read sees them, and they land as written."""
    other = Store(tmp_path / "other.sqlite")
    for s, defer in ((store, True), (other, False)):
        with s.batch():
            s.insert_order(_order("c1"), defer=defer)
            s.update_order("c1", status="open", at=6.0, venue_order_id="v1")
            s.insert_fill(_fill("t1"), defer=defer)
            assert s.insert_fill(_fill("t1"), defer=defer) is False  # a known trade id is still ignored
            s.update_order("c1", status="filled", at=7.0, filled=1.0, avg_price=100.0)
            s.insert_order(_order("c2"), defer=defer)
            if defer:
                assert store._local.pending  # nothing written yet...
            assert s.order("c1")["status"] == "filled"  # ...but a read sees it (and writes it first)
            s.insert_order(_order("c3"), defer=defer)
            s.update_order("c3", status="cancelled", at=8.0)
    assert store.orders() == other.orders() and len(store.orders()) == 3
    assert [h for _, h in store.order("c1")["status_history"]] == ["pending", "open", "filled"]
    assert store.order("c3")["status_history"] == [[5.0, "pending"], [8.0, "cancelled"]]
    assert [f["venue_trade_id"] for f in store.fills()] == ["t1"]


def test_deferred_rows_commit_with_commit_now_and_vanish_with_a_failed_batch(tmp_path, store):
    """commit_now makes deferred rows durable (the write-ahead of an order); a batch that fails writes none of its rows."""
    reader = Store(tmp_path / "wb.sqlite")
    with store.batch():
        store.insert_order(_order("ahead"), defer=True)
        store.commit_now()
        assert reader.order("ahead") is not None  # another connection sees it before the batch ends
        store.insert_order(_order("lost"), defer=True)
        store.insert_fill(_fill("t9"), defer=True)
    assert reader.order("lost") is not None
    with pytest.raises(RuntimeError), store.batch():
        store.insert_order(_order("never"), defer=True)
        raise RuntimeError("crash")
    assert store.order("never") is None and store._local.pending is None
    with pytest.raises(StoreError, match="already recorded"), store.batch():
        store.insert_order(_order("twice"), defer=True)
        store.insert_order(_order("twice"), defer=True)
    with pytest.raises(StoreError, match="already recorded"), store.batch():
        store.insert_order(_order("ahead"), defer=True)  # stored earlier: refused when it goes in, nothing half-written
        store.insert_fill(_fill("t10"), defer=True)
    assert store.order("twice") is None and [f["venue_trade_id"] for f in store.fills()] == ["t9"]


def test_equity_rows_round_trip_through_blocks_after_older_rows(tmp_path, store):
    """A store from before equity blocks keeps its rows: equity() gives them, then the blocks, bit for bit, in order."""
    import numpy as np

    dep(store)
    con = sqlite3.connect(tmp_path / "wb.sqlite")
    con.execute("INSERT INTO equity (deployment_id, at, equity, cash, unrealized) VALUES ('d1', 60.0, 100.0, 100.0, 0.0)")
    con.commit()
    rng = np.random.default_rng(3)
    first = [(120.0 + 60 * i, *rng.normal(100, 5, 3).tolist()) for i in range(5)]
    second = [(420.0, 0.1 + 0.2, -0.0, 1e-300)]
    store.add_equity_rows("d1", first)
    with store.batch():
        store.add_equity_rows("d1", second)
    store.add_equity_rows("d1", [])
    store.add_equity_rows("other", [(60.0, 1.0, 1.0, 0.0)])
    eq = store.equity("d1")
    assert list(eq.columns) == ["deployment_id", "at", "equity", "cash", "unrealized"]
    assert set(eq["deployment_id"]) == {"d1"}
    assert [tuple(r) for r in eq[["at", "equity", "cash", "unrealized"]].itertuples(index=False)] == [(60.0, 100.0, 100.0, 0.0), *first, *second]
    only = store.equity("d1", columns=("equity", "at"))
    assert list(only.columns) == ["equity", "at"] and only["at"].tolist() == eq["at"].tolist()
    assert len(store.equity("nobody")) == 0
    with pytest.raises(StoreError, match="no column 'id'"):
        store.equity("d1", columns=("id",))
    with pytest.raises(StoreError, match=r"\(at, equity, cash, unrealized\)"):
        store.add_equity_rows("d1", [(1.0, 2.0)])
    assert len(store.equity("d1")) == 7  # the refused rows changed nothing


def test_a_version_2_store_gains_equity_blocks_and_keeps_its_rows(tmp_path):
    """Opening a store written before v3 migrates it in place; its equity rows are still read."""
    from sqlalchemy import create_engine

    from workbench.store import schema
    from workbench.store.migrations import MIGRATIONS

    path = tmp_path / "old.sqlite"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        schema.schema_version.create(conn)
        for number, step in MIGRATIONS[:2]:
            step(conn)
            conn.exec_driver_sql(f"INSERT INTO schema_version (version, applied_at) VALUES ({number}, 0)")
        conn.exec_driver_sql("INSERT INTO equity (deployment_id, at, equity, cash, unrealized) VALUES ('d1', 60.0, 99.5, 90.0, 9.5)")
    engine.dispose()
    store = Store(path)
    con = sqlite3.connect(path)
    assert con.execute("SELECT max(version) FROM schema_version").fetchone()[0] == LATEST >= 3
    store.add_equity_rows("d1", [(120.0, 101.0, 90.0, 11.0)])
    assert store.equity("d1")[["at", "equity"]].values.tolist() == [[60.0, 99.5], [120.0, 101.0]]


def test_deferred_position_closes_are_seen_by_reads_and_vanish_with_a_failed_batch(tmp_path, store):
    """close_position(defer=True) keeps the close and its trade for the batch's end: reads see them, a failure drops both."""
    other = Store(tmp_path / "other.sqlite")
    trade = {"deployment_id": "d1", "symbol": "BTC/USDT", "side": "long", "amount": 1.0, "entry_price": 100.0,
             "entry_at": 1.0, "exit_price": 110.0, "exit_at": 2.0, "fees": 0.2, "pnl": 9.8, "pnl_pct": 0.098, "exit_reason": "signal"}
    for s, defer in ((store, True), (other, False)):
        with s.batch():
            ids = [s.open_position({"deployment_id": "d1", "symbol": sym, "side": "long", "amount": 1.0, "entry_price": 100.0,
                                    "entry_at": 1.0, "entry_fee": 0.1}) for sym in ("BTC/USDT", "ETH/USDT", "SOL/USDT")]
            s.close_position(ids[0], trade, defer=defer)
            s.close_position(ids[1], trade | {"symbol": "ETH/USDT", "amount": 0.5, "exit_at": 3.0}, defer=defer)
            if defer:
                assert store._local.pending  # not written yet, but a read sees it
            assert [p["symbol"] for p in s.positions("d1")] == ["SOL/USDT"]
            s.update_position(ids[1], tp_price=120.0)  # a later write to the table comes after the close
    assert store.positions("d1", status=None) == other.positions("d1", status=None)
    assert store.trades("d1").drop(columns="id").equals(other.trades("d1").drop(columns="id"))
    assert [p["amount"] for p in store.positions("d1", status="closed")] == [1.0, 0.5]
    with pytest.raises(RuntimeError), store.batch():
        store.close_position(ids[2], trade | {"symbol": "SOL/USDT"}, defer=True)
        raise RuntimeError("crash")
    assert [p["symbol"] for p in store.positions("d1")] == ["SOL/USDT"] and len(store.trades("d1")) == 2
    with pytest.raises(StoreError, match="already recorded"), store.batch():
        store.close_position(ids[2], trade | {"symbol": "SOL/USDT"}, defer=True)
        store.close_position(ids[2], trade | {"symbol": "SOL/USDT"}, defer=True)
    assert [p["symbol"] for p in store.positions("d1")] == ["SOL/USDT"] and len(store.trades("d1")) == 2


def test_deferred_positions_take_the_next_ids_and_equal_immediate_writes(tmp_path, store):
    """open_position(defer=True): the batch's first position is inserted (the write lock is the batch's), later ones
    wait with the next ids; reads, updates and closes see them; a failed batch drops them; ids go on after it."""
    other = Store(tmp_path / "other.sqlite")
    trade = {"deployment_id": "d1", "symbol": "ETH/USDT", "side": "long", "amount": 1.0, "entry_price": 100.0,
             "entry_at": 1.0, "exit_price": 110.0, "exit_at": 2.0, "fees": 0.2, "pnl": 9.8, "pnl_pct": 0.098, "exit_reason": "signal"}

    def opened(s, sym, defer):
        return s.open_position({"deployment_id": "d1", "symbol": sym, "side": "long", "amount": 1.0, "entry_price": 100.0,
                                "entry_at": 1.0, "entry_fee": 0.1}, defer=defer)

    for s, defer in ((store, True), (other, False)):
        with s.batch():
            ids = [opened(s, sym, defer) for sym in ("BTC/USDT", "ETH/USDT", "SOL/USDT")]
            assert ids == [1, 2, 3]
            if defer:
                assert set(store._local.pending["positions"]) == {2, 3}  # the first went in: its insert holds the lock
            s.update_position(ids[2], tp_price=120.0)
            s.close_position(ids[1], trade, defer=True)  # opened and closed in one batch: written closed
            assert [p["symbol"] for p in s.positions("d1")] == ["BTC/USDT", "SOL/USDT"]
            assert opened(s, "ADA/USDT", defer) == 4  # after a read wrote them, ids go on
    assert store.positions("d1", status=None) == other.positions("d1", status=None)
    assert store.trades("d1").drop(columns="id").equals(other.trades("d1").drop(columns="id"))
    with pytest.raises(RuntimeError), store.batch():
        assert [opened(store, sym, True) for sym in ("XRP/USDT", "DOT/USDT")] == [5, 6]
        raise RuntimeError("crash")
    assert len(store.positions("d1", status=None)) == 4 and store._local.next_position_id is None
    with store.batch():
        assert opened(store, "DOT/USDT", True) == 5
    assert opened(store, "XRP/USDT", True) == 6  # outside a batch: inserted now
    assert [p["symbol"] for p in store.positions("d1")][-2:] == ["DOT/USDT", "XRP/USDT"]


@pytest.mark.parametrize("table", ["orders", "fills", "positions", "trades", "venue_state"])
def test_deferred_rows_bind_the_values_an_immediate_insert_binds(table):
    """TableSql.values (the deferred rows' bulk form) gives each row's params() in column order: defaults, JSON text, bools."""
    from sqlalchemy import JSON, Boolean, Float, Integer

    from workbench.store import schema
    from workbench.store.raw import TableSql

    tbl = schema.metadata.tables[table]
    sql = TableSql(tbl, "qmark", returning=False)
    keys = tuple(c.name for c in tbl.columns if c.name != "id")
    samples = {JSON: [{"a": [1, 2.5]}, [[1.0, "open"]], None], Boolean: [True, 0, None], Float: [1.5, None], Integer: [7, None]}
    rows = []
    for k in range(9):  # each column present with a value, present as None, or absent, in turn
        row = {}
        for j, col in enumerate(c for c in tbl.columns if c.name != "id"):
            values = next((v for t, v in samples.items() if isinstance(col.type, t)), ["text", None])
            choice = (k + j) % (len(values) + 1)
            if choice < len(values):
                row[col.name] = values[choice]
        rows.append(row)
    assert sql.values(keys, rows) == [tuple(map(sql.params(r).get, keys)) for r in rows]
