"""The Interactive Brokers venue, without a gateway: ib_async's IB faked at its method boundary.

The fake returns ib_async's own objects (Trade, OrderStatus, Fill, Execution,
CommissionReport, Position, PortfolioItem, AccountValue, ContractDetails,
Ticker, BarData) and fires its events (errorEvent, disconnectedEvent), the way
IB.placeOrder does: the order comes back working and fills while ib.sleep()
processes the gateway's messages.
"""
from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from eventkit import Event
from ib_async import (
    AccountValue,
    BarData,
    CommissionReport,
    ContractDetails,
    Execution,
    Fill,
    OrderStatus,
    PortfolioItem,
    Position,
    Ticker,
    Trade,
)

from workbench.accounts import Account
from workbench.engine import Engine
from workbench.engine.clock import ManualClock
from workbench.errors import ConfigError, LiveTradingRefused, VenueError
from workbench.orders import OrderDesk, account_summary
from workbench.store import Store
from workbench.venues.base import OrderRequest
from workbench.venues.ib import LIVE_PORT, PAPER_PORT, IBVenue
from workbench.venues.live import venue_factory

SYM = "AAPL/USD"


class FakeIB:
    """ib_async.IB's methods as the venue calls them, over an in-memory market with one price per contract."""

    def __init__(self, price: float = 100.0, refuse: bool = False) -> None:
        self.errorEvent = Event("errorEvent")
        self.disconnectedEvent = Event("disconnectedEvent")
        self.connected = False
        self.refuse = refuse
        self.price = price
        self.now = datetime(2024, 2, 1, tzinfo=UTC)
        self._ids = itertools.count(1)
        self._trades: list[Trade] = []
        self._fills: list[Fill] = []
        self.placed = 0
        self.connect_args = None

    # connection
    def connect(self, host="127.0.0.1", port=7497, clientId=1, timeout=4, readonly=False, account=""):
        self.connect_args = (host, port, clientId, account)
        if self.refuse:
            raise ConnectionRefusedError(111, "Connect call failed")
        self.connected = True

    def isConnected(self):
        return self.connected

    def disconnect(self):
        self.connected = False
        self.disconnectedEvent.emit()

    def sleep(self, seconds=0.0):
        self.now += timedelta(seconds=1)
        for trade in self._trades:
            self._match(trade)

    # contracts and data
    def qualifyContracts(self, *contracts):
        for c in contracts:
            c.conId = 1000 + abs(hash(c.symbol)) % 1000
        return list(contracts)

    def reqContractDetails(self, contract):
        return [ContractDetails(contract=contract, minTick=0.01, minSize=1.0, sizeIncrement=1.0)]

    def reqTickers(self, *contracts):
        out = []
        for c in contracts:
            t = Ticker(contract=c, time=self.now)  # IB fills prices in after creation; unset ones are -1
            t.last, t.bid, t.ask = self.price, self.price - 0.01, -1
            out.append(t)
        return out

    def reqHistoricalData(self, contract, endDateTime, durationStr, barSizeSetting, whatToShow, useRTH, formatDate=1, **kw):
        start = self.now - timedelta(hours=5)
        return [BarData(date=start + timedelta(hours=i), open=100.0 + i, high=101.0 + i, low=99.0 + i, close=100.5 + i, volume=10)
                for i in range(5)]

    # orders
    def placeOrder(self, contract, order):
        self.placed += 1
        order.orderId = next(self._ids)
        trade = Trade(contract=contract, order=order, orderStatus=OrderStatus(orderId=order.orderId, status="PreSubmitted",
                                                                            remaining=order.totalQuantity), fills=[], log=[])
        self._trades.append(trade)
        return trade  # working; it fills while sleep() processes messages

    def cancelOrder(self, order, manualCancelOrderTime=""):
        for trade in self._trades:
            if trade.order.orderId == order.orderId and trade.orderStatus.status not in OrderStatus.DoneStates:
                trade.orderStatus.status = "Cancelled"
                return trade
        return None

    def trades(self):
        return list(self._trades)

    def openTrades(self):
        return [t for t in self._trades if t.orderStatus.status not in OrderStatus.DoneStates]

    def fills(self):
        return list(self._fills)

    def move(self, price: float) -> None:
        """The market trades at `price`: resting orders that it reaches fill."""
        self.price = price
        self.sleep()

    def _match(self, trade: Trade) -> None:
        o, st = trade.order, trade.orderStatus
        if st.status in OrderStatus.DoneStates:
            return
        buy = o.action == "BUY"
        if o.orderType == "MKT":
            px = self.price
        elif o.orderType == "LMT" and (self.price <= o.lmtPrice if buy else self.price >= o.lmtPrice):
            px = o.lmtPrice
        elif o.orderType == "STP" and (self.price >= o.auxPrice if buy else self.price <= o.auxPrice):
            px = self.price
        else:
            st.status = "Submitted"
            return
        ex = Execution(execId=f"e{o.orderId}", time=self.now, side="BOT" if buy else "SLD", shares=o.totalQuantity, price=px,
                       orderId=o.orderId, orderRef=o.orderRef, cumQty=o.totalQuantity, avgPrice=px)
        fill = Fill(trade.contract, ex, CommissionReport(execId=ex.execId, commission=1.0, currency="USD"), self.now)
        trade.fills.append(fill)
        self._fills.append(fill)
        st.status, st.filled, st.remaining, st.avgFillPrice = "Filled", o.totalQuantity, 0.0, px

    # account
    def _net(self):
        held: dict[int, tuple] = {}
        for f in self._fills:
            qty = f.execution.shares if f.execution.side == "BOT" else -f.execution.shares
            n, cost, c = held.get(f.contract.conId, (0.0, 0.0, f.contract))
            held[f.contract.conId] = (n + qty, cost + qty * f.execution.price, c)
        return held

    def positions(self, account=""):
        return [Position("DU123", c, n, cost / n) for n, cost, c in self._net().values() if n]

    def portfolio(self, account=""):
        return [PortfolioItem(c, n, self.price, n * self.price, cost / n, n * self.price - cost, 0.0, "DU123")
                for n, cost, c in self._net().values() if n]

    def accountSummary(self, account=""):
        value = sum(n * self.price for n, _, _ in self._net().values())
        return [AccountValue("DU123", "NetLiquidation", str(100_000 + value - 100 * 0), "USD", ""),
                AccountValue("DU123", "AvailableFunds", str(90_000), "USD", ""),
                AccountValue("DU123", "AccountType", "INDIVIDUAL", "", "")]


@pytest.fixture
def ib():
    return FakeIB()


@pytest.fixture
def venue(ib):
    v = IBVenue(ib)
    v.sleep = lambda s: ib.sleep(s)
    return v


def test_ports_paper_by_default_live_only_for_live_accounts(ib):
    assert IBVenue(ib).port == PAPER_PORT and IBVenue(FakeIB(), live=True).port == LIVE_PORT
    with pytest.raises(ConfigError, match="live port"):
        IBVenue(FakeIB(), port=LIVE_PORT)
    acct = Account(name="ib-paper", exchange="ib", options={"client_id": 7, "account": "DU123"})
    v = IBVenue.from_account(acct, ib_factory=FakeIB)
    assert v.connect().status == "connected" and v.ib.connect_args == ("127.0.0.1", 7497, 7, "DU123")
    with pytest.raises(ConfigError, match="unknown option"):
        IBVenue.from_account(Account(name="x", exchange="ib", options={"prot": 1}), ib_factory=FakeIB)


def test_no_gateway_is_a_clear_error_state():
    v = IBVenue(FakeIB(refuse=True))
    state = v.connect()
    assert state.status == "error" and "IB Gateway/TWS" in state.error and "7497" in state.error
    with pytest.raises(VenueError, match="Gateway"):
        v.fetch_balance()


def test_connect_disconnect_and_gateway_events(ib, venue):
    assert venue.connect().status == "connected" and venue.connection.latency_ms is not None
    ib.errorEvent.emit(-1, 1100, "Connectivity between IB and TWS has been lost.")
    assert venue.connection.status == "error" and "1100" in venue.connection.error
    venue.connect()
    ib.connected = False
    ib.disconnectedEvent.emit()  # the gateway went away
    assert venue.connection.status == "error"
    venue.disconnect()
    assert venue.connection.status == "disconnected"
    with pytest.raises(VenueError, match="connect"):
        venue.fetch_positions()


def test_market_order_fills_and_is_idempotent_by_client_id(ib, venue):
    order = venue.create_order(OrderRequest(SYM, "buy", "market", 10, "cid-1"))
    assert order["status"] == "closed" and order["filled"] == 10 and order["average"] == 100.0
    assert order["clientOrderId"] == "cid-1" and order["fee"] == {"cost": 1.0, "currency": "USD"}
    assert order["trades"][0]["id"] == "e1" and order["symbol"] == SYM
    again = venue.create_order(OrderRequest(SYM, "buy", "market", 10, "cid-1"))  # a retry after a lost reply
    assert again["id"] == order["id"] and ib.placed == 1
    assert venue.fetch_order(SYM, client_order_id="cid-1")["status"] == "closed"
    assert venue.fetch_order(SYM, client_order_id="nope") is None


def test_limit_and_stop_orders_rest_fill_and_cancel(ib, venue):
    limit = venue.create_order(OrderRequest(SYM, "sell", "limit", 5, "l-1", price=105.004))
    assert limit["status"] == "open" and limit["price"] == 105.0 and limit["type"] == "limit"
    stop = venue.create_order(OrderRequest(SYM, "sell", "stop", 5, "s-1", stop_loss_price=95.0))
    assert stop["type"] == "stop" and stop["triggerPrice"] == 95.0
    assert {o["clientOrderId"] for o in venue.fetch_open_orders(SYM)} == {"l-1", "s-1"}
    ib.move(106.0)
    assert venue.fetch_order(SYM, order_id=limit["id"])["status"] == "closed"
    cancelled = venue.cancel_order(stop["id"], SYM)
    assert cancelled["status"] == "canceled" and venue.fetch_open_orders() == []
    with pytest.raises(VenueError, match="does not know"):
        venue.cancel_order("999", SYM)


def test_my_fills_positions_balance_and_summary(ib, venue):
    venue.create_order(OrderRequest(SYM, "buy", "market", 10, "b-1"))
    ib.move(110.0)
    (fill,) = venue.fetch_my_trades(SYM)
    assert fill["side"] == "buy" and fill["amount"] == 10 and fill["price"] == 100.0 and fill["clientOrderId"] == "b-1"
    assert fill["fee"]["cost"] == 1.0 and fill["timestamp"] > 0
    (pos,) = venue.fetch_positions()
    assert pos["symbol"] == SYM and pos["side"] == "long" and pos["contracts"] == 10 and pos["entryPrice"] == 100.0
    assert pos["unrealizedPnl"] == pytest.approx(100.0) and pos["markPrice"] == 110.0
    bal = venue.fetch_balance()
    assert bal["total"]["USD"] == pytest.approx(101_100) and bal["free"]["USD"] == 90_000
    summary = account_summary(venue, quote="USD")
    assert summary["position_value"] == pytest.approx(1_100) and summary["unrealized_pnl"] == pytest.approx(100)


def test_live_ib_refuses_unconfirmed_orders():
    v = IBVenue(FakeIB(), live=True)
    with pytest.raises(LiveTradingRefused, match="7496"):
        v.create_order(OrderRequest(SYM, "buy", "market", 1, "x"))
    assert v.ib.placed == 0


def test_order_desk_works_the_same_on_ib(ib, venue):
    desk = OrderDesk(Store(":memory:"), venue, limits={"max_position_quote": 5_000})
    with pytest.raises(ConfigError, match="max_position_quote"):
        desk.validate(SYM, "buy", 100)
    row = desk.place(SYM, "buy", 20, confirm=True)
    assert row["status"] == "filled" and row["avg_price"] == 100.0
    closed = desk.close_position(SYM)
    assert closed["status"] == "filled" and desk.positions() == []


def test_engine_deployment_on_ib_books_trades_and_places_each_order_once(ib):
    store = Store(":memory:")
    accounts = type("A", (), {"get": staticmethod(lambda name: Account(name=name, exchange="ib"))})()
    engine = Engine(store, clock=ManualClock(1_706_745_600.0), venue_factory=venue_factory(store, accounts, ib_factory=lambda: ib))
    rt = engine.deploy({"strategy": "sma_cross", "symbols": [SYM], "timeframe": "1h", "params": {"fast": 5, "slow": 20},
                        "venue": "ib", "account": "ib-paper", "risk": {"daily_loss_limit": None, "drawdown_limit": None,
                                                                       "cooldown_seconds": None, "size_pct": 0.2}})
    rt.venue.fill_wait = 0.5
    from workbench.data import sample_ohlcv

    df = sample_ohlcv("ETH/USDT", "1h", bars=300) / 20  # a share-like price
    for ts, r in zip(df.index.as_unit("ms").asi8, df.itertuples(index=False), strict=True):
        for px in (r.open, r.high, r.low, r.close):
            ib.move(px)
        engine.on_bar(SYM, int(ts), r.open, r.high, r.low, r.close, r.volume)
    trades = store.trades(rt.id)
    assert len(trades) >= 2
    refs = [t.order.orderRef for t in ib.trades()]
    assert len(refs) == len(set(refs)) == len(store.orders(rt.id))


def test_ticker_and_bars_as_ccxt_shapes(venue):
    t = venue.fetch_ticker(SYM)
    assert t["last"] == 100.0 and t["bid"] == pytest.approx(99.99) and t["ask"] is None  # IB's -1 means unset
    bars = venue.fetch_ohlcv(SYM, "1h", limit=3)
    assert len(bars) == 3 and bars[-1][1:5] == [104.0, 105.0, 103.0, 104.5] and bars[1][0] - bars[0][0] == 3_600_000
    with pytest.raises(ConfigError, match="IB bars"):
        venue.fetch_ohlcv(SYM, "2h")
    with pytest.raises(ConfigError, match="look like"):
        venue.contract("AAPL")
