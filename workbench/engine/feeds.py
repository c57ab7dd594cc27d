"""Bar feeds for a long-lived engine: closed bars as they happen.

``SampleFeed`` plays the embedded sample on the wall clock (the sample is a
fixed function of time, so "now" has a bar for every symbol): a paper
deployment runs live with no exchange at all. ``VenueFeed`` polls a venue's
OHLCV for bars that closed since the last poll. ``MixedFeed`` serves both
kinds of deployment in one engine: the sample to paper ones, their venue's
bars to the rest.

A venue that cannot be reached does not stop the others: ``VenueFeed``
pauses the deployments on it (status ``paused``, the reason and the error in
the status history and audit log), keeps polling it, and when it answers
again resumes them and hands them the bars they missed, oldest first.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import VenueError
from ..timeframes import timeframe_seconds

if TYPE_CHECKING:
    from .core import Engine
    from .deployment import DeploymentRuntime

log = logging.getLogger("workbench.engine")
#: who pauses a deployment whose venue is unreachable (and so may resume it)
VENUE_ACTOR = "venue"

Bar = tuple[str, int, float, float, float, float, float]


class SampleFeed:
    """Closed bars of the sample series for every symbol the engine's deployments trade."""

    def __init__(self, lookback_bars: int = 0, only_simulated: bool = False) -> None:
        self.last: dict[tuple[str, str], int] = {}
        self.lookback_bars = lookback_bars
        self.only_simulated = only_simulated

    def poll(self, engine: Engine) -> Iterable[Any]:
        from ..data import sample_ohlcv

        now_ms = int(engine.clock.now() * 1000)
        out: list[Any] = []
        runtimes = [rt for rt in engine.deployments.values() if not self.only_simulated or _simulated(rt)]
        wanted = {(s, rt.spec.timeframe) for rt in runtimes for s in rt.spec.symbols}
        venues = {(s, rt.spec.timeframe): sorted({rt2.venue.id for rt2 in runtimes if s in rt2.spec.symbols and rt2.spec.timeframe == rt.spec.timeframe})
                  for rt in runtimes for s in rt.spec.symbols} if self.only_simulated else {}
        for sym, tf in sorted(wanted):
            step = timeframe_seconds(tf) * 1000
            last_closed_open = (now_ms // step) * step - step
            prev = self.last.get((sym, tf))
            if prev is not None and prev >= last_closed_open:
                continue
            start = prev + step if prev is not None else last_closed_open - self.lookback_bars * step
            n = int((last_closed_open - start) // step) + 1
            df = sample_ohlcv(sym.split(":")[0], tf, bars=max(1, n), start=pd.Timestamp(start, unit="ms", tz="UTC"))
            for ts, row in zip(df.index.as_unit("ms").asi8, df.itertuples(index=False), strict=True):
                bar = (sym, int(ts), row.open, row.high, row.low, row.close, row.volume)
                if self.only_simulated:  # tagged: only the simulated venues get the sample's bars
                    out.extend((*bar, vid) for vid in venues[(sym, tf)])
                else:
                    out.append(bar)
            self.last[(sym, tf)] = last_closed_open
        return out


class VenueFeed:
    """Polls each deployment's venue for bars that closed since the last poll.

    A venue whose OHLCV call fails (after the venue's own retries) is
    reported in :attr:`down` and its active deployments are paused with the
    reason; polling goes on with the other venues. When it answers again the
    deployments this feed paused are resumed before their missed bars are
    handed over. `skip_simulated` leaves paper deployments to another feed.
    """

    def __init__(self, skip_simulated: bool = False) -> None:
        self.last: dict[tuple[str, str, str], int] = {}
        self.skip_simulated = skip_simulated
        #: venue id -> (time of its last answer before it became unreachable, last error)
        self.down: dict[str, tuple[float, str]] = {}
        self._paused: dict[str, set[str]] = {}

    def poll(self, engine: Engine) -> Iterable[Any]:
        now_ms = int(engine.clock.now() * 1000)
        out: list[Bar] = []
        by_venue: dict[str, list[DeploymentRuntime]] = {}
        for rt in engine.deployments.values():
            if not (self.skip_simulated and _simulated(rt)):
                by_venue.setdefault(rt.venue.id, []).append(rt)
        for venue_id, runtimes in by_venue.items():
            try:
                bars = self._poll_venue(runtimes, now_ms)
            except VenueError as exc:
                self._venue_down(engine, venue_id, runtimes, exc)
                continue
            if venue_id in self.down:
                self._venue_up(engine, venue_id, runtimes)
            out.extend(bars)
        return out

    def _poll_venue(self, runtimes: list[DeploymentRuntime], now_ms: int) -> list[Any]:
        """Every closed bar of the venue's deployments since the last poll; nothing is marked seen on failure."""
        bars: list[Any] = []
        seen: dict[tuple[str, str, str], int] = {}
        for rt in runtimes:
            step = timeframe_seconds(rt.spec.timeframe) * 1000
            for sym in rt.spec.symbols:
                key = (rt.venue.id, sym, rt.spec.timeframe)
                if key in seen:
                    continue
                since = self.last.get(key, rt.cursor.get(sym, now_ms - 3 * step))
                seen[key] = since
                for ts, o, h, lo, c, v in rt.venue.fetch_ohlcv(sym, rt.spec.timeframe, since=since + 1, limit=500):
                    if ts + step <= now_ms and ts > seen[key]:
                        bars.append((sym, int(ts), o, h, lo, c, v, rt.venue.id))
                        seen[key] = int(ts)
        self.last.update(seen)
        return bars

    def _venue_down(self, engine: Engine, venue_id: str, runtimes: list[DeploymentRuntime], exc: VenueError) -> None:
        first = venue_id not in self.down
        last_ok = getattr(getattr(runtimes[0].venue, "connection", None), "last_ok", None)
        since = (last_ok if last_ok is not None else engine.clock.now()) if first else self.down[venue_id][0]
        self.down[venue_id] = (since, str(exc))
        paused = self._paused.setdefault(venue_id, set())
        for rt in runtimes:
            if rt.status == "active":
                rt.paused_by = VENUE_ACTOR
                rt.set_status("paused", f"venue {venue_id} unreachable, not trading until it answers: {exc}", by=VENUE_ACTOR)
                paused.add(rt.id)
        if first:
            log.warning("venue %s unreachable; %d deployment(s) paused: %s", venue_id, len(paused), exc)

    def _venue_up(self, engine: Engine, venue_id: str, runtimes: list[DeploymentRuntime]) -> None:
        since, error = self.down.pop(venue_id)
        waited = engine.clock.now() - since
        for rt in runtimes:
            if rt.id in self._paused.get(venue_id, set()) and rt.status == "paused" and rt.paused_by == VENUE_ACTOR:
                rt.paused_by = None
                rt.set_status("active", f"venue {venue_id} answers again after {waited:.0f} s unreachable ({error})", by=VENUE_ACTOR)
        self._paused.pop(venue_id, None)


class MixedFeed:
    """Paper deployments from the sample (:class:`SampleFeed`), the others from their venue (:class:`VenueFeed`)."""

    def __init__(self, lookback_bars: int = 0) -> None:
        self.sample = SampleFeed(lookback_bars, only_simulated=True)
        self.venues = VenueFeed(skip_simulated=True)

    @property
    def down(self) -> dict[str, tuple[float, str]]:
        return self.venues.down

    def poll(self, engine: Engine) -> Iterable[Any]:
        return [*self.sample.poll(engine), *self.venues.poll(engine)]


def _simulated(rt: DeploymentRuntime) -> bool:
    """A venue that fills from the bars it is fed (the paper exchange)."""
    return bool(getattr(rt, "simulated", False)) or rt.spec.venue == "paper"
