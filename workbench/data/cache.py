"""The market data cache: one Parquet file per exchange, symbol and timeframe.

``<root>/<exchange>/<SAFE_SYMBOL>/<timeframe>.parquet``. Writes are atomic
(temp file + rename), so a reader never sees half a file. ``update`` downloads
only the bars the file lacks and checkpoints as pages arrive (and always when
it stops, error or not), so an interrupted download keeps what it got and the
next update resumes there.
"""
from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DataError
from ..timeframes import timeframe_seconds
from .validate import COLUMNS, validate_ohlcv


def default_cache_root() -> Path:
    """``$WORKBENCH_HOME/cache`` if set, else ``.workbench/cache`` under the current directory."""
    home = os.environ.get("WORKBENCH_HOME")
    return Path(home) / "cache" if home else Path.cwd() / ".workbench" / "cache"


def safe_symbol(symbol: str) -> str:
    """A file-name-safe form of a ccxt symbol: 'BTC/USDT:USDT' -> 'BTC_USDT-USDT'."""
    text = str(symbol).strip().replace("/", "_").replace(":", "-")
    text = re.sub(r"[^A-Za-z0-9._-]", "_", text)
    if not text.strip("._-"):
        raise DataError(f"Symbol {symbol!r} cannot name a cache file; use a ccxt symbol like 'BTC/USDT'.")
    return text


class OhlcvCache:
    """Parquet files of downloaded OHLCV under `root`, updated incrementally."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_root()

    def __repr__(self) -> str:
        return f"OhlcvCache({str(self.root)!r})"

    def path(self, exchange_id: str, symbol: str, timeframe: str) -> Path:
        timeframe_seconds(timeframe)  # validates
        return self.root / str(exchange_id) / safe_symbol(symbol) / f"{timeframe}.parquet"

    def read(self, exchange_id: str, symbol: str, timeframe: str) -> pd.DataFrame:
        """The cached bars (empty if none), validated."""
        from .download import empty_ohlcv

        path = self.path(exchange_id, symbol, timeframe)
        if not path.is_file():
            return empty_ohlcv()
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several error types
            raise DataError(
                f"Cache file {path} is unreadable ({type(exc).__name__}: {exc}); delete it to download again."
            ) from None
        try:
            return validate_ohlcv(frame, timeframe=timeframe, allow_gaps=True)
        except DataError as exc:
            raise DataError(f"Cache file {path} is invalid: {exc} Delete it to download again.") from None

    def write(self, exchange_id: str, symbol: str, timeframe: str, frame: pd.DataFrame) -> Path:
        """Replace the cached bars with `frame` atomically."""
        frame = validate_ohlcv(frame, timeframe=timeframe, allow_gaps=True)
        path = self.path(exchange_id, symbol, timeframe)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            frame.loc[:, list(COLUMNS)].to_parquet(tmp, engine="pyarrow")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def append(self, exchange_id: str, symbol: str, timeframe: str, frame: pd.DataFrame) -> pd.DataFrame:
        """Merge `frame` into the cached bars (new bars win on equal timestamps) and save."""
        old = self.read(exchange_id, symbol, timeframe)
        merged = pd.concat([old, frame]) if len(old) else frame
        merged = merged[~merged.index.duplicated(keep="last")].sort_index(kind="stable")
        self.write(exchange_id, symbol, timeframe, merged)
        return merged

    def update(
        self,
        exchange: Any,
        symbol: str,
        timeframe: str,
        since: Any = None,
        until: Any = None,
        checkpoint_seconds: float = 5.0,
        **download: Any,
    ) -> pd.DataFrame:
        """Download the bars of ``[since, until)`` the cache lacks, save them, return the whole file.

        With cached bars, only those after the last one (and, if `since` is
        earlier, those before the first one) are fetched. Pages are saved at
        least every `checkpoint_seconds` (0: after every page) and whenever the
        download stops, also on an error or Ctrl-C, so the next update resumes
        there. Extra keyword arguments go to :func:`download_ohlcv`.
        """
        from .download import download_ohlcv, make_exchange, to_ms

        ex = make_exchange(exchange)
        step = timeframe_seconds(timeframe) * 1000
        saver = _Checkpoint(self, ex.id, symbol, timeframe, checkpoint_seconds)
        cached = saver.frame
        start, end = to_ms(since), to_ms(until)
        ranges: list[tuple[int | None, int | None]] = []
        if not len(cached):
            ranges.append((start, end))
        else:
            first = int(cached.index[0].value // 1_000_000)
            last = int(cached.index[-1].value // 1_000_000)
            if start is not None and start < first:
                ranges.append((start, first))
            if end is None or end > last + step:
                ranges.append((last + step, end))
        try:
            for lo, hi in ranges:
                download_ohlcv(ex, symbol, timeframe, since=lo, until=hi, on_page=saver.add, **download)
        finally:
            saver.flush()
        return saver.frame


class _Checkpoint:
    """Collects downloaded pages and writes the merged file at most every `seconds`."""

    def __init__(self, cache: OhlcvCache, exchange_id: str, symbol: str, timeframe: str, seconds: float) -> None:
        self.cache, self.key, self.seconds = cache, (exchange_id, symbol, timeframe), seconds
        self.frame = cache.read(*self.key)
        self.pending: list[pd.DataFrame] = []
        self.last = time.monotonic()

    def add(self, page: pd.DataFrame) -> None:
        self.pending.append(page)
        if time.monotonic() - self.last >= self.seconds:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        merged = pd.concat([self.frame, *self.pending]) if len(self.frame) else pd.concat(self.pending)
        merged = merged[~merged.index.duplicated(keep="last")].sort_index(kind="stable")
        self.cache.write(*self.key, merged)
        self.frame, self.pending, self.last = merged, [], time.monotonic()


def cached_ohlcv(
    exchange: Any,
    symbol: str,
    timeframe: str,
    start: Any = None,
    end: Any = None,
    cache_dir: str | Path | None = None,
    **download: Any,
) -> pd.DataFrame:
    """OHLCV of ``[start, end)`` read through the Parquet cache (downloading what it lacks)."""
    from .download import to_ms

    cache = OhlcvCache(cache_dir)
    frame = cache.update(exchange, symbol, timeframe, since=start, until=end, **download)
    lo, hi = to_ms(start), to_ms(end)
    if lo is not None:
        frame = frame[frame.index >= pd.Timestamp(lo, unit="ms", tz="UTC")]
    if hi is not None:
        frame = frame[frame.index < pd.Timestamp(hi, unit="ms", tz="UTC")]
    return frame
