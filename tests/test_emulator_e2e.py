"""End to end: Engine deployments on a 'bybit' demo account pointed at the local emulator, through ccxt's real bybit class.

Bars: the emulator's clock moves one bar (emulator.advance) and the engine is
handed the same closed bar, read back from the venue's OHLCV, so the engine
and the exchange see one market. Orders are counted on the emulator by
orderLinkId (= our client order id): none lost, none duplicated.
"""
from __future__ import annotations

import logging
from collections import Counter

import pytest

from workbench.engine import Engine
from workbench.engine.clock import ManualClock
from workbench.errors import VenueError
from workbench.orders import OrderDesk
from workbench.store import Store
from workbench.venues.ccxt_venue import RetryPolicy
from workbench.venues.live import account_venue, emulator_account

PERP = "BTC/USDT:USDT"
FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01)
RISK = {"size_mode": "fixed_quote", "size_quote": 200, "leverage": 10, "max_leverage": 10, "stop_loss": 0.004,
        "take_profit": 0.008, "daily_loss_limit": None, "drawdown_limit": None, "cooldown_seconds": None,
        "max_open_positions": None}


class Accounts:
    """The part of AccountStore the venue factory uses: get(name)."""

    def __init__(self, *accounts):
        self.by_name = {a.name: a for a in accounts}

    def get(self, name):
        return self.by_name[name]


def factory(store, emulator, sleeps=None):
    from workbench.venues.live import venue_factory

    sleeps = sleeps if sleeps is not None else []
    accounts = Accounts(emulator_account(emulator, timeout=1.0, rate_limit_ms=1))
    return venue_factory(store, accounts, retry=FAST, sleep=sleeps.append, markets_ttl=None)


def spec(**kw):
    base = {"strategy": "sma_cross", "symbols": [PERP], "timeframe": "1h", "params": {"fast": 5, "slow": 20},
            "venue": "ccxt", "account": "bybit-emulator", "direction": "both", "risk": RISK}
    return base | kw


def drive(engine, emulator, venue, bars, symbol=PERP):
    """Advance the exchange one bar at a time and hand each closed bar to the engine."""
    for _ in range(bars):
        emulator.advance(1)
        closed = venue.fetch_ohlcv(symbol, "1h", limit=2)[-2]
        engine.on_bar(symbol, *closed)


def emulator_counts(emulator):
    return Counter(o.link_id for o in emulator.orders() if o.link_id)


def assert_no_duplicates_or_losses(store, emulator, dep_ids):
    counts = emulator_counts(emulator)
    assert all(n == 1 for n in counts.values()), f"duplicated at the exchange: {[k for k, n in counts.items() if n > 1]}"
    ours = {o["client_order_id"]: o for d in dep_ids for o in store.orders(d)}
    for cid, row in ours.items():
        if row["status"] in ("filled", "open", "cancelled", "partially_filled"):
            assert counts.get(cid) == 1, f"{cid} ({row['status']}) is not on the exchange"
    for cid in counts:
        assert cid in ours, f"the exchange holds {cid} that the store does not know (a lost order)"


@pytest.fixture
def rig(emulator):
    store = Store(":memory:")
    sleeps: list[float] = []
    engine = Engine(store, clock=ManualClock(1_706_745_600.0), venue_factory=factory(store, emulator, sleeps))
    return store, engine, sleeps


def test_deployment_trades_with_protective_orders_and_detects_a_stop_fill(emulator, rig):
    store, engine, _ = rig
    rt = engine.deploy(spec())
    assert emulator.position(PERP)["leverage"] == "10"  # set at deploy
    drive(engine, emulator, rt.venue, 80)
    trades = store.trades(rt.id)
    assert len(trades) >= 2
    assert {"stop_loss", "take_profit"} & set(trades["exit_reason"]), trades["exit_reason"].tolist()
    orders = store.frame("orders", deployment_id=rt.id)
    protective = orders[orders.purpose.isin(["stop_loss", "take_profit"])]
    assert len(protective) >= 2 and set(protective.trigger_price.notna()) == {True}
    # each fired stop is a filled stop order on the exchange, with Bybit's trigger
    fired = store.frame("orders", deployment_id=rt.id)
    fired = fired[fired.purpose.isin(["stop_loss", "take_profit"]) & (fired.status == "filled")]
    for cid in fired.client_order_id:
        (o,) = emulator.orders(cid)
        assert o.status == "Filled" and o.trigger_price > 0
    # the engine's ledger agrees with the exchange's position
    pos = emulator.position(PERP)
    held = rt.ledger.positions.get(PERP)
    assert float(pos["size"]) == pytest.approx(held.amount if held else 0.0)
    assert_no_duplicates_or_losses(store, emulator, [rt.id])


def test_emergency_stop_closes_everything_on_the_exchange(emulator, rig):
    store, engine, _ = rig
    rt = engine.deploy(spec())
    for _ in range(120):
        drive(engine, emulator, rt.venue, 1)
        if rt.ledger.positions:
            break
    assert rt.ledger.positions, "no position opened to stop"
    report = engine.emergency_stop("test")
    assert report[rt.id]["left_open"] == []
    assert float(emulator.position(PERP)["size"]) == 0.0
    assert [o for o in emulator.orders() if o.is_open] == []
    assert store.deployment(rt.id)["status"] == "stopped"
    assert store.trades(rt.id)["exit_reason"].iloc[-1] == "emergency_stop"
    assert_no_duplicates_or_losses(store, emulator, [rt.id])


def test_restart_continues_without_duplicating_orders(emulator):
    store = Store(":memory:")
    clock = ManualClock(1_706_745_600.0)
    first = Engine(store, clock=clock, venue_factory=factory(store, emulator))
    rt = first.deploy(spec())
    for _ in range(150):
        drive(first, emulator, rt.venue, 1)
        if rt.ledger.positions:
            break
    assert rt.ledger.positions
    rt.flush()
    before = emulator_counts(emulator)
    # a new process on the same store: recover, then the same last bar again and more bars
    second = Engine(store, clock=clock, venue_factory=factory(store, emulator))
    assert second.recover() == [rt.id]
    rt2 = second.get(rt.id)
    assert set(rt2.ledger.positions) == {PERP}
    last = rt2.venue.fetch_ohlcv(PERP, "1h", limit=2)[-2]
    second.on_bar(PERP, *last)  # a replayed bar: nothing new
    assert emulator_counts(emulator) == before
    drive(second, emulator, rt2.venue, 40)
    assert_no_duplicates_or_losses(store, emulator, [rt.id])
    assert len(store.trades(rt.id)) >= 1


@pytest.mark.parametrize(
    ("kind", "params"),
    [("timeout", {"seconds": 3}), ("http_error", {"status": 503}), ("rate_limit", {}), ("drop_after_accept", {}),
     ("timeout_after_accept", {"seconds": 3})],
)
def test_transient_fault_on_an_order_is_retried_once_placed(emulator, rig, kind, params):
    store, engine, sleeps = rig
    rt = engine.deploy(spec())
    emulator.faults.add("create_order", kind, times=1, **params)
    for _ in range(150):
        drive(engine, emulator, rt.venue, 1)
        if emulator.faults.log:
            break
    assert emulator.faults.log == [("create_order", kind)]
    drive(engine, emulator, rt.venue, 5)
    if kind.endswith("after_accept"):
        assert sleeps == [], "an order the exchange accepted is found by its client id, not sent again"
    else:
        assert sleeps, "a transient fault is retried after a backoff"
    rows = store.orders(rt.id)
    hit = rows[0]  # the first order of the deployment met the fault
    assert hit["status"] in ("filled", "open") and emulator_counts(emulator)[hit["client_order_id"]] == 1
    assert store.deployment(rt.id)["status"] == "active"
    assert_no_duplicates_or_losses(store, emulator, [rt.id])


def test_permanent_fault_is_surfaced_and_another_deployment_keeps_trading(emulator, rig):
    store, engine, _ = rig
    a = engine.deploy(spec(name="a"))
    b = engine.deploy(spec(name="b", params={"fast": 6, "slow": 25}))
    emulator.faults.add("create_order", "insufficient_balance", times=1)
    drive(engine, emulator, a.venue, 120)
    failed = [r for r in store.orders() if r["status"] == "rejected"]
    assert len(failed) == 1 and "InsufficientFunds" in failed[0]["error"]
    audit = store.frame("audit")
    why = audit[audit.action == "order_failed"]
    assert len(why) == 1 and "InsufficientFunds" in str(why.params.iloc[0])
    assert emulator_counts(emulator)[failed[0]["client_order_id"]] == 0  # refused, never placed
    other = b.id if failed[0]["deployment_id"] == a.id else a.id
    assert len(store.trades(other)) >= 1 and store.deployment(other)["status"] == "active"
    assert_no_duplicates_or_losses(store, emulator, [a.id, b.id])


def test_manual_desk_on_the_emulator_and_secrets_never_logged(emulator, caplog):
    caplog.set_level(logging.DEBUG)
    account = emulator_account(emulator, timeout=1.0, rate_limit_ms=1)
    venue = account_venue(account, retry=FAST, sleep=lambda s: None)
    store = Store(":memory:")
    desk = OrderDesk(store, venue, limits={"max_position_quote": 20_000})
    emulator.faults.add("create_order", "drop_after_accept", times=1)
    row = desk.place(PERP, "buy", 0.05, confirm=True)
    assert row["status"] == "filled" and emulator_counts(emulator)[row["client_order_id"]] == 1
    closed = desk.close_position(PERP)
    assert closed["status"] == "filled" and float(emulator.position(PERP)["size"]) == 0.0
    wrong = emulator_account(emulator, name="wrong-key", secret="not-the-emulator-secret-0123456789", timeout=1.0, rate_limit_ms=1)
    bad = account_venue(wrong, retry=FAST, sleep=lambda s: None)
    with pytest.raises(VenueError) as refused:
        bad.fetch_balance()
    text = " ".join([caplog.text, repr(account), str(account), repr(venue), repr(desk), repr(wrong), str(refused.value),
                     repr(refused.value), str(store.frame("audit").to_dict()), str(store.frame("orders").to_dict())])
    assert "AuthenticationError" in str(refused.value)
    for secret in (emulator.api_key.secret, "not-the-emulator-secret-0123456789"):
        assert secret not in text
