"""End to end: a paper deployment's position is closed by hand on the venue; the next sync finds and books it."""
from __future__ import annotations

import pandas as pd
import pytest

from workbench.data import sample_ohlcv
from workbench.engine import DeploymentSpec, Engine, ManualClock
from workbench.store import Store
from workbench.sync import SyncService, learning_records, learning_summary, runs, stored_differences

RISK = {"daily_loss_limit": None, "drawdown_limit": None, "stop_loss": 0.03, "take_profit": 0.08}


def bars(df: pd.DataFrame):
    for ts, r in zip(df.index, df.itertuples(index=False), strict=True):
        yield int(ts.value // 1_000_000), r.open, r.high, r.low, r.close, r.volume


def drive_until_open(engine: Engine, rt, symbol: str, df: pd.DataFrame, clock: ManualClock) -> int:
    """Feed bars until the deployment holds a position; return the index of the next bar."""
    rt.precompute(symbol, df)
    for i, (ts, o, h, lo, c, v) in enumerate(bars(df)):
        clock.set(ts / 1000 + 3600)
        engine.on_bar(symbol, ts, o, h, lo, c, v)
        if rt.ledger.positions and i > 100:
            return i + 1
    raise AssertionError("no position opened")


@pytest.fixture
def setup(tmp_path):
    clock = ManualClock(0)
    engine = Engine(Store(tmp_path / "wb.sqlite"), clock=clock)
    return engine, clock


@pytest.mark.parametrize("symbol", ["BTC/USDT", "ETH/USDT:USDT"])
def test_manual_close_on_the_venue_is_detected_booked_and_learned(setup, symbol):
    engine, clock = setup
    rt = engine.deploy(DeploymentSpec(strategy="sma_cross", symbols=(symbol,), timeframe="1h", params={"fast": 10, "slow": 30}, risk=RISK))
    df = sample_ohlcv(symbol.split(":")[0], "1h", 2500)
    service = SyncService(engine.store, engine, interval=30, clock=clock)
    assert service.run_once()[0].diffs == []  # nothing differs before any intervention
    k = drive_until_open(engine, rt, symbol, df, clock)
    first = service.run_once()[0].diffs
    # The engine books a triggered stop's trade but not its fill row (reported); the sync records it as ours, not external.
    assert all(d.kind == "missing_fill" and d.correction.params["external"] is False for d in first)
    assert service.run_once()[0].diffs == [], "an engine-made position reconciles cleanly"
    pos = next(iter(rt.ledger.positions.values()))
    closed = rt.venue.exchange.manual_close(symbol)  # by hand, on the exchange's web page
    report = service.run_once()[0]
    kinds = report.summary["by_kind"]
    assert kinds.get("position_closed_externally") == 1 and kinds.get("missing_fill", 0) >= 1
    # booked as manual in the store and in the running deployment's ledger
    assert rt.ledger.positions == {}
    assert engine.store.positions(rt.id) == []
    trade = engine.store.trades(rt.id).iloc[-1]
    assert trade["exit_reason"] == "manual" and trade["position_id"] == pos.id
    assert trade["exit_price"] == pytest.approx(closed["average"])
    fills = engine.store.frame("fills", deployment_id=rt.id)
    assert fills["external"].sum() >= 1 and closed["trades"][0]["id"] in set(fills["venue_trade_id"])
    # its protective orders are no longer working, in the store either
    prot = engine.store.frame("orders", deployment_id=rt.id)
    prot = prot[prot["position_id"] == pos.id]
    assert set(prot["purpose"]) == {"entry", "protect"} and not prot["status"].isin(["open", "pending"]).any()  # a stop pair
    # every correction audited, the run and its differences stored
    actions = set(engine.store.frame("audit")["action"])
    assert {"sync:close_position", "sync:record_fill"} <= actions
    assert len(runs(engine.store)) == 4 and len(stored_differences(engine.store, report.run_id)) == len(report.diffs)
    # the engine does not trade against the vanished position: no exit order for it afterwards
    orders_before = len(engine.store.orders(rt.id))
    rec = learning_records(engine.store)
    assert len(rec) == 1 and rec.iloc[0]["position_id"] == pos.id and rec.iloc[0]["strategy"] == "sma_cross"
    for i, (ts, o, h, lo, c, v) in enumerate(bars(df.iloc[k:k + 300])):
        clock.set(ts / 1000 + 3600)
        engine.on_bar(symbol, ts, o, h, lo, c, v)
        if i % 30 == 0:
            service.tick()
    new = [o for o in engine.store.orders(rt.id)[orders_before:] if o["position_id"] == pos.id]
    assert new == []
    assert not engine.store.frame("orders", deployment_id=rt.id)["status"].eq("rejected").any()
    # the strategy's own exit on the bars that followed is now known
    service.run_once()
    rec = learning_records(engine.store).iloc[0]
    assert rec["cf_status"] == "resolved" and rec["cf_reason"] in ("signal", "stop_loss", "take_profit")
    assert rec["cf_exit_at"] > rec["exit_at"] and rec["helped"] == pytest.approx(rec["pnl"] - rec["cf_pnl"])
    summary = learning_summary(engine.store)
    assert summary["interventions"] == 1 and summary["resolved"] == 1
    assert summary["benefit"] == pytest.approx(rec["pnl"] - rec["cf_pnl"])


def test_engine_start_reconciles_before_trading(tmp_path):
    """A manual close while the engine was down is booked on recovery; an unreachable venue keeps the deployment out."""
    clock = ManualClock(0)
    store = Store(tmp_path / "wb.sqlite")
    engine = Engine(store, clock=clock)
    rt = engine.deploy(DeploymentSpec(strategy="sma_cross", symbols=("BTC/USDT",), timeframe="1h", params={"fast": 10, "slow": 30}, risk=RISK))
    drive_until_open(engine, rt, "BTC/USDT", sample_ohlcv("BTC/USDT", "1h", 2500), clock)
    rt.flush()
    rt.venue.exchange.manual_close("BTC/USDT")  # persisted in the store's venue state
    again = Engine(Store(tmp_path / "wb.sqlite"), clock=clock)
    SyncService(again.store, again, clock=clock).attach(again)
    assert again.recover() == [rt.id]
    rt2 = again.get(rt.id)
    assert rt2.status == "active" and rt2.ledger.positions == {}
    assert again.store.trades(rt.id).iloc[-1]["exit_reason"] == "manual"

    third = Engine(Store(tmp_path / "wb.sqlite"), clock=clock)
    store.set_status(rt.id, "active")
    service = SyncService(third.store, third, clock=clock)

    def broken(rt):
        rt.venue.exchange.fetch_my_trades = _raise
        rt.venue.sleep = lambda _s: None  # the venue retries transient errors with backoff: no real waiting in tests
        return service.sync_runtime(rt)

    third.sync = broken
    third.recover()
    row = third.store.deployment(rt.id)
    assert row["status"] == "error" and "reconciliation failed" in row["status_reason"]
    assert third.get(rt.id).status == "error"
    assert runs(third.store)["status"].iloc[-1] == "error"


def _raise(*a, **k):
    import ccxt

    raise ccxt.ExchangeNotAvailable("maintenance")


def test_cli_reconcile_and_manual_trades(tmp_path, capsys):
    import argparse

    from workbench.cli import sync as cli

    parser = argparse.ArgumentParser(prog="workbench")
    parser.add_argument("--home")
    cli.register(parser.add_subparsers(dest="command"))

    def run(*argv):
        args = parser.parse_args(["--home", str(tmp_path), *argv])
        return args.handler(args)

    clock = ManualClock(0)
    engine = Engine(Store(tmp_path / "workbench.sqlite"), clock=clock)
    rt = engine.deploy(DeploymentSpec(strategy="sma_cross", symbols=("BTC/USDT",), timeframe="1h", params={"fast": 10, "slow": 30}, risk=RISK))
    drive_until_open(engine, rt, "BTC/USDT", sample_ohlcv("BTC/USDT", "1h", 2500), clock)
    rt.flush()
    rt.venue.exchange.manual_close("BTC/USDT")
    assert run("reconcile") == 1  # look only: the manual close is reported, nothing applied
    out = capsys.readouterr().out
    assert "position_closed_externally" in out and "0 applied" in out
    assert len(engine.store.positions(rt.id)) == 1
    assert run("reconcile", "--deployment", rt.id, "--apply") == 0
    assert engine.store.positions(rt.id) == [] and engine.store.trades(rt.id).iloc[-1]["exit_reason"] == "manual"
    capsys.readouterr()
    assert run("manual-trades", "--csv", str(tmp_path / "m.csv")) == 0
    out = capsys.readouterr().out
    assert "1 intervention(s)" in out
    assert len(pd.read_csv(tmp_path / "m.csv")) == 1
    with pytest.raises(Exception, match="No deployment 'nope'"):
        run("reconcile", "--deployment", "nope")


def test_manual_close_on_the_bybit_emulator(emulator):
    """The same through ccxt's real bybit class against the local emulator (orderLinkId, Bybit's trade shapes)."""
    from workbench.venues.ccxt_venue import RetryPolicy
    from workbench.venues.live import emulator_account, venue_factory

    class Accounts:
        def get(self, name):
            return emulator_account(emulator, timeout=1.0, rate_limit_ms=1)

    perp = "BTC/USDT:USDT"
    store = Store(":memory:")
    clock = ManualClock(1_706_745_600.0)
    engine = Engine(store, clock=clock, venue_factory=venue_factory(store, Accounts(), retry=RetryPolicy(attempts=3, base_delay=0.001),
                                                                   sleep=lambda _s: None, markets_ttl=None))
    risk = {"size_mode": "fixed_quote", "size_quote": 200, "leverage": 5, "max_leverage": 5, "stop_loss": 0.05, "take_profit": 0.1,
            "daily_loss_limit": None, "drawdown_limit": None, "cooldown_seconds": None}
    rt = engine.deploy({"strategy": "sma_cross", "symbols": [perp], "timeframe": "1h", "params": {"fast": 5, "slow": 20},
                        "venue": "ccxt", "account": "bybit-emulator", "risk": risk})
    service = SyncService(store, engine, clock=clock)
    for _ in range(200):
        emulator.advance(1)
        engine.on_bar(perp, *rt.venue.fetch_ohlcv(perp, "1h", limit=2)[-2])
        if rt.ledger.positions:
            break
    assert rt.ledger.positions, "no position opened on the emulator"
    service.run_once()  # heal what the engine left unrecorded (see test above)
    assert service.run_once()[0].unresolved(("position_closed_externally", "position_mismatch", "unknown_position")) == []
    pos = rt.ledger.positions[perp]
    emulator.manual_close(perp)
    report = service.run_once()[0]
    assert report.summary["by_kind"].get("position_closed_externally") == 1
    assert rt.ledger.positions == {} and store.positions(rt.id) == []
    trade = store.trades(rt.id).iloc[-1]
    assert trade["exit_reason"] == "manual" and trade["position_id"] == pos.id
    assert len(learning_records(store)) == 1
    orders = store.frame("orders", deployment_id=rt.id)
    assert not orders[orders["position_id"] == pos.id]["status"].isin(["open", "pending"]).any()
