"""Venue faults with the engine running (Engine.run with MixedFeed) against the Bybit emulator's fault injection.

Two deployments share one engine: A trades BTC/USDT:USDT on the emulator through ccxt.bybit (CcxtVenue),
B trades ETH/USDT on the paper venue from the sample. One fake time drives everything: the engine's
clock, the venue's retry sleeps and clock, the emulator's market clock and its fault clock. Sleeping in
a retry moves the market on, and a venue "down for a minute" ends after 60 fake seconds, not real ones.
"""
from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from workbench.engine import Engine
from workbench.engine.feeds import MixedFeed
from workbench.store import Store
from workbench.venues.ccxt_venue import CcxtVenue, RetryPolicy
from workbench.venues.live import emulator_account, venue_factory

PERP = "BTC/USDT:USDT"
START = 1_706_745_600.0  # 2024-02-01, the fixture emulator's start
RISK = {"size_mode": "fixed_quote", "size_quote": 200, "leverage": 10, "max_leverage": 10, "stop_loss": 0.004,
        "take_profit": 0.008, "daily_loss_limit": None, "drawdown_limit": None, "cooldown_seconds": None,
        "max_open_positions": None}
A = {"strategy": "sma_cross", "symbols": [PERP], "timeframe": "1m", "params": {"fast": 5, "slow": 20}, "venue": "ccxt",
     "account": "bybit-emulator", "direction": "both", "risk": RISK, "name": "A on the emulator"}
B = {"strategy": "sma_cross", "symbols": ["ETH/USDT"], "timeframe": "1m", "params": {"fast": 5, "slow": 20}, "venue": "paper",
     "risk": {"daily_loss_limit": None, "drawdown_limit": None, "stop_loss": 0.003, "take_profit": 0.006},
     "name": "B on paper"}
#: production-like backoff (0.5 s doubling to 20 s), and an order rides out up to 90 s of outage
RETRY = RetryPolicy(attempts=5, base_delay=0.5, max_delay=20.0, patience=90.0)


class FakeTime:
    """The one clock of the test: engine time, venue sleeps, emulator market and fault clocks."""

    def __init__(self, t: float) -> None:
        self.t = t
        self.emu = None
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.set(self.t + seconds)

    def set(self, t: float) -> None:
        self.t = t
        if self.emu is not None and int(t * 1000) > self.emu.now_ms():
            self.emu.set_time(int(t * 1000))


class Accounts:
    def __init__(self, account):
        self.account = account

    def get(self, name):
        return self.account


@pytest.fixture
def world(emulator_factory):
    ft = FakeTime(START)
    emu = emulator_factory(symbols=["BTC/USDT"], timeframe="1m", fault_clock=ft.now).start()
    ft.emu = emu
    store = Store(":memory:")
    make = venue_factory(store, Accounts(emulator_account(emu, timeout=1.0, rate_limit_ms=1)), retry=RETRY,
                         sleep=ft.sleep, markets_ttl=None)

    def factory(dep_id, spec):
        venue = make(dep_id, spec)
        if isinstance(venue, CcxtVenue):
            venue.clock = ft.now  # the venue's patience is measured on the fake clock its sleeps move
        return venue

    engine = Engine(store, clock=ft, venue_factory=factory)
    a, b = engine.deploy(A), engine.deploy(B)
    engine.warm_up(a.id)
    engine.warm_up(b.id)
    return ft, emu, store, engine, a, b


def run(engine, ft, minutes: float, tick: float = 30.0, on_tick=None, feed=None):
    """Engine.run with a MixedFeed while the fake time moves `tick` seconds per loop, for `minutes`."""
    feed = feed or MixedFeed()
    end = ft.now() + minutes * 60

    def until() -> bool:
        if on_tick is not None:
            on_tick()
        ft.set(ft.now() + tick)
        return ft.now() > end

    asyncio.run(engine.run(feed, poll_seconds=0, until=until))
    return feed


def assert_no_duplicates_or_losses(store, emu, dep_id):
    counts = Counter(o.link_id for o in emu.orders() if o.link_id)
    assert all(n == 1 for n in counts.values()), f"duplicated: {[k for k, n in counts.items() if n > 1]}"
    ours = {o["client_order_id"]: o for o in store.orders(dep_id)}
    assert set(counts) <= set(ours), f"lost (on the exchange, not in the store): {set(counts) - set(ours)}"
    for cid, row in ours.items():
        if row["status"] in ("filled", "open", "cancelled", "partially_filled"):
            assert counts.get(cid) == 1, f"{cid} ({row['status']}) is not on the exchange"
    assert not any(r["status"] == "pending" for r in ours.values())
    held = store.positions(dep_id, status="open")
    pos = emu.position(PERP)
    signed = float(pos["size"]) * (-1 if pos["side"] == "Sell" else 1)
    assert sum(p["amount"] * (1 if p["side"] == "long" else -1) for p in held) == pytest.approx(signed)


def processed_minutes(store, dep_id) -> list[float]:
    return sorted(store.equity(dep_id)["at"].tolist())


def test_venue_down_for_a_minute_pauses_its_deployment_others_keep_trading_nothing_duplicated(world):
    ft, emu, store, engine, a, b = world
    outage = {}

    def on_tick():
        if not outage and ft.now() >= START + 40 * 60 + 10:
            emu.faults.down(seconds=60)
            outage.update(start=ft.now(), b_cursor=dict(b.cursor), a_cursor=dict(a.cursor))
        if outage and a.status == "paused":  # the last look at B while A waits for its venue
            outage["b_during"] = dict(b.cursor)

    feed = run(engine, ft, minutes=120, on_tick=on_tick)
    assert outage and "b_during" in outage
    # while the venue was down: A paused with the reason, B went on trading bars
    assert outage["b_during"]["ETH/USDT"] > outage["b_cursor"]["ETH/USDT"]
    changes = store.frame("status_changes", deployment_id=a.id)
    reasons = changes["reason"].tolist()
    assert any("unreachable" in r and "ExchangeNotAvailable" in r for r in reasons), reasons
    back = [r for r in reasons if "answers again" in r]
    assert len(back) == 1 and 60 <= float(back[0].split("after ")[1].split(" s")[0]) <= 120, back
    audit = store.frame("audit")
    mine = audit[audit.target == a.id]
    assert {"status:paused", "status:active"} <= set(mine.action) and set(mine[mine.action.str.startswith("status:")].actor) == {"venue"}
    assert feed.down == {} and a.status == "active" and store.deployment(a.id)["status"] == "active"
    assert b.status == "active" and not (audit[audit.target == b.id].action.str.startswith("status:")).any()
    # the transient failures were retried with exponential backoff before the feed gave up for the tick
    assert ft.sleeps and max(ft.sleeps) > 2 * min(ft.sleeps)
    # no bar of A was skipped: one equity row per minute from start to end, the missed ones processed late
    at = processed_minutes(store, a.id)
    assert len(at) >= 115 and all(y - x == 60 for x, y in zip(at, at[1:], strict=False)), "a bar was skipped"
    assert len(store.trades(a.id)) >= 1 and len(store.trades(b.id)) >= 1
    assert_no_duplicates_or_losses(store, emu, a.id)


def test_venue_goes_down_as_an_order_is_sent_the_order_lands_once_when_it_answers(world):
    ft, emu, store, engine, a, b = world
    hit = {}

    def down_on_first_signal(payload):
        if payload["deployment_id"] == a.id and not hit:
            hit.update(at=ft.now(), sleeps=len(ft.sleeps), orders=len(store.orders(a.id)))
            emu.faults.down(seconds=60)

    engine.on("signal", down_on_first_signal)
    run(engine, ft, minutes=90)
    assert hit, "A never signalled"
    first = store.orders(a.id)[hit["orders"]]
    assert first["status"] == "filled", first
    (placed,) = emu.orders(first["client_order_id"])
    assert placed.created >= (hit["at"] + 60) * 1000, "placed only once the venue answered again"
    waited = ft.sleeps[hit["sleeps"]:]
    assert sum(waited) >= 60 and waited == sorted(waited[:3]) + waited[3:]  # backoff grows
    assert any(kind == "down" for _, kind in emu.faults.log)
    assert a.status == "active" and len(store.trades(b.id)) >= 1
    assert_no_duplicates_or_losses(store, emu, a.id)


@pytest.mark.parametrize(
    ("op", "kind", "params", "transient"),
    [("create_order", "timeout", {"seconds": 1.5}, True), ("create_order", "http_error", {"status": 502}, True),
     ("create_order", "insufficient_balance", {}, False),
     *(pytest.param(*case, marks=pytest.mark.slow) for case in [
         ("create_order", "rate_limit", {}, True), ("create_order", "drop_after_accept", {}, True),
         ("create_order", "timeout_after_accept", {"seconds": 1.5}, True), ("kline", "http_error", {"status": 503}, True),
         ("kline", "drop", {}, True)])],
)
def test_fault_on_a_running_engine_is_retried_or_surfaced_and_nothing_duplicates(world, op, kind, params, transient):
    ft, emu, store, engine, a, b = world
    armed = {}

    def arm(payload):
        if payload["deployment_id"] == a.id and not armed:
            armed["orders"] = len(store.orders(a.id))
            armed["sleeps"] = len(ft.sleeps)
            emu.faults.add(op, kind, times=1, **params)

    engine.on("signal", arm)
    run(engine, ft, minutes=70)
    assert armed and (op, kind) in emu.faults.log
    first = store.orders(a.id)[armed["orders"]]
    if transient:
        assert first["status"] == "filled", first
        if not kind.endswith("after_accept") and op == "create_order":
            assert len(ft.sleeps) > armed["sleeps"], "retried after a backoff"
    else:
        assert first["status"] == "rejected" and "InsufficientFunds" in first["error"]
        audit = store.frame("audit")
        assert "InsufficientFunds" in str(audit[audit.action == "order_failed"].params.tolist())
    assert a.status == "active" and b.status == "active" and len(store.trades(b.id)) >= 1
    assert_no_duplicates_or_losses(store, emu, a.id)


def test_an_order_the_venue_took_without_answering_is_settled_when_it_answers_never_guessed_rejected(world):
    """The venue places the entry but the reply is lost, and it answers no lookup until every retry has run out.

    The order stays pending (not rejected on a guess); once the venue answers, the entry is booked as
    the position the venue holds, on the bar it was decided on, and protected; nothing is sent twice.
    """
    ft, emu, store, engine, a, b = world
    hit = {}

    def lose_the_reply(payload):
        if payload["deployment_id"] == a.id and not hit:
            hit.update(at=ft.now(), orders=len(store.orders(a.id)))
            emu.faults.add("create_order", "drop_after_accept", times=1)
            for op in ("open_orders", "order_history"):
                emu.faults.down(seconds=1800, op=op)  # long enough for the strategy to signal again meanwhile

    def watch(payload):
        if payload["deployment_id"] == a.id and "error" in payload:
            hit.setdefault("answer", (payload["status"], store.order(payload["client_order_id"])))

    engine.on("signal", lose_the_reply)
    engine.on("order", watch)
    run(engine, ft, minutes=90)
    assert hit and ("create_order", "drop_after_accept") in emu.faults.log
    row = store.orders(a.id)[hit["orders"]]
    (placed,) = emu.orders(row["client_order_id"])
    assert placed.created < (hit["at"] + 60) * 1000, "placed by the first request, whose reply was lost"
    states = [s for _, s in row["status_history"]]
    assert row["status"] == "filled" and "rejected" not in states, row
    status, then = hit["answer"]  # what the engine said when the retries ran out
    assert status == "unknown" and then["status"] == "pending" and "no answer from the venue" in then["error"], then
    booked = next(p for p in store.positions(a.id, status=None) if p["id"] == row["position_id"])
    assert booked["entry_at"] <= hit["at"], "booked on the bar it was decided on, not when it was settled"
    stops = [o for o in store.orders(a.id) if o["position_id"] == booked["id"] and o["purpose"] in ("stop_loss", "take_profit")]
    assert {o["purpose"] for o in stops} == {"stop_loss", "take_profit"}
    audit = store.frame("audit")
    assert (audit[audit.target == a.id].action == "order_unanswered").sum() == 1
    # meanwhile the strategy signalled again: refused while the entry had no answer, so nothing doubled it
    events = store.frame("risk_events", deployment_id=a.id)
    waiting = events[events.reason.str.contains("has no answer from the venue yet")]
    assert len(waiting) >= 1 and (waiting["at"] < booked["entry_at"] + 1800 + 120).all()
    sent_meanwhile = [o for o in store.orders(a.id) if o["purpose"] in ("entry", "exit") and hit["at"] < o["created_at"] < waiting["at"].max()]
    assert sent_meanwhile == [], sent_meanwhile
    assert_no_duplicates_or_losses(store, emu, a.id)


def test_a_stop_the_venue_took_without_answering_stays_the_positions_and_is_never_placed_twice(world):
    """The stop loss's reply is lost and lookups fail: the position keeps it as unsettled (no 'unprotected'
    event, no second stop); when the venue answers, the stop is known by its venue id and settled like any other."""
    ft, emu, store, engine, a, b = world
    hit = {}

    def lose_the_stop(payload):
        order = payload.get("order") or {}
        if payload["deployment_id"] == a.id and not hit and order.get("status") == "closed":  # the entry filled
            hit.update(at=ft.now(), entry=payload["client_order_id"])
            emu.faults.add("create_order", "drop_after_accept", times=1)  # the next order: its stop loss
            for op in ("open_orders", "order_history"):
                emu.faults.down(seconds=400, op=op)

    engine.on("order", lose_the_stop)
    run(engine, ft, minutes=90)
    assert hit and ("create_order", "drop_after_accept") in emu.faults.log
    entry = store.order(hit["entry"])
    stops = [o for o in store.orders(a.id) if o["position_id"] == entry["position_id"] and o["purpose"] == "stop_loss"]
    assert len(stops) == 1, "the stop was placed once, not again when its answer was lost"
    (stop,) = stops
    assert stop["status"] != "pending" and "rejected" not in [s for _, s in stop["status_history"]], stop
    assert stop["venue_order_id"], "known by its venue id once the venue answered"
    events = store.frame("risk_events", deployment_id=a.id)
    assert not (events["kind"] == "unprotected").any()
    assert_no_duplicates_or_losses(store, emu, a.id)
