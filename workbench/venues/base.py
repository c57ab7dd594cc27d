"""The one narrow interface the engine uses for every venue.

Results are ccxt's unified structures (order, trade, position, balance
dicts), whatever the venue: ccxt exchanges return them natively, the paper
exchange speaks ccxt's API, and the IB venue converts to them.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, Protocol

from ..errors import ConfigError
from ..markets import MarketRules

OrderType = Literal["market", "limit", "stop"]


@dataclass(frozen=True, init=False)
class OrderRequest:
    """An order as the engine hands it to a venue (immutable; checked when made)."""

    symbol: str
    side: Literal["buy", "sell"]
    type: OrderType
    amount: float
    client_order_id: str
    price: float | None = None
    trigger_price: float | None = None
    stop_loss_price: float | None = None
    take_profit_price: float | None = None
    reduce_only: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)
    #: the price the engine decided at (a market order's minimum-notional check uses it instead of a ticker)
    reference_price: float | None = None

    def __init__(
        self, symbol: str, side: Literal["buy", "sell"], type: OrderType, amount: float, client_order_id: str,
        price: float | None = None, trigger_price: float | None = None, stop_loss_price: float | None = None,
        take_profit_price: float | None = None, reduce_only: bool = False, params: Mapping[str, Any] | None = None,
        reference_price: float | None = None,
    ) -> None:
        # one update of the instance dict: a frozen dataclass's own __init__ sets each field through object.__setattr__
        # (~3x the cost, on every order)
        self.__dict__.update(
            symbol=symbol, side=side, type=type, amount=amount, client_order_id=client_order_id, price=price,
            trigger_price=trigger_price, stop_loss_price=stop_loss_price, take_profit_price=take_profit_price,
            reduce_only=reduce_only, params={} if params is None else params, reference_price=reference_price,
        )
        self._check()

    def _check(self) -> None:
        if self.side not in ("buy", "sell"):
            raise ConfigError(f"Order side must be 'buy' or 'sell', got {self.side!r}.")
        if self.type not in ("market", "limit", "stop"):
            raise ConfigError(f"Order type must be 'market', 'limit' or 'stop', got {self.type!r}.")
        if not isinstance(self.amount, (int, float)) or not math.isfinite(self.amount) or self.amount <= 0:
            raise ConfigError(f"Order amount must be a positive number, got {self.amount!r}.")
        if self.type == "limit" and (self.price is None or not math.isfinite(self.price) or self.price <= 0):
            raise ConfigError("A limit order needs a positive price: pass price=...")
        if self.type == "stop" and not (self.trigger_price or self.stop_loss_price or self.take_profit_price):
            raise ConfigError("A stop order needs trigger_price (or stop_loss_price / take_profit_price).")

    def ccxt_args(self) -> tuple[str, str, str, float, float | None, dict[str, Any]]:
        """Arguments of ccxt's create_order(symbol, type, side, amount, price, params)."""
        params: dict[str, Any] = {"clientOrderId": self.client_order_id, **self.params}
        if self.reduce_only:
            params["reduceOnly"] = True
        if self.stop_loss_price:
            params["stopLossPrice"] = self.stop_loss_price
        if self.take_profit_price:
            params["takeProfitPrice"] = self.take_profit_price
        if self.trigger_price:
            params["triggerPrice"] = self.trigger_price
        kind = "limit" if self.type == "limit" else "market"
        return self.symbol, kind, self.side, self.amount, self.price, params


class Venue(Protocol):
    """What the engine needs from a venue."""

    id: str
    live: bool
    #: optional (default False): one reduce-only order can carry both stop_loss_price and take_profit_price
    #: (the first level reached fills it, the order is then done)

    def load_markets(self, reload: bool = False) -> dict[str, MarketRules]: ...
    def market(self, symbol: str) -> MarketRules: ...
    def fetch_ohlcv(self, symbol: str, timeframe: str, since: int | None = None, limit: int | None = None) -> list[list[float]]: ...
    def fetch_ticker(self, symbol: str) -> dict[str, Any]: ...
    def fetch_balance(self) -> dict[str, Any]: ...
    def create_order(self, request: OrderRequest) -> dict[str, Any]: ...
    def cancel_order(self, order_id: str, symbol: str) -> dict[str, Any]: ...
    def fetch_order(self, symbol: str, order_id: str | None = None, client_order_id: str | None = None,
                    retry: bool = True) -> dict[str, Any] | None: ...
    def fetch_open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]: ...
    def fetch_my_trades(self, symbol: str | None = None, since: int | None = None, limit: int | None = None) -> list[dict[str, Any]]: ...
    def fetch_positions(self, symbols: list[str] | None = None) -> list[dict[str, Any]]: ...
    def set_leverage(self, leverage: float, symbol: str) -> None: ...


def client_order_id(deployment_id: str, symbol: str, bar_ms: int, purpose: str) -> str:
    """A deterministic client order id (<= 36 chars, as Bybit allows).

    The same deployment, symbol, bar and purpose always give the same id, so a
    retry after a timeout can find the order instead of placing a second one.
    """
    return f"wb{deployment_id[:8]}-{_symbol_tag(symbol)}-{_b36(bar_ms // 1000)}-{purpose}"[:36]


@lru_cache(maxsize=4096)
def _symbol_tag(symbol: str) -> str:
    return hashlib.sha1(symbol.encode()).hexdigest()[:4]


def _b36(n: int) -> str:
    """`n` (>= 0) in base 36, two digits at a time (a client id per order)."""
    n = int(n)
    out = ""
    while n >= 1296:
        n, r = divmod(n, 1296)
        out = _B36_PAIRS[r] + out
    return (_B36[n] if n < 36 else _B36_PAIRS[n]) + out


_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_B36_PAIRS = [a + b for a in _B36 for b in _B36]
