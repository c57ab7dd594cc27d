"""The emulated exchange's state and matching: one unified account, spot and linear perpetuals.

Fills follow :mod:`workbench.fills` (the same rules as the backtest and the
paper venue): market orders at the current price moved by slippage; resting
limit orders when a bar trades through them (maker fee); conditional orders
and position stop loss / take profit by the stop rules, stop loss first.
Fees are Bybit's: spot buys pay in the base coin, spot sells in USDT, linear
perpetuals in USDT. Linear positions are one-way (positionIdx 0) with
leverage, initial margin, unrealised and realised P&L and a liquidation price.

Everything here is plain Python under one lock; :mod:`.server` turns it into
Bybit's HTTP API. Refusals raise :class:`~.codes.BybitError` with Bybit's code.
"""
from __future__ import annotations

import itertools
import math
import random
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import fills
from ..errors import ConfigError
from . import codes
from .codes import BybitError, params_error
from .feed import PriceFeed
from .instruments import Instrument, instruments_for

OPEN = ("New", "PartiallyFilled", "Untriggered")
EPS = 1e-12
MMR = 0.005  # maintenance margin rate of the first risk tier
DAY_MS = 86_400_000


@dataclass
class Order:
    order_id: str
    link_id: str
    inst: Instrument
    side: str  # 'Buy' | 'Sell'
    order_type: str  # 'Market' | 'Limit'
    qty: float
    price: float  # 0 for market orders, as Bybit reports
    time_in_force: str
    created: int
    last_price_on_created: float
    reduce_only: bool = False
    trigger_price: float = 0.0
    trigger_direction: int = 0
    stop_order_type: str = ""
    create_type: str = "CreateByUser"
    status: str = "New"
    reject_reason: str = "EC_NoError"
    market_unit: str = ""
    take_profit: float = 0.0
    stop_loss: float = 0.0
    cum_qty: float = 0.0
    cum_value: float = 0.0
    cum_fee: float = 0.0
    fee_currency: str = ""
    updated: int = 0
    locked: float = 0.0  # spot: coin amount reserved while resting

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    @property
    def avg_price(self) -> float:
        return self.cum_value / self.cum_qty if self.cum_qty > EPS else 0.0


@dataclass
class Execution:
    exec_id: str
    order: Order
    price: float
    qty: float
    fee: float
    fee_rate: float
    fee_currency: str
    is_maker: bool
    time: int
    mark_price: float
    closed_size: float = 0.0
    exec_type: str = "Trade"
    seq: int = 0

    @property
    def value(self) -> float:
        return self.price * self.qty


@dataclass
class Position:
    inst: Instrument
    leverage: float
    size: float = 0.0  # signed: > 0 long
    avg: float = 0.0
    cum_realised: float = 0.0
    cur_realised: float = 0.0
    take_profit: float = 0.0
    stop_loss: float = 0.0
    created: int = 0
    updated: int = 0
    seq: int = 0

    @property
    def side(self) -> str:
        return "Buy" if self.size > EPS else "Sell" if self.size < -EPS else ""

    @property
    def value(self) -> float:
        return abs(self.size) * self.avg

    @property
    def im(self) -> float:
        return self.value / self.leverage

    def upl(self, mark: float) -> float:
        return self.size * (mark - self.avg)

    def liq_price(self) -> float:
        if not self.side:
            return 0.0
        if self.size > 0:
            return max(0.0, self.avg * (1 - 1 / self.leverage + MMR))
        return self.avg * (1 + 1 / self.leverage - MMR)

    def bust_price(self) -> float:
        if not self.side:
            return 0.0
        return self.avg * (1 - 1 / self.leverage) if self.size > 0 else self.avg * (1 + 1 / self.leverage)


@dataclass
class ExchangeConfig:
    """Money and costs of the emulated account."""

    balances: Mapping[str, float] = field(default_factory=lambda: {"USDT": 100_000.0})
    slippage: float = 0.0
    default_leverage: float = 10.0

    def __post_init__(self) -> None:
        fills.Costs(slippage=self.slippage)  # validates the fraction
        for coin, amount in self.balances.items():
            if not isinstance(amount, (int, float)) or not math.isfinite(amount) or amount < 0:
                raise ConfigError(f"Starting balance of {coin} must be a non-negative number, got {amount!r}.")


class Exchange:
    """State and matching of the emulated account (thread-safe through :attr:`lock`)."""

    def __init__(self, feed: PriceFeed, config: ExchangeConfig | None = None, seed: int = 0) -> None:
        self.feed = feed
        self.config = config or ExchangeConfig()
        self.lock = threading.RLock()
        self.instruments: dict[tuple[str, str], Instrument] = {}
        for sym in feed.symbols:
            for inst in instruments_for(sym, feed.price(sym)):
                self.instruments[(inst.category, inst.id)] = inst
        self.coins: dict[str, float] = {k.upper(): float(v) for k, v in self.config.balances.items()}
        self.coins.setdefault("USDT", 0.0)
        self.cum_realised: dict[str, float] = {}
        self.orders: list[Order] = []
        self.executions: list[Execution] = []
        self.positions: dict[str, Position] = {}
        self._ids = itertools.count(1)
        self._seed = seed
        self._rng = random.Random(seed)
        self._synced_ms = feed.now_ms()

    # -- ids and lookups ------------------------------------------------------
    def _next(self) -> int:
        return next(self._ids)

    def _order_id(self, category: str) -> str:
        n = self._next()
        if category == "spot":
            return str(1_900_000_000_000_000_000 + self._seed * 1_000_000 + n)
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _exec_id(self, category: str) -> str:
        n = self._next()
        if category == "spot":
            return str(2_100_000_000_000_000_000 + self._seed * 1_000_000 + n)
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def instrument(self, category: str | None, symbol_id: str | None) -> Instrument:
        if category not in ("spot", "linear"):
            raise params_error(f"category {category!r} is not supported by the emulator (spot, linear)")
        inst = self.instruments.get((category, str(symbol_id or "").upper()))
        if inst is None:
            raise params_error("symbol invalid")
        return inst

    def find_instrument(self, symbol: str) -> Instrument:
        """An instrument by ccxt symbol: 'BTC/USDT' (spot) or 'BTC/USDT:USDT' (linear)."""
        linear = ":" in symbol
        base_quote = symbol.split(":")[0]
        for inst in self.instruments.values():
            if inst.feed.split(":")[0] == base_quote and inst.spot != linear:
                return inst
        from ..errors import unknown

        names = [f"{i.base}/{i.quote}" + ("" if i.spot else f":{i.quote}") for i in self.instruments.values()]
        raise unknown("emulator symbol", symbol, names)

    def now(self) -> int:
        return self.feed.now_ms()

    def mark(self, inst: Instrument) -> float:
        return inst.round_price(self.feed.price(inst.feed))

    def position(self, inst: Instrument) -> Position:
        pos = self.positions.get(inst.id)
        if pos is None:
            pos = self.positions[inst.id] = Position(inst, self.config.default_leverage, created=self.now())
        return pos

    # -- balances -------------------------------------------------------------
    def locked(self, coin: str) -> float:
        return sum(o.locked for o in self.orders if o.is_open and o.locked and _lock_coin(o) == coin)

    def order_im(self) -> float:
        total = 0.0
        for o in self.orders:
            if o.is_open and not o.inst.spot and not o.reduce_only and o.order_type == "Limit":
                total += (o.qty - o.cum_qty) * o.price / self.position(o.inst).leverage
        return total

    def position_im(self) -> float:
        return sum(p.im for p in self.positions.values() if p.side)

    def upl(self) -> float:
        return sum(p.upl(self.mark(p.inst)) for p in self.positions.values() if p.side)

    def available(self, coin: str) -> float:
        """What a new order may use of `coin`: wallet less locked (and, for USDT, margin; plus losses)."""
        free = self.coins.get(coin, 0.0) - self.locked(coin)
        if coin == "USDT":
            free += min(0.0, self.upl()) - self.position_im() - self.order_im()
        return free

    # -- orders ---------------------------------------------------------------
    def place(self, req: Mapping[str, Any], create_type: str = "CreateByUser") -> Order:
        """Validate and place an order from a Bybit create-order request body."""
        with self.lock:
            self.sync()
            inst = self.instrument(req.get("category"), req.get("symbol"))
            side = str(req.get("side", ""))
            otype = str(req.get("orderType", ""))
            if side not in ("Buy", "Sell"):
                raise params_error("side invalid (Buy or Sell)")
            if otype not in ("Market", "Limit"):
                raise params_error("orderType invalid (Market or Limit)")
            link_id = str(req.get("orderLinkId") or "")
            if len(link_id) > 36:
                raise params_error("orderLinkId is too long (at most 36 characters)")
            if link_id and any(o.link_id == link_id for o in self.orders):
                raise BybitError(codes.DUPLICATE_LINK_ID, "OrderLinkedID is duplicate")
            qty = _num(req.get("qty"), "qty")
            price = _num(req.get("price"), "price") if otype == "Limit" else 0.0
            if otype == "Limit" and price <= 0:
                raise params_error("price is required for a limit order")
            last = self.mark(inst)
            market_unit = str(req.get("marketUnit") or "")
            if inst.spot and otype == "Market" and side == "Buy" and market_unit != "baseCoin":
                market_unit = "quoteCoin"  # Bybit's default for spot market buys: qty is the cost
                qty = inst.floor_qty(qty / last)
            elif inst.spot and otype == "Market":
                market_unit = market_unit or "baseCoin"
            if qty <= 0:
                raise params_error("qty must be positive")
            tif = str(req.get("timeInForce") or ("IOC" if otype == "Market" else "GTC"))
            trigger = _num(req.get("triggerPrice"), "triggerPrice") if req.get("triggerPrice") not in (None, "") else 0.0
            reduce_only = _bool(req.get("reduceOnly")) or _bool(req.get("closeOnTrigger"))
            order = Order(
                order_id=self._order_id(inst.category), link_id=link_id, inst=inst, side=side, order_type=otype,
                qty=qty, price=price, time_in_force=tif, created=self.now(), last_price_on_created=last,
                reduce_only=reduce_only, create_type=create_type, market_unit=market_unit if inst.spot else "",
                take_profit=_num(req.get("takeProfit"), "takeProfit") if req.get("takeProfit") else 0.0,
                stop_loss=_num(req.get("stopLoss"), "stopLoss") if req.get("stopLoss") else 0.0,
            )
            order.updated = order.created
            self._check_limits(order, price or last)
            if trigger:
                order.trigger_price = inst.round_price(trigger)
                direction = str(req.get("triggerDirection") or "")
                order.trigger_direction = int(direction) if direction in ("1", "2") else (1 if trigger > last else 2)
                order.stop_order_type = "Stop"
                order.status = "Untriggered"
                if reduce_only:
                    self._check_reduce_only(order)
                self.orders.append(order)
                return order
            self._check_funds(order, price or last)
            if order.reduce_only:
                self._check_reduce_only(order)
            self.orders.append(order)
            self._execute_new(order, last)
            return order

    def _check_limits(self, order: Order, price: float) -> None:
        inst = order.inst
        if not inst.on_step(order.qty):
            if inst.spot:
                raise BybitError(codes.SPOT_QTY_DECIMALS, "Order quantity has too many decimals.")
            raise params_error(f"Qty invalid: must be a multiple of {inst.qty_step}")
        if order.qty < inst.min_qty - EPS:
            if inst.spot:
                raise BybitError(codes.SPOT_MIN_QTY, "Order quantity exceeded lower limit.")
            raise params_error("The number of contracts exceeds minimum limit allowed")
        if order.qty > inst.max_qty + EPS:
            raise params_error("The number of contracts exceeds maximum limit allowed")
        if order.qty * price < inst.min_notional - EPS and not order.reduce_only:
            if inst.spot:
                raise BybitError(codes.SPOT_MIN_VALUE, "Order value exceeded lower limit.")
            raise BybitError(codes.MIN_ORDER_VALUE, "Order does not meet minimum order value 5USDT")

    def _check_funds(self, order: Order, price: float) -> None:
        inst = order.inst
        if inst.spot:
            coin, need = (inst.quote, order.qty * price) if order.side == "Buy" else (inst.base, order.qty)
            if need > self.available(coin) + EPS:
                raise BybitError(codes.SPOT_INSUFFICIENT, "Insufficient balance.")
            return
        if order.reduce_only:
            return
        pos = self.position(inst)
        opening = order.qty
        if pos.side and (pos.size > 0) != (order.side == "Buy"):
            opening = max(0.0, order.qty - abs(pos.size))
        need = opening * price / pos.leverage + fills.fee(order.qty * price, inst.taker)
        if need > self.available("USDT") + EPS:
            raise BybitError(codes.AB_NOT_ENOUGH, "ab not enough for new order")

    def _check_reduce_only(self, order: Order) -> None:
        if order.inst.spot:
            return
        pos = self.position(order.inst)
        if not pos.side or (pos.size > 0) == (order.side == "Buy"):
            raise BybitError(codes.REDUCE_ONLY, "current position is zero, cannot fix reduce-only order qty")
        order.qty = min(order.qty, abs(pos.size))

    def _execute_new(self, order: Order, last: float) -> None:
        inst = order.inst
        marketable = order.order_type == "Market" or (
            order.price >= last if order.side == "Buy" else order.price <= last
        )
        if marketable:
            if order.time_in_force == "PostOnly":
                self._finish(order, "Cancelled", "EC_PostOnlyWillTakeLiquidity")
                return
            px = fills.market_fill_price(order.side.lower(), last, self.config.slippage)
            if order.order_type == "Limit":  # never worse than the limit
                px = min(px, order.price) if order.side == "Buy" else max(px, order.price)
            self._fill(order, inst.round_price(px), is_maker=False)
            return
        if order.time_in_force in ("IOC", "FOK"):
            self._finish(order, "Cancelled", "EC_NoImmediateQtyToFill")
            return
        if inst.spot:
            order.locked = order.qty * order.price if order.side == "Buy" else order.qty

    def _finish(self, order: Order, status: str, reason: str = "EC_NoError") -> None:
        order.status = status
        order.reject_reason = reason
        order.locked = 0.0
        order.updated = self.now()

    def cancel(self, category: str, symbol_id: str, order_id: str | None, link_id: str | None) -> Order:
        with self.lock:
            self.sync()
            inst = self.instrument(category, symbol_id)
            if not order_id and not link_id:
                raise params_error("orderId or orderLinkId is required")
            for o in self.orders:
                if o.inst == inst and ((order_id and o.order_id == order_id) or (link_id and o.link_id == link_id)):
                    if not o.is_open:
                        break
                    self._finish(o, "Cancelled" if o.status != "Untriggered" else "Deactivated")
                    if o.cum_qty > EPS:
                        o.status = "PartiallyFilledCanceled"
                    return o
            raise BybitError(codes.ORDER_NOT_FOUND, "order not exists or too late to cancel")

    # -- fills ----------------------------------------------------------------
    def _fill(self, order: Order, price: float, is_maker: bool, exec_type: str = "Trade") -> Execution:
        inst = order.inst
        qty = order.qty - order.cum_qty
        rate = 0.0 if exec_type == "BustTrade" else (inst.maker if is_maker else inst.taker)
        t = self.now()
        closed = 0.0
        if inst.spot:
            if order.side == "Buy":
                fee, fee_ccy = fills.fee(qty, rate), inst.base
                self.coins[inst.quote] = self.coins.get(inst.quote, 0.0) - qty * price
                self.coins[inst.base] = self.coins.get(inst.base, 0.0) + qty - fee
            else:
                fee, fee_ccy = fills.fee(qty * price, rate), inst.quote
                self.coins[inst.base] = self.coins.get(inst.base, 0.0) - qty
                self.coins[inst.quote] = self.coins.get(inst.quote, 0.0) + qty * price - fee
        else:
            fee, fee_ccy = fills.fee(qty * price, rate), ""
            closed = self._apply_to_position(order, qty, price, fee, t)
        order.cum_qty += qty
        order.cum_value += qty * price
        order.cum_fee += fee
        order.fee_currency = fee_ccy or inst.quote
        order.status = "Filled"
        order.locked = 0.0
        order.updated = t
        ex = Execution(self._exec_id(inst.category), order, price, qty, fee, rate, fee_ccy, is_maker, t,
                       self.mark(inst), closed, exec_type, self._next())
        self.executions.append(ex)
        return ex

    def _apply_to_position(self, order: Order, qty: float, price: float, fee: float, t: int) -> float:
        pos = self.position(order.inst)
        signed = qty if order.side == "Buy" else -qty
        self.coins["USDT"] -= fee
        closed = 0.0
        if not pos.side:
            pos.created, pos.cur_realised = t, 0.0
        if not pos.side or (pos.size > 0) == (signed > 0):
            pos.avg = (abs(pos.size) * pos.avg + qty * price) / (abs(pos.size) + qty)
            pos.size = round(pos.size + signed, 10)
        else:
            closed = min(qty, abs(pos.size))
            pnl = closed * (price - pos.avg) * (1 if pos.size > 0 else -1)
            self.coins["USDT"] += pnl
            pos.cum_realised += pnl
            pos.cur_realised += pnl
            was_long = pos.size > 0
            pos.size = round(pos.size + signed, 10)
            if abs(pos.size) < EPS:
                pos.size, pos.avg, pos.take_profit, pos.stop_loss = 0.0, 0.0, 0.0, 0.0
            elif (pos.size > 0) != was_long:
                pos.avg, pos.created, pos.take_profit, pos.stop_loss = price, t, 0.0, 0.0
        pos.cum_realised -= fee
        pos.cur_realised -= fee
        self.cum_realised["USDT"] = self.cum_realised.get("USDT", 0.0) + (-fee)
        if order.take_profit and pos.side:
            pos.take_profit = order.take_profit
        if order.stop_loss and pos.side:
            pos.stop_loss = order.stop_loss
        pos.updated = t
        pos.seq = self._next()
        return closed

    # -- clock ------------------------------------------------------------------
    def sync(self) -> None:
        """Match every bar that closed since the last sync (call after moving the clock)."""
        with self.lock:
            now = self.now()
            if now <= self._synced_ms:
                return
            bars = []
            for sym in self.feed.symbols:
                bars += [(b[0], sym, b) for b in self.feed.bars_between(sym, self._synced_ms, now)]
            for ts, sym, bar in sorted(bars, key=lambda x: (x[0], x[1])):
                self._synced_ms = ts + self.feed.step_ms
                self._match_bar(sym, bar)
            self._synced_ms = now

    def _match_bar(self, feed_symbol: str, bar: tuple[int, float, float, float, float, float]) -> None:
        _, o, h, lo, c, _ = bar
        for order in [x for x in self.orders if x.is_open and x.inst.feed == feed_symbol]:
            inst = order.inst
            if order.status == "Untriggered":
                side = "buy" if order.trigger_direction == 1 else "sell"
                trig = fills.stop_order_trigger(side, order.trigger_price, o, h, lo)
                if trig is None:
                    continue
                order.status, order.updated = "New", self.now()
                if order.reduce_only and not inst.spot:
                    pos = self.position(inst)
                    if not pos.side or (pos.size > 0) == (order.side == "Buy"):
                        self._finish(order, "Deactivated", "EC_ReduceOnlySetButNotReduce")
                        continue
                    order.qty = min(order.qty, abs(pos.size))
                if order.order_type == "Market":
                    px = fills.market_fill_price(order.side.lower(), trig, self.config.slippage)
                    self._fill(order, inst.round_price(px), is_maker=False)
                    continue
            if order.order_type == "Limit" and order.status in ("New", "PartiallyFilled"):
                px = fills.limit_fill(order.side.lower(), order.price, o, h, lo)
                if px is not None:
                    self._fill(order, inst.round_price(px), is_maker=True)
        for pos in [p for p in self.positions.values() if p.side and p.inst.feed == feed_symbol]:
            self._check_position(pos, o, h, lo)

    def _check_position(self, pos: Position, o: float, h: float, lo: float) -> None:
        side = "long" if pos.size > 0 else "short"
        close_side = "Sell" if pos.size > 0 else "Buy"
        liq = pos.liq_price()
        if (side == "long" and lo <= liq) or (side == "short" and h >= liq):
            order = self._internal_order(pos, close_side, "", "CreateByLiq")
            self._fill(order, pos.inst.round_price(liq), is_maker=False, exec_type="BustTrade")
            return
        nan = float("nan")
        hit = fills.stop_exit(side, pos.stop_loss or nan, pos.take_profit or nan, o, h, lo)
        if hit is None:
            return
        trig, reason = hit
        kind = "StopLoss" if reason == "stop_loss" else "TakeProfit"
        order = self._internal_order(pos, close_side, kind, f"CreateBy{kind}")
        order.trigger_price = pos.stop_loss if kind == "StopLoss" else pos.take_profit
        px = fills.market_fill_price(close_side.lower(), trig, self.config.slippage)
        self._fill(order, pos.inst.round_price(px), is_maker=False)

    def _internal_order(self, pos: Position, side: str, stop_type: str, create_type: str) -> Order:
        order = Order(
            order_id=self._order_id("linear"), link_id="", inst=pos.inst, side=side, order_type="Market",
            qty=abs(pos.size), price=0.0, time_in_force="IOC", created=self.now(),
            last_price_on_created=self.mark(pos.inst), reduce_only=True, stop_order_type=stop_type,
            create_type=create_type,
        )
        order.updated = order.created
        self.orders.append(order)
        return order

    # -- positions --------------------------------------------------------------
    def set_leverage(self, category: str, symbol_id: str, buy: Any, sell: Any) -> None:
        with self.lock:
            self.sync()
            inst = self.instrument(category, symbol_id)
            if inst.spot:
                raise params_error("category only support linear or inverse")
            lev = _num(buy, "buyLeverage")
            if _num(sell, "sellLeverage") != lev:
                raise params_error("buyLeverage must equal sellLeverage in one-way mode")
            if not 1 <= lev <= inst.max_leverage:
                raise params_error(f"leverage invalid: must be between 1 and {inst.max_leverage:g}")
            pos = self.position(inst)
            if abs(pos.leverage - lev) < EPS:
                raise BybitError(codes.LEVERAGE_NOT_MODIFIED, "leverage not modified")
            old = pos.leverage
            pos.leverage = lev
            if pos.side and self.available("USDT") < -EPS:
                pos.leverage = old
                raise BybitError(codes.AB_NOT_ENOUGH, "ab not enough for new order")

    def set_trading_stop(self, req: Mapping[str, Any]) -> None:
        with self.lock:
            self.sync()
            inst = self.instrument(req.get("category"), req.get("symbol"))
            pos = self.position(inst)
            if inst.spot or not pos.side:
                raise params_error("can not set tp/sl/ts for zero position")
            if "takeProfit" in req:
                pos.take_profit = float(req["takeProfit"] or 0)
            if "stopLoss" in req:
                pos.stop_loss = float(req["stopLoss"] or 0)

    # -- manual (web page) actions ---------------------------------------------
    def manual_order(self, symbol: str, side: str, qty: float, price: float | None = None, reduce_only: bool = False) -> Order:
        """Place an order as a person on the exchange's web page would (no orderLinkId)."""
        inst = self.find_instrument(symbol)
        if side.lower() not in ("buy", "sell"):
            raise ConfigError(f"side must be 'buy' or 'sell', got {side!r}.")
        req = {"category": inst.category, "symbol": inst.id, "side": side.capitalize(),
               "orderType": "Limit" if price else "Market", "qty": str(qty), "reduceOnly": reduce_only}
        if price:
            req["price"] = str(price)
        if inst.spot and not price:
            req["marketUnit"] = "baseCoin"
        return self.place(req)

    def manual_close(self, symbol: str) -> Order:
        """Close a linear position at market from the web page (a reduce-only market order)."""
        with self.lock:
            self.sync()
            inst = self.find_instrument(symbol)
            pos = self.positions.get(inst.id)
            if inst.spot or pos is None or not pos.side:
                raise ConfigError(f"There is no open {symbol} position to close; open one first (manual_order).")
            return self.manual_order(symbol, "sell" if pos.size > 0 else "buy", abs(pos.size), reduce_only=True)


def _lock_coin(order: Order) -> str:
    return order.inst.quote if order.side == "Buy" else order.inst.base


def _num(value: Any, name: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise params_error(f"{name} invalid: {value!r}") from None
    if not math.isfinite(x) or x < 0:
        raise params_error(f"{name} invalid: {value!r}")
    return x


def _bool(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1")
