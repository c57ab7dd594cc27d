"""A venue backed by any ccxt exchange: real ones (sandbox by default) or the paper exchange.

Amounts and prices are rounded to the market's precision and checked against
its minimums before sending. Transient errors (network, timeouts, rate limits,
exchange unavailable) are retried with exponential backoff and jitter; after
one, the order is looked up by its client id before it is sent again, so a
retry never places a second order. Permanent errors surface at once as
:class:`VenueError` naming the ccxt error.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ccxt

from ..errors import LiveTradingRefused, VenueError
from ..markets import MarketRules
from .base import OrderRequest

TRANSIENT = (ccxt.NetworkError, ccxt.ExchangeNotAvailable, ccxt.RequestTimeout, ccxt.DDoSProtection, ccxt.RateLimitExceeded)
PERMANENT = (ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.InsufficientFunds, ccxt.InvalidOrder, ccxt.BadSymbol, ccxt.BadRequest)
# ccxt.OrderNotFound is an InvalidOrder: "the venue does not know this order", answered as None by fetch_order.


class PermanentVenueError(VenueError):
    """The venue refused for a reason that retrying cannot fix."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter for transient venue errors."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    jitter: float = 0.25

    def delay(self, attempt: int, rng: random.Random) -> float:
        d = min(self.max_delay, self.base_delay * (2**attempt))
        return d * (1 + self.jitter * (2 * rng.random() - 1))


@dataclass
class ConnectionState:
    """Per-venue connection status for panels: disconnected/connecting/connected/error."""

    status: str = "disconnected"
    last_ok: float | None = None
    latency_ms: float | None = None
    error: str | None = None


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
    ) -> None:
        self.exchange = exchange
        self.id = venue_id or str(exchange.id)
        self.live = live
        self.live_confirmed = live_confirmed
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.rng = random.Random(seed)
        self.connection = ConnectionState()
        self._markets: dict[str, MarketRules] = {}

    def __repr__(self) -> str:
        return f"CcxtVenue({self.id!r}, live={self.live})"

    # -- plumbing -----------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., Any], *args: Any, retry: bool = True, **kwargs: Any) -> Any:
        attempt = 0
        while True:
            t0 = time.perf_counter()
            try:
                out = fn(*args, **kwargs)
                self.connection = ConnectionState("connected", time.time(), (time.perf_counter() - t0) * 1000, None)
                return out
            except PERMANENT as exc:
                self.connection.error = f"{type(exc).__name__}: {exc}"
                raise PermanentVenueError(f"{self.id} refused {what}: {type(exc).__name__}: {_short(exc)}", type(exc).__name__) from None
            except TRANSIENT as exc:
                self.connection = ConnectionState("error", self.connection.last_ok, None, f"{type(exc).__name__}: {_short(exc)}")
                if not retry or attempt + 1 >= self.retry.attempts:
                    raise VenueError(f"{self.id} {what} failed after {attempt + 1} attempt(s): {type(exc).__name__}: {_short(exc)}") from None
                self.sleep(self.retry.delay(attempt, self.rng))
                attempt += 1
            except ccxt.BaseError as exc:
                raise VenueError(f"{self.id} {what} failed: {type(exc).__name__}: {_short(exc)}") from None

    # -- markets --------------------------------------------------------------
    def load_markets(self, reload: bool = False) -> dict[str, MarketRules]:
        if reload or not self._markets:
            self.connection.status = "connecting"
            markets = self._call("load_markets", self.exchange.load_markets, reload)
            self._markets = {s: MarketRules.from_ccxt(m) for s, m in markets.items()}
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
        if self.exchange.has.get("setLeverage"):
            self._call("set_leverage", self.exchange.set_leverage, leverage, symbol)

    # -- orders ---------------------------------------------------------------
    def fetch_order(self, symbol: str, order_id: str | None = None, client_order_id: str | None = None) -> dict[str, Any] | None:
        """An order by venue id or client id; None if the venue does not know it."""
        if order_id:
            try:
                return self._call("fetch_order", self.exchange.fetch_order, order_id, symbol)
            except PermanentVenueError as exc:
                if exc.kind in ("InvalidOrder", "OrderNotFound", "BadRequest"):
                    return None
                raise
        if client_order_id is None:
            return None
        try:
            found = self._call("fetch_order", self.exchange.fetch_order, None, symbol, {"clientOrderId": client_order_id})
            if found:
                return found
        except (PermanentVenueError, VenueError, TypeError, ccxt.NotSupported, ccxt.ArgumentsRequired):
            pass
        for method in ("fetch_open_orders", "fetch_closed_orders"):
            if not self.exchange.has.get(_camel(method)):
                continue
            for order in self._call(method, getattr(self.exchange, method), symbol):
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
        ref_price = price or request.trigger_price or request.stop_loss_price or request.take_profit_price
        if ref_price is None:
            ticker = self.fetch_ticker(request.symbol)
            ref_price = float(ticker.get("last") or ticker.get("close") or 0) or None
        rules.check(amount, ref_price or 0.0) if ref_price else rules.check(amount, 0.0)
        symbol, kind, side, _, _, params = request.ccxt_args()
        for key in ("stopLossPrice", "takeProfitPrice", "triggerPrice"):
            if key in params:
                params[key] = rules.round_price(params[key])
        attempt = 0
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
                if attempt >= self.retry.attempts:
                    raise
                self.sleep(self.retry.delay(attempt - 1, self.rng))

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
