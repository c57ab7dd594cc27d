"""The emulator: Bybit's v5 REST API over HTTP on loopback, plus an admin API for tests.

``Emulator(...).start()`` serves on ``emulator.url``; ccxt's bybit class,
pointed there with :func:`workbench.emulator.client.point_ccxt`, signs,
sends and parses exactly as against the real exchange. Public routes need no
key; private routes verify the v5 HMAC signature and recv window
(:mod:`.auth`). Every request first consults the fault schedule
(:mod:`.faults`).

Times: order, trade and kline times are on the *market* clock (manual or
wall, see :mod:`.feed`); the envelope's ``time``, ``/v5/market/time`` and the
signature's timestamp check use the *wall* clock, like the real server whose
clock a client's timestamps are compared with.
"""
from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pandas as pd

from ..errors import ConfigError
from ..timeframes import timeframe_seconds
from . import auth, codes, shapes
from .codes import BybitError, params_error
from .exchange import Exchange, ExchangeConfig, Order
from .faults import Faults
from .feed import PriceFeed

DEMO_API_KEY = "wb-emulator-demo-key"
DEMO_API_SECRET = "wb-emulator-demo-secret-not-for-real-money"
BYBIT_INTERVALS = {"1": 60, "3": 180, "5": 300, "15": 900, "30": 1800, "60": 3600, "120": 7200, "240": 14400,
                   "360": 21600, "720": 43200, "D": 86400, "W": 604800}
WEEK_MS = 7 * 86_400_000

Handler = Callable[["Emulator", dict[str, str], dict[str, Any]], Any]
#: (method, path) -> (operation name for faults, private?, handler name)
ROUTES: dict[tuple[str, str], tuple[str, bool, str]] = {
    ("GET", "/v5/market/time"): ("time", False, "_time"),
    ("GET", "/v5/market/instruments-info"): ("instruments", False, "_instruments"),
    ("GET", "/v5/market/tickers"): ("tickers", False, "_tickers"),
    ("GET", "/v5/market/kline"): ("kline", False, "_kline"),
    ("GET", "/v5/market/mark-price-kline"): ("kline", False, "_kline"),
    ("GET", "/v5/market/index-price-kline"): ("kline", False, "_kline"),
    ("GET", "/v5/market/orderbook"): ("orderbook", False, "_orderbook"),
    ("GET", "/v5/user/query-api"): ("query_api", True, "_query_api"),
    ("GET", "/v5/account/info"): ("account_info", True, "_account_info"),
    ("GET", "/v5/asset/coin/query-info"): ("coin_info", True, "_coin_info"),
    ("GET", "/v5/account/wallet-balance"): ("wallet_balance", True, "_wallet_balance"),
    ("POST", "/v5/order/create"): ("create_order", True, "_create_order"),
    ("POST", "/v5/order/cancel"): ("cancel_order", True, "_cancel_order"),
    ("POST", "/v5/order/cancel-all"): ("cancel_all_orders", True, "_cancel_all"),
    ("GET", "/v5/order/realtime"): ("open_orders", True, "_realtime"),
    ("GET", "/v5/order/history"): ("order_history", True, "_history"),
    ("GET", "/v5/execution/list"): ("executions", True, "_executions"),
    ("GET", "/v5/position/list"): ("positions", True, "_positions"),
    ("POST", "/v5/position/set-leverage"): ("set_leverage", True, "_set_leverage"),
    ("POST", "/v5/position/trading-stop"): ("trading_stop", True, "_trading_stop"),
}
OPERATIONS = tuple(sorted({op for op, _, _ in ROUTES.values()}))
ORDER_OPS = ("create_order",)


class Emulator:
    """A local Bybit-compatible exchange: price feed, account, matching, HTTP server, faults.

    Parameters: `symbols` of the sample (default all) or `data` mapping symbol
    to an OHLCV DataFrame (e.g. from ``workbench.data.read_csv``); the bars'
    `timeframe`; `start` of the manual clock; ``clock='manual'`` (tests move it
    with :meth:`advance`/:meth:`set_time`) or ``'real'`` (wall time);
    starting `balances`; market-order `slippage`; the accepted API key; the
    loopback `host`/`port` (0: a free port); `admin_token` for /admin/ routes;
    `fault_clock` times faults that last a while (``faults.down(seconds=60)``;
    default `wall`): give a fake clock so a test need not wait a real minute.
    """

    def __init__(
        self,
        symbols: list[str] | None = None,
        timeframe: str = "1h",
        data: str | Mapping[str, pd.DataFrame] = "sample",
        start: str | pd.Timestamp | int | None = None,
        clock: str = "manual",
        balances: Mapping[str, float] | None = None,
        slippage: float = 0.0,
        api_key: str = DEMO_API_KEY,
        api_secret: str = DEMO_API_SECRET,
        host: str = "127.0.0.1",
        port: int = 0,
        admin_token: str | None = None,
        wall: Callable[[], float] = time.time,
        hang_seconds: float = 30.0,
        seed: int = 0,
        fault_clock: Callable[[], float] | None = None,
    ) -> None:
        if clock not in ("manual", "real"):
            raise ConfigError(f"clock must be 'manual' or 'real', got {clock!r}.")
        timeframe_seconds(timeframe)
        self.wall = wall
        self.api_key = auth.ApiKey(api_key, api_secret)
        self.keys = {api_key: api_secret}
        self.admin_token = admin_token or secrets.token_hex(16)
        self.hang_seconds = float(hang_seconds)
        self.host, self.port = host, int(port)
        start_ms = _ms(start) if start is not None else None
        frames = self._frames(symbols, timeframe, data, start_ms, clock == "real")
        self.feed = PriceFeed(frames, timeframe, start_ms=start_ms, realtime=clock == "real", wall=wall,
                              sample=isinstance(data, str))
        self.exchange = Exchange(self.feed, ExchangeConfig(balances or {"USDT": 100_000.0}, slippage), seed=seed)
        self.faults = Faults(OPERATIONS, clock=fault_clock or wall)
        #: (method, path, op) of every request served, for tests
        self.requests: list[tuple[str, str, str]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = self.url if self._server else "stopped"
        return f"Emulator({state}, timeframe={self.feed.timeframe!r}, key={self.api_key!r})"

    @staticmethod
    def _frames(symbols, timeframe, data, start_ms, realtime) -> dict[str, pd.DataFrame]:
        if isinstance(data, str):
            if data != "sample":
                raise ConfigError(f"data must be 'sample' or a mapping of symbol to OHLCV DataFrame, got {data!r}.")
            from ..data import SAMPLE_EPOCH, SAMPLE_SYMBOLS, sample_ohlcv

            names = symbols or list(SAMPLE_SYMBOLS)
            step = timeframe_seconds(timeframe) * 1000
            epoch = int(SAMPLE_EPOCH.value // 1_000_000)
            now = int(time.time() * 1000) if realtime else (start_ms or epoch + 1000 * step)
            first = max(epoch, now - 1500 * step)
            bars = int((now - first) // step) + 3000
            return {s: sample_ohlcv(s, timeframe, bars=bars, start=pd.Timestamp(first, unit="ms", tz="UTC")) for s in names}
        frames = dict(data)
        if symbols:
            missing = [s for s in symbols if s not in frames]
            if missing:
                raise ConfigError(f"No price data for {missing}; pass data={{symbol: DataFrame}} for each symbol.")
            frames = {s: frames[s] for s in symbols}
        return frames

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> Emulator:
        """Serve in a background thread; returns self (``with Emulator().start() as emu:``)."""
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), _RequestHandler, self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"bybit-emulator:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release hanging requests and close every connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self, timeout_ms: int = 2000, **config: Any):
        """ccxt's bybit class, signed with the demo key (or `apiKey`/`secret`), pointed at this emulator."""
        from .client import bybit_client

        config.setdefault("enableRateLimit", False)  # loopback: ccxt's client-side throttle only slows tests
        key, secret = config.pop("apiKey", self.api_key.key), config.pop("secret", self.api_key.secret)
        return bybit_client(self.url, key, secret, timeout_ms, **config)

    # -- clock and admin ----------------------------------------------------------
    def now_ms(self) -> int:
        return self.feed.now_ms()

    def advance(self, bars: int = 1) -> None:
        """Move the market clock `bars` bars on and match every bar that closed."""
        with self.exchange.lock:
            self.exchange.sync()
            self.feed.advance(bars)
            self.exchange.sync()

    def set_time(self, when: str | pd.Timestamp | int) -> None:
        with self.exchange.lock:
            self.exchange.sync()
            self.feed.set_time(_ms(when))
            self.exchange.sync()

    def price(self, symbol: str) -> float:
        """The current price of a ccxt symbol ('BTC/USDT' or 'BTC/USDT:USDT')."""
        with self.exchange.lock:
            return self.exchange.mark(self.exchange.find_instrument(symbol))

    def manual_order(self, symbol: str, side: str, amount: float, price: float | None = None) -> dict[str, Any]:
        """Place an order by hand, as on the exchange's web page (no orderLinkId); Bybit's order JSON."""
        try:
            return shapes.order(self.exchange.manual_order(symbol, side, amount, price))
        except BybitError as exc:
            raise ConfigError(f"The emulated exchange refused the manual order: {exc.msg} ({exc.code}).") from None

    def manual_close(self, symbol: str) -> dict[str, Any]:
        """Close the whole linear position of `symbol` by hand at market; Bybit's order JSON."""
        return shapes.order(self.exchange.manual_close(symbol))

    def position(self, symbol: str) -> dict[str, Any]:
        """Bybit's position JSON for a linear symbol ('BTC/USDT:USDT')."""
        with self.exchange.lock:
            inst = self.exchange.find_instrument(symbol)
            return shapes.position(self.exchange.position(inst), self.exchange.mark(inst))

    def orders(self, link_id: str | None = None) -> list[Order]:
        """Every order the exchange holds (or those with `link_id`), oldest first."""
        with self.exchange.lock:
            return [o for o in self.exchange.orders if link_id is None or o.link_id == link_id]

    # -- request handling ---------------------------------------------------------
    def handle(self, method: str, path: str, query: str, body: str, headers: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """Answer one API request after faults were applied: (HTTP status, JSON)."""
        route = ROUTES.get((method, path))
        if route is None:
            return 404 if method in ("GET", "POST") else 405, _envelope(codes.PATH_NOT_FOUND, "Route not found", {}, self._wall_ms())
        op, private, fn = route
        try:
            if private:
                auth.verify(headers, body if method == "POST" else query, self.keys, self._wall_ms())
            params = self._params(method, query, body)
            with self.exchange.lock:
                self.exchange.sync()
                result = getattr(self, fn)(params)
            return 200, _envelope(0, "OK", result, self._wall_ms())
        except BybitError as exc:
            return 200, _envelope(exc.code, exc.msg, {}, self._wall_ms())

    def _wall_ms(self) -> int:
        return int(self.wall() * 1000)

    @staticmethod
    def _params(method: str, query: str, body: str) -> dict[str, Any]:
        if method == "GET":
            return dict(parse_qsl(query, keep_blank_values=True))
        try:
            parsed = json.loads(body or "{}")
        except ValueError:
            raise params_error("request body is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise params_error("request body must be a JSON object")
        return parsed

    # -- public routes ------------------------------------------------------------
    def _time(self, p: dict[str, Any]) -> dict[str, str]:
        ns = int(self.wall() * 1e9)
        return {"timeSecond": str(ns // 10**9), "timeNano": str(ns)}

    def _instruments(self, p: dict[str, Any]) -> dict[str, Any]:
        cat = p.get("category")
        if cat not in ("spot", "linear", "inverse", "option"):
            raise params_error("category invalid")
        items = []
        if p.get("status", "Trading") == "Trading":
            launch = self.feed.first_ms()
            items = [shapes.instrument(i, launch) for i in self.exchange.instruments.values()
                     if i.category == cat and (not p.get("symbol") or i.id == p["symbol"])]
        return {"category": cat, "list": items, "nextPageCursor": ""}

    def _tickers(self, p: dict[str, Any]) -> dict[str, Any]:
        cat = p.get("category")
        if cat not in ("spot", "linear", "inverse", "option"):
            raise params_error("category invalid")
        if p.get("symbol"):
            insts = [self.exchange.instrument(cat, p["symbol"])]
        else:
            insts = [i for i in self.exchange.instruments.values() if i.category == cat]
        return {"category": cat, "list": [shapes.ticker(self.exchange, i) for i in insts]}

    def _kline(self, p: dict[str, Any]) -> dict[str, Any]:
        inst = self.exchange.instrument(p.get("category", "linear"), p.get("symbol"))
        interval = str(p.get("interval", ""))
        if interval not in BYBIT_INTERVALS:
            raise params_error(f"interval invalid; one of {', '.join(BYBIT_INTERVALS)}")
        limit = _limit(p, 200, 1000)
        try:
            bars = self.feed.klines(inst.feed, BYBIT_INTERVALS[interval] * 1000, _opt_int(p.get("start")), _opt_int(p.get("end")), limit)
        except ConfigError as exc:
            raise params_error(str(exc)) from None
        fmt = lambda x: shapes.price_str(inst, inst.round_price(x))  # noqa: E731
        rows = [[str(t), fmt(o), fmt(h), fmt(lo), fmt(c), shapes.num(v, 6), shapes.num(v * c, 4)] for t, o, h, lo, c, v in bars]
        return {"symbol": inst.id, "category": inst.category, "list": rows[::-1]}

    def _orderbook(self, p: dict[str, Any]) -> dict[str, Any]:
        inst = self.exchange.instrument(p.get("category"), p.get("symbol"))
        return shapes.orderbook(self.exchange, inst, _limit(p, 25, 500 if inst.spot else 1000))

    # -- account routes -------------------------------------------------------------
    def _query_api(self, p: dict[str, Any]) -> dict[str, Any]:
        perms = {"ContractTrade": ["Order", "Position"], "Spot": ["SpotTrade"], "Wallet": ["AccountTransfer"],
                 "Options": [], "Derivatives": [], "CopyTrading": [], "BlockTrade": [], "Exchange": [], "NFT": []}
        return {"id": "1", "note": "workbench emulator", "apiKey": self.api_key.key, "readOnly": 0, "secret": "",
                "permissions": perms, "ips": ["*"], "type": 1, "deadlineDay": -1, "expiredAt": "",
                "createdAt": "2024-01-01T00:00:00Z", "unified": 0, "uta": 1, "userID": 1, "inviterID": 0,
                "vipLevel": "No VIP", "mktMakerLevel": "0", "affiliateID": 0, "rsaPublicKey": "", "isMaster": True}

    def _account_info(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"marginMode": "REGULAR_MARGIN", "updatedTime": "0", "unifiedMarginStatus": 6, "dcpStatus": "OFF",
                "timeWindow": 10, "smpGroup": 0, "isMasterTrader": False, "spotHedgingStatus": "OFF"}

    def _coin_info(self, p: dict[str, Any]) -> dict[str, Any]:
        coins = sorted({i.base for i in self.exchange.instruments.values()} | {"USDT"})
        rows = [{"name": c, "coin": c, "remainAmount": "1000000", "chains": [{
            "chainType": c, "confirmation": "1", "withdrawFee": "0", "depositMin": "0", "withdrawMin": "0",
            "chain": c, "chainDeposit": "1", "chainWithdraw": "1", "minAccuracy": "8",
            "withdrawPercentageFee": "0", "contractAddress": ""}]} for c in coins]
        return {"rows": rows}

    def _wallet_balance(self, p: dict[str, Any]) -> dict[str, Any]:
        if str(p.get("accountType", "")).upper() != "UNIFIED":
            raise params_error("accountType only support UNIFIED")
        wanted = {c.strip().upper() for c in str(p.get("coin", "")).split(",") if c.strip()} or None
        return {"list": [shapes.wallet(self.exchange, wanted)]}

    # -- trading routes -------------------------------------------------------------
    def _create_order(self, p: dict[str, Any]) -> dict[str, Any]:
        order = self.exchange.place(p)
        return {"orderId": order.order_id, "orderLinkId": order.link_id}

    def _cancel_order(self, p: dict[str, Any]) -> dict[str, Any]:
        order = self.exchange.cancel(p.get("category"), p.get("symbol"), p.get("orderId"), p.get("orderLinkId"))
        return {"orderId": order.order_id, "orderLinkId": order.link_id}

    def _cancel_all(self, p: dict[str, Any]) -> dict[str, Any]:
        ex = self.exchange
        done = []
        for o in [o for o in ex.orders if o.is_open and o.inst.category == p.get("category")
                  and (not p.get("symbol") or o.inst.id == p.get("symbol"))]:
            done.append(ex.cancel(o.inst.category, o.inst.id, o.order_id, None))
        return {"list": [{"orderId": o.order_id, "orderLinkId": o.link_id} for o in done], "success": "1"}

    def _orders_of(self, p: dict[str, Any]) -> list[Order]:
        cat = p.get("category")
        if cat not in ("spot", "linear", "inverse", "option"):
            raise params_error("category invalid")
        sym = p.get("symbol")
        out = [o for o in self.exchange.orders if o.inst.category == cat and (not sym or o.inst.id == sym)]
        filt = p.get("orderFilter")
        if filt == "StopOrder":
            out = [o for o in out if o.trigger_price and o.stop_order_type == "Stop"]
        elif filt == "Order":
            out = [o for o in out if not o.trigger_price]
        return out[::-1]  # newest first

    def _realtime(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("category") == "linear" and not (p.get("symbol") or p.get("settleCoin") or p.get("baseCoin")):
            raise params_error("symbol, baseCoin or settleCoin is required for linear")
        orders = self._orders_of(p)
        if p.get("orderId") or p.get("orderLinkId"):
            recent = orders[:500]
            key = ("orderId", "order_id") if p.get("orderId") else ("orderLinkId", "link_id")
            orders = [o for o in recent if getattr(o, key[1]) == p[key[0]]]
        elif str(p.get("openOnly", "0")) == "1":
            orders = [o for o in orders[:500] if not o.is_open]
        else:
            orders = [o for o in orders if o.is_open]
        return self._page(p, [shapes.order(o) for o in orders], 20, 50)

    def _history(self, p: dict[str, Any]) -> dict[str, Any]:
        orders = self._orders_of(p)
        if p.get("orderId"):
            orders = [o for o in orders if o.order_id == p["orderId"]]
        elif p.get("orderLinkId"):
            orders = [o for o in orders if o.link_id == p["orderLinkId"]]
        else:
            lo, hi = self._window(p)
            orders = [o for o in orders if lo <= o.created <= hi]
        if p.get("orderStatus"):
            wanted = set(str(p["orderStatus"]).split(","))
            orders = [o for o in orders if o.status in wanted]
        return self._page(p, [shapes.order(o) for o in orders], 20, 50)

    def _executions(self, p: dict[str, Any]) -> dict[str, Any]:
        cat = p.get("category")
        if cat not in ("spot", "linear", "inverse", "option"):
            raise params_error("category invalid")
        lo, hi = self._window(p)
        out = [e for e in self.exchange.executions[::-1] if e.order.inst.category == cat and lo <= e.time <= hi
               and (not p.get("symbol") or e.order.inst.id == p["symbol"])
               and (not p.get("orderId") or e.order.order_id == p["orderId"])
               and (not p.get("orderLinkId") or e.order.link_id == p["orderLinkId"])
               and (not p.get("execType") or e.exec_type == p["execType"])]
        return self._page(p, [shapes.execution(e) for e in out], 50, 100)

    def _positions(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("category") != "linear":
            raise params_error("category only support linear in the emulator")
        ex = self.exchange
        if p.get("symbol"):
            inst = ex.instrument("linear", p["symbol"])
            rows = [shapes.position(ex.position(inst), ex.mark(inst))]
        elif p.get("settleCoin") or p.get("baseCoin"):
            rows = [shapes.position(pos, ex.mark(pos.inst)) for pos in ex.positions.values() if pos.side
                    and pos.inst.quote == p.get("settleCoin", pos.inst.quote) and pos.inst.base == p.get("baseCoin", pos.inst.base)]
        else:
            raise params_error("symbol, baseCoin or settleCoin is required")
        return self._page(p, rows, 20, 200)

    def _set_leverage(self, p: dict[str, Any]) -> dict[str, Any]:
        self.exchange.set_leverage(p.get("category"), p.get("symbol"), p.get("buyLeverage"), p.get("sellLeverage"))
        return {}

    def _trading_stop(self, p: dict[str, Any]) -> dict[str, Any]:
        self.exchange.set_trading_stop(p)
        return {}

    # -- helpers ----------------------------------------------------------------
    def _window(self, p: dict[str, Any]) -> tuple[int, int]:
        """Bybit's default query window: the last 7 days up to endTime (market clock)."""
        start, end = _opt_int(p.get("startTime")), _opt_int(p.get("endTime"))
        if start is not None and end is not None and end - start > WEEK_MS:
            raise params_error("The time range between startTime and endTime cannot exceed 7 days")
        if end is None:
            end = start + WEEK_MS if start is not None else self.exchange.now()
        return (end - WEEK_MS if start is None else start), end

    @staticmethod
    def _page(p: dict[str, Any], rows: list[dict[str, Any]], default: int, most: int) -> dict[str, Any]:
        limit = _limit(p, default, most)
        offset = _opt_int(p.get("cursor")) or 0
        page = rows[offset:offset + limit]
        more = offset + limit < len(rows)
        return {"category": p.get("category", ""), "list": page, "nextPageCursor": str(offset + limit) if more else ""}

    # -- admin --------------------------------------------------------------------
    def admin(self, action: str, params: dict[str, Any]) -> Any:
        """The /admin/<action> routes: advance, set_time, manual_order, manual_close, fault, down, up, clear_faults, state."""
        if action == "advance":
            self.advance(int(params.get("bars", 1)))
            return {"now": self.now_ms()}
        if action == "set_time":
            self.set_time(params["time"])
            return {"now": self.now_ms()}
        if action == "manual_order":
            return self.manual_order(params["symbol"], params["side"], float(params["amount"]), params.get("price"))
        if action == "manual_close":
            return self.manual_close(params["symbol"])
        if action == "fault":
            f = self.faults.add(params["op"], params["kind"], params.get("times", 1), params.get("until"),
                                **{k: v for k, v in params.items() if k not in ("op", "kind", "times", "until")})
            return {"op": f.op, "kind": f.kind, "times": f.times, "until": f.until}
        if action == "down":
            f = self.faults.down(params.get("seconds"), params.get("until"), params.get("op", "*"),
                                 int(params.get("status", 503)), bool(params.get("refuse", False)))
            return {"op": f.op, "kind": f.kind, "until": f.until}
        if action == "up":
            self.faults.up()
            return {}
        if action == "clear_faults":
            self.faults.clear()
            return {}
        if action == "state":
            with self.exchange.lock:
                return {"now": self.now_ms(), "balances": dict(self.exchange.coins),
                        "positions": [shapes.position(p, self.exchange.mark(p.inst)) for p in self.exchange.positions.values() if p.side],
                        "orders": len(self.exchange.orders), "executions": len(self.exchange.executions)}
        raise ConfigError(f"Unknown admin action {action!r}.")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, emulator: Emulator) -> None:
        self.emulator = emulator
        self.stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address):  # type: ignore[override]
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):  # type: ignore[override]
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Drop(Exception):
    """Close the connection without a reply."""


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle stalls

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the default stderr log
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def _serve(self, method: str) -> None:
        emu = self.server.emulator
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        try:
            if parts.path.startswith("/admin/"):
                self._admin(emu, parts.path[len("/admin/"):], body)
                return
            op = ROUTES.get((method, parts.path), ("unknown",))[0]
            emu.requests.append((method, parts.path, op))
            fault = emu.faults.take(op)
            kind = fault.kind if fault else None
            if kind == "latency":
                self.server.stopping.wait(float(fault.params.get("seconds", 0.5)))
            elif kind in ("timeout", "drop"):
                if kind == "timeout":
                    self.server.stopping.wait(float(fault.params.get("seconds", emu.hang_seconds)))
                raise _Drop
            elif kind == "down":
                if fault.params.get("refuse"):
                    raise _Drop
                status = int(fault.params.get("status", 503))
                self._send(status, f"<html><body><h1>{status} Service Unavailable</h1></body></html>".encode(), "text/html")
                return
            elif kind == "http_error":
                status = int(fault.params.get("status", 503))
                self._send(status, f"<html><body><h1>{status} Service Unavailable</h1></body></html>".encode(), "text/html")
                return
            elif kind == "rate_limit":
                env = _envelope(codes.RATE_LIMIT, "Too many visits!", {}, emu._wall_ms())
                reset = emu._wall_ms() + int(float(fault.params.get("reset_ms", 1000)))
                self._json(200, env, {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": str(reset)})
                return
            elif kind == "insufficient_balance" and op in ORDER_OPS:
                self._json(200, _envelope(codes.AB_NOT_ENOUGH, "ab not enough for new order", {}, emu._wall_ms()))
                return
            status, payload = emu.handle(method, parts.path, parts.query, body, self.headers)
            if kind in ("drop_after_accept", "timeout_after_accept"):
                if kind == "timeout_after_accept":
                    self.server.stopping.wait(float(fault.params.get("seconds", emu.hang_seconds)))
                raise _Drop
            private = ROUTES.get((method, parts.path), ("", False))[1]
            extra = {"X-Bapi-Limit": "20", "X-Bapi-Limit-Status": "19",
                     "X-Bapi-Limit-Reset-Timestamp": str(emu._wall_ms() + 1000)} if private else {}
            self._json(status, payload, extra)
        except _Drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        except Exception as exc:  # an emulator bug must not look like a network drop
            self._json(500, _envelope(10016, f"System error: {type(exc).__name__}: {exc}", {}, emu._wall_ms()))

    def _admin(self, emu: Emulator, action: str, body: str) -> None:
        if not secrets.compare_digest(self.headers.get("X-Admin-Token") or "", emu.admin_token):
            self._json(401, {"error": "missing or wrong X-Admin-Token header"})
            return
        try:
            params = json.loads(body or "{}")
            self._json(200, {"ok": True, "result": emu.admin(action, params)})
        except (ConfigError, KeyError, ValueError, TypeError) as exc:
            self._json(400, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})

    def _json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload, separators=(",", ":")).encode(), "application/json", headers)

    def _send(self, status: int, data: bytes, ctype: str, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


def _envelope(code: int, msg: str, result: Any, now_ms: int) -> dict[str, Any]:
    return {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": now_ms}


def _limit(p: Mapping[str, Any], default: int, most: int) -> int:
    value = _opt_int(p.get("limit"))
    if value is None:
        return default
    if value < 1:
        raise params_error("limit invalid")
    return min(value, most)


def _opt_int(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        raise params_error(f"invalid integer {value!r}") from None


def _ms(when: str | pd.Timestamp | int) -> int:
    if isinstance(when, (int, float)):
        return int(when)
    ts = pd.Timestamp(when)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)
