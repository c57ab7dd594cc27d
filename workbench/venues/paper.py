"""The paper venue: a simulated exchange that speaks ccxt's unified API.

``PaperExchange`` subclasses ``ccxt.Exchange`` and overrides the unified
methods (no HTTP), so code written for any ccxt exchange runs against it. It
fills orders from the market data it is fed, with :mod:`workbench.fills`
rules (never re-implemented here).

Driving it
    ``feed_bar(symbol, ts, o, h, l, c, v)`` processes the resting orders of
    `symbol` against that bar, then sets the last price to its close.
    ``feed_tick(symbol, ts, price)`` is a bar with o=h=l=c=price (history keeps
    1-minute candles). ``load_history(symbol, df)`` preloads bars for
    ``fetch_ohlcv`` without processing orders. A bar whose timestamp is not
    after the last one of its symbol is ignored, so a re-fed bar after a
    restart is harmless.

Order of processing within one bar
    1. Protective orders (reduce-only market orders with ``stopLossPrice`` /
       ``takeProfitPrice``, or one order with both: a stop pair, see
       ``stop_pairs``), per position: its stop loss and take profit are
       evaluated together by :func:`workbench.fills.stop_exit` (a gap at the
       open fills at the open, else at the level; stop loss wins when the bar
       crosses both). A triggered one is a market order at the trigger price
       with slippage and the taker fee (``info['reason']`` says which level).
    2. Liquidation of swap positions whose (isolated) liquidation price the
       bar reaches, at that price (or the open on a gap), taker fee.
    3. Plain stop-market orders (``triggerPrice``), per
       :func:`workbench.fills.stop_order_trigger`, then as in 1.
    4. Limit orders, in creation order, per :func:`workbench.fills.limit_fill`
       with the maker fee; with ``partial_fill_volume_fraction`` the fills of
       one bar share that fraction of its volume.
    Whenever a fill leaves a position flat (or flips it), the reduce-only
    orders that can no longer reduce it are cancelled (OCO); the filling
    order's ``info['canceledOrders']`` lists their ids. An order created
    during or after bar i is first evaluated on bar i+1, so a stop placed at
    entry is active from the next bar, as in vectorbt.

Market orders fill at once at the last fed close, moved by the slippage
(:func:`workbench.fills.market_fill_price`), with the taker fee. Fees are in
the quote (spot) or settle (swap) currency. Spot buys need quote, sells need
base; there is no spot shorting. Swaps hold one net isolated position per
symbol: margin = notional / leverage, realized P&L goes to the settle balance.

Persistence
    ``snapshot()`` returns a JSON-serializable dict of the trading state
    (balances, orders, trades, positions, leverage, last bars, id counters) and
    ``PaperExchange({'state': snap})`` continues exactly from it. ``dirty`` is
    True when the trading state changed since the last snapshot, and
    ``on_change(snapshot)`` is called once per public call that changed it
    (an order, a cancel, a fill during a bar, a leverage change). A bar that
    only moves the price changes nothing that needs saving: after a restart
    the next fed bar sets the price again. So a 500k-bar replay with a few
    trades snapshots a few times, not per bar. Bar history is not persisted
    (reload it with ``load_history``).
    A full snapshot grows with every order and trade, so saving one per
    change is quadratic over a long run. ``on_delta(delta)`` (preferred to
    ``on_change`` when given) receives :meth:`delta` instead: the small head
    state plus only the orders changed and trades made since the last delta.
    Applying the deltas in order to a snapshot gives the current snapshot
    (``Store.save_venue_delta`` does this). ``on_delta`` gets live references,
    not a copy: it must serialize them before returning. ``defer(fn)``, when
    given, decides when the change is handed over: the paper venue of a
    deployment defers it to the end of the bar's transaction
    (``Store.before_commit``), so a bar's several orders save once.

Time
    Timestamps come from the injected ``clock`` (ms) or, without one, from the
    latest fed bar: never wall time. Order and trade ids are counters.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import ccxt
import numpy as np
from ccxt.base.decimal_to_precision import TICK_SIZE

from ..errors import ConfigError, did_you_mean
from ..fills import Costs, bar_envelope, limit_fill, market_fill_price, stop_exit, stop_order_trigger
from ..scan import first_reach
from ..timeframes import TIMEFRAMES
from .paper_accounts import step_floor
from .paper_markets import build_market, default_markets, infer_market
from .paper_views import PaperViews

_OWN_KEYS = ("balance", "costs", "markets", "partial_fill_volume_fraction", "state", "on_change", "on_delta", "defer", "clock",
             "liquidation", "maintenance_margin_rate", "history_limit", "auto_markets")
_NAN = float("nan")
_MAX_CHUNKS = 10_000  # unconverted history chunks kept per symbol before they are written in (see _history)
_INF = float("inf")
SNAPSHOT_VERSION = 1


class PaperExchange(PaperViews, ccxt.Exchange):
    """A simulated exchange (spot and linear perpetuals) behind ccxt's unified API."""

    #: one reduce-only order may carry both stopLossPrice and takeProfitPrice (the first level reached fills it),
    #: as a position's TP/SL does on Bybit: one order to place and to cancel instead of two
    stop_pairs = True

    def describe(self) -> dict[str, Any]:
        return self.deep_extend(super().describe(), {
            "id": "paper",
            "name": "Paper (workbench simulator)",
            "countries": [],
            "version": "1",
            "rateLimit": 0,
            "enableRateLimit": False,
            "precisionMode": TICK_SIZE,
            "requiredCredentials": {"apiKey": False, "secret": False},
            "timeframes": {tf: tf for tf in TIMEFRAMES},
            "has": {
                "spot": True, "swap": True, "margin": False, "future": False, "option": False,
                "fetchMarkets": True, "fetchCurrencies": False, "fetchTicker": True, "fetchTickers": True,
                "fetchOHLCV": True, "fetchBalance": True, "createOrder": True, "createMarketOrder": True,
                "createLimitOrder": True, "createStopLossOrder": True, "createTakeProfitOrder": True,
                "createTriggerOrder": True, "createStopMarketOrder": True, "createReduceOnlyOrder": True,
                "cancelOrder": True, "cancelAllOrders": True, "fetchOrder": True, "fetchOrders": True,
                "fetchOpenOrders": True, "fetchClosedOrders": True, "fetchCanceledOrders": True,
                "fetchMyTrades": True, "fetchPositions": True, "setLeverage": True, "fetchLeverage": True,
                "fetchOrderBook": False, "fetchTrades": False, "sandbox": False, "ws": False,
            },
            "fees": {"trading": {"percentage": True, "tierBased": False}},
        })

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        """Config: ``balance`` ({'USDT': 10000}), ``costs`` (fills.Costs), ``markets`` (specs; default: the
        sample symbols, spot and perpetual), ``partial_fill_volume_fraction`` (None or (0, 1]), ``state``
        (a snapshot; it wins over ``balance``), ``on_change`` (callable(snapshot)), ``clock`` (callable -> ms),
        ``liquidation`` (True), ``maintenance_margin_rate`` (0.004), ``history_limit`` (bars kept per
        symbol, 10000), ``auto_markets`` (True: a fed unknown symbol gets a market inferred from its price).
        Other keys go to ccxt.Exchange as usual.
        """
        config = dict(config or {})
        own = {k: config.pop(k) for k in _OWN_KEYS if k in config}
        super().__init__(config)
        costs = own.get("costs", Costs())
        if isinstance(costs, Mapping):
            costs = Costs(**costs)
        if not isinstance(costs, Costs):
            raise ConfigError(f"costs must be a workbench.fills.Costs (or its fields as a dict), got {costs!r}.")
        self.costs = costs
        frac = own.get("partial_fill_volume_fraction")
        if frac is not None and (isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac <= 1):
            raise ConfigError(f"partial_fill_volume_fraction must be None or in (0, 1] (0.1 = 10% of a bar's volume), got {frac!r}.")
        self.partial_fill_volume_fraction = frac
        self.liquidation = bool(own.get("liquidation", True))
        self.maintenance_margin_rate = float(own.get("maintenance_margin_rate", 0.004))
        self.history_limit = int(own.get("history_limit", 10_000))
        self.auto_markets = bool(own.get("auto_markets", True))
        clock = own.get("clock")
        on_change = own.get("on_change")
        on_delta = own.get("on_delta")
        defer = own.get("defer")
        for name, fn in (("clock", clock), ("on_change", on_change), ("on_delta", on_delta), ("defer", defer)):
            if fn is not None and not callable(fn):
                raise ConfigError(f"{name} must be a callable, got {fn!r}.")
        self._clock: Callable[[], float] | None = clock
        self._on_change: Callable[[dict[str, Any]], None] | None = on_change
        self._on_delta: Callable[[dict[str, Any]], None] | None = on_delta
        self._defer: Callable[[Callable[[], None]], None] | None = defer
        self._specs: list[Any] = list(own.get("markets") or default_markets())
        self._bars: dict[str, list[list[float]]] = {}
        self._unrecorded: dict[str, list[tuple[Any, ...]]] = {}  # bars fed as arrays, not yet rows (see _history)
        self._reset()
        state = own.get("state")
        if state is not None:
            self._restore(state)
        else:
            self._set_cash(own.get("balance", {"USDT": 10_000.0}))
        self.load_markets(True)
        self.dirty = False

    # -- state ----------------------------------------------------------------
    def _reset(self) -> None:
        self._cash: dict[str, float] = {}
        self._orders: dict[str, dict[str, Any]] = {}
        self._by_cid: dict[str, str] = {}
        self._open: dict[str, list[str]] = {}
        self._trades: list[dict[str, Any]] = []
        self._positions: dict[str, dict[str, Any]] = {}
        self._leverage: dict[str, float] = {}
        self._last: dict[str, list[float]] = {}
        self._seq: dict[str, int] = {}
        self._ids = {"order": 0, "trade": 0}
        self._now_ms: int | None = None
        self._added_specs: list[Any] = []
        self._touched: set[str] = set()  # orders changed since the last delta
        self._reach_cache: dict[str, tuple[float, float]] = {}  # see _reach
        self._trades_saved = 0  # trades already given out by delta()

    def _set_cash(self, balance: Mapping[str, float]) -> None:
        if not isinstance(balance, Mapping):
            raise ConfigError(f"balance must map currency to amount, e.g. {{'USDT': 10000}}, got {balance!r}.")
        for code, amount in balance.items():
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) or amount < 0:
                raise ConfigError(f"balance[{code!r}] must be a non-negative number, got {amount!r}.")
            self._cash[str(code)] = float(amount)

    def snapshot(self) -> dict[str, Any]:
        """The trading state as a JSON-serializable dict (see module docstring); clears ``dirty``."""
        self.dirty = False
        return copy.deepcopy({
            "version": SNAPSHOT_VERSION, "cash": self._cash, "orders": list(self._orders.values()),
            "trades": self._trades, "positions": self._positions, "leverage": self._leverage,
            "last": self._last, "seq": self._seq, "ids": self._ids, "now": self._now_ms,
            "markets": self._added_specs,
        })

    def _head(self) -> dict[str, Any]:
        return {"version": SNAPSHOT_VERSION, "cash": self._cash, "positions": self._positions, "leverage": self._leverage,
                "last": self._last, "seq": self._seq, "ids": self._ids, "now": self._now_ms, "markets": self._added_specs}

    def delta(self) -> dict[str, Any]:
        """What changed since the last delta: ``head`` (everything but orders and trades), the changed
        ``orders`` and the new ``trades``, JSON-serializable; clears ``dirty``."""
        return copy.deepcopy(self._take_delta())

    def _take_delta(self) -> dict[str, Any]:
        """:meth:`delta` without the copy: live references, to be serialized at once (``on_delta`` does)."""
        orders = [self._orders[i] for i in sorted(self._touched, key=int)]
        out = {"version": SNAPSHOT_VERSION, "head": self._head(), "orders": orders, "trades": self._trades[self._trades_saved:]}
        self._touched.clear()
        self._trades_saved = len(self._trades)
        self.dirty = False
        return out

    def persist(self) -> None:
        """Hand the current state to ``on_delta`` (or ``on_change``) even if only prices moved."""
        if self._on_delta is not None:
            self._on_delta(self._take_delta())
        elif self._on_change is not None:
            self._on_change(self.snapshot())

    def _restore(self, state: Mapping[str, Any]) -> None:
        version = state.get("version") if isinstance(state, Mapping) else None
        if version != SNAPSHOT_VERSION:
            raise ConfigError(f"state must be a dict from PaperExchange.snapshot() (version {SNAPSHOT_VERSION}); "
                              f"got {type(state).__name__} with version {version!r}.")
        s = copy.deepcopy(dict(state))
        self._cash = {k: float(v) for k, v in s["cash"].items()}
        for o in s["orders"]:
            self._orders[o["id"]] = o
            if o.get("clientOrderId") is not None:
                self._by_cid[o["clientOrderId"]] = o["id"]
            if o["status"] == "open":
                self._open.setdefault(o["symbol"], []).append(o["id"])
        self._trades = s["trades"]
        self._positions, self._leverage, self._last = s["positions"], s["leverage"], s["last"]
        self._seq, self._ids, self._now_ms = s["seq"], s["ids"], s["now"]
        self._added_specs = s.get("markets", [])
        self._specs.extend(self._added_specs)
        self._trades_saved = len(self._trades)

    def _changed(self, order: dict[str, Any] | None = None) -> None:
        self.dirty = True
        self._reach_cache.clear()
        if order is not None:
            self._touched.add(order["id"])

    def _notify(self) -> None:
        if not self.dirty:
            return
        if self._defer is not None:
            self._defer(self._deliver)
        else:
            self._deliver()

    def _deliver(self) -> None:
        if not self.dirty:
            return
        if self._on_delta is not None:
            self._on_delta(self._take_delta())
        elif self._on_change is not None:
            self._on_change(self.snapshot())

    # -- markets --------------------------------------------------------------
    def fetch_markets(self, params: dict | None = None) -> list[dict[str, Any]]:
        return [build_market(s, self.costs.taker_fee, self.costs.maker_fee) for s in self._specs]

    def add_market(self, spec: Mapping[str, Any] | str) -> dict[str, Any]:
        """Add a market (spec as in :mod:`workbench.venues.paper_markets`) and return it."""
        market = build_market(spec, self.costs.taker_fee, self.costs.maker_fee)
        if market["symbol"] not in (self.markets or {}):
            self._specs.append(spec)
            self._added_specs.append(spec)
            self.load_markets(True)
            self._changed()
        return self.markets[market["symbol"]]

    def _market(self, symbol: str) -> dict[str, Any]:
        if not isinstance(symbol, str) or symbol not in self.markets:
            raise ccxt.BadSymbol(f"paper has no market {symbol!r}.{did_you_mean(symbol, self.symbols)} "
                                 "Pass it in PaperExchange({'markets': [...]}) or call add_market(...).")
        return self.markets[symbol]

    def now(self) -> int | None:
        """Milliseconds from the injected clock, else the latest fed bar's timestamp (None before any)."""
        return int(self._clock()) if self._clock is not None else self._now_ms

    # -- feeding --------------------------------------------------------------
    def feed_bar(self, symbol: str, timestamp: int, open: float, high: float, low: float, close: float,
                 volume: float = 0.0) -> bool:
        """Process `symbol`'s resting orders against one bar, then set its last price; False if ignored (stale)."""
        return self._feed(symbol, int(timestamp), float(open), float(high), float(low), float(close), float(volume), False)

    def feed_tick(self, symbol: str, timestamp: int, price: float, volume: float = 0.0) -> bool:
        """A live price: a bar with o=h=l=c=price (history keeps 1-minute candles)."""
        p = float(price)
        return self._feed(symbol, int(timestamp), p, p, p, p, float(volume), True)

    def _feed(self, symbol: str, ts: int, o: float, h: float, lo: float, c: float, v: float, tick: bool) -> bool:
        if symbol not in self.markets:
            if not self.auto_markets:
                self._market(symbol)
            self.add_market(infer_market(symbol, c))
        if not (0 < o < _INF and 0 < h < _INF and 0 < lo < _INF and 0 < c < _INF):
            raise ccxt.BadRequest(f"feed for {symbol}: prices must be positive finite numbers, got o={o} h={h} l={lo} c={c}.")
        last = self._last.get(symbol)
        if last is not None and ts <= last[0]:
            return False
        self._now_ms = ts if self._now_ms is None else max(self._now_ms, ts)
        self._seq[symbol] = self._seq.get(symbol, 0) + 1
        self._record_bar(symbol, ts, o, h, lo, c, v, tick)
        if self._open.get(symbol) or symbol in self._positions:
            low_reach, high_reach = self._reach(symbol)
            if lo <= low_reach or h >= high_reach:
                self._process_bar(symbol, ts, o, h, lo, v)
        self._last[symbol] = [ts, o, h, lo, c, v]
        self._notify()
        return True

    def _record_bar(self, symbol: str, ts: int, o: float, h: float, lo: float, c: float, v: float, tick: bool) -> None:
        chunks = self._unrecorded.get(symbol)
        if chunks and not tick and len(chunks) < _MAX_CHUNKS:  # bars fed as arrays wait unconverted: this one joins them
            chunks.append(((ts,), (o,), (h,), (lo,), (c,), (v,)))
            return
        bars = self._history(symbol)
        if tick:
            minute = ts - ts % 60_000
            if bars and bars[-1][0] == minute:
                b = bars[-1]
                b[2], b[3], b[4], b[5] = max(b[2], h), min(b[3], lo), c, b[5] + v
                return
            ts = minute
        bars.append([ts, o, h, lo, c, v])
        if len(bars) > self.history_limit * 1.5:
            del bars[: len(bars) - self.history_limit]

    def quiet_bars(self, symbol: str, ts: Sequence[int], open: Sequence[float], high: Sequence[float],
                   low: Sequence[float], close: Sequence[float], start: int = 0, stop: int | None = None) -> int:
        """How many bars from `start` (before `stop`) :meth:`feed_bar` would only record (see :meth:`feed_quiet`).

        Such a bar is newer than the one before it, has valid prices and reaches
        no level of `symbol`'s resting orders or liquidation (:meth:`_reach`).
        The count stops at the first other bar (:meth:`quiet_run` on the bars' envelopes).
        """
        stop = len(ts) if stop is None else min(stop, len(ts))
        if start >= stop:
            return 0
        stamps = np.asarray(ts[start:stop], dtype=np.int64)
        floor, ceil = bar_envelope(*(np.asarray(x[start:stop], dtype=np.float64) for x in (open, high, low, close)))
        n = self.quiet_run(symbol, stamps, floor, ceil)
        back = np.flatnonzero(np.diff(stamps[:n]) <= 0)  # a bar not after the one before it is not new
        return int(back[0]) + 1 if len(back) else n

    def quiet_run(self, symbol: str, ts: np.ndarray, floor: np.ndarray, ceil: np.ndarray, start: int = 0,
                  stop: int | None = None, below: float = -_INF, above: float = _INF) -> int:
        """:meth:`quiet_bars` on ascending bars given by their envelopes (:func:`bar_envelope`), in one pass.

        `below` / `above` are the caller's own levels: a bar reaching them
        ends the run too (a replay passes its position's stops).
        """
        stop = len(ts) if stop is None else min(stop, len(ts))
        if symbol not in self.markets or start >= stop:
            return 0
        last = self._last.get(symbol)
        if last is not None and ts[start] <= last[0]:
            return 0
        low_reach, high_reach = self._reach(symbol) if (self._open.get(symbol) or symbol in self._positions) else (-_INF, _INF)
        return first_reach(floor, ceil, start, stop, max(low_reach, below, 0.0), min(high_reach, above))

    def feed_quiet(self, symbol: str, ts: Any, open: Any, high: Any, low: Any, close: Any, volume: Any) -> None:
        """Feed bars that :meth:`quiet_bars` counted, at once: the same state as :meth:`feed_bar` on each.

        Nothing fills, so nothing but the prices, the bar history and the bar
        counter changes (a replay spends most bars here).
        """
        n = len(ts)
        if not n:
            return
        self._unrecorded.setdefault(symbol, []).append((ts, open, high, low, close, volume))  # see _history
        last = [int(ts[-1]), float(open[-1]), float(high[-1]), float(low[-1]), float(close[-1]), float(volume[-1])]
        self._now_ms = last[0] if self._now_ms is None else max(self._now_ms, last[0])
        self._seq[symbol] = self._seq.get(symbol, 0) + n
        self._last[symbol] = last

    def _history(self, symbol: str) -> list[list[float]]:
        """`symbol`'s bar history ([ms, o, h, l, c, v] rows), with bars fed by :meth:`feed_quiet` written in.

        Those arrive as arrays and become rows only when the history is read:
        a replay that never reads it never pays for it.
        """
        bars = self._bars.setdefault(symbol, [])
        chunks = self._unrecorded.pop(symbol, None)
        if chunks:
            limit = self.history_limit
            for ts, o, h, lo, c, v in chunks:
                if len(ts) == 1:
                    bars.append([int(ts[0]), float(o[0]), float(h[0]), float(lo[0]), float(c[0]), float(v[0])])
                    continue
                keep = slice(max(0, len(ts) - limit), len(ts))  # older bars would be trimmed anyway
                rows = [[int(t), *r] for t, r in zip(ts[keep].tolist(), np.column_stack((o[keep], h[keep], lo[keep], c[keep], v[keep])).tolist(), strict=True)]
                bars.extend(rows)
                if len(bars) > limit * 1.5:
                    del bars[: len(bars) - limit]
            if len(bars) > limit * 1.5:
                del bars[: len(bars) - limit]
        return bars

    def load_history(self, symbol: str, df: Any) -> int:
        """Preload bars (a DataFrame with open/high/low/close/volume, or [ms, o, h, l, c, v] rows) for fetch_ohlcv.

        No orders are processed. The last price is set from the newest bar if
        it is newer than the last fed one. Returns the number of bars kept.
        """
        rows = _rows(df)
        if symbol not in self.markets:
            if not rows or not self.auto_markets:
                self._market(symbol)
            self.add_market(infer_market(symbol, rows[-1][4]))
        merged = {int(b[0]): list(b) for b in self._history(symbol)}
        merged.update({int(r[0]): r for r in rows})
        bars = [merged[k] for k in sorted(merged)][-self.history_limit:]
        self._bars[symbol] = bars
        if bars and (symbol not in self._last or bars[-1][0] > self._last[symbol][0]):
            self._last[symbol] = list(bars[-1])
            self._now_ms = bars[-1][0] if self._now_ms is None else max(self._now_ms, bars[-1][0])
        return len(bars)

    # -- the bar ----------------------------------------------------------------
    def _reach(self, symbol: str) -> tuple[float, float]:
        """(L, H): a bar with low > L and high < H can fill, trigger or liquidate nothing of `symbol`.

        Every rule in :mod:`workbench.fills` acts only when the bar reaches its
        level (a gap at the open reaches it too, the open being inside the bar),
        so most bars of a long replay skip the order book. Kept until the orders
        or positions change.
        """
        reach = self._reach_cache.get(symbol)
        if reach is not None:
            return reach
        low_reach, high_reach = -_INF, _INF
        for oid in self._open.get(symbol, ()):
            order = self._orders[oid]
            buy = order["side"] == "buy"
            if order["kind"] == "limit":
                levels: tuple[Any, ...] = (order["price"],)
                downward = buy
            elif order["kind"] == "trigger":
                levels, downward = (order["triggerPrice"],), not buy
            elif order["kind"] == "protect":  # a sell protects a long: its stop is below, its target above
                levels = (order["stopLossPrice"], order["takeProfitPrice"])
                for level, down in zip(levels, (not buy, buy), strict=True):
                    if level is not None:
                        low_reach, high_reach = (max(low_reach, level), high_reach) if down else (low_reach, min(high_reach, level))
                continue
            else:
                return -_INF, -_INF  # unknown kind: always process
            for level in levels:
                if level is not None:
                    low_reach, high_reach = (max(low_reach, level), high_reach) if downward else (low_reach, min(high_reach, level))
        pos = self._positions.get(symbol)
        if self.liquidation and pos is not None and pos.get("contracts"):
            liq = self._liquidation_price(symbol, pos)
            low_reach, high_reach = (max(low_reach, liq), high_reach) if pos["contracts"] > 0 else (low_reach, min(high_reach, liq))
        self._reach_cache[symbol] = (low_reach, high_reach)
        return low_reach, high_reach

    def _process_bar(self, symbol: str, ts: int, o: float, h: float, lo: float, v: float) -> None:
        seq = self._seq[symbol]
        active: dict[str, list[dict[str, Any]]] = {"protect": [], "trigger": [], "limit": []}
        for oid in self._open.get(symbol, ()):
            order = self._orders[oid]
            if order["seq"] < seq and order["kind"] in active:
                active[order["kind"]].append(order)
        if active["protect"]:
            self._protective(symbol, ts, active["protect"], o, h, lo)
        if self.liquidation and symbol in self._positions:
            self._liquidate(symbol, ts, o, h, lo)
        for order in active["trigger"]:
            if order["status"] != "open":
                continue
            hit = stop_order_trigger(order["side"], order["triggerPrice"], o, h, lo)
            if hit is not None:
                self._execute(order, market_fill_price(order["side"], hit, self.costs.slippage), ts, taker=True)
        cap = math.inf if self.partial_fill_volume_fraction is None else self.partial_fill_volume_fraction * v
        for order in active["limit"]:
            if order["status"] != "open":
                continue
            px = limit_fill(order["side"], order["price"], o, h, lo)
            if px is None:
                continue
            qty = order["amount"] - order["filled"]
            if math.isfinite(cap):
                step = self.markets[symbol]["precision"]["amount"]
                qty = min(qty, step_floor(cap, step))
                if qty <= 0:
                    continue
            filled = self._execute(order, px, ts, taker=False, amount=qty)
            cap -= filled

    def _protective(self, symbol: str, ts: int, orders: list[dict[str, Any]], o: float, h: float, lo: float) -> None:
        for pos_side, exit_side in (("long", "sell"), ("short", "buy")):
            while self._position_side(symbol) == pos_side:
                cands = [x for x in orders if x["side"] == exit_side and x["status"] == "open"]
                sl = next((x for x in cands if x["stopLossPrice"] is not None), None)
                tp = next((x for x in cands if x["takeProfitPrice"] is not None), None)
                if sl is None and tp is None:
                    break
                hit = stop_exit(pos_side, sl["stopLossPrice"] if sl else _NAN, tp["takeProfitPrice"] if tp else _NAN, o, h, lo)
                if hit is None:
                    break
                price, reason = hit
                order = sl if reason == "stop_loss" else tp
                order["info"]["reason"] = reason
                self._execute(order, market_fill_price(exit_side, price, self.costs.slippage), ts, taker=True)
                if order["status"] == "open":  # could not fill (nothing left to reduce)
                    self._cancel(order, "nothing to reduce")

    def _liquidate(self, symbol: str, ts: int, o: float, h: float, lo: float) -> None:
        pos = self._positions[symbol]
        liq = self._liquidation_price(symbol, pos)
        if pos["contracts"] > 0:
            hit = o if o <= liq else (liq if lo <= liq else None)
        else:
            hit = o if o >= liq else (liq if h >= liq else None)
        if hit is None:
            return
        side = "sell" if pos["contracts"] > 0 else "buy"
        order = self._new_order(symbol, "market", side, abs(pos["contracts"]), None, None, True, "market",
                                {"reason": "liquidation", "liquidation": True})
        self._execute(order, hit, ts, taker=True)

    # -- orders -----------------------------------------------------------------
    def create_order(self, symbol: str, type: str, side: str, amount: float, price: float | None = None,
                     params: dict | None = None) -> dict[str, Any]:
        params = dict(params or {})
        market = self._market(symbol)
        if type not in ("market", "limit"):
            raise ccxt.InvalidOrder(f"paper order type must be 'market' or 'limit', got {type!r}.")
        if side not in ("buy", "sell"):
            raise ccxt.InvalidOrder(f"paper order side must be 'buy' or 'sell', got {side!r}.")
        cid = params.pop("clientOrderId", None)
        if cid is not None:
            cid = str(cid)
            if cid in self._by_cid:
                raise ccxt.InvalidOrder(f"paper rejected a duplicate clientOrderId {cid!r}: order {self._by_cid[cid]} "
                                        "already has it; fetch it with fetch_order(None, symbol, {'clientOrderId': ...}).")
        for key in ("stopLoss", "takeProfit"):
            if key in params:
                raise ccxt.NotSupported(f"paper does not attach {key} to an entry order: place a separate reduce-only "
                                        f"order with params {{'{key}Price': level}}.")
        reduce_only = bool(params.pop("reduceOnly", False))
        sl = _level(params.pop("stopLossPrice", None), "stopLossPrice")
        tp = _level(params.pop("takeProfitPrice", None), "takeProfitPrice")
        trig = _level(params.pop("triggerPrice", params.pop("stopPrice", None)), "triggerPrice")
        if trig is not None and (sl is not None or tp is not None):
            raise ccxt.InvalidOrder("paper takes triggerPrice or stopLossPrice / takeProfitPrice on an order, not both: "
                                    "place the stop-market order and the protective order separately.")
        if "leverage" in params:
            self._apply_leverage(params.pop("leverage"), symbol)
        amount = self._check_amount(symbol, amount)
        kind = "protect" if (sl or tp) else "trigger" if trig else type
        if kind != "limit" and type == "limit":
            raise ccxt.NotSupported("paper supports stop-market orders only: use type='market' with a trigger price.")
        if type == "limit":
            if price is None or isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price) or price <= 0:
                raise ccxt.InvalidOrder(f"a limit order needs a positive price, got price={price!r}.")
            price = float(self.price_to_precision(symbol, price))
        else:
            price = None
        if kind == "protect":
            reduce_only = True
        if reduce_only and market["spot"] and side == "buy":
            raise ccxt.InvalidOrder(f"{symbol} is spot: there is no short position for a reduce-only buy to reduce "
                                    f"(short on {symbol}:{market['quote']}).")
        ref = price or sl or tp or trig or self._last_price(symbol, required=(kind == "market"))
        self._check_limits(market, amount, ref, reduce_only)
        if kind == "market":
            fill_price = market_fill_price(side, ref, self.costs.slippage)
            amount = self._reducible(symbol, side, amount, reduce_only, raise_if_none=True)
            self._check_funds(symbol, side, amount, fill_price, self.costs.taker_fee, reduce_only)
            order = self._new_order(symbol, type, side, amount, price, cid, reduce_only, kind, {})
            self._execute(order, fill_price, self.now(), taker=True)
        else:
            if reduce_only and kind == "limit":
                self._reducible(symbol, side, amount, True, raise_if_none=True)
            reserve = 0.0 if (reduce_only or kind != "limit") else self._reserve(symbol, side, amount, price)
            order = self._new_order(symbol, type, side, amount, price, cid, reduce_only, kind, {}, reserve)
            order.update(triggerPrice=trig or sl or tp, stopLossPrice=sl, takeProfitPrice=tp)
        self._notify()
        return self._order_out(order)

    def manual_order(self, symbol: str, side: str, amount: float) -> dict[str, Any]:
        """A market order placed 'by hand' (no clientOrderId, info['manual'] = True), as in the exchange's web page."""
        self._market(symbol)
        if side not in ("buy", "sell"):
            raise ccxt.InvalidOrder(f"side must be 'buy' or 'sell', got {side!r}.")
        amount = self._check_amount(symbol, amount)
        price = market_fill_price(side, self._last_price(symbol, required=True), self.costs.slippage)
        self._check_funds(symbol, side, amount, price, self.costs.taker_fee, False)
        order = self._new_order(symbol, "market", side, amount, None, None, False, "market", {"manual": True})
        self._execute(order, price, self.now(), taker=True)
        self._notify()
        return self._order_out(order)

    def manual_close(self, symbol: str) -> dict[str, Any]:
        """Close `symbol`'s whole position by hand (spot: sell all of the base); InvalidOrder if there is none."""
        market = self._market(symbol)
        qty = self._position_qty(symbol)
        if market["spot"]:
            qty = step_floor(max(self._free(market["base"]), 0.0), market["precision"]["amount"])
        if abs(qty) <= 0:
            raise ccxt.InvalidOrder(f"paper has no {symbol} position to close.")
        side = "sell" if qty > 0 else "buy"
        price = market_fill_price(side, self._last_price(symbol, required=True), self.costs.slippage)
        order = self._new_order(symbol, "market", side, abs(qty), None, None, True, "market", {"manual": True})
        self._execute(order, price, self.now(), taker=True)
        self._notify()
        return self._order_out(order)

    def cancel_order(self, id: str | None, symbol: str | None = None, params: dict | None = None) -> dict[str, Any]:
        order = self._find(id, symbol, params)
        if order["status"] != "open":
            raise ccxt.OrderNotFound(f"paper order {order['id']} is already {order['status']}; nothing to cancel.")
        self._cancel(order, "canceled by user")
        self._notify()
        return self._order_out(order)

    def cancel_all_orders(self, symbol: str | None = None, params: dict | None = None) -> list[dict[str, Any]]:
        out = []
        for sym in [symbol] if symbol else list(self._open):
            if sym is not None:
                self._market(sym)
            for oid in list(self._open.get(sym, ())):
                self._cancel(self._orders[oid], "canceled by user")
                out.append(self._order_out(self._orders[oid]))
        self._notify()
        return out

    def set_leverage(self, leverage: float, symbol: str | None = None, params: dict | None = None) -> dict[str, Any]:
        if symbol is None:
            raise ccxt.ArgumentsRequired("paper set_leverage() needs a symbol, e.g. set_leverage(3, 'BTC/USDT:USDT').")
        self._apply_leverage(leverage, symbol)
        self._notify()
        return {"info": {}, "symbol": symbol, "leverage": self._lev(symbol)}

    def _apply_leverage(self, leverage: Any, symbol: str) -> None:
        market = self._market(symbol)
        if not market["contract"]:
            raise ccxt.BadRequest(f"leverage applies to swap markets; {symbol} is spot (use {symbol}:{market['quote']}).")
        top = market["limits"]["leverage"]["max"] or 125.0
        if isinstance(leverage, bool) or not isinstance(leverage, (int, float)) or not 1 <= leverage <= top:
            raise ccxt.BadRequest(f"{symbol} leverage must be a number from 1 to {top:g}, got {leverage!r}.")
        lev = float(leverage)
        if self._leverage.get(symbol, 1.0) == lev:
            return
        pos = self._positions.get(symbol)
        if pos is not None:
            margin = abs(pos["contracts"]) * pos["entryPrice"] * market["contractSize"] / lev
            if margin - pos["margin"] > self._free(market["settle"]) + 1e-9:
                raise ccxt.InsufficientFunds(f"lowering {symbol} leverage to {lev:g} needs {margin - pos['margin']:.4f} "
                                             f"{market['settle']} more margin than is free.")
            pos["margin"], pos["leverage"] = margin, lev
        self._leverage[symbol] = lev
        self._changed()

    # -- internals: order book-keeping -------------------------------------------------
    def _new_order(self, symbol: str, type: str, side: str, amount: float, price: float | None, cid: str | None,
                   reduce_only: bool, kind: str, info: dict[str, Any], reserve: float = 0.0) -> dict[str, Any]:
        self._ids["order"] += 1
        oid = str(self._ids["order"])
        market = self.markets[symbol]
        ts = self.now()
        order = {
            "id": oid, "clientOrderId": cid, "symbol": symbol, "type": type, "side": side, "kind": kind,
            "amount": amount, "price": price, "triggerPrice": None, "stopLossPrice": None, "takeProfitPrice": None,
            "reduceOnly": reduce_only, "status": "open", "filled": 0.0, "cost": 0.0, "fee": 0.0,
            "feeCurrency": market["quote"] if market["spot"] else market["settle"],
            "timestamp": ts, "lastTradeTimestamp": None, "lastUpdateTimestamp": ts, "seq": self._seq.get(symbol, 0),
            "reserved": reserve, "reserveCurrency": self._reserve_currency(symbol, side), "trades": [], "info": info,
        }
        self._orders[oid] = order
        if cid is not None:
            self._by_cid[cid] = oid
        self._open.setdefault(symbol, []).append(oid)
        self._changed(order)
        return order

    def _close_order(self, order: dict[str, Any], status: str) -> None:
        order["status"] = status
        order["reserved"] = 0.0
        ids = self._open.get(order["symbol"], [])
        if order["id"] in ids:
            ids.remove(order["id"])
        if not ids:
            self._open.pop(order["symbol"], None)
        self._changed(order)

    def _cancel(self, order: dict[str, Any], why: str) -> None:
        order["info"]["cancelReason"] = why
        order["lastUpdateTimestamp"] = self.now()
        self._close_order(order, "canceled")

    def _find(self, id: str | None, symbol: str | None, params: dict | None) -> dict[str, Any]:
        cid = (params or {}).get("clientOrderId")
        oid = str(id) if id is not None else self._by_cid.get(str(cid)) if cid is not None else None
        if id is None and cid is None:
            raise ccxt.ArgumentsRequired("paper needs an order id or params={'clientOrderId': ...}.")
        order = self._orders.get(oid) if oid is not None else None
        if order is None or (symbol is not None and order["symbol"] != symbol):
            raise ccxt.OrderNotFound(f"paper has no order {'id ' + repr(id) if id is not None else 'clientOrderId ' + repr(cid)}"
                                     f"{' for ' + symbol if symbol else ''}.")
        return order


def _level(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ccxt.InvalidOrder(f"{name} must be a positive price, got {value!r}.")
    try:
        v = float(value)
    except ValueError:
        raise ccxt.InvalidOrder(f"{name} must be a positive price, got {value!r}.") from None
    if not math.isfinite(v) or v <= 0:
        raise ccxt.InvalidOrder(f"{name} must be a positive price, got {value!r}.")
    return v


def _rows(df: Any) -> list[list[float]]:
    if hasattr(df, "columns"):
        missing = {"open", "high", "low", "close"} - set(df.columns)
        if missing:
            raise ConfigError(f"load_history needs columns open, high, low, close (volume optional); missing {sorted(missing)}.")
        idx = df.index
        ts = idx.as_unit("ms").asi8 if hasattr(idx, "as_unit") else idx.to_numpy()
        vol = df["volume"].to_numpy() if "volume" in df.columns else [0.0] * len(df)
        cols = zip(ts, df["open"].to_numpy(), df["high"].to_numpy(), df["low"].to_numpy(), df["close"].to_numpy(), vol, strict=True)
        return [[int(t), float(o), float(h), float(lo), float(c), float(v)] for t, o, h, lo, c, v in cols]
    rows: Iterable[Any] = df
    return [[int(r[0]), *(float(x) for x in r[1:5]), float(r[5]) if len(r) > 5 else 0.0] for r in rows]


__all__ = ["SNAPSHOT_VERSION", "PaperExchange"]
