"""Live venues from accounts: sandbox by default, live safety, the factory, connection state, CcxtVenue fixes."""
from __future__ import annotations

import ccxt
import pytest

from workbench.accounts import Account
from workbench.engine import Engine
from workbench.engine.clock import ManualClock
from workbench.errors import ConfigError, LiveTradingRefused, VenueError
from workbench.store import Store
from workbench.venues.base import OrderRequest
from workbench.venues.ccxt_venue import CcxtVenue, RetryPolicy, _rate_limit_wait
from workbench.venues.connection import Backoff, ConnectionState, Reconnector
from workbench.venues.live import (
    PaperSubaccountVenue,
    account_venue,
    ccxt_exchange,
    check_live,
    emulator_account,
    venue_factory,
)

KEY, SECRET = "AKIA1234567890abcdefKEY", "plaintext-secret-never-shown-0123456789"
PERP = "BTC/USDT:USDT"
FAST = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01)


def account(exchange="bybit", mode="demo", name=None, **kw):
    return Account(name=name or f"{exchange}-{mode}", exchange=exchange, mode=mode, api_key=KEY, secret=SECRET, **kw)


class Accounts:
    def __init__(self, *accounts):
        self.by_name = {a.name: a for a in accounts}

    def get(self, name):
        if name not in self.by_name:
            raise ConfigError(f"no account {name}")
        return self.by_name[name]


# -- sandbox by default -------------------------------------------------------------------
@pytest.mark.parametrize("exchange", ["bybit", "binance", "binanceusdm"])
def test_demo_accounts_build_ccxt_in_sandbox_mode(exchange):
    ex = ccxt_exchange(account(exchange))
    assert ex.isSandboxModeEnabled
    urls = str(ex.urls["api"])
    assert "test" in urls and urls != str(getattr(ccxt, exchange)().urls["api"])
    live = ccxt_exchange(account(exchange, "live"))
    assert not live.isSandboxModeEnabled and "testnet" not in str(live.urls["api"])


def test_bitfinex_demo_is_its_paper_subaccount_and_trades_test_symbols_only():
    venue = account_venue(account("bitfinex"))
    assert isinstance(venue, PaperSubaccountVenue) and not venue.live
    with pytest.raises(LiveTradingRefused, match="TEST"):
        venue.create_order(OrderRequest("BTC/USD", "buy", "market", 0.01, "c1"))
    assert type(account_venue(account("bitfinex", "live"), live_confirmed=True)) is CcxtVenue


def test_exchange_without_a_sandbox_refuses_a_demo_account():
    with pytest.raises(ConfigError, match="no sandbox"):
        ccxt_exchange(account("kraken"))


def test_credentials_reach_ccxt_but_no_repr():
    venue = account_venue(account("bybit"))
    assert venue.exchange.secret == SECRET  # ccxt signs with it
    for text in (repr(venue), str(venue.connection), repr(account("bybit")), str(venue.connection.as_dict())):
        assert SECRET not in text and KEY not in text


# -- live safety -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("acct_mode", "mode", "confirmed", "allowed"),
    [("demo", "paper", False, True), ("demo", "paper", True, True), ("demo", "live", True, False),
     ("live", "paper", True, False), ("live", "live", False, False), ("live", "live", True, True)],
)
def test_live_needs_live_account_live_mode_and_confirmation(acct_mode, mode, confirmed, allowed):
    acct = account(mode=acct_mode)
    if allowed:
        check_live(acct, mode, confirmed)
    else:
        with pytest.raises(LiveTradingRefused):
            check_live(acct, mode, confirmed)


def test_unconfirmed_live_venue_refuses_orders_before_sending():
    venue = account_venue(account("bybit", "live"), live_confirmed=False)
    assert venue.live and not venue.live_confirmed
    with pytest.raises(LiveTradingRefused, match="confirmed"):
        venue.create_order(OrderRequest(PERP, "buy", "market", 0.01, "c1"))
    assert account_venue(account("bybit", "demo"), live_confirmed=True).live_confirmed is False  # a demo is never live


def deploy_spec(**kw):
    return {"strategy": "sma_cross", "symbols": [PERP], "timeframe": "1h", "params": {"fast": 5, "slow": 20},
            "venue": "ccxt", "account": "bybit-live", "risk": {"daily_loss_limit": None}} | kw


def test_factory_refusal_is_recorded_and_creates_no_deployment():
    store = Store(":memory:")
    engine = Engine(store, clock=ManualClock(0), venue_factory=venue_factory(store, Accounts(account("bybit", "live"))))
    with pytest.raises(LiveTradingRefused):
        engine.deploy(deploy_spec(mode="live", live_confirmed=False))
    with pytest.raises(LiveTradingRefused):
        engine.deploy(deploy_spec())  # live account, paper mode
    assert store.deployments() == []
    audit = store.frame("audit")
    assert list(audit.action) == ["live_refused", "live_refused"]
    events = store.frame("risk_events")
    assert list(events.kind) == ["live_refused", "live_refused"] and "live_confirmed=True" in events.reason.iloc[0]


def test_factory_routes_and_checks_accounts(emulator):
    store = Store(":memory:")
    accts = Accounts(emulator_account(emulator, rate_limit_ms=1), account("ib", name="ib-paper"), account("paper", name="pp"))
    make = venue_factory(store, accts, retry=FAST, sleep=lambda s: None, markets_ttl=None)
    from workbench.engine.spec import DeploymentSpec

    v1 = make("d1", DeploymentSpec.from_dict(deploy_spec(account="bybit-emulator")))
    v2 = make("d2", DeploymentSpec.from_dict(deploy_spec(account="bybit-emulator")))
    assert v1.id == "bybit:bybit-emulator" and v1.exchange is v2.exchange  # one ccxt instance (rate limit) per account
    assert v1.exchange.isSandboxModeEnabled and v1.load_markets()
    paper = make("d3", DeploymentSpec.from_dict(deploy_spec(venue="paper", account=None)))
    assert paper.id == "paper:d3"
    with pytest.raises(ConfigError, match="needs an account"):
        make("d4", DeploymentSpec.from_dict(deploy_spec(account=None)))
    with pytest.raises(ConfigError, match="venue='ib'"):
        make("d5", DeploymentSpec.from_dict(deploy_spec(account="ib-paper")))
    with pytest.raises(ConfigError, match="Interactive Brokers"):
        make("d6", DeploymentSpec.from_dict(deploy_spec(venue="ib", account="bybit-emulator")))


def test_emulator_account_must_be_loopback():
    with pytest.raises(ConfigError, match="loopback"):
        emulator_account("https://api.bybit.com")


# -- leverage -----------------------------------------------------------------------------------
def test_leverage_set_at_deploy_and_not_modified_is_fine(emulator):
    store = Store(":memory:")
    make = venue_factory(store, Accounts(emulator_account(emulator, rate_limit_ms=1)), retry=FAST, sleep=lambda s: None)
    engine = Engine(store, clock=ManualClock(0), venue_factory=make)
    rt = engine.deploy(deploy_spec(account="bybit-emulator", risk={"leverage": 5, "max_leverage": 5}))
    assert emulator.position(PERP)["leverage"] == "5"
    rt.venue.set_leverage(5, PERP)  # Bybit answers 110043 "leverage not modified": already so, not an error
    rt.venue.exchange.create_order(PERP, "market", "buy", 0.1)
    (pos,) = [p for p in rt.venue.fetch_positions([PERP]) if p["contracts"]]
    assert pos["leverage"] == 5 and pos["side"] == "long"
    assert 0 < pos["liquidationPrice"] < pos["entryPrice"]


# -- CcxtVenue fixes ----------------------------------------------------------------------------
def test_bybit_fetch_order_by_id_and_by_client_id_for_every_state(emulator, bybit):
    venue = CcxtVenue(bybit, retry=FAST, sleep=lambda s: None)
    px = emulator.price(PERP)
    filled = venue.create_order(OrderRequest(PERP, "buy", "market", 0.01, "f-1"))
    resting = venue.create_order(OrderRequest(PERP, "sell", "limit", 0.01, "r-1", price=round(px * 1.2, 1)))
    stop = venue.create_order(OrderRequest(PERP, "sell", "stop", 0.01, "s-1", stop_loss_price=round(px * 0.8, 1), reduce_only=True))
    cancelled = venue.create_order(OrderRequest(PERP, "sell", "limit", 0.01, "c-1", price=round(px * 1.3, 1)))
    venue.cancel_order(cancelled["id"], PERP)
    for order, status in ((filled, "closed"), (resting, "open"), (stop, "open"), (cancelled, "canceled")):
        by_id = venue.fetch_order(PERP, order_id=order["id"])
        by_cid = venue.fetch_order(PERP, client_order_id=order["clientOrderId"])
        assert by_id["status"] == by_cid["status"] == status and by_id["id"] == by_cid["id"] == order["id"]
    assert venue.fetch_order(PERP, client_order_id="never-sent") is None
    assert venue.fetch_order(PERP, order_id="999999", client_order_id="f-1")["id"] == filled["id"]


def test_timeouts_retry_and_never_place_a_second_order(emulator, bybit):
    sleeps = []
    venue = CcxtVenue(bybit, retry=RetryPolicy(attempts=4, base_delay=0.001), sleep=sleeps.append)
    bybit.timeout = 800
    emulator.faults.add("create_order", "timeout", times=2, seconds=2)
    order = venue.create_order(OrderRequest(PERP, "buy", "market", 0.01, "t-1"))
    assert order["clientOrderId"] == "t-1" and len(emulator.orders("t-1")) == 1 and len(sleeps) == 2
    emulator.faults.add("create_order", "timeout_after_accept", times=1, seconds=2)
    venue.create_order(OrderRequest(PERP, "buy", "market", 0.01, "t-2"))
    assert len(emulator.orders("t-2")) == 1
    emulator.faults.add("create_order", "timeout", times=None, seconds=2)
    venue.retry = RetryPolicy(attempts=2, base_delay=0.001)
    with pytest.raises(VenueError, match="RequestTimeout"):
        venue.create_order(OrderRequest(PERP, "buy", "market", 0.01, "t-3"))
    assert emulator.orders("t-3") == []  # given up after the attempts: surfaced, nothing placed


def test_rate_limit_waits_until_the_exchange_resets():
    assert _rate_limit_wait({"X-Bapi-Limit-Reset-Timestamp": "101500"}, 100.0) == pytest.approx(1.5)
    assert _rate_limit_wait({"Retry-After": "3"}, 0.0) == 3.0
    assert _rate_limit_wait(None, 0.0) == 0.0 and _rate_limit_wait({"Retry-After": "soon"}, 0.0) == 0.0


def test_rate_limited_call_backs_off_at_least_to_the_reset(emulator, bybit):
    sleeps = []
    venue = CcxtVenue(bybit, retry=RetryPolicy(attempts=3, base_delay=0.001, max_delay=30), sleep=sleeps.append)
    emulator.faults.add("tickers", "rate_limit", times=1)
    assert venue.fetch_ticker(PERP)["last"] > 0
    assert len(sleeps) == 1 and sleeps[0] > 0.01  # the reset time, not the 1 ms base delay


class FlakyExchange:
    """A ccxt-like exchange whose load_markets fails on demand (counts calls)."""

    id = "flaky"
    has = {}
    timeout = 10_000

    def __init__(self):
        self.fail = None
        self.calls = 0

    def load_markets(self, reload=False):
        self.calls += 1
        if self.fail:
            raise self.fail
        return {"BTC/USDT": {"symbol": "BTC/USDT", "precision": {"amount": 0.001, "price": 0.1}, "limits": {}, "quote": "USDT"}}


def test_markets_refresh_on_interval_and_keep_old_ones_on_failure():
    now = [0.0]
    ex = FlakyExchange()
    venue = CcxtVenue(ex, markets_ttl=60, clock=lambda: now[0], retry=RetryPolicy(attempts=1), sleep=lambda s: None)
    venue.market("BTC/USDT")
    venue.market("BTC/USDT")
    assert ex.calls == 1
    now[0] = 61
    venue.market("BTC/USDT")
    assert ex.calls == 2
    now[0] = 200
    ex.fail = ccxt.NetworkError("down")
    assert "BTC/USDT" in venue.load_markets()  # a failed refresh keeps trading on the known markets
    with pytest.raises(VenueError):
        venue.load_markets(reload=True)


def test_connect_disconnect_timeout_and_reconnect_with_backoff():
    now = [1000.0]
    ex = FlakyExchange()
    venue = CcxtVenue(ex, clock=lambda: now[0], retry=RetryPolicy(attempts=1), sleep=lambda s: None)
    assert venue.connection.status == "disconnected"
    assert venue.connect().status == "connected" and venue.connection.last_ok == 1000.0
    assert venue.connection.latency_ms is not None
    venue.timeout = 2.5
    assert ex.timeout == 2500 and venue.timeout == 2.5
    with pytest.raises(VenueError):
        venue.timeout = 0
    venue.disconnect()
    with pytest.raises(VenueError, match="connect"):
        venue.load_markets(reload=True)
    ex.fail = ccxt.RequestTimeout("no answer")
    assert venue.connect().status == "error"
    rec = Reconnector([venue], Backoff(base=10, cap=100, jitter=0), clock=lambda: now[0])
    assert rec.poll() == []  # schedules the first retry
    first_retry = venue.connection.retry_at
    assert first_retry == pytest.approx(1010)
    now[0] = first_retry
    assert rec.poll() == [venue.id] and venue.connection.status == "error"
    assert venue.connection.retry_at - now[0] > 10  # backs off further after another failure
    ex.fail = None
    now[0] = venue.connection.retry_at
    assert rec.poll() == [venue.id] and venue.connection.status == "connected"
    venue.disconnect()
    assert rec.poll() == [] and venue.connection.status == "disconnected"  # a chosen disconnect is left alone


def test_connection_state_shape():
    state = ConnectionState()
    assert state.as_dict() == {"status": "disconnected", "last_ok": None, "latency_ms": None, "error": None, "failures": 0, "retry_at": None}


def test_invalid_nonce_resyncs_the_clock_and_retries():
    class Skewed(FlakyExchange):
        synced = 0

        def load_time_difference(self):
            self.synced += 1
            self.fail = None  # the clock is right again

    ex = Skewed()
    ex.fail = ccxt.InvalidNonce("bybit {\"retCode\":10002,\"retMsg\":\"invalid request, please check your server timestamp\"}")
    sleeps = []
    venue = CcxtVenue(ex, retry=RetryPolicy(attempts=3, base_delay=0.001), sleep=sleeps.append)
    assert "BTC/USDT" in venue.load_markets()
    assert ex.synced == 1 and ex.calls == 2 and len(sleeps) == 1


def test_permanent_errors_surface_at_once_with_their_kind():
    ex = FlakyExchange()
    ex.fail = ccxt.AuthenticationError("bybit {\"retCode\":10003,\"retMsg\":\"API key is invalid.\"}")
    venue = CcxtVenue(ex, retry=RetryPolicy(attempts=5), sleep=lambda s: pytest.fail("a permanent error is not retried"))
    with pytest.raises(VenueError) as err:
        venue.load_markets()
    assert err.value.kind == "AuthenticationError" and ex.calls == 1 and "API key is invalid" in str(err.value)


def test_reduce_only_orders_under_the_minimum_value_still_go_out_and_client_id_lookups_stay_direct():
    """An exit or stop worth less than the venue's minimum order value is sent (a position must stay closable);
    an opening order under it is refused before sending. A client id the paper venue does not know is answered
    by one lookup, never by listing every closed order (that made long replays quadratic)."""
    from workbench.venues.paper import PaperExchange

    ex = PaperExchange({"balance": {"USDT": 100}})
    venue = CcxtVenue(ex, venue_id="paper:t", sleep=lambda s: None)
    ex.feed_bar("BTC/USDT", 1_704_067_200_000, 50_100.0, 50_100.0, 50_100.0, 50_100.0, 1.0)
    assert venue.market("BTC/USDT").min_notional == 5.0
    entry = venue.create_order(OrderRequest("BTC/USDT", "buy", "market", 0.0001, "e1"))
    assert entry["status"] == "closed" and entry["filled"] == 0.0001  # worth 5.01
    stop = venue.create_order(OrderRequest("BTC/USDT", "sell", "stop", 0.0001, "sl1", stop_loss_price=49_098.0, reduce_only=True))
    assert stop["status"] == "open" and stop["stopLossPrice"] == 49_098.0  # worth 4.91: under the minimum, placed
    with pytest.raises(ConfigError, match="below the minimum 5.0"):
        venue.create_order(OrderRequest("BTC/USDT", "buy", "stop", 0.0001, "b2", trigger_price=49_000.0))
    listed = []
    for name in ("fetch_orders", "fetch_open_orders", "fetch_closed_orders"):
        real = getattr(ex, name)
        setattr(ex, name, lambda *a, real=real, name=name, **k: listed.append(name) or real(*a, **k))
    assert venue.fetch_order("BTC/USDT", client_order_id="sl1")["id"] == stop["id"]
    assert venue.fetch_order("BTC/USDT", client_order_id="never-sent") is None
    assert venue.fetch_order("BTC/USDT", order_id="999", client_order_id="never-sent") is None
    assert listed == []


def test_a_lookup_asked_once_fails_at_once_and_the_default_one_retries(emulator, bybit):
    """fetch_order(retry=False) is one request: the engine's settle step asks again later itself, so a venue that
    answers no lookup does not hold its loop for the retries' backoff (the default lookup still retries)."""
    sleeps = []
    venue = CcxtVenue(bybit, retry=RetryPolicy(attempts=4, base_delay=0.001), sleep=sleeps.append)
    order = venue.create_order(OrderRequest(PERP, "buy", "market", 0.01, "once-1"))
    emulator.faults.down(seconds=600)
    with pytest.raises(VenueError):
        venue.fetch_order(PERP, order_id=order["id"], client_order_id="once-1", retry=False)
    assert sleeps == []
    with pytest.raises(VenueError):
        venue.fetch_order(PERP, order_id=order["id"], client_order_id="once-1")
    assert len(sleeps) >= 3  # each request of the default lookup backed off between its attempts
    emulator.faults.up()
    assert venue.fetch_order(PERP, order_id=order["id"], client_order_id="once-1", retry=False)["id"] == order["id"]
