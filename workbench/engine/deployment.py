"""One running deployment: on each closed bar, strategy -> risk -> venue -> fills -> store.

The order of work on a bar mirrors the backtest (see :mod:`workbench.fills`):
protective stops first (they are resting orders at the venue, filled inside
the bar); if one fired, the bar's signal is ignored; otherwise an exit signal
closes the position and an entry signal opens one through risk.
"""
from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ..errors import ConfigError, LiveTradingRefused, PermanentVenueError, VenueError
from ..fills import bar_envelope, stop_exit, stop_levels
from ..markets import MarketRules
from ..risk import OrderIntent, PortfolioView, PositionView, RiskGuard, check_order, size_entry
from ..scan import books_prefix
from ..store import Store
from ..strategies import Decision, Strategy
from ..timeframes import timeframe_seconds
from ..venues.base import OrderRequest, Venue, client_order_id
from .clock import Clock
from .ledger import PROTECTIVE, Ledger, OpenPosition
from .spec import DeploymentSpec

Callback = Callable[[str, dict[str, Any]], None]
_ORDER_STATUS = {"open": "open", "closed": "filled", "canceled": "cancelled", "cancelled": "cancelled", "rejected": "rejected", "expired": "cancelled"}


class DeploymentRuntime:
    """The live state of one deployment inside an engine."""

    def __init__(
        self,
        dep_id: str,
        spec: DeploymentSpec,
        strategy: Strategy,
        params: dict[str, float],
        venue: Venue,
        store: Store,
        clock: Clock,
        emit: Callback,
        status: str = "active",
        equity_batch: int = 1000,
    ) -> None:
        self.id = dep_id
        self.spec = spec
        self.strategy = strategy
        self.params = params
        self.venue = venue
        self.store = store
        self.clock = clock
        self.emit = emit
        self.status = status
        self.limits = spec.risk_limits()
        self.guard = RiskGuard(self.limits)
        self.rules: dict[str, MarketRules] = {s: venue.market(s) for s in spec.symbols}
        for sym, rule in self.rules.items():
            if spec.direction != "long" and not rule.contract:
                raise ConfigError(f"{sym} is a spot market: it cannot be shorted. Use its perpetual (e.g. {sym}:{rule.quote}) or direction='long'.")
        self.enabled: dict[str, bool] = dict.fromkeys(spec.symbols, True)
        self.ledger = Ledger(cash=spec.initial_cash)
        self.marks: dict[str, float] = {}
        self.cursor: dict[str, int] = {}
        self.warmup = strategy.warmup(params)
        self.history: dict[str, deque] = {s: deque(maxlen=self.warmup) for s in spec.symbols}
        self.precomputed: dict[str, dict[int, Decision]] = {}  # per symbol, the decision of each bar with a signal
        self._signal_ts: dict[str, list[int]] = {}  # per symbol, the precomputed bars with a signal (sorted)
        self._equity_rows: list[tuple[float, float, float, float]] = []  # (at, equity, cash, unrealized), bar by bar
        self._equity_blocks: list[np.ndarray] = []  # earlier rows as (n, 4) arrays (quiet stretches of a replay)
        self._equity_blocked = 0  # rows in those blocks
        self._equity_batch = equity_batch
        self.live_venue = bool(getattr(venue, "live", False))
        # a venue that fills from the bars we feed it (the paper exchange), as opposed to a real market
        self._feed_bar = getattr(getattr(venue, "exchange", None), "feed_bar", None)
        self.simulated = self._feed_bar is not None
        # its state is written in our store's transactions: a bar's writes and the venue's commit together
        self.venue_in_store = getattr(getattr(venue, "exchange", None), "persisted_in", None) is store
        self.paused_by: str | None = None  # 'risk' pauses lift themselves; a person's pause waits for a person
        self.step_ms = timeframe_seconds(spec.timeframe) * 1000
        #: per symbol, the last bar on which a protective stop closed a position (that bar's signal is ignored)
        self.stopped_at: dict[str, int] = {}
        #: no stored order of this deployment was decided on a later bar (ms): a later bar's client ids are new
        self.orders_upto = -1
        #: what we know of our working orders' state (client id -> store status), so a cancel needs no lookup
        self._order_status: dict[str, str] = {}
        #: client ids of orders the venue did not answer for: pending until it says what became of them (settle_orders)
        self._unsettled: set[str] = set()
        #: while the venue answers no lookup of them, they are asked about again at widening intervals, not on every bar
        self._settle_at, self._settle_wait = 0.0, 0.0

    # -- helpers --------------------------------------------------------------
    def _now(self) -> float:
        return self.clock.now()

    def equity(self) -> float:
        return self.ledger.equity(self.marks)

    def view(self) -> PortfolioView:
        eq = self.equity()
        return PortfolioView(
            equity=eq,
            cash=self.ledger.cash,
            day_start_equity=self.guard.day_start_equity or eq,
            peak_equity=max(self.guard.peak_equity or eq, eq),
            positions={
                s: PositionView(s, p.side, p.amount, p.entry_price, self.marks.get(s, p.entry_price))
                for s, p in self.ledger.positions.items()
            },
        )

    def precompute(self, symbol: str, df: pd.DataFrame) -> None:
        """Signals for a replay, computed once with the vectorized form (equal to decide(), tested)."""
        sig = self.strategy.signals(df, self.params)
        e, x, se, sx, c = (np.asarray(a) for a in (sig.entries, sig.exits, sig.short_entries, sig.short_exits, sig.confidence))
        hot = np.flatnonzero(e | x | se | sx)
        stamps = df.index.as_unit("ms").asi8[hot]
        times = pd.to_datetime(stamps, unit="ms", utc=True)
        ts = stamps.tolist()
        flags = zip(*(a[hot].astype(bool).tolist() for a in (e, x, se, sx)), c[hot].astype(np.float64).tolist(), strict=True)
        self.precomputed[symbol] = {k: Decision(t, *f) for k, t, f in zip(ts, times, flags, strict=True)}
        self._signal_ts[symbol] = ts

    def decide(self, symbol: str, ts_ms: int) -> Decision:
        table = self.precomputed.get(symbol)
        if table is not None:
            return table.get(ts_ms, _HOLD)
        buf = self.history[symbol]
        if len(buf) < 2:
            return _HOLD
        if self.strategy.last is not None:  # the built-in's fast form (equal to its signals, tested)
            *flags, conf = self.strategy.last(buf, **self.params)
            return Decision(pd.Timestamp(ts_ms, unit="ms", tz="UTC"), *flags, conf) if any(flags) else _HOLD
        arr = np.asarray(buf)
        df = pd.DataFrame(arr[:, 1:], columns=["open", "high", "low", "close", "volume"], index=pd.to_datetime(arr[:, 0].astype("int64"), unit="ms", utc=True))
        return self.strategy.decide(df, self.params)

    def warm_up(self, symbol: str, bars: list[list[float]]) -> int:
        """Fill `symbol`'s history with closed bars ([ms, o, h, l, c, v]) without trading on them.

        A live deployment decides on its first closed bar instead of waiting
        `warmup` bars; the last warm-up bar also becomes the cursor.
        """
        done = 0
        hist = self.history[symbol]
        for ts, o, h, lo, c, v in bars[-self.warmup:]:
            ts = int(ts)
            if not hist or ts > hist[-1][0]:
                hist.append((ts, o, h, lo, c, v))
                self.cursor[symbol] = max(ts, self.cursor.get(symbol, -1))
                self.marks[symbol] = c
                done += 1
        return done

    # -- the bar ------------------------------------------------------------
    def step(self, symbol: str, ts_ms: int, o: float, h: float, lo: float, c: float, v: float) -> None:
        """A closed bar reaches a simulated venue first (its resting orders fill), then the deployment.

        The bar's writes (and the paper venue's) commit together at its end (:meth:`Store.batch`).
        """
        if ts_ms <= self.cursor.get(symbol, -1):
            return
        try:
            with self.store.batch():
                if self._feed_bar is not None:
                    self._feed_bar(symbol, ts_ms, o, h, lo, c, v)
                if self.status in ("active", "paused"):
                    self.on_bar(symbol, ts_ms, o, h, lo, c, v)
        except BaseException:
            self.orders_upto = max(self.orders_upto, ts_ms)  # its orders may be stored: look them up if the bar comes again
            raise

    def on_bar(self, symbol: str, ts_ms: int, o: float, h: float, lo: float, c: float, v: float) -> None:
        """Process one closed bar of `symbol` (bar open time `ts_ms`)."""
        if ts_ms <= self.cursor.get(symbol, -1):
            return  # already processed (restart or duplicate feed)
        if self._unsettled and self._now() >= self._settle_at:
            self.settle_orders()
        if symbol not in self.precomputed:
            hist = self.history[symbol]
            if not hist or hist[-1][0] < ts_ms:
                hist.append((ts_ms, o, h, lo, c, v))
        self.marks[symbol] = c
        if symbol in self.ledger.positions:
            self._check_protection(symbol, ts_ms, o, h, lo)
        # a stop that closed a position on this bar (now, or before a restart that replays the bar) voids its signal
        fired = self.stopped_at.get(symbol) == ts_ms
        now = self._now()
        for event in self.guard.update(float(self.equity()), float(now)):
            self._risk_event(event.kind, event.reason, event.details, None)
            if event.kind == "paused" and self.status == "active":
                self.paused_by = "risk"
                self.set_status("paused", event.reason, by="risk")
            elif event.kind == "resumed" and self.status == "paused" and self.paused_by == "risk":
                self.paused_by = None
                self.set_status("active", event.reason, by="risk")
        if not fired and self.status == "active" and self.enabled.get(symbol, False):
            decision = self.decide(symbol, ts_ms)
            if decision.any:
                self.emit("signal", {"deployment_id": self.id, "symbol": symbol, "decision": decision})
                self._act(symbol, ts_ms, c, decision)
        self.cursor[symbol] = ts_ms
        ledger = self.ledger
        if ledger.positions:
            eq, unrealized = ledger.equity(self.marks), ledger.unrealized(self.marks)
        else:
            eq, unrealized = ledger.cash, 0.0
        self._equity_rows.append((ts_ms / 1000.0, eq, ledger.cash, unrealized))
        if len(self._equity_rows) + self._equity_blocked >= self._equity_batch:
            self.flush()

    def skip_quiet(self, symbol: str, bars: BarSeries, start: int, stop: int) -> int:
        """Process the quiet bars from `start` (before `stop`) at once; return the index of the first one that is not.

        A bar is quiet when :meth:`step` would only move the price on it: no
        signal, no level of a resting order or of the position's stops reached
        (:meth:`PaperExchange.quiet_run`), the risk guard quiet
        (:meth:`RiskGuard.quiet_limits`, scanned with the books' equity by
        :func:`~workbench.scan.books_prefix`). Its effects (the venue's prices and history,
        marks, cursor, equity rows, peaks) are then the same as stepping
        (tested). Only for a replay of a one-symbol deployment on the paper
        venue with precomputed signals, on ascending bars; the first bar that
        is not quiet is left to :meth:`step`.
        """
        ts = bars.stamps
        if (not self.venue_in_store or self.status not in ("active", "paused") or len(self.spec.symbols) != 1 or not bars.ascending
                or symbol not in self._signal_ts or start >= stop or ts[start] <= self.cursor.get(symbol, -1)):
            return start
        hot = self._signal_ts[symbol]
        k = bisect_left(hot, ts[start])
        if k < len(hot):
            stop = min(stop, bisect_left(ts, hot[k], start, stop))
        if stop <= start:
            return start
        below, above = self._stop_bounds(symbol)
        exchange = self.venue.exchange  # type: ignore[attr-defined]
        end = start + exchange.quiet_run(symbol, bars.arrays[0], *bars.envelope, start, stop, below, above)
        i = self._quiet_rows(symbol, bars, start, end)
        if i > start:
            exchange.feed_quiet(symbol, *(a[start:i] for a in bars.arrays))
            self.marks[symbol] = bars.arrays[4].item(i - 1)
            self.cursor[symbol] = ts[i - 1]
            if self.unflushed >= self._equity_batch:
                self.flush()
        return i

    def _stop_bounds(self, symbol: str) -> tuple[float, float]:
        """(below, above): the open position's stop levels that a bar must not reach to be quiet."""
        pos = self.ledger.positions.get(symbol)
        if pos is None or (pos.sl_cid is None and pos.tp_cid is None):
            return -math.inf, math.inf
        below, above = (pos.sl_price, pos.tp_price) if pos.side == "long" else (pos.tp_price, pos.sl_price)
        return (below if below == below else -math.inf), (above if above == above else math.inf)

    def _quiet_rows(self, symbol: str, bars: BarSeries, start: int, end: int) -> int:
        """Take in bars [start, end) while the risk guard stays quiet (it keeps their peaks): their equity rows; the first bar left."""
        limits = self.guard.quiet_limits(bars.close_times[start]) if end > start else None
        if limits is None:
            return start
        pos = self.ledger.positions.get(symbol)
        terms = None if pos is None else (pos.margin, 1.0 if pos.side == "long" else -1.0, pos.amount, pos.entry_price)
        block = np.empty((end - start, 4))
        n, top = books_prefix(bars.arrays[4], bars.seconds, bars.close_clock, start, end, self.ledger.cash, terms, limits, block)
        if n:
            self.guard.take_peak(n, top)
            self._add_equity_block(block[:n])
        return start + n

    def _act(self, symbol: str, ts_ms: int, price: float, d: Decision) -> None:
        if self._unsettled and (waiting := self._awaiting(symbol)):
            self._risk_event("denied", f"{symbol}'s order {waiting} has no answer from the venue yet: no new entry or exit "
                             "until the venue says what became of it", {"order": waiting}, symbol)
            return
        pos = self.ledger.positions.get(symbol)
        long_ok = self.spec.direction in ("long", "both")
        short_ok = self.spec.direction in ("short", "both")
        enter_long = d.enter_long and not d.exit_long and long_ok
        exit_long = d.exit_long and not d.enter_long
        enter_short = d.enter_short and not d.exit_short and short_ok
        exit_short = d.exit_short and not d.enter_short
        if pos is not None:
            if (pos.side == "long" and (exit_long or enter_short)) or (pos.side == "short" and (exit_short or enter_long)):
                if not self.close_position(symbol, "signal", ts_ms):
                    return  # still holding it (the exit refused, or unanswered): no opposite entry on top
                pos = None
                if not ((enter_short and short_ok) or (enter_long and long_ok)):
                    return
            else:
                return
        if enter_long or enter_short:
            self._enter(symbol, ts_ms, price, "long" if enter_long else "short", d.confidence)

    # -- entries ------------------------------------------------------------
    def _enter(self, symbol: str, ts_ms: int, price: float, side: str, confidence: float) -> None:
        rules = self.rules[symbol]
        view = self.view()
        amount = size_entry(self.limits, view.equity, price, rules, self.spec.costs)
        intent = OrderIntent(symbol=symbol, side="buy" if side == "long" else "sell", amount=amount, price=price, reduce_only=False, confidence=confidence)
        ok, why = self.guard.can_open(self._now())
        verdict = check_order(intent, view, self.limits, rules, self._now(), paused=False if ok else why)
        if not verdict.allowed:
            self._risk_event("denied", "; ".join(verdict.reasons), {"intent": intent.__dict__, "level": verdict.level}, symbol)
            return
        cid = client_order_id(self.id, symbol, ts_ms, "e")
        row = self.store.order(cid) if ts_ms <= self.orders_upto else None
        if _taken(row):
            return  # this decision was already acted on (restart)
        order = self._send(OrderRequest(symbol, intent.side, "market", verdict.amount, cid, reference_price=price), "entry", known=row is not None)
        if order is None or not order.get("filled"):
            return
        self._opened(symbol, cid, order, ts_ms, side, confidence, fresh=row is None)

    def _opened(self, symbol: str, cid: str, order: dict[str, Any], ts_ms: int, side: str, confidence: float, fresh: bool = False) -> None:
        """Book a filled entry order as a position and protect it."""
        filled, avg, fee = _fill_of(order)
        margin = self.rules[symbol].contract or side == "short"
        sl, tp = stop_levels(side, avg, self.limits.stop_loss, self.limits.take_profit)
        pos_id = self.store.open_position({
            "deployment_id": self.id, "symbol": symbol, "side": side, "amount": filled, "entry_price": avg,
            "entry_at": ts_ms / 1000.0, "entry_fee": fee, "confidence": confidence,
            "leverage": float(self.limits.leverage), "sl_price": None if sl != sl else sl, "tp_price": None if tp != tp else tp,
        }, defer=True)
        pos = OpenPosition(pos_id, symbol, side, filled, avg, ts_ms / 1000.0, fee, margin, confidence, sl_price=sl, tp_price=tp)
        self.ledger.open(pos)
        self.store.update_order(cid, at=self._now(), position_id=pos_id)
        self._protect(pos, ts_ms, fresh=fresh)
        self.emit("fill", {"deployment_id": self.id, "symbol": symbol, "side": "buy" if side == "long" else "sell", "amount": filled, "price": avg, "fee": fee})

    # -- recovery ---------------------------------------------------------------
    def recover_orders(self) -> dict[str, int]:
        """After a restart, settle every order the store left unfinished by asking the venue (:meth:`_settle`).

        Then a position left without its stops (a crash between entry and
        stops, or a stop the venue never saw) is protected again.
        """
        counts = self._settle(self.store.orders(self.id, statuses=("pending", "open", "partially_filled")))
        counts["booked"] += self._protect_missing()
        return counts

    def settle_orders(self) -> dict[str, int]:
        """Ask the venue about the orders it did not answer for (:meth:`_unanswered`); those it still does not answer for wait.

        Runs before a bar while there are any: an entry the venue took is
        booked as a position (with its stops), an exit as a closed trade, on
        the bar they were decided on; an order it never saw is marked rejected.
        Each order is asked about once per try (not through the venue's retry
        loop, which would hold up the engine's other work); while the venue
        answers none of them, the next try waits 30 s, doubling to 10 minutes
        (:data:`SETTLE_RETRY`).
        """
        rows = [r for r in map(self.store.order, sorted(self._unsettled)) if r is not None]
        self._unsettled.intersection_update(r["client_order_id"] for r in rows)
        counts = self._settle(rows, wait=True)
        if rows and counts["unanswered"] == len(rows):  # no answer yet: ask again later, waiting longer each time
            self._settle_wait = min(max(2 * self._settle_wait, SETTLE_RETRY[0]), SETTLE_RETRY[1])
            self._settle_at = self._now() + self._settle_wait
            return counts
        self._settle_wait = 0.0
        counts["booked"] += self._protect_missing()
        return counts

    def _settle(self, rows: list[dict[str, Any]], wait: bool = False) -> dict[str, int]:
        """Settle stored orders by the venue's word.

        An order written ahead but never seen by the venue is marked rejected;
        one the venue filled meanwhile is booked (entry -> position, exit or
        stop -> closed trade) on the bar an uninterrupted run books it on
        (:meth:`_booking_bar`); one still working is left working, unless it
        protects a position that is closed: then it is cancelled. `wait`: an
        order the venue cannot be asked about now stays unsettled, asked once
        per attempt (else the venue retries, then its error is raised).
        """
        counts = {"booked": 0, "never_sent": 0, "working": 0, "unanswered": 0}
        for row in rows:
            cid, symbol = row["client_order_id"], row["symbol"]
            try:
                # with `wait`, one attempt: the order is asked about again at widening intervals, not in the venue's retry loop
                order = self.venue.fetch_order(symbol, order_id=row["venue_order_id"], client_order_id=cid, retry=not wait)
            except VenueError:
                if not wait:
                    raise
                counts["unanswered"] += 1
                continue
            self._unsettled.discard(cid)
            if order is None:
                if row["status"] == "pending":
                    self.store.update_order(cid, status="rejected", at=self._now(), error=f"{_NEVER_SENT} (found when settling)")
                    counts["never_sent"] += 1
                    pos = self.ledger.positions.get(symbol)
                    if pos is not None and cid == pos.sl_cid:  # a stop never placed: placed again (_protect_missing)
                        pos.sl_cid, pos.sl_order_id = None, None
                    if pos is not None and cid == pos.tp_cid:  # (a stop pair is both)
                        pos.tp_cid, pos.tp_order_id = None, None
                continue
            self._record_order_state(cid, order)
            pos = self.ledger.positions.get(symbol)
            if pos is not None and order.get("id"):  # a stop accepted unanswered (or just before a crash): keep its venue id
                if cid == pos.sl_cid:
                    pos.sl_order_id = str(order["id"])
                if cid == pos.tp_cid:
                    pos.tp_order_id = str(order["id"])
            if order.get("status") != "closed" or not order.get("filled"):
                counts["working"] += 1
                if row["purpose"] in PROTECTIVE and self._order_status.get(cid) and (pos is None or row["position_id"] != pos.id):
                    self._cancel_stray(cid, order, symbol)  # it protects a position already closed
                continue
            req = OrderRequest(symbol, row["side"], "market", float(row["amount"]), cid, reduce_only=bool(row["reduce_only"]))
            self._record_fill(req, order)
            ts_ms = self._booking_bar(row, order)
            if row["purpose"] == "entry" and row["position_id"] is None and pos is None:
                self._opened(symbol, cid, order, ts_ms, "long" if row["side"] == "buy" else "short", 1.0)
                counts["booked"] += 1
            elif row["purpose"] in ("exit", *PROTECTIVE) and pos is not None and row["position_id"] in (None, pos.id):
                _, avg, fee = _fill_of(order)
                reason = (_EXIT_REASON.get(cid.rsplit("-", 1)[-1], "signal") if row["purpose"] == "exit"
                          else _pair_reason(pos, order, avg) if row["purpose"] == "protect" else row["purpose"])
                self._cancel_protection(pos, keep=cid, gone=self._canceled_with(order))
                self._book_close(pos, avg, fee, ts_ms, reason)
                counts["booked"] += 1
        return counts

    def _awaiting(self, symbol: str) -> str | None:
        """An unsettled entry or exit of `symbol`: acting again before it is settled could double a position or its exit."""
        for cid in sorted(self._unsettled):
            row = self.store.order(cid)
            if row is not None and row["symbol"] == symbol and row["purpose"] in ("entry", "exit"):
                return cid
        return None

    def _cancel_stray(self, cid: str, order: dict[str, Any], symbol: str) -> None:
        """Cancel a working stop whose position is closed; if the venue cannot, it is settled again before the next bar."""
        try:
            self.venue.cancel_order(str(order["id"]), symbol)
        except VenueError:
            self._unsettled.add(cid)
            return
        self._order_status.pop(cid, None)
        self.store.update_order(cid, status="cancelled", at=self._now())

    def _protect_missing(self) -> int:
        """Protect each open position that lacks a stop it should have; how many were."""
        done = 0
        for pos in list(self.ledger.positions.values()):
            wants_sl = self.limits.stop_loss is not None and pos.sl_cid is None
            wants_tp = self.limits.take_profit is not None and pos.tp_cid is None
            if wants_sl or wants_tp:
                self._protect(pos, int(pos.entry_at * 1000), sl=wants_sl, tp=wants_tp)
                done += 1
        return done

    def _booking_bar(self, row: dict[str, Any], order: dict[str, Any]) -> int:
        """The bar (open time, ms) a fill found on recovery belongs to, as an uninterrupted run books it.

        An entry or exit is booked on the bar it was decided on, which its
        client order id encodes; the venue's timestamps are later (the order
        is sent after that bar closed). A resting stop is booked on the bar
        during which it filled: the first bar a running engine would have
        seen it on.
        """
        step = self.step_ms
        if row["purpose"] in ("entry", "exit"):
            decided = _cid_bar_ms(row["client_order_id"])
            if decided is not None and decided % step == 0:
                return decided
        filled_ms = order.get("lastTradeTimestamp") or order.get("lastUpdateTimestamp") or order.get("timestamp")
        filled_ms = int(filled_ms) if filled_ms else int(self._now() * 1000)
        return (filled_ms - 1) // step * step  # a fill at a bar's close time belongs to that bar

    def restart_cursor(self) -> None:
        """Resume each symbol on the first bar that may not have been fully processed.

        Bars up to the last one with activity in the store (an entry or exit)
        were processed, whatever the stored cursor says (it is flushed in
        batches). That bar itself may have been cut short by the crash when
        the venue is outside the store (writes commit as each order goes
        out): it is processed again. That is safe: its decision depends only
        on the history; its orders carry the bar's client ids, so one already
        sent is not sent again and one the venue never saw is sent now; a stop
        booked on it still voids its signal (:attr:`stopped_at`). Bars after
        it had no activity, so replaying them gives the same (idle) decisions.
        With the venue's state in the store a bar commits whole: it is not
        replayed.
        """
        back = 0 if self.venue_in_store else self.step_ms
        for row in self.store.positions(self.id, status=None):
            sym = row["symbol"]
            marks = [row["entry_at"]] + ([row["closed_at"]] if row["closed_at"] is not None else [])
            self.cursor[sym] = max(self.cursor.get(sym, -1), int(round(max(marks) * 1000)) - back)

    def _protect(self, pos: OpenPosition, ts_ms: int, sl: bool = True, tp: bool = True, fresh: bool = False) -> None:
        """Place the position's stop-loss and take-profit orders (`fresh`: their client ids are new, no lookup).

        On a venue that takes both levels on one order (``stop_pairs``), that
        one order is both: one to place, to watch and to cancel. If the venue
        refuses it, each level is tried on its own order.
        """
        want_sl, want_tp = sl, tp
        sl, tp = stop_levels(pos.side, pos.entry_price, self.limits.stop_loss, self.limits.take_profit)
        stored = _same(sl, pos.sl_price) and _same(tp, pos.tp_price)  # _opened wrote them with the position
        pos.sl_price, pos.tp_price = sl, tp
        exit_side = "sell" if pos.side == "long" else "buy"
        known = False if fresh else None
        if want_sl and want_tp and sl == sl and tp == tp and getattr(self.venue, "stop_pairs", False):
            cid = client_order_id(self.id, pos.symbol, ts_ms, "sltp")
            o = self._send(OrderRequest(pos.symbol, exit_side, "stop", pos.amount, cid, stop_loss_price=sl, take_profit_price=tp,
                                        reduce_only=True), "protect", pos.id, known=known)
            if o is not None or cid in self._unsettled:  # placed, or perhaps placed: settled before the next bar
                pos.sl_cid = pos.tp_cid = cid
                pos.sl_order_id = pos.tp_order_id = o.get("id") if o else None
                want_sl = want_tp = False
        if sl == sl and want_sl:
            pos.sl_cid = client_order_id(self.id, pos.symbol, ts_ms, "sl")
            o = self._send(OrderRequest(pos.symbol, exit_side, "stop", pos.amount, pos.sl_cid, stop_loss_price=sl, reduce_only=True), "stop_loss", pos.id,
                           known=known)
            pos.sl_order_id = o.get("id") if o else None
            if o is None and pos.sl_cid not in self._unsettled:
                self._unprotected(pos, "stop loss", pos.sl_cid, sl)
                pos.sl_cid = None
        if tp == tp and want_tp:
            pos.tp_cid = client_order_id(self.id, pos.symbol, ts_ms, "tp")
            o = self._send(OrderRequest(pos.symbol, exit_side, "stop", pos.amount, pos.tp_cid, take_profit_price=tp, reduce_only=True), "take_profit", pos.id,
                           known=known)
            pos.tp_order_id = o.get("id") if o else None
            if o is None and pos.tp_cid not in self._unsettled:
                self._unprotected(pos, "take profit", pos.tp_cid, tp)
                pos.tp_cid = None
        if not stored:
            self.store.update_position(pos.id, sl_price=None if sl != sl else sl, tp_price=None if tp != tp else tp)

    def _unprotected(self, pos: OpenPosition, what: str, cid: str, level: float) -> None:
        """A protective order the venue refused: recorded as a risk event; the position watches no such order.

        (A restart places it again: recovery protects a position without one.)
        """
        self._risk_event("unprotected", f"The venue refused the {what} of the {pos.side} {pos.symbol} position at {level:.8g} "
                         f"(order {cid}; its error is on the order): the position has no {what} until it is placed again.",
                         {"position_id": pos.id, "order": cid, "level": level}, pos.symbol)

    # -- exits ----------------------------------------------------------------
    def _check_protection(self, symbol: str, ts_ms: int, o: float, h: float, lo: float) -> bool:
        """Did a resting stop-loss / take-profit order fill during this bar? Record it if so."""
        pos = self.ledger.positions.get(symbol)
        if pos is None or (pos.sl_cid is None and pos.tp_cid is None):
            return False
        if pos.entry_at * 1000 >= ts_ms:
            return False  # its stops went out after this bar closed (a bar replayed after a restart)
        if self.simulated and stop_exit(pos.side, pos.sl_price, pos.tp_price, o, h, lo) is None:
            return False  # the simulator fills from these very bars: untouched levels cannot have filled
        for cid, oid, reason in _stop_orders(pos):
            if cid is None:
                continue
            try:
                order = self.venue.fetch_order(symbol, order_id=oid, client_order_id=cid)
            except VenueError as exc:
                self._error(f"could not check {reason} order {cid}: {exc}")
                return False
            if order and order.get("status") == "closed" and order.get("filled"):
                self._record_order_state(cid, order)
                self._record_fill(OrderRequest(symbol, "sell" if pos.side == "long" else "buy", "market", pos.amount, cid, reduce_only=True), order)
                filled, avg, fee = _fill_of(order)
                self._cancel_protection(pos, keep=cid, gone=self._canceled_with(order))
                self._book_close(pos, avg, fee, ts_ms, reason or _pair_reason(pos, order, avg))
                return True
        return False

    def close_position(self, symbol: str, reason: str, ts_ms: int | None = None) -> bool:
        """Close `symbol`'s position at market, then retire its stops; False if none or the exit failed.

        The exit goes first: if it fails, the stops still protect the
        position. They are reduce-only, so they cannot add to it meanwhile.
        """
        pos = self.ledger.positions.get(symbol)
        if pos is None:
            return False
        ts_ms = int(ts_ms if ts_ms is not None else self.cursor.get(symbol, int(self._now() * 1000)))
        purpose = {"signal": "x", "stop": "xs", "emergency_stop": "xe", "manual": "xm", "risk": "xr"}.get(reason, "x")
        cid = client_order_id(self.id, symbol, ts_ms, purpose)
        row = self.store.order(cid) if ts_ms <= self.orders_upto or purpose != "x" else None
        known: bool | None = row is not None
        if _taken(row):
            # this bar's exit id is taken (resent only if recovery proved the venue never saw it)
            cid, known = client_order_id(self.id, symbol, int(self._now() * 1000) + len(self.store.orders(self.id)), purpose), None
        side = "sell" if pos.side == "long" else "buy"
        order = self._send(OrderRequest(symbol, side, "market", pos.amount, cid, reduce_only=True, reference_price=self.marks.get(symbol)), "exit", pos.id, known=known)
        if order is None or not order.get("filled"):
            return False
        self._cancel_protection(pos, gone=self._canceled_with(order))
        _, avg, fee = _fill_of(order)
        self._book_close(pos, avg, fee, ts_ms, reason)
        return True

    def _cancel_protection(self, pos: OpenPosition, keep: str | None = None, gone: frozenset[str] = frozenset()) -> None:
        """Cancel the position's stops but `keep`; those in `gone` (venue order ids) the venue already cancelled."""
        for cid, oid, _ in _stop_orders(pos):
            if cid is None or cid == keep:
                continue
            if cid in self._unsettled:  # the venue has not said whether it took it: settle_orders cancels it if it did
                continue
            status = self._order_status.pop(cid, None)
            if status is None or not oid:
                row = self.store.order(cid)
                status, oid = (None, oid) if row is None else (row["status"], oid or row["venue_order_id"])
            if status is None or status in ("filled", "cancelled", "rejected"):
                continue
            if oid and oid in gone:  # cancelled with the position, as the venue's answer says
                self.store.update_order(cid, status="cancelled", at=self._now())
                continue
            try:
                if oid:
                    self.venue.cancel_order(oid, pos.symbol)
                self.store.update_order(cid, status="cancelled", at=self._now())
            except VenueError:
                # Reduce-only orders die with the position at the venue; record what the venue says.
                try:
                    order = self.venue.fetch_order(pos.symbol, order_id=oid, client_order_id=cid)
                except VenueError:
                    self._unsettled.add(cid)  # asked again before the next bar, and cancelled if still working
                    continue
                if order:
                    self._record_order_state(cid, order)

    def _canceled_with(self, order: dict[str, Any]) -> frozenset[str]:
        """The venue order ids that `order`'s fill cancelled: the paper venue's OCO reports them in ``info``.

        (A real venue's ``info`` is its own raw answer: nothing is read from it.)
        """
        info = order.get("info") if self.simulated else None
        ids = info.get("canceledOrders") if isinstance(info, dict) else None
        return frozenset(map(str, ids)) if ids else frozenset()

    def _book_close(self, pos: OpenPosition, exit_price: float, exit_fee: float, ts_ms: int, reason: str) -> None:
        closed, pnl = self.ledger.close(pos.symbol, exit_price, exit_fee)
        if reason in ("stop_loss", "take_profit"):
            self.stopped_at[pos.symbol] = ts_ms
        trade = {
            "deployment_id": self.id, "symbol": pos.symbol, "side": pos.side, "amount": pos.amount,
            "entry_price": pos.entry_price, "entry_at": pos.entry_at, "exit_price": exit_price,
            "exit_at": ts_ms / 1000.0, "fees": pos.entry_fee + exit_fee, "pnl": pnl,
            "pnl_pct": pnl / (pos.entry_price * pos.amount), "exit_reason": reason,
        }
        self.store.close_position(pos.id, trade, defer=True)
        self.emit("trade", trade)

    # -- venue calls ----------------------------------------------------------
    def _send(self, req: OrderRequest, purpose: str, position_id: int | None = None, known: bool | None = None) -> dict[str, Any] | None:
        """Write-ahead the order, send it, record the venue's answer; None if it failed.

        `known`: whether the store already has this client id (None: look it up).
        """
        if known is None:
            known = self.store.order(req.client_order_id) is not None
        draft = None
        if known:  # resending an order the venue never saw
            self.store.update_order(req.client_order_id, status="pending", at=self._now(), error=None, amount=req.amount)
        elif self.venue_in_store:
            # the venue's state commits in our transaction: the row is written once, with the venue's answer
            draft = _Draft(req, purpose, position_id, self._now())
        else:
            self._insert_order(_Draft(req, purpose, position_id, self._now()))
            self.store.commit_now()  # the write-ahead is durable before the venue sees the order
        return self._submit(req, draft)

    def _insert_order(self, draft: _Draft, **state: Any) -> None:
        """Write a new order row: pending (the write-ahead), or with the venue's answer in `state`."""
        req = draft.request
        status = state.pop("status", "pending")
        history = [[draft.at, "pending"]] + ([[self._now(), status]] if status != "pending" else [])
        self.store.insert_order({
            "deployment_id": self.id, "client_order_id": req.client_order_id, "symbol": req.symbol, "side": req.side,
            "type": req.type, "amount": req.amount, "price": req.price,
            "trigger_price": req.trigger_price or req.stop_loss_price or req.take_profit_price,
            "reduce_only": req.reduce_only, "purpose": draft.purpose, "position_id": draft.position_id,
            "status": status, "status_history": history, "created_at": draft.at, "updated_at": history[-1][0], **state,
        }, defer=True)

    def _write_order(self, cid: str, draft: _Draft | None, **state: Any) -> None:
        """Record an order's new state: an update of its row, or its first write when it was a draft."""
        if draft is None:
            self.store.update_order(cid, at=self._now(), **state)
        else:
            self._insert_order(draft, **state)

    def _submit(self, req: OrderRequest, draft: _Draft | None = None) -> dict[str, Any] | None:
        try:
            order = self.venue.create_order(req)
        except LiveTradingRefused as exc:
            self._write_order(req.client_order_id, draft, status="rejected", error=str(exc))
            self._risk_event("denied", str(exc), {"order": req.client_order_id}, req.symbol)
            return None
        except (VenueError, ConfigError) as exc:
            if isinstance(exc, VenueError) and not isinstance(exc, PermanentVenueError):
                self._unanswered(req, draft, exc)
                return None
            self._write_order(req.client_order_id, draft, status="rejected", error=str(exc))
            self.store.audit("engine", "order_failed", self.id, {"order": req.client_order_id, "error": str(exc)})
            kind = getattr(exc, "kind", "")
            if kind in ("AuthenticationError", "PermissionDenied"):
                self.set_status("error", f"venue refused: {exc}", by="engine")
            self.emit("order", {"deployment_id": self.id, "client_order_id": req.client_order_id, "status": "rejected", "error": str(exc)})
            return None
        if req.type == "market" and order.get("status") != "closed":
            order = self._await_fill(req, order)
        self._record_order_state(req.client_order_id, order, draft)
        if order.get("filled"):
            self._record_fill(req, order)
        self.emit("order", {"deployment_id": self.id, "client_order_id": req.client_order_id, "status": order.get("status"), "order": order})
        return order

    def _unanswered(self, req: OrderRequest, draft: _Draft | None, exc: VenueError) -> None:
        """The venue gave no answer (a timeout, a dropped connection, retries run out): the order may have reached it.

        It is not marked rejected on a guess: it stays pending, with the
        error, until the venue says what became of it (:meth:`settle_orders`).
        Its client id is never sent again meanwhile.
        """
        cid = req.client_order_id
        self._write_order(cid, draft, status="pending", error=f"{_NO_ANSWER}: {exc}")
        self._unsettled.add(cid)
        self.store.audit("engine", "order_unanswered", self.id, {"order": cid, "error": str(exc)})
        self.emit("order", {"deployment_id": self.id, "client_order_id": cid, "status": "unknown", "error": str(exc)})

    def _await_fill(self, req: OrderRequest, order: dict[str, Any], tries: int = 10, wait: float = 0.2) -> dict[str, Any]:
        """A real exchange acknowledges a market order before it reports the fill: ask until it does."""
        sleep = getattr(self.venue, "sleep", time.sleep)
        for _ in range(tries):
            try:
                found = self.venue.fetch_order(req.symbol, order_id=order.get("id"), client_order_id=req.client_order_id)
            except VenueError:
                found = None
            if found:
                order = {**order, **{k: v for k, v in found.items() if v is not None}}
                if order.get("status") in ("closed", "canceled", "cancelled", "rejected", "expired"):
                    return order
            sleep(wait)
        return order

    def _record_order_state(self, cid: str, order: dict[str, Any], draft: _Draft | None = None) -> None:
        status = _ORDER_STATUS.get(str(order.get("status")), "open")
        filled = float(order.get("filled") or 0.0)
        if status == "open" and filled > 0:
            status = "partially_filled"
        if status in ("open", "partially_filled"):
            self._order_status[cid] = status
        else:
            self._order_status.pop(cid, None)
        self._write_order(cid, draft, status=status, venue_order_id=str(order.get("id")), filled=filled, avg_price=order.get("average"))

    def _record_fill(self, req: OrderRequest, order: dict[str, Any]) -> None:
        filled, avg, fee = _fill_of(order)
        trades = order.get("trades") or []
        if trades:
            rows = [(str(tr.get("id")), float(tr["amount"]), float(tr["price"]), float((tr.get("fee") or {}).get("cost") or 0.0), (tr.get("fee") or {}).get("currency"), tr.get("timestamp")) for tr in trades]
        else:
            cur = (order.get("fee") or {}).get("currency")
            rows = [(f"{order.get('id')}:{filled}", filled, avg, fee, cur, order.get("lastTradeTimestamp") or order.get("timestamp"))]
        for tid, amt, px, f, cur, ts in rows:
            self.store.insert_fill({
                "deployment_id": self.id, "venue": self.venue.id, "venue_trade_id": tid, "venue_order_id": str(order.get("id")),
                "client_order_id": req.client_order_id, "symbol": req.symbol, "side": req.side, "amount": amt, "price": px,
                "fee": f, "fee_currency": cur, "at": (ts / 1000.0) if ts else self._now(),
            }, defer=True)

    # -- status -------------------------------------------------------------
    def set_status(self, status: str, reason: str | None, by: str = "user") -> None:
        old = self.status
        self.status = status
        self.store.set_status(self.id, status, reason, at=time.time())
        self.store.audit(by, f"status:{status}", self.id, {"from": old, "reason": reason})
        self.emit("status", {"deployment_id": self.id, "from": old, "to": status, "reason": reason})

    def _risk_event(self, kind: str, reason: str, details: dict[str, Any], symbol: str | None) -> None:
        self.store.add_risk_event(self.id, kind, reason, details, symbol=symbol, at=self._now())
        self.emit("risk_event", {"deployment_id": self.id, "kind": kind, "reason": reason, "symbol": symbol, "details": details})

    def _error(self, message: str) -> None:
        self.store.audit("engine", "error", self.id, {"message": message})

    @property
    def unflushed(self) -> int:
        """Equity rows waiting for :meth:`flush`."""
        return len(self._equity_rows) + self._equity_blocked

    def _add_equity_block(self, block: np.ndarray) -> None:
        """Equity rows of several bars at once ((n, 4) array), after the rows already waiting."""
        if self._equity_rows:
            self._equity_blocks.append(np.array(self._equity_rows, dtype=np.float64))
            self._equity_blocked += len(self._equity_rows)
            self._equity_rows = []
        self._equity_blocks.append(block)
        self._equity_blocked += len(block)

    def flush(self) -> None:
        """Write batched equity rows, the bar cursor and the risk guard state."""
        if self._equity_blocks:
            self._add_equity_block(np.empty((0, 4)))
            rows: Any = np.concatenate(self._equity_blocks)
        else:
            rows = self._equity_rows
        self._equity_rows, self._equity_blocks, self._equity_blocked = [], [], 0
        with self.store.tx():
            self.store.add_equity_rows(self.id, rows)
            self.store.update_deployment(self.id, cursor={k: int(v) for k, v in self.cursor.items()}, risk_state=self.guard.state())

    def stop(self, reason: str = "stop", exit_reason: str = "stop") -> None:
        """Close every position, cancel open orders, then mark the deployment stopped."""
        self.cancel_open_orders()
        for symbol in list(self.ledger.positions):
            self.close_position(symbol, exit_reason)
        self.flush()
        self.set_status("stopped", reason)

    def cancel_open_orders(self) -> None:
        for row in self.store.orders(self.id, statuses=("pending", "open", "partially_filled")):
            if row["purpose"] in PROTECTIVE and row["symbol"] in self.ledger.positions:
                continue  # cancelled with their position
            try:
                if row["venue_order_id"]:
                    self.venue.cancel_order(row["venue_order_id"], row["symbol"])
                self.store.update_order(row["client_order_id"], status="cancelled", at=self._now())
                self._order_status.pop(row["client_order_id"], None)
            except VenueError as exc:
                self._error(f"cancel {row['client_order_id']} failed: {exc}")


class BarSeries(NamedTuple):
    """One symbol's bars for a replay: arrays (sliced for the venue and the quiet runs); a bar stepped alone is read by :meth:`row`."""

    arrays: tuple[np.ndarray, ...]  # ts ms (int64), open, high, low, close, volume (float64)
    stamps: list[int]  # the bars' times (ms) as Python ints (searched bar by bar)
    close_times: list[float]  # the clock at each bar's close (s)
    close_clock: np.ndarray  # the same as an array
    seconds: np.ndarray  # each bar's open time (s): its equity row's time
    envelope: tuple[np.ndarray, np.ndarray]  # each bar's lowest and highest price (bar_envelope)
    ascending: bool  # every bar after the one before it (quiet runs need it)

    @classmethod
    def of(cls, df: pd.DataFrame, step_ms: int) -> BarSeries:
        ts = df.index.as_unit("ms").asi8.astype(np.int64)
        arrays = (ts, *(df[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close", "volume")))
        clock = (ts + step_ms) / 1000.0
        return cls(arrays, ts.tolist(), clock.tolist(), clock, ts / 1000.0, bar_envelope(*arrays[1:5]), bool(np.all(np.diff(ts) > 0)))

    def row(self, i: int) -> tuple[int, float, float, float, float, float]:
        """Bar `i` as Python numbers (ms, open, high, low, close, volume): most bars are never read one by one."""
        _, o, h, lo, c, v = self.arrays
        return self.stamps[i], o.item(i), h.item(i), lo.item(i), c.item(i), v.item(i)


class _Draft(NamedTuple):
    """An order not written yet: its row goes in with the venue's answer (the venue's state is in our store)."""

    request: OrderRequest
    purpose: str
    position_id: int | None
    at: float


_HOLD = Decision(pd.Timestamp(0, unit="ms", tz="UTC"))
_NEVER_SENT = "never reached the venue"
_NO_ANSWER = "no answer from the venue, settled when it answers"
#: seconds between attempts to settle orders the venue gives no answer about: the first wait, and the longest
SETTLE_RETRY = (30.0, 600.0)
_EXIT_REASON = {"x": "signal", "xs": "stop", "xe": "emergency_stop", "xm": "manual", "xr": "risk"}


def _taken(row: dict[str, Any] | None) -> bool:
    """A stored order whose client id may not be sent again (it exists and the venue may have seen it)."""
    return row is not None and not (row["status"] == "rejected" and str(row["error"] or "").startswith(_NEVER_SENT))


def _same(a: float, b: float) -> bool:
    """Equal, NaN included."""
    return a == b or (a != a and b != b)


def _cid_bar_ms(cid: str) -> int | None:
    """The bar time (ms) a :func:`~workbench.venues.base.client_order_id` encodes; None if it is not one."""
    parts = cid.split("-")
    if len(parts) != 4 or not cid.startswith("wb"):
        return None
    try:
        return int(parts[2], 36) * 1000
    except ValueError:
        return None


def _stop_orders(pos: OpenPosition) -> tuple[tuple[str | None, str | None, str | None], ...]:
    """The position's protective orders as (client id, venue id, exit reason); a stop pair is one, its reason None."""
    if pos.sl_cid is not None and pos.sl_cid == pos.tp_cid:
        return ((pos.sl_cid, pos.sl_order_id, None),)
    return ((pos.sl_cid, pos.sl_order_id, "stop_loss"), (pos.tp_cid, pos.tp_order_id, "take_profit"))


def _pair_reason(pos: OpenPosition, order: dict[str, Any], price: float) -> str:
    """Which level of a stop pair filled: the venue's word when it gives one, else the level nearer the fill."""
    info = order.get("info")
    said = info.get("reason") if isinstance(info, dict) else None
    if said in ("stop_loss", "take_profit"):
        return str(said)
    return "stop_loss" if abs(price - pos.sl_price) <= abs(price - pos.tp_price) else "take_profit"


def _fill_of(order: dict[str, Any]) -> tuple[float, float, float]:
    filled = float(order.get("filled") or 0.0)
    avg = float(order.get("average") or order.get("price") or 0.0)
    fee = order.get("fee") or {}
    cost = fee.get("cost") if isinstance(fee, dict) else None
    if cost is None:
        cost = sum(float((f or {}).get("cost") or 0.0) for f in order.get("fees") or [])
    fee_cost = float(cost or 0.0)
    if not math.isfinite(fee_cost):
        fee_cost = 0.0
    return filled, avg, fee_cost

