"""A venue backed by any ccxt exchange: real ones (sandbox by default) or the paper exchange.

Amounts and prices are rounded to the market's precision and checked against
its minimums before sending. Transient errors (network, timeouts, rate limits,
exchange unavailable) are retried with exponential backoff and jitter; after
one, the order is looked up by its client id before it is sent again, so a
retry never places a second order. An order keeps being retried for at least
``RetryPolicy.patience`` seconds (by the venue's clock), so a venue that is
down for a minute gets the order once it answers again. Permanent errors
surface at once as :class:`VenueError` naming the ccxt error.
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ccxt

from ..errors import LiveTradingRefused, PermanentVenueError, VenueError
from ..markets import MarketRules
from .base import OrderRequest
from .connection import ConnectionState

log = logging.getLogger("workbench.venues")

TRANSIENT = (ccxt.NetworkError, ccxt.ExchangeNotAvailable, ccxt.RequestTimeout, ccxt.DDoSProtection, ccxt.RateLimitExceeded)
PERMANENT = (ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.InsufficientFunds, ccxt.InvalidOrder, ccxt.BadSymbol, ccxt.BadRequest)
# ccxt.OrderNotFound is an InvalidOrder: "the venue does not know this order", answered as None by fetch_order.
# ccxt.InvalidNonce is a NetworkError (transient): the clock is re-synced with the exchange before the retry.

#: extra params ccxt needs to fetch one order by venue id (bybit refuses without acknowledging its 500-order window)
FETCH_ORDER_PARAMS: dict[str, dict[str, Any]] = {"bybit": {"acknowledged": True}}
#: exchanges whose fetch_order takes a client id param; the rest list orders filtered by one
CLIENT_ID_FETCH_ORDER: dict[str, str] = {"binance": "origClientOrderId", "binanceusdm": "origClientOrderId",
                                         "binancecoinm": "origClientOrderId", "paper": "clientOrderId"}
CLIENT_ID_LIST_FILTER: dict[str, tuple[str, tuple[str, ...]]] = {
    "bybit": ("orderLinkId", ("fetch_open_orders", "fetch_canceled_and_closed_orders")),
}
#: error texts that mean "already so", not a failure
ALREADY_SET = ("leverage not modified", "110043", "no need to change")


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter for transient venue errors.

    `attempts` bounds every call; an order is retried further until `patience`
    seconds have passed since its first try (0: attempts only), to ride out an
    outage (a venue down for a minute: patience=90).
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    jitter: float = 0.25
    patience: float = 0.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        d = min(self.max_delay, self.base_delay * (2**attempt))
        return d * (1 + self.jitter * (2 * rng.random() - 1))


class CcxtVenue:
    """The engine's Venue on top of a ccxt exchange instance."""

    def __init__(
        self,
        exchange: ccxt.Exchange,
        venue_id: str | None = None,
        live: bool = False,
        live_confirmed: bool = False,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        seed: int = 0,
        markets_ttl: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.exchange = exchange
        self.id = venue_id or str(exchange.id)
        self.live = live
        #: one reduce-only order can carry both a stop loss and a take profit (the exchange says so: the paper venue)
        self.stop_pairs = getattr(exchange, "stop_pairs", False) is True
        self.live_confirmed = live_confirmed
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.rng = random.Random(seed)
        self.connection = ConnectionState()
        self.markets_ttl = markets_ttl
        self.clock = clock
        self._markets: dict[str, MarketRules] = {}
        self._markets_at: float | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"CcxtVenue({self.id!r}, live={self.live})"

    # -- plumbing -----------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., Any], *args: Any, retry: bool = True, **kwargs: Any) -> Any:
        if self._closed:
            raise VenueError(f"{self.id} is disconnected: call connect() before {what}.")
        attempt = 0
        while True:
            t0 = time.perf_counter()
            try:
                out = fn(*args, **kwargs)
                state = self.connection
                if state.status == "connected" and state.error is None and not state.failures and state.retry_at is None:
                    state.last_ok, state.latency_ms = self.clock(), (time.perf_counter() - t0) * 1000  # the usual case: no new object
                else:
                    self.connection = ConnectionState("connected", self.clock(), (time.perf_counter() - t0) * 1000, None)
                return out
            except PERMANENT as exc:
                self.connection.error = f"{type(exc).__name__}: {_short(exc)}"
                raise PermanentVenueError(f"{self.id} refused {what}: {type(exc).__name__}: {_short(exc)}", type(exc).__name__) from None
            except TRANSIENT as exc:
                old = self.connection
                self.connection = ConnectionState("error", old.last_ok, None, f"{type(exc).__name__}: {_short(exc)}", old.failures + 1)
                if not retry or attempt + 1 >= self.retry.attempts:
                    raise VenueError(f"{self.id} {what} failed after {attempt + 1} attempt(s): {type(exc).__name__}: {_short(exc)}") from None
                self.sleep(self._retry_delay(exc, attempt))
                attempt += 1
            except ccxt.BaseError as exc:
                raise VenueError(f"{self.id} {what} failed: {type(exc).__name__}: {_short(exc)}") from None

    def _retry_delay(self, exc: BaseException, attempt: int) -> float:
        """Backoff; longer when the exchange says when its rate limit resets; re-sync the clock on a bad nonce."""
        delay = self.retry.delay(attempt, self.rng)
        if isinstance(exc, ccxt.InvalidNonce) and hasattr(self.exchange, "load_time_difference"):
            try:
                self.exchange.load_time_difference()
            except Exception:  # noqa: BLE001 - best effort; the retry reports the real failure
                pass
        if isinstance(exc, (ccxt.RateLimitExceeded, ccxt.DDoSProtection)):
            delay = max(delay, min(self.retry.max_delay, _rate_limit_wait(getattr(self.exchange, "last_response_headers", None), self.clock())))
        return delay

    # -- connection -------------------------------------------------------------
    def connect(self) -> ConnectionState:
        """(Re)connect: reload the markets as a probe; the state says connected or error."""
        self._closed = False
        self.connection.status = "connecting"
        try:
            self.load_markets(reload=True)
        except VenueError as exc:
            self.connection.status, self.connection.error = "error", str(exc)
        return self.connection

    def disconnect(self) -> None:
        """Stop talking to the venue until connect(); calls in between raise VenueError."""
        self._closed = True
        self.connection = ConnectionState("disconnected", self.connection.last_ok, None, None)

    @property
    def timeout(self) -> float:
        """Request timeout in seconds (ccxt's exchange.timeout is in ms)."""
        return float(self.exchange.timeout) / 1000.0

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        if not isinstance(seconds, (int, float)) or not seconds > 0:
            raise VenueError(f"Request timeout must be a positive number of seconds, got {seconds!r}.")
        self.exchange.timeout = int(seconds * 1000)

    # -- markets --------------------------------------------------------------
    def load_markets(self, reload: bool = False) -> dict[str, MarketRules]:
        """Markets, loaded once; reloaded when `reload` or older than `markets_ttl` seconds.

        A failed refresh keeps the markets already known (trading goes on) and is logged.
        """
        stale = self.markets_ttl is not None and self._markets_at is not None and self.clock() - self._markets_at >= self.markets_ttl
        if reload or stale or not self._markets:
            if not self._markets:
                self.connection.status = "connecting"
            try:
                markets = self._call("load_markets", self.exchange.load_markets, bool(reload or stale))
            except VenueError as exc:
                if self._markets and not reload:
                    log.warning("%s: market refresh failed, keeping the loaded markets: %s", self.id, exc)
                    self._markets_at = self.clock()
                    return self._markets
                raise
            self._markets = {s: MarketRules.from_ccxt(m) for s, m in markets.items()}
            self._markets_at = self.clock()
        return self._markets

    def market(self, symbol: str) -> MarketRules:
        markets = self.load_markets()
        if symbol not in markets:
            from ..errors import unknown

            raise unknown(f"symbol on {self.id}", symbol, list(markets)[:50])
        return markets[symbol]

    # -- data ---------------------------------------------------------------
    def fetch_ohlcv(self, symbol: str, timeframe: str, since: int | None = None, limit: int | None = None) -> list[list[float]]:
        return self._call("fetch_ohlcv", self.exchange.fetch_ohlcv, symbol, timeframe, since, limit)

    def fetch_ticker(self, symbol: str) -> dict[str, Any]:
        return self._call("fetch_ticker", self.exchange.fetch_ticker, symbol)

    def fetch_balance(self) -> dict[str, Any]:
        return self._call("fetch_balance", self.exchange.fetch_balance)

    def fetch_positions(self, symbols: list[str] | None = None) -> list[dict[str, Any]]:
        return self._call("fetch_positions", self.exchange.fetch_positions, symbols)

    def fetch_my_trades(self, symbol: str | None = None, since: int | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        return self._call("fetch_my_trades", self.exchange.fetch_my_trades, symbol, since, limit)

    def fetch_open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        return self._call("fetch_open_orders", self.exchange.fetch_open_orders, symbol)

    def set_leverage(self, leverage: float, symbol: str) -> None:
        """Set `symbol`'s leverage; an exchange answering "not modified" (already so) is fine."""
        if self.exchange.has.get("setLeverage"):
            try:
                self._call("set_leverage", self.exchange.set_leverage, leverage, symbol)
            except PermanentVenueError as exc:
                if not any(t in str(exc).lower() for t in ALREADY_SET):
                    raise

    # -- orders ---------------------------------------------------------------
    def fetch_order(self, symbol: str, order_id: str | None = None, client_order_id: str | None = None,
                    retry: bool = True) -> dict[str, Any] | None:
        """An order by venue id or client id; None if the venue does not know it.

        `retry`: False asks once (a transient failure raises at once), for a caller that asks again later itself.
        """
        if order_id:
            try:
                params = dict(FETCH_ORDER_PARAMS.get(self.exchange.id, {}))
                found = self._call("fetch_order", self.exchange.fetch_order, order_id, symbol, params, retry=retry)
                if found or client_order_id is None:
                    return found or None
            except PermanentVenueError as exc:
                if exc.kind not in ("InvalidOrder", "OrderNotFound", "BadRequest"):
                    raise
                if client_order_id is None:
                    return None
        if client_order_id is None:
            return None
        return self._fetch_by_client_id(symbol, client_order_id, retry)

    def _fetch_by_client_id(self, symbol: str, client_order_id: str, retry: bool = True) -> dict[str, Any] | None:
        ex_id = self.exchange.id
        if ex_id in CLIENT_ID_FETCH_ORDER:
            try:
                return self._call("fetch_order", self.exchange.fetch_order, None, symbol, {CLIENT_ID_FETCH_ORDER[ex_id]: client_order_id},
                                  retry=retry)
            except PermanentVenueError as exc:
                if exc.kind in ("InvalidOrder", "OrderNotFound", "BadRequest"):
                    return None
                raise
        if ex_id in CLIENT_ID_LIST_FILTER:
            param, methods = CLIENT_ID_LIST_FILTER[ex_id]
            for method in methods:
                for order in self._call(method, getattr(self.exchange, method), symbol, None, None, {param: client_order_id}, retry=retry):
                    if order.get("clientOrderId") == client_order_id:
                        return order
            return None
        try:
            found = self._call("fetch_order", self.exchange.fetch_order, None, symbol, {"clientOrderId": client_order_id}, retry=retry)
            if found:
                return found
        except (PermanentVenueError, VenueError, TypeError, ccxt.NotSupported, ccxt.ArgumentsRequired):
            pass
        for method in ("fetch_open_orders", "fetch_closed_orders"):
            if not self.exchange.has.get(_camel(method)):
                continue
            for order in self._call(method, getattr(self.exchange, method), symbol, retry=retry):
                if order.get("clientOrderId") == client_order_id:
                    return order
        return None

    def create_order(self, request: OrderRequest) -> dict[str, Any]:
        """Round, check and send an order; idempotent across retries by client order id."""
        if self.live and not self.live_confirmed:
            raise LiveTradingRefused(
                f"Refusing a live order on {self.id}: the deployment or order was not confirmed for live trading "
                "(pass live_confirmed=True / --confirm-live after reviewing the risk disclosure)."
            )
        rules = self.market(request.symbol)
        amount = rules.round_amount(request.amount)
        price = rules.round_price(request.price) if request.price else None
        ref_price = price or request.trigger_price or request.stop_loss_price or request.take_profit_price or request.reference_price
        if ref_price is None:
            ticker = self.fetch_ticker(request.symbol)
            ref_price = float(ticker.get("last") or ticker.get("close") or 0) or None
        rules.check(amount, ref_price or 0.0, reduce_only=request.reduce_only)
        symbol, kind, side, _, _, params = request.ccxt_args()
        for key in ("stopLossPrice", "takeProfitPrice", "triggerPrice"):
            if key in params:
                params[key] = rules.round_price(params[key])
        attempt = 0
        started = self.clock()
        while True:
            try:
                return self._call("create_order", self.exchange.create_order, symbol, kind, side, amount, price, params, retry=False)
            except PermanentVenueError as exc:
                if exc.kind == "InvalidOrder" and "duplicate" in str(exc).lower():
                    found = self.fetch_order(symbol, client_order_id=request.client_order_id)
                    if found:
                        return found
                raise
            except VenueError:
                # The order may have reached the venue before the failure: look before resending.
                found = self._lookup_after_failure(symbol, request.client_order_id)
                if found:
                    return found
                attempt += 1
                if attempt >= self.retry.attempts and self.clock() - started >= self.retry.patience:
                    raise
                self.sleep(self.retry.delay(min(attempt - 1, 16), self.rng))

    def _lookup_after_failure(self, symbol: str, cid: str) -> dict[str, Any] | None:
        try:
            return self.fetch_order(symbol, client_order_id=cid)
        except VenueError:
            return None

    def cancel_order(self, order_id: str, symbol: str) -> dict[str, Any]:
        return self._call("cancel_order", self.exchange.cancel_order, order_id, symbol)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "…"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _rate_limit_wait(headers: Any, now: float) -> float:
    """Seconds until the exchange's rate limit resets, from its reply headers (0 if unknown)."""
    if not headers:
        return 0.0
    lower = {str(k).lower(): v for k, v in dict(headers).items()}
    try:
        if "retry-after" in lower:
            return max(0.0, float(lower["retry-after"]))
        if "x-bapi-limit-reset-timestamp" in lower:
            return max(0.0, float(lower["x-bapi-limit-reset-timestamp"]) / 1000.0 - now)
    except (TypeError, ValueError):
        return 0.0
    return 0.0
