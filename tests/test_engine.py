"""The engine: deployments trade through risk on the paper venue; every event is stored."""
from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.data import sample_ohlcv
from workbench.engine import DeploymentSpec, Engine, ManualClock, replay
from workbench.errors import ConfigError, ParamsError
from workbench.store import Store

NO_PAUSES = {"daily_loss_limit": None, "drawdown_limit": None}


def spec(**kw) -> DeploymentSpec:
    base = dict(strategy="sma_cross", symbols=("BTC/USDT",), timeframe="1h", params={"fast": 10, "slow": 30}, risk=dict(NO_PAUSES))
    base.update(kw)
    return DeploymentSpec(**base)


def feed(engine: Engine, frames: dict[str, pd.DataFrame], clock: ManualClock, upto: int | None = None, live: bool = False) -> None:
    """Hand bars to the engine; unless `live`, deployments read precomputed signals (equal to decide(), tested)."""
    if not live:
        for rt in engine.deployments.values():
            for sym, df in frames.items():
                if sym in rt.enabled and sym not in rt.precomputed:
                    rt.precompute(sym, df)
    rows = sorted((int(ts.value // 1_000_000), sym, r) for sym, df in frames.items() for ts, r in zip(df.index, df.itertuples(index=False), strict=True))
    for n, (ts, sym, r) in enumerate(rows):
        if upto is not None and n >= upto:
            return
        clock.set(ts / 1000 + 3600)
        engine.on_bar(sym, ts, r.open, r.high, r.low, r.close, r.volume)


@pytest.fixture
def engine(tmp_path):
    return Engine(Store(tmp_path / "wb.sqlite"), clock=ManualClock(0))


def test_deploy_trade_and_record_everything(engine):
    events = []
    for name in ("signal", "order", "fill", "trade"):
        engine.on(name, lambda p, name=name: events.append(name))
    rt = engine.deploy(spec(risk=NO_PAUSES | {"stop_loss": 0.02, "take_profit": 0.05}))
    feed(engine, {"BTC/USDT": sample_ohlcv("BTC/USDT", "1h", 1500)}, engine.clock, live=True)  # the live decide() path
    rt.flush()
    trades = engine.store.trades(rt.id)
    assert len(trades) >= 10
    assert set(trades["exit_reason"]) <= {"signal", "stop_loss", "take_profit"}
    assert {"stop_loss", "signal"} <= set(trades["exit_reason"])
    orders = engine.store.frame("orders", deployment_id=rt.id)
    assert set(orders["purpose"]) >= {"entry", "exit", "protect"}  # the paper venue takes a stop pair: one order for both
    assert (orders["status"] != "pending").all(), "no order stays pending"
    fills = engine.store.fills(rt.id)
    assert all(f["fee"] > 0 and f["fee_currency"] == "USDT" for f in fills)
    assert len(engine.store.equity(rt.id)) == 1500
    assert {"signal", "order", "fill", "trade"} <= set(events)
    # equity = cash + marked positions, and it equals the initial cash plus realized and unrealized P&L
    assert rt.equity() == pytest.approx(10_000 + trades["pnl"].sum() + rt.ledger.unrealized(rt.marks) - sum(p.entry_fee for p in rt.ledger.positions.values()), rel=1e-9)


def _until_a_position_opens(engine: Engine, rt) -> None:
    """Feed hourly sample bars (precomputed signals) until `rt` holds a position."""
    df = sample_ohlcv("BTC/USDT", "1h", 3000)
    rt.precompute("BTC/USDT", df)
    for k in range(400, len(df), 25):
        feed(engine, {"BTC/USDT": df.iloc[k - 25 if k > 400 else 0:k]}, engine.clock)
        if rt.ledger.positions:
            return
    raise AssertionError("no position opened on 3000 hourly bars")


def test_stop_closes_positions_then_stops(engine):
    rt = engine.deploy(spec())
    _until_a_position_opens(engine, rt)
    assert rt.ledger.positions
    engine.stop(rt.id)
    row = engine.store.deployment(rt.id)
    assert row["status"] == "stopped"
    last = engine.store.trades(rt.id).iloc[-1]
    assert last["exit_reason"] == "stop"
    assert engine.store.positions(rt.id) == []
    assert engine.store.frame("orders", deployment_id=rt.id)["status"].isin(["filled", "cancelled"]).all()


def test_emergency_stop_closes_everything_everywhere(engine):
    a = engine.deploy(spec(symbols=("BTC/USDT", "ETH/USDT"), risk=NO_PAUSES | {"max_open_positions": None}))
    b = engine.deploy(spec(symbols=("SOL/USDT",), params={"fast": 5, "slow": 20}))
    frames = {s: sample_ohlcv(s, "1h", 3000) for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT")}
    for rt in (a, b):
        for sym in rt.enabled:
            rt.precompute(sym, frames[sym])
    for k in range(400, 3000, 10):
        feed(engine, {s: df.iloc[k - 10 if k > 400 else 0:k] for s, df in frames.items()}, engine.clock)
        if len(a.ledger.positions) + len(b.ledger.positions) >= 2:
            break
    open_before = len(a.ledger.positions) + len(b.ledger.positions)
    report = engine.emergency_stop("test")
    assert set(report) == {a.id, b.id}
    for dep in (a, b):
        assert engine.store.deployment(dep.id)["status"] == "stopped"
        assert engine.store.positions(dep.id) == []
    trades = pd.concat([engine.store.trades(a.id), engine.store.trades(b.id)])
    assert (trades["exit_reason"] == "emergency_stop").sum() == open_before
    open_orders = engine.store.orders(statuses=("pending", "open", "partially_filled"))
    assert open_orders == []
    actions = set(engine.store.frame("audit")["action"])
    assert {"emergency_stop", "emergency_stop:deployment"} <= actions


def test_commands_from_another_client_reach_the_engine(engine, tmp_path):
    rt = engine.deploy(spec())
    other = Store(tmp_path / "wb.sqlite")  # the CLI or a panel in another process
    c1 = other.submit_command("pause", rt.id, {"reason": "lunch"}, actor="cli")
    assert engine.process_commands() == 1
    assert other.command(c1)["status"] == "done"
    assert engine.store.deployment(rt.id)["status"] == "paused" and rt.status == "paused"
    other.submit_command("resume", rt.id, actor="cli")
    engine.process_commands()
    assert rt.status == "active"
    c3 = other.submit_command("disable_symbol", rt.id, {"symbol": "ETH/USDT"}, actor="cli")
    engine.process_commands()
    assert other.command(c3)["status"] == "failed" and "does not trade" in other.command(c3)["result"]
    other.submit_command("stop", rt.id, actor="cli")
    engine.process_commands()
    assert engine.store.deployment(rt.id)["status"] == "stopped" and rt.id not in engine.deployments


def test_manual_orders_from_another_client_reach_the_paper_venue(engine, tmp_path):
    """place_order / cancel_order commands: how a paper venue living in the engine process takes manual orders."""
    rt = engine.deploy(spec(symbols=("BTC/USDT",)))
    frames = {"BTC/USDT": sample_ohlcv("BTC/USDT", "1h", 60)}
    feed(engine, frames, engine.clock, upto=40)
    price = float(frames["BTC/USDT"]["close"].iloc[39])
    other = Store(tmp_path / "wb.sqlite")  # a panel or the CLI in another process
    unconfirmed = other.submit_command("place_order", rt.id, {"symbol": "BTC/USDT", "side": "buy", "amount": 0.01}, actor="cli")
    market = other.submit_command("place_order", rt.id, {"symbol": "BTC/USDT", "side": "buy", "amount": 0.01, "confirm": True}, actor="cli")
    limit = other.submit_command("place_order", rt.id, {"symbol": "BTC/USDT", "side": "sell", "amount": 0.005, "type": "limit",
                                                        "price": round(price * 1.5, 2), "confirm": True}, actor="cli")
    assert engine.process_commands() == 3
    assert other.command(unconfirmed)["status"] == "failed" and "confirm" in other.command(unconfirmed)["result"]
    assert other.command(market)["status"] == "done" and other.command(market)["result"].endswith("filled")
    cid = other.command(limit)["result"].split()[0]
    assert other.order(cid)["status"] == "open" and other.order(cid)["purpose"] == "manual"
    assert rt.venue.fetch_balance()["total"]["BTC"] == pytest.approx(0.01)
    assert not rt.ledger.positions  # a manual order is not the deployment's trade: reconciliation lists it
    cancel = other.submit_command("cancel_order", rt.id, {"client_order_id": cid}, actor="cli")
    engine.process_commands()
    assert other.command(cancel)["status"] == "done" and other.order(cid)["status"] == "cancelled"
    near = other.submit_command("place_order", rt.id, {"symbol": "BTC/USDT", "side": "sell", "amount": 0.005, "type": "limit",
                                                       "price": round(price * 1.0001, 2), "confirm": True}, actor="cli")
    engine.process_commands()
    near_cid = other.command(near)["result"].split()[0]
    feed(engine, frames, engine.clock)  # later bars reach the limit: the engine records the fill
    engine.refresh_manual_orders()
    assert other.order(near_cid)["status"] == "filled"
    assert {"order_place", "order_cancel"} <= set(other.frame("audit")["action"])
    rt.venue.live = True  # a live venue: money moves only with confirm_live as well
    live = other.submit_command("place_order", rt.id, {"symbol": "BTC/USDT", "side": "buy", "amount": 0.01, "confirm": True}, actor="cli")
    engine.process_commands()
    assert other.command(live)["status"] == "failed" and "confirm_live" in other.command(live)["result"]


def test_paused_deployment_opens_nothing_but_keeps_its_stops(engine):
    rt = engine.deploy(spec())
    engine.pause(rt.id)
    feed(engine, {"BTC/USDT": sample_ohlcv("BTC/USDT", "1h", 1000)}, engine.clock)
    assert engine.store.orders(rt.id) == []


def test_disabled_symbol_is_not_traded(engine):
    rt = engine.deploy(spec(symbols=("BTC/USDT", "ETH/USDT"), risk=NO_PAUSES | {"max_open_positions": None}))
    engine.set_symbol(rt.id, "ETH/USDT", False)
    feed(engine, {s: sample_ohlcv(s, "1h", 1000) for s in ("BTC/USDT", "ETH/USDT")}, engine.clock)
    symbols = {o["symbol"] for o in engine.store.orders(rt.id)}
    assert symbols == {"BTC/USDT"}


def test_risk_denial_is_a_stored_event_not_a_crash(engine):
    rt = engine.deploy(spec(symbols=("BTC/USDT", "ETH/USDT", "SOL/USDT"), params={"fast": 5, "slow": 20}, risk=NO_PAUSES | {"max_open_positions": 1}))
    risk_events = []
    engine.on("risk_event", risk_events.append)
    feed(engine, {s: sample_ohlcv(s, "1h", 800) for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT")}, engine.clock)
    denied = engine.store.frame("risk_events", deployment_id=rt.id)
    assert (denied["kind"] == "denied").any()
    assert denied["reason"].str.contains("max_open_positions").any()
    assert risk_events and rt.status == "active"
    # never more than one position at a time
    pos = engine.store.frame("positions", deployment_id=rt.id)
    for t in pos["entry_at"]:
        live = pos[(pos["entry_at"] <= t) & ((pos["closed_at"].isna()) | (pos["closed_at"] > t))]
        assert len(live) <= 1


def test_daily_loss_limit_pauses_with_reason(engine):
    rt = engine.deploy(spec(params={"fast": 5, "slow": 20}, risk={"daily_loss_limit": 0.002, "drawdown_limit": None, "size_pct": 0.9}))
    feed(engine, {"BTC/USDT": sample_ohlcv("BTC/USDT", "1h", 1500)}, engine.clock)
    events = engine.store.frame("risk_events", deployment_id=rt.id)
    assert (events["kind"] == "paused").any()
    changes = engine.store.frame("status_changes", deployment_id=rt.id)
    assert "paused" in set(changes["new"])
    assert changes[changes["new"] == "paused"]["reason"].str.contains("loss", case=False).all()


@pytest.mark.parametrize("bad, match", [
    (dict(symbols=("DOGE/USDT",)), "DOGE/USDT"),
    (dict(strategy="sma_crss"), "Did you mean 'sma_cross'"),
    (dict(params={"fast": 10, "slwo": 30}), "Did you mean 'slow'"),
    (dict(params={"fast": -3, "slow": 30}), "fast"),
    (dict(risk={"size_pct": float("nan")}), "size_pct"),
    (dict(risk={"max_open_positions": 0}), "max_open_positions"),
    (dict(risk={"stop_los": 0.02}), "Did you mean 'stop_loss'"),
    (dict(timeframe="1x"), "timeframe"),
    (dict(mode="live"), "live"),
    (dict(symbols=("ETH/USDT",), direction="short"), "spot"),
])
def test_bad_deployments_rejected_and_nothing_stored(engine, bad, match):
    before = {t: len(engine.store.frame(t)) for t in ("deployments", "orders", "audit", "commands")}
    with pytest.raises(ConfigError, match=match):
        engine.deploy(spec(**bad))
    assert {t: len(engine.store.frame(t)) for t in before} == before


def test_deploy_loads_params_from_store_with_freshness(engine, tmp_path):
    from datetime import UTC, datetime, timedelta

    from workbench.params import ParamSet, ParamStore

    with pytest.raises(ParamsError, match="workbench optimize"):
        engine.deploy(spec(params=None, params_dir=str(tmp_path / "p")))
    ParamStore(tmp_path / "p").save(ParamSet("sma_cross", "BTC/USDT", "1h", {"fast": 15, "slow": 40}, datetime.now(UTC) - timedelta(days=10)))
    rt = engine.deploy(spec(params=None, params_dir=str(tmp_path / "p")))
    row = engine.store.deployment(rt.id)
    assert rt.params == {"fast": 15, "slow": 40} and row["params_freshness"] == "stale"


def test_restart_mid_replay_gives_the_same_trades(tmp_path):
    df = sample_ohlcv("ETH/USDT", "1h", 2500)
    s = spec(symbols=("ETH/USDT",), risk=NO_PAUSES | {"stop_loss": 0.03, "take_profit": 0.06})
    full = replay(s, data={"ETH/USDT": df}, store=str(tmp_path / "a.sqlite"))
    first = replay(s, data={"ETH/USDT": df}, store=str(tmp_path / "b.sqlite"), stop_after=1234)
    assert not first.completed
    second = replay(s, data={"ETH/USDT": df}, store=str(tmp_path / "b.sqlite"), resume=first.deployment_id)  # a new engine
    assert second.completed
    cols = ["symbol", "side", "amount", "entry_price", "entry_at", "exit_price", "exit_at", "pnl", "exit_reason"]
    assert len(full.trades) > 10
    pd.testing.assert_frame_equal(full.trades[cols].reset_index(drop=True), second.trades[cols].reset_index(drop=True))
    assert second.summary["final_equity"] == pytest.approx(full.summary["final_equity"], rel=1e-12)


def _store_contents(store: Store) -> dict[str, list]:
    """Every row a replay wrote, without wall-clock columns (NaN as None, so rows compare equal)."""
    wall = {"venue_state": ["updated_at"], "status_changes": ["at"], "audit": ["at"], "deployments": ["created_at", "updated_at", "started_at"]}
    out = {}
    for table in ("orders", "fills", "positions", "trades", "risk_events", "venue_state", "status_changes", "deployments"):
        df = store.frame(table).drop(columns=wall.get(table, []))
        out[table] = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in df.to_dict("records")]
    out["equity"] = [r for d in store.deployments() for r in store.equity(d["id"]).to_dict("records")]  # blocks may split differently
    assert out["equity"]
    return out


@pytest.mark.parametrize("case", ["long, SL/TP, loss limits that pause", "perpetual both ways, leverage", "resumed after a stop"])
def test_replay_of_quiet_stretches_at_once_equals_every_bar(tmp_path, monkeypatch, case):
    """A one-symbol replay steps quiet bars in bulk (DeploymentRuntime.skip_quiet): every stored row equals the per-bar run."""
    import sys
    import uuid

    replay_module = sys.modules["workbench.engine.replay"]
    if case.startswith("long"):
        sym, df = "BTC/USDT", sample_ohlcv("BTC/USDT", "1m", 12_000)
        s = spec(symbols=(sym,), timeframe="1m", risk={"stop_loss": 0.004, "take_profit": 0.008, "daily_loss_limit": 0.0005,
                                                       "drawdown_limit": 0.004, "cooldown_seconds": 600})
    else:
        sym, df = "ETH/USDT:USDT", sample_ohlcv("ETH/USDT", "1h", 3_000)
        s = spec(symbols=(sym,), strategy="rsi_reversion", params={}, direction="both",
                 risk=NO_PAUSES | {"stop_loss": 0.03, "take_profit": 0.05, "leverage": 3, "max_leverage": 5})
    runs = {}
    for skip in (True, False):
        monkeypatch.setattr(replay_module, "SKIP_QUIET", skip)
        ids = iter(range(1, 10))
        monkeypatch.setattr(uuid, "uuid4", lambda ids=ids: uuid.UUID(int=next(ids)))
        path = str(tmp_path / f"{skip}.sqlite")
        if case.startswith("resumed"):
            first = replay(s, data={sym: df}, store=path, stop_after=1_234)
            res = replay(s, data={sym: df}, store=path, resume=first.deployment_id)
        else:
            res = replay(s, data={sym: df}, store=path)
        runs[skip] = _store_contents(res.store)
        res.store.close()
    assert len(runs[True]["trades"]) > 20
    if case.startswith("long"):
        assert {r["kind"] for r in runs[True]["risk_events"]} >= {"paused", "resumed"}
    for table, rows in runs[False].items():
        assert runs[True][table] == rows, table


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), size_pct=st.floats(0.05, 1.0), max_pos=st.integers(1, 3),
       sl=st.sampled_from([None, 0.01, 0.03]), lev_cap=st.sampled_from([None, 1.0, 2.0]))
def test_equity_identity_and_limits_hold_on_random_paths(tmp_path_factory, seed, size_pct, max_pos, sl, lev_cap):
    import numpy as np

    rng = np.random.default_rng(seed)
    n = 300
    frames = {}
    for sym in ("BTC/USDT", "ETH/USDT", "SOL/USDT"):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
        open_ = np.r_[100.0, close[:-1]]
        hi = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
        lo = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
        idx = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
        frames[sym] = pd.DataFrame({"open": open_, "high": hi, "low": lo, "close": close, "volume": 1000.0}, index=idx)
    engine = Engine(Store(":memory:"), clock=ManualClock(0))
    rt = engine.deploy(spec(symbols=tuple(frames), params={"fast": 5, "slow": 20},
                            risk=NO_PAUSES | {"size_pct": size_pct, "max_open_positions": max_pos, "stop_loss": sl, "max_leverage": lev_cap}))
    for sym, df in frames.items():
        rt.precompute(sym, df)
    rows = sorted((int(ts.value // 1_000_000), sym, r) for sym, df in frames.items() for ts, r in zip(df.index, df.itertuples(index=False), strict=True))
    for ts, sym, r in rows:
        engine.clock.set(ts / 1000 + 3600)
        engine.on_bar(sym, ts, r.open, r.high, r.low, r.close, r.volume)
        led = rt.ledger
        marked = sum(p.value(rt.marks[s]) for s, p in led.positions.items())
        assert rt.equity() == pytest.approx(led.cash + marked, rel=1e-12)
        assert len(led.positions) <= max_pos
        if lev_cap is not None:
            gross = sum(p.amount * rt.marks[s] for s, p in led.positions.items())
            entry_gross = sum(p.amount * p.entry_price for p in led.positions.values())
            assert entry_gross <= lev_cap * 10_000 * 1.5 and gross >= 0
        assert led.cash > -1e-9, "a spot account never borrows"
    trades = engine.store.trades(rt.id)
    assert (trades["fees"] >= 0).all()
    assert rt.ledger.realized == pytest.approx(float(trades["pnl"].sum()) if len(trades) else 0.0, abs=1e-9)


def _fill_the_disk(engine: Engine, path) -> None:
    """From now on every new connection to the store's file sees a full disk."""
    import sqlite3

    from sqlalchemy import event

    con = sqlite3.connect(path)
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    con.close()

    @event.listens_for(engine.store.engine, "connect")
    def _cap(dbapi_conn, _rec):
        dbapi_conn.execute(f"PRAGMA max_page_count={pages}")

    engine.store.engine.dispose()


@pytest.mark.parametrize("venue_in_store", [False, True], ids=["external-venue", "paper-venue-in-store"])
def test_full_store_stops_trading_instead_of_trading_blind(tmp_path, venue_in_store):
    """A store that cannot write (disk full) stops the deployment, and nothing reaches a venue unrecorded.

    An external venue (its state not in our store) only ever sees orders whose write-ahead row was
    committed first. The paper venue's state lives in the same store and commits in the same
    transaction as the bar's records, so after the failure the two agree: the store holds exactly
    the orders its venue state holds.
    """
    path = tmp_path / "full.sqlite"
    engine = Engine(Store(path), clock=ManualClock(0))
    rt = engine.deploy(spec(params={"fast": 5, "slow": 20}))
    if not venue_in_store:
        rt.venue_in_store = False  # as for a real exchange: write-ahead committed before each send
    df = sample_ohlcv("BTC/USDT", "1h", 600)
    rt.precompute("BTC/USDT", df)
    feed(engine, {"BTC/USDT": df.iloc[:100]}, engine.clock)
    _fill_the_disk(engine, path)
    sent = []
    real_create = rt.venue.exchange.create_order
    rt.venue.exchange.create_order = lambda *a, **k: sent.append(a) or real_create(*a, **k)
    feed(engine, {"BTC/USDT": df.iloc[100:]}, engine.clock)
    assert rt.status == "error"
    reopened = Store(path)
    recorded = {o["client_order_id"] for o in reopened.orders(rt.id)}
    sent_ids = [args[5]["clientOrderId"] for args in sent]
    if not venue_in_store:
        assert len({cid.rsplit("-", 1)[0] for cid in sent_ids}) <= 1, "after the bar whose write failed nothing more is sent"
        for cid in sent_ids:  # every order that reached the venue was written ahead of sending it
            assert cid in recorded
    else:
        assert len({cid.rsplit("-", 1)[0] for cid in sent_ids}) <= 1, "only the failing bar's orders were sent"
        state = reopened.load_venue_state(f"paper:{rt.id}") or {"orders": []}
        assert {o["clientOrderId"] for o in state["orders"]} == recorded
        assert not recorded & set(sent_ids), "the failing bar left nothing half-written"


def test_a_running_engine_stores_each_ticks_equity_as_the_tick_ends(engine):
    """Engine.run writes the equity rows (and cursor) of the bars a tick brought before the next tick, not 1000 bars later."""
    import asyncio

    from workbench.engine.feeds import SampleFeed

    df = sample_ohlcv("BTC/USDT", "1h", 40)
    start = df.index[0].timestamp()
    engine.clock.set(start + 3600)
    rt = engine.deploy(spec())
    seen: list[tuple[int, int]] = []

    def until() -> bool:
        seen.append((len(engine.store.equity(rt.id)), len(rt.history["BTC/USDT"])))
        engine.clock.set(engine.clock.now() + 3600)
        return len(seen) > 6

    asyncio.run(engine.run(SampleFeed(), poll_seconds=0, until=until))
    assert seen[0] == (0, 0)
    for stored, bars in seen[1:]:
        assert stored == bars > 0, seen
    assert engine.store.deployment(rt.id)["cursor"] == {"BTC/USDT": int(rt.cursor["BTC/USDT"])}


def test_a_stop_the_venue_refuses_leaves_no_phantom_stop_and_is_a_risk_event(engine):
    """The venue refuses every stop loss: each position records an 'unprotected' risk event, watches no stop
    loss (nothing to look up or cancel), keeps its take profit, and still closes by signal or take profit."""
    import ccxt

    rt = engine.deploy(spec(risk=NO_PAUSES | {"stop_loss": 0.02, "take_profit": 0.03}))
    exchange = rt.venue.exchange
    real_create = exchange.create_order

    def refuse_stops(symbol, type, side, amount, price=None, params=None):
        if params and "stopLossPrice" in params:
            raise ccxt.InvalidOrder("paper: stop orders are disabled on this account")
        return real_create(symbol, type, side, amount, price, params)

    exchange.create_order = refuse_stops
    lookups = []
    real_fetch = exchange.fetch_order
    exchange.fetch_order = lambda id, symbol=None, params=None: lookups.append((id, params)) or real_fetch(id, symbol, params)
    feed(engine, {"BTC/USDT": sample_ohlcv("BTC/USDT", "1h", 1500)}, engine.clock)
    rt.flush()
    trades = engine.store.trades(rt.id)
    orders = engine.store.frame("orders", deployment_id=rt.id)
    events = engine.store.frame("risk_events", deployment_id=rt.id)
    entries = (orders["purpose"] == "entry").sum()
    assert len(trades) >= 5 and set(trades["exit_reason"]) <= {"signal", "take_profit"}
    assert (orders.loc[orders["purpose"] == "stop_loss", "status"] == "rejected").all()
    assert (orders.loc[orders["purpose"] == "take_profit", "status"] != "rejected").all()
    unprotected = events[events["kind"] == "unprotected"]
    assert len(unprotected) == entries and unprotected["reason"].str.contains("refused the stop loss").all()
    assert all(p.sl_cid is None and p.tp_cid is not None for p in rt.ledger.positions.values())
    assert not [cid for _, params in lookups if params for cid in params.values() if str(cid).endswith("-sl")]


@pytest.mark.parametrize("pairs", [True, False], ids=["stop-pair", "two-stop-orders"])
def test_an_exit_goes_first_so_a_failed_exit_keeps_the_stops_and_a_filled_one_retires_them_unasked(engine, pairs):
    """Closing sends the exit before touching the stops: when the venue refuses the exit, the position keeps its
    stop loss and take profit; when it fills, the paper venue's answer names the stops its fill cancelled (OCO),
    and they are recorded cancelled without a cancel call."""
    import ccxt

    rt = engine.deploy(spec(risk=NO_PAUSES | {"stop_loss": 0.02, "take_profit": 0.05}))
    rt.venue.stop_pairs = pairs  # the paper venue takes both levels on one order; as a venue that does not
    _until_a_position_opens(engine, rt)
    pos = rt.ledger.positions["BTC/USDT"]
    assert (pos.sl_cid == pos.tp_cid) is pairs
    exchange = rt.venue.exchange
    real_create, cancels = exchange.create_order, []

    def refuse_exits(symbol, type, side, amount, price=None, params=None):
        raise ccxt.ExchangeNotAvailable("paper: maintenance")

    exchange.create_order = refuse_exits
    assert rt.close_position("BTC/USDT", "manual") is False
    stops = {cid: exchange.fetch_order(None, "BTC/USDT", {"clientOrderId": cid})["status"] for cid in (pos.sl_cid, pos.tp_cid)}
    assert stops == {pos.sl_cid: "open", pos.tp_cid: "open"}
    assert [engine.store.order(cid)["status"] for cid in (pos.sl_cid, pos.tp_cid)] == ["open", "open"]
    assert rt.ledger.positions["BTC/USDT"] is pos

    exchange.create_order = real_create
    exchange.cancel_order = lambda *a, **k: cancels.append(a)
    assert rt.close_position("BTC/USDT", "manual") is True
    assert cancels == []
    exit_row = engine.store.frame("orders", deployment_id=rt.id).query("purpose == 'exit' and status == 'filled'").iloc[-1]
    answer = exchange.fetch_order(exit_row["venue_order_id"], "BTC/USDT")
    assert sorted(answer["info"]["canceledOrders"]) == sorted({pos.sl_order_id, pos.tp_order_id})
    for cid in (pos.sl_cid, pos.tp_cid):
        assert engine.store.order(cid)["status"] == "cancelled"
        assert exchange.fetch_order(None, "BTC/USDT", {"clientOrderId": cid})["info"]["cancelReason"] == "position closed"
    assert engine.store.trades(rt.id).iloc[-1]["exit_reason"] == "manual"


def test_a_flip_whose_exit_fails_enters_nothing_on_top_of_the_position_it_still_holds(engine):
    """sma_cross both ways flips on a cross: exit the long, enter short. When the venue refuses the exit, the
    long is still held, so the short entry is not sent (it would stack a second position on the first)."""
    import ccxt

    sym = "ETH/USDT:USDT"
    rt = engine.deploy(spec(symbols=(sym,), direction="both", risk=NO_PAUSES | {"stop_loss": None, "take_profit": None}))
    df = sample_ohlcv("ETH/USDT", "1h", 3000)
    rt.precompute(sym, df)
    k = 400
    feed(engine, {sym: df.iloc[:k]}, engine.clock)
    while sym not in rt.ledger.positions:
        feed(engine, {sym: df.iloc[k:k + 1]}, engine.clock)
        k += 1
    held = rt.ledger.positions[sym]
    exchange = rt.venue.exchange
    real_create = exchange.create_order

    def refuse_exits(symbol, type, side, amount, price=None, params=None):
        if params and params.get("reduceOnly"):
            raise ccxt.InvalidOrder("paper: reduce-only orders are disabled on this account")
        return real_create(symbol, type, side, amount, price, params)

    exchange.create_order = refuse_exits
    before = len(engine.store.orders(rt.id))
    feed(engine, {sym: df.iloc[k:k + 300]}, engine.clock)
    after = engine.store.orders(rt.id)[before:]
    assert any(o["purpose"] == "exit" and o["status"] == "rejected" for o in after), "no flip was tried: pick more bars"
    assert not [o for o in after if o["purpose"] == "entry"]
    assert rt.ledger.positions[sym] is held
    (venue_pos,) = [p for p in exchange.fetch_positions([sym]) if p["contracts"]]
    assert venue_pos["side"] == held.side and venue_pos["contracts"] == pytest.approx(held.amount)


def test_an_unanswered_entry_is_settled_when_the_venue_answers_and_asked_about_at_widening_intervals(engine):
    """The entry reaches the paper venue but its reply is lost and lookups fail for 40 minutes: the order stays
    pending, lookups back off (not one per bar), and once the venue answers the entry is booked as the venue's
    position on the bar it was decided on, with its stops."""
    from workbench.engine.deployment import SETTLE_RETRY
    from workbench.errors import VenueError

    sym = "BTC/USDT"
    rt = engine.deploy(spec(timeframe="1m", risk=NO_PAUSES | {"stop_loss": 0.02, "take_profit": 0.04}))
    df = sample_ohlcv(sym, "1m", 3000)
    rt.precompute(sym, df)
    venue, lookups, lost = rt.venue, [], {}
    real_create, real_fetch = venue.create_order, venue.fetch_order

    def create(req):
        out = real_create(req)  # the venue takes it...
        if not lost:  # ...and the first reply is lost
            lost.update(cid=req.client_order_id, at=engine.clock.now())
            raise VenueError("paper: read timed out")
        return out

    def fetch(symbol, order_id=None, client_order_id=None, retry=True):
        if client_order_id != lost.get("cid"):
            return real_fetch(symbol, order_id=order_id, client_order_id=client_order_id)
        assert retry is False  # one attempt per settle try: the engine's loop is not held in the venue's retries
        lookups.append(engine.clock.now())
        if engine.clock.now() < lost["at"] + 40 * 60:
            raise VenueError("paper: read timed out")
        return real_fetch(symbol, order_id=order_id, client_order_id=client_order_id)

    venue.create_order, venue.fetch_order = create, fetch
    k = 100
    feed(engine, {sym: df.iloc[:k]}, engine.clock)
    while not lost:
        feed(engine, {sym: df.iloc[k:k + 1]}, engine.clock)
        k += 1
    assert engine.store.order(lost["cid"])["status"] == "pending" and sym not in rt.ledger.positions
    feed(engine, {sym: df.iloc[k:k + 60]}, engine.clock)
    during = [t for t in lookups if t < lost["at"] + 40 * 60]
    assert 3 <= len(during) <= 10, during  # backing off from 30 s to 10 minutes (8 here), not one a minute (40)
    assert all(b - a >= SETTLE_RETRY[0] for a, b in zip(during, during[1:], strict=False))
    row = engine.store.order(lost["cid"])
    assert row["status"] == "filled" and row["position_id"] is not None
    pos = next(p for p in engine.store.positions(rt.id, status=None) if p["id"] == row["position_id"])
    assert pos["entry_at"] <= lost["at"] - 60, "booked on the bar it was decided on, not when it was settled"
    assert engine.store.frame("orders", deployment_id=rt.id).query("purpose == 'protect'").shape[0] >= 1


@pytest.mark.parametrize("side, fill, info, reason", [
    ("long", 97.9, {"reason": "take_profit"}, "take_profit"),  # the venue's word first
    ("long", 97.9, {}, "stop_loss"),  # else the level nearer the fill (slippage or a gap past it)
    ("long", 95.0, None, "stop_loss"),
    ("long", 104.1, {}, "take_profit"),
    ("short", 102.1, {"reason": "bogus"}, "stop_loss"),
    ("short", 95.5, {}, "take_profit"),
])
def test_a_filled_stop_pair_is_booked_with_the_level_that_filled_it(side, fill, info, reason):
    from workbench.engine.deployment import _pair_reason
    from workbench.engine.ledger import OpenPosition

    sl, tp = (98.0, 104.0) if side == "long" else (102.0, 96.0)
    pos = OpenPosition(1, "BTC/USDT", side, 1.0, 100.0, 0.0, 0.0, False, sl_price=sl, tp_price=tp)
    assert _pair_reason(pos, {"info": info} if info is not None else {}, fill) == reason


def test_a_replay_leaves_the_cycle_collector_as_it_found_it():
    """The replay freezes the objects alive before it (gc.freeze) only while it runs; a caller's own freeze is kept."""
    import gc

    from workbench.engine import replay

    spec = {"strategy": "sma_cross", "symbols": ["BTC/USDT"], "timeframe": "1m", "params": {"fast": 5, "slow": 20}}
    res = replay(spec, bars=400)
    assert res.summary["trades"] > 0 and gc.get_freeze_count() == 0
    gc.freeze()
    try:
        replay(spec, bars=400)
        assert gc.get_freeze_count() > 0  # still the caller's
    finally:
        gc.unfreeze()
