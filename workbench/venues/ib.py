"""Interactive Brokers through ib_async: a Venue that returns ccxt-like dicts.

Real use needs a running IB Gateway or TWS with the API enabled, listening on
127.0.0.1:7497 (paper) or 7496 (live); this module never starts one. Without a
gateway, :meth:`IBVenue.connect` fails with a VenueError saying so.

Symbols are ccxt-style: 'AAPL/USD' is a SMART-routed stock, 'EUR/USD' a
forex pair (IDEALPRO), 'BTC/USD' a PAXOS crypto; pass `contracts` to map a
symbol to any ib_async Contract. The client order id travels as the order's
``orderRef``, so an order can be found again after a lost reply or restart.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, LiveTradingRefused, VenueError
from ..markets import MarketRules
from .base import OrderRequest
from .connection import ConnectionState

if TYPE_CHECKING:
    from ..accounts import Account

log = logging.getLogger("workbench.venues.ib")

PAPER_PORT, LIVE_PORT = 7497, 7496
FOREX = frozenset("USD EUR GBP JPY CHF AUD CAD NZD SEK NOK DKK HKD SGD CNH MXN ZAR PLN CZK HUF ILS TRY".split())
CRYPTO = frozenset("BTC ETH LTC BCH".split())
#: IB order status -> ccxt order status
STATUS = {"Filled": "closed", "Cancelled": "canceled", "ApiCancelled": "canceled", "Inactive": "rejected",
          "ValidationError": "rejected"}
BAR_SIZES = {"1m": "1 min", "5m": "5 mins", "15m": "15 mins", "30m": "30 mins", "1h": "1 hour", "4h": "4 hours", "1d": "1 day"}


class IBVenue:
    """The engine's Venue on an ib_async ``IB`` client (paper port 7497 unless live).

    `ib` is an ``ib_async.IB`` (or anything with its methods: tests pass a
    fake). A live venue (port 7496) refuses orders unless `live_confirmed`.
    """

    def __init__(
        self,
        ib: Any = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        client_id: int = 1,
        account: str = "",
        live: bool = False,
        live_confirmed: bool = False,
        venue_id: str = "ib",
        timeout: float = 10.0,
        contracts: Mapping[str, Any] | None = None,
        fill_wait: float = 5.0,
    ) -> None:
        if ib is None:
            from ib_async import IB

            ib = IB()
        self.ib = ib
        self.host = host
        self.port = int(port if port is not None else (LIVE_PORT if live else PAPER_PORT))
        if not live and self.port == LIVE_PORT:
            raise ConfigError(f"Port {LIVE_PORT} is IB's live port but the account is demo: use {PAPER_PORT} (paper) or mark the account live.")
        self.client_id = int(client_id)
        self.account = account
        self.id = venue_id
        self.live = live
        self.live_confirmed = live_confirmed
        self.timeout = float(timeout)
        self.fill_wait = float(fill_wait)
        self.connection = ConnectionState()
        self._contracts: dict[str, Any] = dict(contracts or {})
        self._markets: dict[str, MarketRules] = {}
        self._closed = False
        self.errors: list[tuple[int, int, str]] = []
        ib.errorEvent += self._on_error
        ib.disconnectedEvent += self._on_disconnected

    @classmethod
    def from_account(cls, account: Account, *, live_confirmed: bool = False, venue_id: str | None = None,
                     ib_factory: Callable[[], Any] | None = None, timeout: float = 10.0) -> IBVenue:
        """Options of an 'ib' account: host, port, client_id, account (the IB account code)."""
        opts = dict(account.options)
        unknown = set(opts) - {"host", "port", "client_id", "account", "timeout"}
        if unknown:
            raise ConfigError(f"IB account {account.name!r}: unknown option(s) {sorted(unknown)}; use host, port, client_id, account, timeout.")
        return cls(ib_factory() if ib_factory else None, host=opts.get("host", "127.0.0.1"), port=opts.get("port"),
                   client_id=opts.get("client_id", 1), account=opts.get("account", ""), live=account.is_live,
                   live_confirmed=live_confirmed, venue_id=venue_id or f"ib:{account.name}",
                   timeout=float(opts.get("timeout", timeout)))

    def __repr__(self) -> str:
        return f"IBVenue({self.id!r}, {self.host}:{self.port}, live={self.live}, {self.connection.status})"

    # -- connection -------------------------------------------------------------
    def _on_error(self, req_id: int, code: int, message: str, *rest: Any) -> None:
        self.errors.append((req_id, code, message))
        if code in (1100, 1300, 2110):  # connectivity between TWS/Gateway and IB lost
            self.connection.status, self.connection.error = "error", f"IB {code}: {message}"

    def _on_disconnected(self) -> None:
        if self.connection.status != "disconnected":
            self.connection.status = "error" if not self._closed else "disconnected"

    def connect(self) -> ConnectionState:
        """Connect to the gateway; the state says connected or error (no gateway: error, with how to fix)."""
        self._closed = False
        if self.ib.isConnected():
            self.connection.status = "connected"
            return self.connection
        self.connection.status = "connecting"
        t0 = time.perf_counter()
        try:
            self.ib.connect(self.host, self.port, clientId=self.client_id, timeout=self.timeout, account=self.account)
        except (OSError, TimeoutError, ConnectionError) as exc:
            self.connection = ConnectionState("error", self.connection.last_ok, None,
                                              f"no IB Gateway/TWS at {self.host}:{self.port} ({type(exc).__name__}: {exc}); "
                                              "start it and enable the API (Configure > API > Settings)", self.connection.failures + 1)
            return self.connection
        self.connection = ConnectionState("connected", time.time(), (time.perf_counter() - t0) * 1000)
        return self.connection

    def disconnect(self) -> None:
        self._closed = True
        self.connection = ConnectionState("disconnected", self.connection.last_ok)
        if self.ib.isConnected():
            self.ib.disconnect()

    def _ready(self, what: str) -> None:
        if self._closed:
            raise VenueError(f"{self.id} is disconnected: call connect() before {what}.")
        if not self.ib.isConnected():
            state = self.connect()
            if state.status != "connected":
                raise VenueError(f"{self.id} cannot {what}: {state.error}")

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self._ready(what)
        t0 = time.perf_counter()
        try:
            out = fn(*args, **kwargs)
        except (OSError, TimeoutError, ConnectionError) as exc:
            self.connection = ConnectionState("error", self.connection.last_ok, None, f"{type(exc).__name__}: {exc}", self.connection.failures + 1)
            raise VenueError(f"{self.id} {what} failed: {type(exc).__name__}: {exc}") from None
        self.connection = ConnectionState("connected", time.time(), (time.perf_counter() - t0) * 1000)
        return out

    def sleep(self, seconds: float) -> None:
        """Wait while ib_async processes the gateway's messages (order status, fills)."""
        self.ib.sleep(seconds)

    # -- contracts and markets ----------------------------------------------------
    def contract(self, symbol: str) -> Any:
        """The qualified ib_async Contract of a ccxt-style symbol."""
        if symbol in self._contracts and getattr(self._contracts[symbol], "conId", 0):
            return self._contracts[symbol]
        from ib_async import Crypto, Forex, Stock

        contract = self._contracts.get(symbol)
        if contract is None:
            if "/" not in symbol:
                raise ConfigError(f"IB symbols look like 'AAPL/USD', 'EUR/USD' or 'BTC/USD', got {symbol!r}.")
            base, quote = symbol.split(":")[0].split("/", 1)
            if base in CRYPTO:
                contract = Crypto(base, "PAXOS", quote)
            elif base in FOREX and quote in FOREX:
                contract = Forex(base + quote)
            else:
                contract = Stock(base, "SMART", quote)
        qualified = self._call("qualify", self.ib.qualifyContracts, contract)
        if not qualified or not getattr(qualified[0], "conId", 0):
            raise ConfigError(f"IB does not know {symbol!r}; pass contracts={{{symbol!r}: Contract(...)}} to name it exactly.")
        self._contracts[symbol] = qualified[0]
        return qualified[0]

    def load_markets(self, reload: bool = False) -> dict[str, MarketRules]:
        if reload:
            self._markets = {}
        return self._markets

    def market(self, symbol: str) -> MarketRules:
        if symbol not in self._markets:
            contract = self.contract(symbol)
            details = self._call("contract details", self.ib.reqContractDetails, contract)
            d = details[0] if details else None
            step = _pos(getattr(d, "sizeIncrement", None)) or 1.0
            base, quote = symbol.split(":")[0].split("/", 1)
            self._markets[symbol] = MarketRules(
                symbol, amount_step=step, price_step=_pos(getattr(d, "minTick", None)),
                min_amount=_pos(getattr(d, "minSize", None)) or step, contract=False, quote=quote, base=base,
            )
        return self._markets[symbol]

    # -- market data ----------------------------------------------------------------
    def fetch_ticker(self, symbol: str) -> dict[str, Any]:
        tickers = self._call("fetch_ticker", self.ib.reqTickers, self.contract(symbol))
        t = tickers[0] if tickers else None
        bid, ask = _pos(getattr(t, "bid", None)), _pos(getattr(t, "ask", None))  # IB marks unset prices -1 or nan
        last = _pos(getattr(t, "last", None)) or _pos(getattr(t, "close", None)) or ((bid + ask) / 2 if bid and ask else None)
        return {"symbol": symbol, "last": last, "close": last, "bid": bid, "ask": ask,
                "timestamp": _ms(getattr(t, "time", None)), "info": t}

    def fetch_ohlcv(self, symbol: str, timeframe: str, since: int | None = None, limit: int | None = None) -> list[list[float]]:
        if timeframe not in BAR_SIZES:
            raise ConfigError(f"IB bars come in {', '.join(BAR_SIZES)}; got {timeframe!r}.")
        from ..timeframes import timeframe_seconds

        step = timeframe_seconds(timeframe)
        count = limit or 200
        seconds = step * count
        duration = f"{max(1, math.ceil(seconds / 86400))} D" if seconds > 86400 else f"{max(60, seconds)} S"
        contract = self.contract(symbol)
        what = "MIDPOINT" if getattr(contract, "secType", "") == "CASH" else "TRADES"
        bars = self._call("fetch_ohlcv", self.ib.reqHistoricalData, contract, "", duration, BAR_SIZES[timeframe], what, False, 2)
        rows = [[_ms(b.date), float(b.open), float(b.high), float(b.low), float(b.close), float(b.volume or 0)] for b in bars]
        if since is not None:
            rows = [r for r in rows if r[0] >= since]
        return rows[-count:]

    # -- account ------------------------------------------------------------------
    def fetch_balance(self) -> dict[str, Any]:
        """ccxt-like balance from the account summary: total = NetLiquidation, free = AvailableFunds."""
        values = self._call("fetch_balance", self.ib.accountSummary, self.account)
        tags: dict[str, dict[str, float]] = {}
        for v in values:
            num = _num(v.value)
            if num is not None and v.currency:
                tags.setdefault(v.tag, {})[v.currency] = num
        total = tags.get("NetLiquidation", {})
        free = tags.get("AvailableFunds", {})
        out: dict[str, Any] = {"info": {t: c for t, c in tags.items()}, "total": dict(total), "free": dict(free), "used": {}}
        for cur, tot in total.items():
            out["used"][cur] = tot - free.get(cur, 0.0)
            out[cur] = {"total": tot, "free": free.get(cur), "used": out["used"][cur]}
        return out

    def fetch_positions(self, symbols: list[str] | None = None) -> list[dict[str, Any]]:
        items = {getattr(p.contract, "conId", None): p for p in self._call("portfolio", self.ib.portfolio, self.account)}
        out = []
        for p in self._call("fetch_positions", self.ib.positions, self.account):
            if not p.position:
                continue
            sym = self._symbol_of(p.contract)
            if symbols and sym not in symbols:
                continue
            mult = float(getattr(p.contract, "multiplier", "") or 1)
            item = items.get(getattr(p.contract, "conId", None))
            mark = _num(getattr(item, "marketPrice", None))
            out.append({
                "symbol": sym, "side": "long" if p.position > 0 else "short", "contracts": abs(float(p.position)),
                "contractSize": mult, "entryPrice": float(p.avgCost) / mult, "markPrice": mark,
                "notional": abs(_num(getattr(item, "marketValue", None)) or (mark or 0.0) * abs(p.position) * mult),
                "unrealizedPnl": _num(getattr(item, "unrealizedPNL", None)), "leverage": None,
                "liquidationPrice": None, "marginMode": "cash", "info": p,
            })
        return out

    def set_leverage(self, leverage: float, symbol: str) -> None:
        log.info("%s: IB sets margin per account, not per symbol; leverage %s for %s is not sent", self.id, leverage, symbol)

    # -- orders -------------------------------------------------------------------
    def _trades(self) -> list[Any]:
        return list(self._call("trades", self.ib.trades))

    def _find(self, order_id: str | None = None, client_order_id: str | None = None) -> Any | None:
        for trade in self._trades():
            if order_id and str(trade.order.orderId) == str(order_id):
                return trade
            if client_order_id and getattr(trade.order, "orderRef", "") == client_order_id:
                return trade
        return None

    def create_order(self, request: OrderRequest) -> dict[str, Any]:
        """Place a market, limit or stop order; idempotent by client order id (orderRef)."""
        if self.live and not self.live_confirmed:
            raise LiveTradingRefused(f"Refusing a live order on {self.id} (port {self.port}): not confirmed for live trading "
                                     "(pass live_confirmed=True / --confirm-live).")
        from ib_async import LimitOrder, MarketOrder, StopOrder

        existing = self._find(client_order_id=request.client_order_id)
        if existing is not None:
            return self._order_dict(existing)
        rules = self.market(request.symbol)
        amount = rules.round_amount(request.amount)
        price = rules.round_price(request.price) if request.price else None
        rules.check(amount, price or request.trigger_price or request.stop_loss_price or request.take_profit_price or 0.0,
                    reduce_only=request.reduce_only)
        action = "BUY" if request.side == "buy" else "SELL"
        trigger = request.trigger_price or request.stop_loss_price
        if request.type == "limit":
            order = LimitOrder(action, amount, price)
        elif request.type == "stop" and request.take_profit_price and not trigger:
            order = LimitOrder(action, amount, rules.round_price(request.take_profit_price))
        elif request.type == "stop":
            order = StopOrder(action, amount, rules.round_price(trigger))
        else:
            order = MarketOrder(action, amount)
        order.orderRef = request.client_order_id
        order.tif = "GTC" if request.type != "market" else "DAY"
        if self.account:
            order.account = self.account
        trade = self._call("create_order", self.ib.placeOrder, self.contract(request.symbol), order)
        if request.type == "market":
            self._wait_done(trade, self.fill_wait)
        return self._order_dict(trade)

    def _wait_done(self, trade: Any, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while trade.orderStatus.status not in ("Filled", "Cancelled", "ApiCancelled", "Inactive") and time.monotonic() < deadline:
            self.ib.sleep(0.05)

    def cancel_order(self, order_id: str, symbol: str) -> dict[str, Any]:
        trade = self._find(order_id=order_id)
        if trade is None:
            raise VenueError(f"{self.id} does not know order {order_id} ({symbol}); it may belong to another client id.")
        self._call("cancel_order", self.ib.cancelOrder, trade.order)
        return self._order_dict(trade)

    def fetch_order(self, symbol: str, order_id: str | None = None, client_order_id: str | None = None,
                    retry: bool = True) -> dict[str, Any] | None:
        """An order by id or client id (orderRef) from the session's trades; one look, so `retry` changes nothing."""
        trade = self._find(order_id, client_order_id)
        return self._order_dict(trade) if trade is not None else None

    def fetch_open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        out = [self._order_dict(t) for t in self._call("fetch_open_orders", self.ib.openTrades)]
        return [o for o in out if symbol is None or o["symbol"] == symbol]

    def fetch_my_trades(self, symbol: str | None = None, since: int | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        out = []
        for f in self._call("fetch_my_trades", self.ib.fills):
            ex, rep = f.execution, f.commissionReport
            sym = self._symbol_of(f.contract)
            ts = _ms(getattr(f, "time", None) or ex.time)
            if (symbol and sym != symbol) or (since is not None and ts is not None and ts < since):
                continue
            out.append({
                "id": ex.execId, "order": str(ex.orderId), "clientOrderId": ex.orderRef or None, "symbol": sym,
                "side": "buy" if ex.side == "BOT" else "sell", "amount": float(ex.shares), "price": float(ex.price),
                "cost": float(ex.shares) * float(ex.price), "timestamp": ts, "takerOrMaker": None,
                "fee": {"cost": float(rep.commission) if rep and _num(rep.commission) is not None else 0.0,
                        "currency": (rep.currency if rep else None) or None},
                "info": f,
            })
        return out[-limit:] if limit else out

    # -- conversions ----------------------------------------------------------------
    def _symbol_of(self, contract: Any) -> str:
        for sym, c in self._contracts.items():
            if getattr(c, "conId", None) and getattr(c, "conId", None) == getattr(contract, "conId", None):
                return sym
        if getattr(contract, "secType", "") == "CASH":
            return f"{contract.symbol}/{contract.currency}"
        return f"{contract.symbol}/{contract.currency}"

    def _order_dict(self, trade: Any) -> dict[str, Any]:
        o, st = trade.order, trade.orderStatus
        fills = list(trade.fills or [])
        filled = float(st.filled or 0.0) or sum(float(f.execution.shares) for f in fills)
        status = STATUS.get(st.status, "open")
        if status == "closed" and not filled:
            status = "canceled"
        fee = sum(float(f.commissionReport.commission) for f in fills if f.commissionReport and _num(f.commissionReport.commission) is not None)
        avg = _num(st.avgFillPrice) or (sum(float(f.execution.shares) * float(f.execution.price) for f in fills) / filled if filled and fills else None)
        kind = {"MKT": "market", "LMT": "limit", "STP": "stop"}.get(o.orderType, o.orderType.lower())
        amount = float(o.totalQuantity)
        trades = [{"id": f.execution.execId, "amount": float(f.execution.shares), "price": float(f.execution.price),
                   "fee": {"cost": float(f.commissionReport.commission) if f.commissionReport else 0.0,
                           "currency": f.commissionReport.currency if f.commissionReport else None},
                   "timestamp": _ms(f.time)} for f in fills]
        return {
            "id": str(o.orderId), "clientOrderId": o.orderRef or None, "symbol": self._symbol_of(trade.contract),
            "type": kind, "side": o.action.lower() if o.action in ("BUY", "SELL") else o.action, "amount": amount,
            "price": _num(getattr(o, "lmtPrice", None)), "triggerPrice": _num(getattr(o, "auxPrice", None)),
            "status": status, "filled": filled, "remaining": max(0.0, amount - filled), "average": avg,
            "fee": {"cost": fee, "currency": (fills[0].commissionReport.currency if fills and fills[0].commissionReport else None)},
            "trades": trades, "timestamp": trades[0]["timestamp"] if trades else None,
            "lastTradeTimestamp": trades[-1]["timestamp"] if trades else None, "info": {"ibStatus": st.status, "permId": st.permId},
        }


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v < 1.7e308 else None  # IB's UNSET_DOUBLE is sys.float_info.max


def _pos(x: Any) -> float | None:
    v = _num(x)
    return v if v and v > 0 else None


def _ms(t: Any) -> int | None:
    if t is None or t == "":
        return None
    if isinstance(t, datetime):
        return int((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() * 1000)
    if hasattr(t, "year"):  # a date
        return int(datetime(t.year, t.month, t.day, tzinfo=UTC).timestamp() * 1000)
    v = _num(t)
    return int(v * 1000) if v is not None and v < 1e11 else (int(v) if v is not None else None)
