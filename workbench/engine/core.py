"""The engine: many deployments at once, controlled through the store by any client.

Commands (stop, pause, resume, emergency_stop, close_position, place_order,
cancel_order, enable/disable a symbol) are rows in the store's ``commands`` table; whatever
process runs the engine picks them up on :meth:`Engine.process_commands`
(called on every tick of :meth:`Engine.run`, at least once a second). On start
an engine recovers its deployments, orders and positions from the store.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import ConfigError, LiveTradingRefused, StoreError, VenueError, WorkbenchError
from ..params import ParamStore
from ..store import Store
from ..strategies import get_strategy
from ..venues.base import Venue
from .clock import Clock, SystemClock
from .deployment import DeploymentRuntime, _cid_bar_ms
from .ledger import OpenPosition
from .spec import DeploymentSpec

if TYPE_CHECKING:
    from ..orders import OrderDesk

log = logging.getLogger("workbench.engine")
EVENTS = ("signal", "order", "fill", "trade", "risk_event", "status")
VenueFactory = Callable[[str, DeploymentSpec], Venue]


class Engine:
    """Runs deployments; every action goes through risk and into the store."""

    def __init__(self, store: Store | str, clock: Clock | None = None, venue_factory: VenueFactory | None = None, actor: str = "engine") -> None:
        self.store = store if isinstance(store, Store) else Store(store)
        self.clock = clock or SystemClock()
        self.venue_factory = venue_factory or default_venue_factory(self.store)
        self.actor = actor
        self.deployments: dict[str, DeploymentRuntime] = {}
        self._callbacks: dict[str, list[Callable[[dict[str, Any]], None]]] = defaultdict(list)
        self.id = uuid.uuid4().hex[:12]
        #: reconciliation hook (workbench.sync.SyncService.attach): sync(rt) on recovery, before trading; raising stops it
        self.sync: Callable[[DeploymentRuntime], Any] | None = None
        self._manual_working: set[str] = set()  # deployments with working manual orders placed through this engine

    def __repr__(self) -> str:
        return f"<Engine {self.id}: {len(self.deployments)} deployment(s) on {self.store!r}>"

    # -- callbacks ------------------------------------------------------------
    def on(self, event: str, fn: Callable[[dict[str, Any]], None]) -> None:
        """Call `fn(payload)` on each `event` (signal, order, fill, trade, risk_event, status)."""
        if event not in EVENTS:
            raise ConfigError(f"Unknown event {event!r}; choose from {', '.join(EVENTS)}.")
        self._callbacks[event].append(fn)

    def _emit(self, event: str, payload: dict[str, Any]) -> None:
        for fn in self._callbacks.get(event, ()):
            fn(payload)

    # -- deploy ---------------------------------------------------------------
    def deploy(self, spec: DeploymentSpec | Mapping[str, Any], actor: str = "user") -> DeploymentRuntime:
        """Validate, record and start a deployment; trading starts with the next closed bar."""
        if not isinstance(spec, DeploymentSpec):
            spec = DeploymentSpec.from_dict(spec)
        strategy = get_strategy(spec.strategy)
        params, freshness, optimized_at = resolve_params(spec)
        dep_id = uuid.uuid4().hex[:8]
        # Build (and so validate) everything before the first write: a rejected deploy stores nothing.
        rt = self._runtime(dep_id, spec, params, "active", register=False)
        now = time.time()
        self.store.insert_deployment({
            "id": dep_id, "name": spec.name or f"{strategy.name} {','.join(spec.symbols)} {spec.timeframe}",
            "strategy": strategy.name, "params": params, "symbols": list(spec.symbols), "timeframe": spec.timeframe,
            "venue": spec.venue, "account": spec.account, "mode": spec.mode, "risk": dict(spec.risk),
            "config": spec.to_dict() | {"params": params}, "status": "active", "status_reason": "deployed",
            "params_freshness": freshness, "params_optimized_at": optimized_at, "created_at": now,
            "started_at": now, "updated_at": now, "cursor": {}, "risk_state": {},
        })
        self.store.audit(actor, "deploy", dep_id, spec.to_dict() | {"params": params, "freshness": freshness})
        self.deployments[dep_id] = rt
        self._emit("status", {"deployment_id": dep_id, "from": None, "to": "active", "reason": "deployed"})
        return rt

    def warm_up(self, dep_id: str, now_ms: int | None = None) -> dict[str, int]:
        """Give a live deployment the history its strategy needs, so it decides on the next closed bar.

        Bars come from the venue's OHLCV; a paper venue that has seen no bars
        takes them from the embedded sample. A recovered deployment takes them
        up to its cursor only: the bars after it reach it through the feed, in
        order, and are decided on.
        """
        from ..data import SAMPLE_SYMBOLS, sample_ohlcv
        from ..timeframes import timeframe_seconds

        rt = self.get(dep_id)
        step = timeframe_seconds(rt.spec.timeframe) * 1000
        now_ms = int(now_ms if now_ms is not None else self.clock.now() * 1000)
        last_closed = (now_ms // step) * step - step
        out = {}
        for sym in rt.spec.symbols:
            upto = min(last_closed, rt.cursor[sym]) if sym in rt.cursor else last_closed
            rows = rt.venue.fetch_ohlcv(sym, rt.spec.timeframe, since=upto - rt.warmup * step, limit=rt.warmup + 1)
            rows = [r for r in rows if r[0] <= upto]
            base = sym.split(":")[0]
            if not rows and rt.spec.venue == "paper" and base in SAMPLE_SYMBOLS:
                start = pd.Timestamp(upto - (rt.warmup - 1) * step, unit="ms", tz="UTC")
                df = sample_ohlcv(base, rt.spec.timeframe, bars=rt.warmup, start=start)
                rows = [[int(t), *r] for t, r in zip(df.index.as_unit("ms").asi8, df.itertuples(index=False, name=None), strict=True)]
            out[sym] = rt.warm_up(sym, rows)
        return out

    def _runtime(self, dep_id: str, spec: DeploymentSpec, params: dict[str, float], status: str, register: bool = True) -> DeploymentRuntime:
        venue = self.venue_factory(dep_id, spec)
        rt = DeploymentRuntime(dep_id, spec, get_strategy(spec.strategy), params, venue, self.store, self.clock, self._emit, status=status)
        for sym, rule in rt.rules.items():
            if rule.contract and rt.limits.leverage != 1:
                venue.set_leverage(rt.limits.leverage, sym)
        if register:
            self.deployments[dep_id] = rt
        return rt

    # -- recovery -------------------------------------------------------------
    def recover(self) -> list[str]:
        """Load active and paused deployments from the store with their positions and cursors."""
        recovered = []
        for row in self.store.deployments(status=("active", "paused")):
            if row["id"] in self.deployments:
                continue
            config = dict(row["config"])
            spec = DeploymentSpec.from_dict({k: v for k, v in config.items()})
            rt = self._runtime(row["id"], spec, dict(row["params"]), row["status"])
            rt.cursor = {k: int(v) for k, v in (row.get("cursor") or {}).items()}
            if row.get("risk_state"):
                rt.guard = type(rt.guard).from_state(rt.limits, row["risk_state"])
            self._restore_books(rt)
            settled = rt.recover_orders()
            rt.restart_cursor()
            self.store.audit(self.actor, "recover", rt.id, {"positions": list(rt.ledger.positions), "cursor": rt.cursor, "orders": settled})
            self._reconcile(rt)
            recovered.append(rt.id)
        return recovered

    def _reconcile(self, rt: DeploymentRuntime) -> None:
        """Run the sync hook; if it fails the deployment does not trade (status 'error', with the reason)."""
        if self.sync is None:
            return
        try:
            self.sync(rt)
        except WorkbenchError as exc:
            rt.set_status("error", f"reconciliation failed, not trading: {exc}", by="sync")

    def _restore_books(self, rt: DeploymentRuntime) -> None:
        trades = self.store.trades(rt.id)
        realized = float(trades["pnl"].sum()) if len(trades) else 0.0
        rt.ledger.cash = rt.spec.initial_cash + realized
        rt.ledger.realized = realized
        rt.ledger.fees = float(trades["fees"].sum()) if len(trades) else 0.0
        for row in trades.itertuples(index=False) if len(trades) else ():
            if row.exit_reason in ("stop_loss", "take_profit"):
                rt.stopped_at[row.symbol] = max(rt.stopped_at.get(row.symbol, -1), int(round(row.exit_at * 1000)))
        orders = {o["client_order_id"]: o for o in self.store.orders(rt.id)}
        rt.orders_upto = max((_cid_bar_ms(cid) or 0 for cid in orders), default=-1)
        for row in self.store.positions(rt.id, status="open"):
            rule = rt.rules[row["symbol"]]
            pos = OpenPosition(row["id"], row["symbol"], row["side"], row["amount"], row["entry_price"], row["entry_at"],
                               row["entry_fee"], rule.contract or row["side"] == "short", row["confidence"] or 1.0,
                               row["sl_price"] if row["sl_price"] is not None else float("nan"),
                               row["tp_price"] if row["tp_price"] is not None else float("nan"))
            for o in orders.values():
                if o["position_id"] == pos.id and o["status"] in ("open", "pending"):
                    if o["purpose"] in ("stop_loss", "protect"):
                        pos.sl_cid, pos.sl_order_id = o["client_order_id"], o["venue_order_id"]
                    if o["purpose"] in ("take_profit", "protect"):  # a stop pair is both
                        pos.tp_cid, pos.tp_order_id = o["client_order_id"], o["venue_order_id"]
            rt.ledger.open(pos)
            rt.marks.setdefault(pos.symbol, pos.entry_price)

    # -- control --------------------------------------------------------------
    def get(self, dep_id: str) -> DeploymentRuntime:
        if dep_id not in self.deployments:
            known = ", ".join(self.deployments) or "none"
            raise ConfigError(f"No deployment {dep_id!r} in this engine (running: {known}).")
        return self.deployments[dep_id]

    def stop(self, dep_id: str, reason: str = "stopped by user", actor: str = "user") -> None:
        """Graceful stop: close the deployment's positions first, then stop it."""
        rt = self.get(dep_id)
        self.store.audit(actor, "stop", dep_id, {"reason": reason})
        rt.stop(reason, exit_reason="stop")
        self.deployments.pop(dep_id, None)

    def pause(self, dep_id: str, reason: str = "paused by user", actor: str = "user") -> None:
        rt = self.get(dep_id)
        if rt.status == "active":
            rt.paused_by = actor
            rt.set_status("paused", reason, by=actor)

    def resume(self, dep_id: str, reason: str = "resumed by user", actor: str = "user") -> None:
        rt = self.get(dep_id)
        if rt.status in ("paused", "error"):
            event = rt.guard.resume(self.clock.now(), rt.view(), by=actor)
            self.store.add_risk_event(rt.id, event.kind, event.reason, event.details)
            rt.paused_by = None
            rt.set_status("active", reason, by=actor)

    def set_symbol(self, dep_id: str, symbol: str, enabled: bool, actor: str = "user") -> None:
        """Start or stop trading one symbol of a deployment (positions stay as they are)."""
        rt = self.get(dep_id)
        if symbol not in rt.enabled:
            raise ConfigError(f"Deployment {dep_id} does not trade {symbol!r}; it trades {list(rt.enabled)}.")
        rt.enabled[symbol] = enabled
        self.store.audit(actor, "enable_symbol" if enabled else "disable_symbol", dep_id, {"symbol": symbol})

    def close_position(self, dep_id: str, symbol: str, actor: str = "user") -> bool:
        rt = self.get(dep_id)
        self.store.audit(actor, "close_position", dep_id, {"symbol": symbol})
        return rt.close_position(symbol, "manual")

    def desk(self, dep_id: str, actor: str = "user") -> OrderDesk:
        """Manual orders on a deployment's venue, under its risk limits (not booked in its ledger: sync lists them)."""
        from ..orders import OrderDesk

        rt = self.get(dep_id)
        return OrderDesk(self, rt.venue, deployment_id=dep_id, limits=rt.limits, actor=actor, clock=self.clock.now)

    def place_order(self, dep_id: str, args: Mapping[str, Any], actor: str = "user") -> dict[str, Any]:
        """A manual order from any client (the ``place_order`` command): how a paper venue living in this
        process takes one. `args`: symbol, side, amount, type ('market'), price, reduce_only, and
        ``confirm=True``; on a live venue also ``confirm_live=True``."""
        rt = self.get(dep_id)
        missing = [k for k in ("symbol", "side", "amount") if k not in args]
        if missing:
            raise ConfigError(f"place_order needs {', '.join(missing)} in its args, e.g. {{'symbol': 'BTC/USDT', 'side': 'buy', "
                              "'amount': 0.01, 'confirm': True}.")
        if args.get("confirm") is not True:
            raise ConfigError("place_order needs args['confirm'] = True: review the order (OrderDesk.preview) first.")
        if getattr(rt.venue, "live", False) and args.get("confirm_live") is not True:
            raise LiveTradingRefused(f"Refusing a manual order on the live venue of {dep_id}: real money moves only "
                                     "with args['confirm_live'] = True.")
        amount = args["amount"]
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise ConfigError(f"place_order amount must be a number, got {amount!r}.")
        desk = self.desk(dep_id, actor)
        with self._venue_transaction(rt):
            row = desk.place(str(args["symbol"]), str(args["side"]), float(amount), str(args.get("type", "market")),
                             args.get("price"), bool(args.get("reduce_only", False)), confirm=True)
        if row.get("status") in ("pending", "open", "partially_filled"):
            self._manual_working.add(dep_id)
        return row

    def refresh_manual_orders(self) -> int:
        """Record what the venues did with the working manual orders placed here (a paper venue fills them as bars come)."""
        done = 0
        for dep_id in list(self._manual_working):
            if dep_id not in self.deployments:
                self._manual_working.discard(dep_id)
                continue
            desk = self.desk(dep_id, self.actor)
            with self._venue_transaction(self.deployments[dep_id]):
                done += len(desk.refresh())
            if not desk.orders(open_only=True):
                self._manual_working.discard(dep_id)
        return done

    def _venue_transaction(self, rt: DeploymentRuntime) -> contextlib.AbstractContextManager[Any]:
        """A paper venue's state commits with the desk's rows (one batch); elsewhere the desk's write-ahead
        row commits on its own, before the order is sent."""
        return self.store.batch() if rt.venue_in_store else contextlib.nullcontext()

    def emergency_stop(self, reason: str = "emergency stop", actor: str = "user") -> dict[str, Any]:
        """Cancel every open order and close every position of every deployment, at once."""
        self.store.audit(actor, "emergency_stop", None, {"reason": reason, "deployments": list(self.deployments)})
        report: dict[str, Any] = {}
        for dep_id, rt in list(self.deployments.items()):
            closed = list(rt.ledger.positions)
            try:
                rt.stop(reason, exit_reason="emergency_stop")
                report[dep_id] = {"closed": closed, "left_open": list(rt.ledger.positions)}
            except WorkbenchError as exc:
                rt.set_status("error", f"emergency stop incomplete: {exc}", by=actor)
                report[dep_id] = {"error": str(exc), "left_open": list(rt.ledger.positions)}
            self.store.audit(actor, "emergency_stop:deployment", dep_id, report[dep_id])
            self.deployments.pop(dep_id, None)
        return report

    # -- commands -----------------------------------------------------------
    def process_commands(self) -> int:
        """Run the pending commands from the store; return how many were handled."""
        done = 0
        for cmd in self.store.pending_commands():
            dep_id, args, actor = cmd["deployment_id"], cmd["args"] or {}, cmd["actor"]
            if dep_id and dep_id not in self.deployments:
                continue  # another engine runs it
            try:
                result = self.execute(cmd["command"], dep_id, args, actor)
                self.store.finish_command(cmd["id"], "done", result)
            except WorkbenchError as exc:
                self.store.finish_command(cmd["id"], "failed", str(exc))
            done += 1
        return done

    def execute(self, command: str, dep_id: str | None, args: Mapping[str, Any], actor: str = "user") -> str:
        """Run one control command here and now (the store's queue and the panels both come through here)."""
        if command == "deploy":
            rt = self.deploy(DeploymentSpec.from_dict(args), actor=actor)
            try:
                self.warm_up(rt.id)
            except WorkbenchError as exc:  # deployed all the same: it decides once it has seen `warmup` bars
                self.store.audit(self.actor, "warm_up_failed", rt.id, {"error": str(exc)})
                return f"{rt.id} (warm-up failed: {exc}; it trades after {rt.warmup} live bars)"
            return rt.id
        if command == "emergency_stop":
            return str(self.emergency_stop(args.get("reason", "emergency stop"), actor=actor))
        if command == "stop":
            self.stop(dep_id, args.get("reason", "stopped by user"), actor=actor)
        elif command == "pause":
            self.pause(dep_id, args.get("reason", "paused by user"), actor=actor)
        elif command == "resume":
            self.resume(dep_id, args.get("reason", "resumed by user"), actor=actor)
        elif command == "close_position":
            return "closed" if self.close_position(dep_id, args["symbol"], actor=actor) else "no position"
        elif command in ("enable_symbol", "disable_symbol"):
            self.set_symbol(dep_id, args["symbol"], command == "enable_symbol", actor=actor)
        elif command == "place_order":
            row = self.place_order(dep_id, args, actor=actor)
            return f"{row['client_order_id']} {row['status']}"
        elif command == "cancel_order":
            if "client_order_id" not in args:
                raise ConfigError("cancel_order needs args={'client_order_id': ...} (see the deployment's manual orders).")
            return str(self.desk(dep_id, actor).cancel(str(args["client_order_id"]))["status"])
        else:
            raise ConfigError(f"Command {command!r} is not handled by the engine.")
        return "ok"

    # -- the bar loop -----------------------------------------------------------
    def on_bar(self, symbol: str, ts_ms: int, o: float, h: float, lo: float, c: float, v: float, venue_id: str | None = None) -> None:
        """Hand one closed bar to every deployment that trades `symbol`."""
        for rt in list(self.deployments.values()):
            if symbol in rt.enabled and (venue_id is None or rt.venue.id == venue_id) and rt.status in ("active", "paused"):
                try:
                    rt.step(symbol, ts_ms, o, h, lo, c, v)
                except StoreError as exc:
                    self._store_failed(rt, exc)

    def _store_failed(self, rt: DeploymentRuntime, exc: StoreError) -> None:
        """The store cannot record: stop this deployment trading rather than trade blind."""
        rt.status = "error"
        log.error("deployment %s stops trading: %s", rt.id, exc)
        try:
            self.store.set_status(rt.id, "error", f"store failure, not trading: {exc}")
        except StoreError:
            pass  # the store is the problem; the in-memory status already blocks trading
        self._emit("status", {"deployment_id": rt.id, "from": "active", "to": "error", "reason": str(exc)})

    def flush(self, pending_only: bool = False) -> None:
        """Write every deployment's batched equity rows, cursor and risk state (`pending_only`: those with rows waiting)."""
        for rt in self.deployments.values():
            if not pending_only or rt.unflushed:
                rt.flush()

    async def run(self, feed: Any, poll_seconds: float = 0.5, until: Callable[[], bool] | None = None, sync: Any = None) -> None:
        """Run until `until()` is true: take closed bars from `feed`, and commands from the store.

        `sync` (a :class:`workbench.sync.SyncService`) reconciles with the venues on its interval.
        """
        from ..venues.connection import Reconnector

        for dep_id in self.recover():
            self.warm_up(dep_id)
        reconnector = Reconnector(clock=self.clock.now)
        while not (until and until()):
            try:
                for rt in self.deployments.values():
                    if hasattr(rt.venue, "connect") and hasattr(rt.venue, "connection"):
                        reconnector.add(rt.venue)
                reconnector.poll()
                for bar in feed.poll(self):
                    self.on_bar(*bar)
                self.flush(pending_only=True)  # a live tick's equity, cursor and risk state are stored as it ends
                self.process_commands()
                self.refresh_manual_orders()
                if sync is not None:
                    sync.tick()
                self.heartbeat()
            except StoreError as exc:
                log.error("store unavailable, nothing traded this tick: %s", exc)
            except VenueError as exc:
                log.warning("feed failed this tick (will retry): %s", exc)
            await asyncio.sleep(poll_seconds)
        self.flush()

    def heartbeat(self) -> None:
        from sqlalchemy import insert, update

        from ..store import schema

        now = time.time()
        with self.store.tx() as conn:
            if not conn.execute(update(schema.engine_heartbeat).where(schema.engine_heartbeat.c.engine_id == self.id).values(beat_at=now)).rowcount:
                import os

                conn.execute(insert(schema.engine_heartbeat).values(engine_id=self.id, pid=os.getpid(), started_at=now, beat_at=now))

    # -- summaries ------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        """One summary row per deployment in the store."""
        out = []
        for row in self.store.deployments():
            rt = self.deployments.get(row["id"])
            trades = self.store.trades(row["id"])
            out.append({
                "id": row["id"], "name": row["name"], "status": row["status"], "mode": row["mode"],
                "symbols": row["symbols"], "trades": len(trades),
                "pnl": float(trades["pnl"].sum()) if len(trades) else 0.0,
                "open_positions": len(rt.ledger.positions) if rt else len(self.store.positions(row["id"])),
                "equity": rt.equity() if rt else None,
                "since": datetime.fromtimestamp(row["started_at"] or row["created_at"], UTC).isoformat(timespec="seconds"),
            })
        return out


def resolve_params(spec: DeploymentSpec) -> tuple[dict[str, float], str, str | None]:
    """The deployment's parameters, their freshness and optimization date.

    Given parameters are checked against the strategy; otherwise the newest
    optimized set for the first symbol comes from the param store.
    """
    strategy = get_strategy(spec.strategy)
    if spec.params is not None:
        return strategy.validate_params(spec.params), "given", None
    rec = ParamStore(spec.params_dir).load_latest(strategy.name, spec.symbols[0], spec.timeframe)
    return strategy.validate_params(rec.params), rec.freshness, rec.optimized_at.isoformat()


def default_venue_factory(store: Store) -> VenueFactory:
    """Paper venues per deployment (state persisted in the store); others need a factory."""

    def make(dep_id: str, spec: DeploymentSpec) -> Venue:
        if spec.venue == "paper":
            from ..venues.paper_venue import paper_venue

            return paper_venue(dep_id, spec, store)
        raise ConfigError(
            f"Venue {spec.venue!r} needs an account: use workbench.venues.live.venue_factory(accounts) "
            "or deploy from the CLI with --account."
        )

    return make
