"""The emulator's price feed: one bar series per symbol, read up to the market clock.

The clock is either manual (a test moves it with :meth:`PriceFeed.advance` /
:meth:`PriceFeed.set_time`) or the wall clock. At time ``now`` the *current*
bar is the last one that has closed; its close is the current price, and
klines never show a bar that has not closed yet (no look-ahead in replays).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError, unknown
from ..timeframes import timeframe_seconds

Bar = tuple[int, float, float, float, float, float]  # open time ms, o, h, l, c, v


class PriceFeed:
    """Bars per symbol ('BTC/USDT') on one timeframe, with a market clock.

    `frames` maps symbol to an OHLCV DataFrame (UTC DatetimeIndex); with
    `sample=True` a symbol's series is regenerated longer from
    :func:`workbench.data.sample_ohlcv` whenever the clock passes its end.
    """

    def __init__(
        self,
        frames: Mapping[str, pd.DataFrame],
        timeframe: str,
        start_ms: int | None = None,
        realtime: bool = False,
        wall: Callable[[], float] = time.time,
        sample: bool = False,
    ) -> None:
        if not frames:
            raise ConfigError("The emulator needs at least one symbol of price data.")
        self.timeframe = timeframe
        self.step_ms = timeframe_seconds(timeframe) * 1000
        self.realtime = realtime
        self.sample = sample
        self._wall = wall
        self._ts: dict[str, np.ndarray] = {}
        self._ohlcv: dict[str, np.ndarray] = {}
        for symbol, df in frames.items():
            self._load(symbol, df)
        first = max(int(ts[0]) for ts in self._ts.values())
        if start_ms is None:
            start_ms = first + min(1000, min(len(t) for t in self._ts.values()) // 2) * self.step_ms
        self._now = int(start_ms) // self.step_ms * self.step_ms
        if not realtime:
            self._check_range(self._now)

    # -- data -----------------------------------------------------------------
    def _load(self, symbol: str, df: pd.DataFrame) -> None:
        missing = {"open", "high", "low", "close", "volume"} - set(df.columns)
        if missing or not isinstance(df.index, pd.DatetimeIndex) or df.empty:
            raise DataError(f"Price data for {symbol} needs a DatetimeIndex and open/high/low/close/volume columns.")
        ts = df.index.as_unit("ms").asi8.astype(np.int64)
        if len(ts) > 1 and np.any(np.diff(ts) != self.step_ms):
            raise DataError(
                f"Price data for {symbol} must have one bar every {self.timeframe} with no gaps; "
                "repair it with workbench.data.read_csv(..., repair=True) or pick the data's timeframe."
            )
        self._ts[symbol] = ts
        self._ohlcv[symbol] = df[["open", "high", "low", "close", "volume"]].to_numpy(dtype=float)

    def _extend_sample(self, symbol: str, until_ms: int) -> None:
        from ..data import sample_ohlcv

        first = int(self._ts[symbol][0])
        bars = int((until_ms - first) // self.step_ms) + 2000
        df = sample_ohlcv(symbol.split(":")[0], self.timeframe, bars=bars, start=pd.Timestamp(first, unit="ms", tz="UTC"))
        self._load(symbol, df)

    def _check_range(self, now_ms: int) -> None:
        last_closed = now_ms - self.step_ms
        for symbol, ts in self._ts.items():
            if last_closed > ts[-1]:
                if self.sample:
                    self._extend_sample(symbol, now_ms)
                    continue
                raise DataError(
                    f"The {symbol} price data ends at {pd.Timestamp(int(ts[-1]), unit='ms', tz='UTC')}; the emulator "
                    f"clock is at {pd.Timestamp(now_ms, unit='ms', tz='UTC')}. Load longer data or set an earlier start."
                )
            if last_closed < ts[0]:
                raise DataError(f"The emulator clock is before the first {symbol} bar; set a later start.")

    # -- clock ----------------------------------------------------------------
    @property
    def symbols(self) -> list[str]:
        return list(self._ts)

    def first_ms(self) -> int:
        """Open time of the earliest bar held (a listing date for instruments)."""
        return min(int(ts[0]) for ts in self._ts.values())

    def now_ms(self) -> int:
        """The market clock in epoch ms (the wall clock in real-time mode)."""
        if self.realtime:
            now = int(self._wall() * 1000)
            if now - self.step_ms > min(int(ts[-1]) for ts in self._ts.values()):
                self._check_range(now)
            return now
        return self._now

    def set_time(self, now_ms: int) -> None:
        """Move the manual clock to `now_ms` (never backwards)."""
        if self.realtime:
            raise ConfigError("This emulator runs on the wall clock; start it with clock='manual' to set the time.")
        now_ms = int(now_ms)
        if now_ms < self._now:
            raise ConfigError("The emulator clock never goes backwards; start a new emulator to replay earlier data.")
        self._check_range(now_ms)
        self._now = now_ms

    def advance(self, bars: int = 1) -> None:
        """Move the manual clock forward by `bars` whole bars."""
        if not isinstance(bars, int) or bars < 0:
            raise ConfigError(f"bars must be a non-negative integer, got {bars!r}.")
        self.set_time(self._now + bars * self.step_ms)

    # -- reads ----------------------------------------------------------------
    def _series(self, symbol: str) -> tuple[np.ndarray, np.ndarray]:
        if symbol not in self._ts:
            raise unknown("emulator symbol", symbol, self._ts)
        return self._ts[symbol], self._ohlcv[symbol]

    def last_closed_index(self, symbol: str, now_ms: int | None = None) -> int:
        ts, _ = self._series(symbol)
        now = self.now_ms() if now_ms is None else now_ms
        return int(np.searchsorted(ts, now - self.step_ms, side="right")) - 1

    def bar(self, symbol: str, index: int) -> Bar:
        ts, v = self._series(symbol)
        o, h, lo, c, vol = (float(x) for x in v[index])
        return int(ts[index]), o, h, lo, c, vol

    def current_bar(self, symbol: str) -> Bar:
        i = self.last_closed_index(symbol)
        if i < 0:
            raise DataError(f"No {symbol} bar has closed yet at the emulator's clock.")
        return self.bar(symbol, i)

    def price(self, symbol: str) -> float:
        """The current price: the close of the last closed bar."""
        return self.current_bar(symbol)[4]

    def bars_between(self, symbol: str, after_ms: int, until_now_ms: int) -> list[Bar]:
        """Bars that closed after clock time `after_ms` and up to `until_now_ms`."""
        ts, _ = self._series(symbol)
        lo = int(np.searchsorted(ts, after_ms - self.step_ms, side="right"))
        hi = int(np.searchsorted(ts, until_now_ms - self.step_ms, side="right"))
        return [self.bar(symbol, i) for i in range(lo, hi)]

    def klines(self, symbol: str, interval_ms: int, start: int | None, end: int | None, limit: int) -> list[Bar]:
        """Closed bars of `interval_ms` (a multiple of the feed's timeframe), oldest first."""
        if interval_ms % self.step_ms:
            raise ConfigError(f"interval must be a multiple of the emulator's timeframe {self.timeframe}")
        k = interval_ms // self.step_ms
        ts, v = self._series(symbol)
        now = self.now_ms()
        last_end = (now // interval_ms) * interval_ms  # only buckets that have closed
        hi_ms = last_end if end is None else min(last_end, (int(end) // interval_ms + 1) * interval_ms)
        if start is None:
            lo_ms = hi_ms - limit * interval_ms
        else:  # Bybit answers the first `limit` bars from `start`
            lo_ms = math.ceil(int(start) / interval_ms) * interval_ms
            hi_ms = min(hi_ms, lo_ms + limit * interval_ms)
        i0 = int(np.searchsorted(ts, lo_ms, side="left"))
        i1 = int(np.searchsorted(ts, hi_ms, side="left"))
        if k == 1:
            out = [self.bar(symbol, i) for i in range(i0, i1)]
        else:
            out = []
            bucket = (ts[i0:i1] // interval_ms) * interval_ms
            for b in np.unique(bucket):
                sel = np.nonzero(bucket == b)[0] + i0
                if len(sel) < k:
                    continue
                rows = v[sel]
                out.append((int(b), float(rows[0, 0]), float(rows[:, 1].max()), float(rows[:, 2].min()),
                            float(rows[-1, 3]), float(rows[:, 4].sum())))
        if start is not None:
            return out[:limit]
        return out[-limit:]
