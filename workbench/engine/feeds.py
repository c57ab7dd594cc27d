"""Bar feeds for a long-lived engine: closed bars as they happen.

``SampleFeed`` plays the embedded sample on the wall clock (the sample is a
fixed function of time, so "now" has a bar for every symbol): a paper
deployment runs live with no exchange at all. ``VenueFeed`` polls a venue's
OHLCV for bars that closed since the last poll.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..timeframes import timeframe_seconds

if TYPE_CHECKING:
    from .core import Engine

Bar = tuple[str, int, float, float, float, float, float]


class SampleFeed:
    """Closed bars of the sample series for every symbol the engine's deployments trade."""

    def __init__(self, lookback_bars: int = 0) -> None:
        self.last: dict[tuple[str, str], int] = {}
        self.lookback_bars = lookback_bars

    def poll(self, engine: Engine) -> Iterable[Bar]:
        from ..data import sample_ohlcv

        now_ms = int(engine.clock.now() * 1000)
        out: list[Bar] = []
        wanted = {(s, rt.spec.timeframe) for rt in engine.deployments.values() for s in rt.spec.symbols}
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
                out.append((sym, int(ts), row.open, row.high, row.low, row.close, row.volume))
            self.last[(sym, tf)] = last_closed_open
        return out


class VenueFeed:
    """Polls each deployment's venue for bars that closed since the last poll."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, str, str], int] = {}

    def poll(self, engine: Engine) -> Iterable[Any]:
        now_ms = int(engine.clock.now() * 1000)
        out: list[Bar] = []
        for rt in engine.deployments.values():
            step = timeframe_seconds(rt.spec.timeframe) * 1000
            for sym in rt.spec.symbols:
                key = (rt.venue.id, sym, rt.spec.timeframe)
                since = self.last.get(key, rt.cursor.get(sym, now_ms - 3 * step))
                for ts, o, h, lo, c, v in rt.venue.fetch_ohlcv(sym, rt.spec.timeframe, since=since + 1, limit=500):
                    if ts + step <= now_ms and ts > since:
                        out.append((sym, int(ts), o, h, lo, c, v, rt.venue.id))
                        self.last[key] = int(ts)
        return out
