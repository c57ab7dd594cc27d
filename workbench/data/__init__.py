"""Market data: the embedded sample, CSV import, and ccxt downloads cached as Parquet.

``load_ohlcv`` is the one entry point: ``source='sample'`` (the default, offline),
``source='csv'`` with ``path=``, or a ccxt exchange id such as ``'binance'``
(downloaded incrementally into the Parquet cache).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import ConfigError
from .sample import SAMPLE_EPOCH, SAMPLE_SYMBOLS, sample_ohlcv
from .validate import read_csv, validate_ohlcv


def load_ohlcv(
    symbol: str = "BTC/USDT",
    timeframe: str = "1h",
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    bars: int | None = None,
    source: str = "sample",
    path: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> pd.DataFrame:
    """OHLCV for `symbol` and `timeframe` from `source`, validated, sliced to [start, end)."""
    if source == "sample":
        if end is not None and bars is None:
            from ..timeframes import timeframe_seconds

            first = pd.Timestamp(start, tz="UTC") if start is not None else SAMPLE_EPOCH
            last = pd.Timestamp(end, tz="UTC") if pd.Timestamp(end).tzinfo is None else pd.Timestamp(end)
            bars = max(1, int((last - first).total_seconds() // timeframe_seconds(timeframe)))
        df = sample_ohlcv(symbol, timeframe, bars=bars or 5000, start=start)
    elif source == "csv":
        if path is None:
            raise ConfigError("source='csv' needs path='file.csv'.")
        df = read_csv(path, timeframe=timeframe)
    else:
        from .download import cached_ohlcv

        df = cached_ohlcv(source, symbol, timeframe, start=start, end=end, cache_dir=cache_dir)
    if start is not None:
        df = df[df.index >= _utc(start)]
    if end is not None:
        df = df[df.index < _utc(end)]
    if bars is not None and source != "sample":
        df = df.iloc[:bars]
    return df


def _utc(ts: str | pd.Timestamp) -> pd.Timestamp:
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


__all__ = ["SAMPLE_EPOCH", "SAMPLE_SYMBOLS", "load_ohlcv", "read_csv", "sample_ohlcv", "validate_ohlcv"]
