"""The sync service: fetch the venue's reports, diff them with the ledger, apply the chosen corrections, store the run.

Incremental: each venue keeps a cursor (the newest trade seen); a run asks
for trades from the cursor minus an overlap, pages through them, and diffs
only that window. Venue calls are spaced by ``min_gap`` seconds on top of
ccxt's own rate limiter. At engine start :meth:`SyncService.attach` makes
:meth:`workbench.engine.Engine.recover` reconcile each deployment before it
trades; a deployment whose reconciliation fails or leaves a blocking
difference goes to status ``error`` with the reason.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..engine.clock import Clock, SystemClock
from ..errors import ConfigError, StoreError, VenueError
from ..store import Store
from . import learning, records
from .apply import apply_corrections
from .diff import diff, differences_frame
from .frames import UNSETTLED, VenueReport, ledger_from_store
from .model import ApplyRules, Difference, ReconcileError, tolerances_from_markets

if TYPE_CHECKING:
    from ..engine.deployment import DeploymentRuntime

#: differences that keep a deployment from trading at start while they stand
BLOCKING = ("position_closed_externally", "position_mismatch", "unknown_position")


@dataclass
class Target:
    """One venue and the deployments (ids, and runtimes when they run here) whose books it holds."""

    venue: Any
    deployment_ids: list[str]
    runtimes: dict[str, DeploymentRuntime] = field(default_factory=dict)


@dataclass
class SyncReport:
    """The result of one run on one venue."""

    run_id: int
    venue_id: str
    deployment_id: str | None
    diffs: list[Difference]
    results: dict[int, str]
    compared: dict[str, Any]
    since_ms: int | None

    @property
    def differences(self) -> pd.DataFrame:
        df = differences_frame(self.diffs)
        df["applied"] = [self.results.get(i) for i in range(len(self.diffs))]
        return df

    @property
    def corrections(self) -> pd.DataFrame:
        rows = [{"kind": self.diffs[i].kind, "key": self.diffs[i].key, "action": self.diffs[i].correction.action if self.diffs[i].correction else None,
                 "result": r} for i, r in sorted(self.results.items())]
        return pd.DataFrame(rows, columns=["kind", "key", "action", "result"])

    @property
    def summary(self) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        for d in self.diffs:
            kinds[d.kind] = kinds.get(d.kind, 0) + 1
        return {"run_id": self.run_id, "venue": self.venue_id, "since_ms": self.since_ms, **self.compared,
                "differences": len(self.diffs), "by_kind": kinds,
                "applied": sum(1 for r in self.results.values() if not r.startswith("failed"))}

    def unresolved(self, kinds: Iterable[str] = BLOCKING) -> list[Difference]:
        """Differences of `kinds` whose correction was not applied."""
        kinds = set(kinds)
        return [d for i, d in enumerate(self.diffs) if d.kind in kinds and (i not in self.results or self.results[i].startswith("failed"))]


class SyncService:
    """Reconcile venues with the store on an interval (default 30 s), applying corrections by `rules`."""

    def __init__(
        self,
        store: Store,
        source: Any,
        interval: float = 30.0,
        clock: Clock | None = None,
        rules: ApplyRules | bool | str | Iterable[str] | None = None,
        tolerances: Mapping[str, Any] | None = None,
        overlap: float = 300.0,
        page_limit: int = 500,
        max_pages: int = 100,
        min_gap: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        block_on: Iterable[str] = BLOCKING,
        actor: str = "sync",
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval < 1:
            raise ConfigError(f"interval must be at least 1 second (default 30), got {interval!r}.")
        if overlap < 0 or page_limit < 1 or max_pages < 1 or min_gap < 0:
            raise ConfigError("overlap and min_gap must be >= 0; page_limit and max_pages >= 1.")
        self.store = store
        self.source = source
        self.interval = float(interval)
        self.clock = clock or SystemClock()
        self.rules = ApplyRules() if rules is None else ApplyRules.coerce(rules)
        self.tolerance_args = dict(tolerances or {})
        self.overlap = float(overlap)
        self.page_limit, self.max_pages, self.min_gap = int(page_limit), int(max_pages), float(min_gap)
        self.sleep = sleep
        self.block_on = tuple(block_on)
        self.actor = actor
        self.last_run: float | None = None
        self._last_call = 0.0

    def __repr__(self) -> str:
        return f"<SyncService every {self.interval:g}s on {self.store!r}>"

    # -- targets ----------------------------------------------------------------
    def targets(self, deployment_id: str | None = None) -> list[Target]:
        """Venues to reconcile, grouped from an Engine, a DeploymentRuntime, Target(s) or {venue: [deployment ids]}."""
        src = self.source
        if hasattr(src, "deployments") and hasattr(src, "recover"):  # an Engine
            runtimes: list[Any] = list(src.deployments.values())
        elif hasattr(src, "ledger") and hasattr(src, "venue"):
            runtimes = [src]
        elif isinstance(src, Target):
            return [src] if deployment_id is None or deployment_id in src.deployment_ids else []
        elif isinstance(src, (list, tuple)) and all(isinstance(x, Target) for x in src):
            return [x for x in src if deployment_id is None or deployment_id in x.deployment_ids]
        else:
            raise ConfigError("SyncService source must be an Engine, a DeploymentRuntime or Target(venue, deployment_ids).")
        out: dict[str, Target] = {}
        for rt in runtimes:
            if deployment_id is not None and rt.id != deployment_id:
                continue
            tgt = out.setdefault(rt.venue.id, Target(rt.venue, []))
            tgt.deployment_ids.append(rt.id)
            tgt.runtimes[rt.id] = rt
        return list(out.values())

    # -- running ----------------------------------------------------------------
    def run_once(self, deployment_id: str | None = None, apply: ApplyRules | bool | str | Iterable[str] | None = None) -> list[SyncReport]:
        """Reconcile every target now (or the one holding `deployment_id`); `apply` overrides the service's rules."""
        rules = self.rules if apply is None else ApplyRules.coerce(apply)
        reports = [self.sync_target(t, rules, deployment_id) for t in self.targets(deployment_id)]
        self.last_run = self.clock.now()
        return reports

    def tick(self) -> list[SyncReport]:
        """Run if an interval has passed since the last run (by the injected clock)."""
        if self.last_run is None or self.clock.now() - self.last_run >= self.interval:
            return self.run_once()
        return []

    async def run(self, until: Callable[[], bool] | None = None, poll: float = 1.0) -> None:
        """Run on the interval until `until()` is true; a failed run is stored and retried next interval."""
        while not (until and until()):
            try:
                self.tick()
            except (VenueError, ReconcileError, StoreError):
                pass  # stored as an error run; the next interval retries
            await asyncio.sleep(min(poll, self.interval))

    def sync_runtime(self, rt: DeploymentRuntime) -> SyncReport:
        """The engine-start hook: reconcile one deployment; raise ReconcileError if it must not trade."""
        target = Target(rt.venue, [rt.id], {rt.id: rt})
        report = self.sync_target(target, self.rules, rt.id)
        left = report.unresolved(self.block_on)
        if left:
            raise ReconcileError(f"{len(left)} difference(s) left unresolved: " + "; ".join(d.detail for d in left[:3])
                                 + " (review them with `workbench reconcile --deployment " + rt.id + "`, apply or ignore them, then resume).")
        return report

    def attach(self, engine: Any) -> SyncService:
        """Make `engine.recover()` reconcile each deployment before it trades."""
        engine.sync = self.sync_runtime
        return self

    # -- one venue --------------------------------------------------------------
    def sync_target(self, target: Target, rules: ApplyRules, deployment_id: str | None = None) -> SyncReport:
        venue = target.venue
        t0 = time.perf_counter()
        cur = records.cursor(self.store, venue.id)
        since_ms = None if cur is None else max(0, cur[0] - int(self.overlap * 1000))
        dep_rows = [self.store.deployment(d) or {} for d in target.deployment_ids]
        symbols = _symbol_owners(dep_rows)
        try:
            markets = venue.load_markets()
            report = self.fetch(venue, target, list(symbols), markets, since_ms)
        except VenueError as exc:
            records.record_run(self.store, venue.id, deployment_id, since_ms, {}, [], {}, time.perf_counter() - t0, "error", str(exc), at=self.clock.now())
            raise ReconcileError(f"Could not reconcile with {venue.id}: {exc}") from None
        since = None if since_ms is None else since_ms / 1000.0
        ledger = ledger_from_store(self.store, venue.id, target.deployment_ids, symbols,
                                   since=None if since is None else since - 60.0)
        tol = tolerances_from_markets({s: markets[s] for s in symbols if s in markets}, **self.tolerance_args)
        diffs = diff(ledger, report, tol, since=since)
        if deployment_id is not None:
            diffs = [d for d in diffs if d.deployment_id in (deployment_id, None)]
        bars = learning.venue_bars(venue)
        results = apply_corrections(self.store, venue.id, diffs, rules, venue, target.runtimes, self.actor, self.clock.now(), bars)
        learning.resolve(self.store, bars)
        compared = {"ledger_fills": len(ledger.fills), "venue_trades": len(report.trades), "ledger_orders": int(ledger.orders["status"].isin(UNSETTLED).sum()),
                    "venue_orders": len(report.orders), "ledger_positions": len(ledger.positions), "venue_positions": len(report.positions),
                    "symbols": list(symbols), "deployments": list(target.deployment_ids)}
        run_id = records.record_run(self.store, venue.id, deployment_id, since_ms, compared, diffs, results, time.perf_counter() - t0, at=self.clock.now())
        if len(report.trades):
            last = report.trades.sort_values(["at", "trade_id"]).iloc[-1]
            records.save_cursor(self.store, venue.id, int(last["at"] * 1000), str(last["trade_id"]))
        return SyncReport(run_id, venue.id, deployment_id, diffs, results, compared, since_ms)

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        gap = self.min_gap - (time.monotonic() - self._last_call)
        if gap > 0:
            self.sleep(gap)
        try:
            return fn(*args, **kwargs)
        finally:
            self._last_call = time.monotonic()

    def fetch(self, venue: Any, target: Target, symbols: list[str], markets: Mapping[str, Any], since_ms: int | None) -> VenueReport:
        """The venue's trades (paged from `since_ms`), the orders we need, positions and balances."""
        trades: dict[str, dict[str, Any]] = {}
        for sym in symbols:
            since = since_ms
            for _ in range(self.max_pages):
                page = self._call(venue.fetch_my_trades, sym, since=since, limit=self.page_limit)
                new = [x for x in page if str(x.get("id")) not in trades]
                trades.update((str(x.get("id")), x) for x in page)
                if len(page) < self.page_limit or not new:
                    break
                since = max(int(x.get("timestamp") or 0) for x in page)
        orders: dict[str, dict[str, Any]] = {}
        for sym in symbols:
            for o in self._call(venue.fetch_open_orders, sym):
                orders[str(o.get("id"))] = o
        known = {o.get("clientOrderId") for o in orders.values()}
        for row in self.store.orders(statuses=UNSETTLED):
            if row["deployment_id"] in target.deployment_ids and row["client_order_id"] not in known:
                found = self._call(venue.fetch_order, row["symbol"], order_id=row["venue_order_id"], client_order_id=row["client_order_id"])
                if found:
                    orders[str(found.get("id"))] = {**found, "clientOrderId": found.get("clientOrderId") or row["client_order_id"]}
        contract = [s for s in symbols if getattr(markets.get(s), "contract", False)]
        spot = [s for s in symbols if s not in contract]
        positions = self._call(venue.fetch_positions, contract) if contract else []
        balance = self._call(venue.fetch_balance) if spot else {}
        return VenueReport.from_ccxt(trades.values(), orders.values(), positions, balance, markets, spot, fetched_at=self.clock.now())


def _symbol_owners(dep_rows: list[Mapping[str, Any]]) -> dict[str, str | None]:
    owners: dict[str, str | None] = {}
    for row in dep_rows:
        for sym in row.get("symbols") or []:
            owners[sym] = row["id"] if sym not in owners else None
    return owners


def reconcile(store: Store, deployment_id: str | None = None, venue: Any = None, apply: Any = False,
              source: Any = None, **kw: Any) -> SyncReport:
    """One reconciliation for the notebook: differences as a DataFrame; corrections applied only if `apply`.

    Give an engine (or runtime) as `source`, or a `venue` with `deployment_id`
    (a paper deployment's venue is rebuilt from the store when both are None).
    """
    if source is None:
        if deployment_id is None:
            raise ConfigError("reconcile() needs deployment_id=..., a venue=... with deployment ids, or source=engine.")
        if venue is None:
            venue = paper_venue_of(store, deployment_id)
        source = Target(venue, [deployment_id])
    service = SyncService(store, source, rules=ApplyRules.coerce(apply), **kw)
    reports = service.run_once(deployment_id)
    if not reports:
        raise ConfigError(f"Nothing to reconcile for deployment {deployment_id!r}.")
    return reports[0]


def paper_venue_of(store: Store, deployment_id: str) -> Any:
    """A paper deployment's venue, restored from the store's saved state."""
    from ..engine.spec import DeploymentSpec
    from ..venues.paper_venue import paper_venue

    row = store.deployment(deployment_id)
    if row is None:
        raise ConfigError(f"No deployment {deployment_id!r} in {store!r}; see `workbench status`.")
    if row["venue"] != "paper":
        raise ConfigError(f"Deployment {deployment_id} trades on {row['venue']!r}: reconcile it with --account <name>.")
    return paper_venue(deployment_id, DeploymentSpec.from_dict(dict(row["config"])), store)
