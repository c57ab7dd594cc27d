"""The embedded offline sample: seeded, realistic OHLCV for a few symbols.

Each (symbol, timeframe) is one fixed series that starts at ``SAMPLE_EPOCH``,
so any window of it is reproducible and a later window continues the earlier
one (optimize on the first part, replay the rest). Prices follow a
regime-switching random walk: trending up, trending down and ranging regimes
with their own drift and volatility, volatility clustering (GARCH(1,1)), and
rare jumps. High and low come from the intrabar range implied by volatility.
"""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from ..errors import ConfigError, unknown
from ..timeframes import timeframe_seconds

SAMPLE_EPOCH = pd.Timestamp("2024-01-01", tz="UTC")

#: symbol -> (start price, yearly volatility, typical volume in base units per day)
SAMPLE_SYMBOLS: dict[str, tuple[float, float, float]] = {
    "BTC/USDT": (42_000.0, 0.55, 25_000.0),
    "ETH/USDT": (2_300.0, 0.70, 400_000.0),
    "SOL/USDT": (100.0, 0.95, 4_000_000.0),
    "XRP/USDT": (0.60, 0.85, 900_000_000.0),
}

#: regime: (yearly drift, volatility multiplier)
_REGIMES = np.array([[0.9, 0.9], [-0.8, 1.3], [0.0, 0.7]])
_YEAR = 365.25 * 86400


def sample_ohlcv(
    symbol: str = "BTC/USDT",
    timeframe: str = "1h",
    bars: int = 5000,
    start: str | pd.Timestamp | None = None,
    seed: int = 7,
) -> pd.DataFrame:
    """Return `bars` OHLCV rows of the sample series for `symbol` and `timeframe`.

    The index is a UTC DatetimeIndex named ``timestamp``; columns are
    open, high, low, close, volume (float64). `start` defaults to the
    series' first bar; the same (symbol, timeframe, seed) always gives the same
    prices for the same timestamps.
    """
    if symbol not in SAMPLE_SYMBOLS:
        raise unknown("sample symbol", symbol, SAMPLE_SYMBOLS)
    if not isinstance(bars, (int, np.integer)) or bars <= 0:
        raise ConfigError(f"bars must be a positive integer, got {bars!r}.")
    step = timeframe_seconds(timeframe)
    offset = 0
    if start is not None:
        ts = pd.Timestamp(start)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        delta = (ts - SAMPLE_EPOCH).total_seconds()
        if delta < 0:
            raise ConfigError(f"The sample starts at {SAMPLE_EPOCH}; start={start!r} is before it.")
        offset = int(np.ceil(delta / step))
    return _series(symbol, step, offset, int(bars), seed)


_BLOCK = 4096


#: generated blocks per (symbol, step, seed): the series only ever grows, so live feeds stay cheap
_CACHE: dict[tuple[str, int, int], tuple[list[np.ndarray], tuple]] = {}


def _series(symbol: str, step: int, first: int, n: int, seed: int) -> pd.DataFrame:
    """Bars [first, first + n) of the series, generated in fixed blocks (each from its own seeded RNG)
    so that a window never depends on how much was generated before it."""
    price0, vol_year, volume_day = SAMPLE_SYMBOLS[symbol]
    key = (symbol, step, seed)
    parts, state = _CACHE.get(key, ([], (np.log(price0), 1.0, 0.0, 2)))
    end = first + n
    for block in range(len(parts), -(-end // _BLOCK)):
        rng = np.random.default_rng(zlib.crc32(f"{symbol}|{step}|{seed}|{block}".encode()))
        part, state = _block(rng, state, step, vol_year, volume_day)
        parts.append(part)
    _CACHE[key] = (parts, state)
    b0 = first // _BLOCK
    data = np.concatenate(parts[b0 : -(-end // _BLOCK)], axis=1)[:, first - b0 * _BLOCK : end - b0 * _BLOCK]
    index = pd.DatetimeIndex(
        SAMPLE_EPOCH + pd.to_timedelta(np.arange(first, end, dtype=np.int64) * step, unit="s"), name="timestamp"
    ).as_unit("ns")
    return pd.DataFrame(dict(zip(("open", "high", "low", "close", "volume"), data, strict=True)), index=index)


def _block(rng: np.random.Generator, state: tuple, step: int, vol_year: float, volume_day: float):
    n = _BLOCK
    log_price, h_prev, z_prev, regime = state
    dt = step / _YEAR
    base_sigma = vol_year * np.sqrt(dt)

    # Regimes: a Markov chain whose mean duration is about two weeks.
    mean_bars = max(20.0, 14 * 86400 / step)
    marks = np.where(rng.random(n) < 1.0 / mean_bars, rng.integers(0, 3, n), -1)
    marks[0] = regime if marks[0] < 0 else marks[0]
    regime_id = marks[np.maximum.accumulate(np.where(marks >= 0, np.arange(n), 0))]
    drift = _REGIMES[regime_id, 0] * dt
    vol_mult = _REGIMES[regime_id, 1]

    # GARCH(1,1) volatility clustering on Student-t shocks.
    z = rng.standard_t(df=5, size=n) / np.sqrt(5 / 3)
    omega, alpha, beta = 0.05, 0.08, 0.87
    h = np.empty(n)
    for i in range(n):
        h_prev = omega + alpha * z_prev * z_prev + beta * h_prev
        h[i] = h_prev
        z_prev = z[i]
    sigma = base_sigma * vol_mult * np.sqrt(h)

    # Rare jumps: about one every ten days.
    jump_p = min(0.2, step / (10 * 86400))
    jumps = (rng.random(n) < jump_p) * rng.normal(0.0, 6 * base_sigma * np.sqrt(max(1.0, 3600 / step)), n)

    log_ret = drift - 0.5 * sigma**2 + sigma * z + jumps
    log_close = log_price + np.cumsum(log_ret)
    close = np.exp(log_close)
    prev_close = np.exp(np.concatenate(([log_price], log_close[:-1])))
    open_ = prev_close * np.exp(rng.normal(0.0, 0.05, n) * sigma)
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.6, n)) * sigma)
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.6, n)) * sigma)
    volume = volume_day * step / 86400 * (0.5 + rng.gamma(2.0, 0.25, n)) * (1 + 20 * np.abs(log_ret))
    state = (log_close[-1], h_prev, z_prev, int(regime_id[-1]))
    return np.vstack([open_, high, low, close, volume]), state
