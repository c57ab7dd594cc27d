"""OHLCV downloads from any ccxt exchange: paginated, paced, retried.

Each page asks for a window ``[since, since + page * bar)`` (ccxt's unified
``until`` parameter), so exchanges that answer newest-first (bybit) page
forward correctly too. Calls are spaced by the exchange's ``rateLimit``;
transient errors (network, timeouts, rate limits, exchange unavailable) are
retried with exponential backoff; permanent ones (bad symbol, authentication,
bad request) raise at once as :class:`DataError` naming the ccxt error. The
still-open last bar is never returned. The Parquet cache lives in
:mod:`workbench.data.cache`.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import ccxt
import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError, did_you_mean, unknown
from ..timeframes import timeframe_seconds
from .validate import COLUMNS, validate_ohlcv

TRANSIENT = (ccxt.NetworkError, ccxt.ExchangeNotAvailable, ccxt.RequestTimeout, ccxt.DDoSProtection, ccxt.RateLimitExceeded)
PERMANENT_HINTS = {
    "BadSymbol": "Check the symbol: ccxt unified symbols look like 'BTC/USDT' (spot) or 'BTC/USDT:USDT' (perpetual).",
    "AuthenticationError": "Check the account's API key and secret (public candles need none).",
    "PermissionDenied": "The API key lacks permission for market data, or the IP is not whitelisted.",
    "AccountSuspended": "The exchange account is suspended.",
    "BadRequest": "The exchange rejected the request's parameters (timeframe, since or until).",
    "NotSupported": "This exchange or market does not offer OHLCV through ccxt.",
}
#: bars fetched when neither a start nor a cache gives one
DEFAULT_BARS = 1000
Timeish = str | int | float | datetime | pd.Timestamp | None


def make_exchange(exchange: str | ccxt.Exchange) -> ccxt.Exchange:
    """A ccxt exchange instance for an id such as 'binance' (or the instance itself)."""
    if isinstance(exchange, ccxt.Exchange):
        return exchange
    name = str(exchange).strip().lower()
    if name not in ccxt.exchanges:
        raise unknown("ccxt exchange", name, ccxt.exchanges)
    # pacing is ours (download_ohlcv); ccxt's own throttle would sleep a second time
    return getattr(ccxt, name)({"enableRateLimit": False})


def to_ms(value: Timeish) -> int | None:
    """Epoch milliseconds (UTC) from a timestamp, ISO string, datetime or epoch ms."""
    if value is None:
        return None
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        if not np.isfinite(value):
            raise ConfigError(f"Not a time: {value!r}; use epoch milliseconds or a date such as '2024-01-31'.")
        return int(value)
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"Not a time: {value!r} ({exc}); use e.g. '2024-01-31' or pd.Timestamp(...).") from None
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)


def empty_ohlcv() -> pd.DataFrame:
    """An empty OHLCV frame with the right columns, dtypes and index."""
    index = pd.DatetimeIndex([], tz="UTC", name="timestamp").as_unit("ns")
    return pd.DataFrame({c: pd.Series([], dtype="float64") for c in COLUMNS}, index=index)


def rows_to_frame(rows: list[list[Any]], timeframe: str | None = None) -> pd.DataFrame:
    """ccxt OHLCV rows ``[ms, o, h, l, c, v]`` as a validated frame."""
    if not rows:
        return empty_ohlcv()
    arr = np.asarray([r[:6] for r in rows], dtype="float64")
    index = pd.DatetimeIndex(pd.to_datetime(arr[:, 0].astype("int64"), unit="ms", utc=True), name="timestamp")
    frame = pd.DataFrame(arr[:, 1:], columns=list(COLUMNS), index=index.as_unit("ns"))
    return validate_ohlcv(frame, timeframe=timeframe, allow_gaps=True)


def _page_size(exchange: ccxt.Exchange, market: dict | None) -> int:
    kind = (market or {}).get("type") or "spot"
    features = getattr(exchange, "features", None) or {}
    section = features.get(kind) or features.get("spot") or {}
    if isinstance(section, dict) and "fetchOHLCV" not in section:  # swap/future: {'linear': {...}}
        section = next((v for v in section.values() if isinstance(v, dict) and "fetchOHLCV" in v), {})
    limit = ((section or {}).get("fetchOHLCV") or {}).get("limit")
    return int(limit) if limit else 1000


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:300] + "..."


class _Caller:
    """Paces calls by the exchange's rateLimit and retries transient errors with backoff."""

    def __init__(self, exchange: ccxt.Exchange, sleep: Callable[[float], None], retries: int, backoff: float) -> None:
        self.exchange = exchange
        self.sleep = sleep
        self.retries = max(1, int(retries))
        self.backoff = backoff
        self.calls = 0

    def __call__(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        attempt = 0
        while True:
            if self.calls:
                self.sleep(float(getattr(self.exchange, "rateLimit", 0) or 0) / 1000.0)
            self.calls += 1
            try:
                return fn(*args, **kwargs)
            except TRANSIENT as exc:
                attempt += 1
                if attempt >= self.retries:
                    raise DataError(
                        f"{self.exchange.id} {what} failed after {attempt} attempt(s): {type(exc).__name__}: "
                        f"{_short(exc)}. The exchange is unreachable or throttling; try again later "
                        "(a cached download resumes where it stopped)."
                    ) from exc
                self.sleep(min(60.0, self.backoff * 2 ** (attempt - 1)))
            except ccxt.BaseError as exc:
                name = type(exc).__name__
                hint = next((h for k, h in PERMANENT_HINTS.items() if isinstance(exc, getattr(ccxt, k))), "")
                raise DataError(f"{self.exchange.id} refused {what}: {name}: {_short(exc)}. {hint}".strip()) from exc


def _check_market(exchange: ccxt.Exchange, symbol: str, timeframe: str, call: _Caller) -> dict:
    if not getattr(exchange, "has", {}).get("fetchOHLCV"):
        raise ConfigError(f"{exchange.id} does not offer OHLCV candles through ccxt; choose another exchange.")
    tfs = getattr(exchange, "timeframes", None) or {}
    if tfs and timeframe not in tfs:
        raise unknown(f"timeframe on {exchange.id}", timeframe, tfs)
    if not exchange.markets:
        call("load_markets", exchange.load_markets)
    markets = exchange.markets or {}
    if symbol not in markets:
        hint = did_you_mean(symbol, markets) or (
            f" Unified symbols look like 'BTC/USDT' or 'BTC/USDT:USDT'; {exchange.id} lists {len(markets)}."
        )
        raise ConfigError(f"Unknown symbol {symbol!r} on {exchange.id}.{hint}")
    return markets[symbol]


def download_ohlcv(
    exchange: str | ccxt.Exchange,
    symbol: str,
    timeframe: str,
    since: Timeish = None,
    until: Timeish = None,
    limit: int | None = None,
    progress: bool = True,
    *,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], int] | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    page_limit: int | None = None,
    on_page: Callable[[pd.DataFrame], None] | None = None,
) -> pd.DataFrame:
    """Download closed OHLCV bars of `symbol` in ``[since, until)`` from a ccxt exchange.

    `exchange` is an id ('binance') or a ccxt instance. `since` defaults to
    `limit` (or 1000) bars before `until`, which defaults to now. `limit` caps
    the number of bars. `on_page(frame)` receives each page's new bars as it
    arrives (the cache saves them there, so an interrupted download keeps
    them). `sleep`, `now` (epoch ms) are injectable for tests.
    """
    ex = make_exchange(exchange)
    step = timeframe_seconds(timeframe) * 1000
    if limit is not None and (not isinstance(limit, (int, np.integer)) or limit <= 0):
        raise ConfigError(f"limit must be a positive number of bars, got {limit!r}.")
    clock = now or ex.milliseconds
    call = _Caller(ex, sleep, retries, backoff)
    market = _check_market(ex, symbol, timeframe, call)

    now_ms = int(clock())
    closed_end = (now_ms // step) * step  # bars opening before this are closed
    stop = closed_end if until is None else min(to_ms(until), closed_end)
    start = to_ms(since)
    if start is None:
        start = stop - (limit or DEFAULT_BARS) * step
    start = -(-start // step) * step  # first bar boundary at or after since
    page = max(1, min(page_limit or _page_size(ex, market), _page_size(ex, market)))

    total = max(0, -(-(stop - start) // step))
    if limit is not None:
        total = min(total, int(limit))
    bar = _progress(progress, total, f"{ex.id} {symbol} {timeframe}")
    frames: list[pd.DataFrame] = []
    got = 0
    cursor = start
    try:
        while cursor < stop and (limit is None or got < limit):
            want = page if limit is None else min(page, int(limit) - got)
            window_end = min(cursor + want * step, stop)
            rows = call(
                f"fetch_ohlcv {symbol} {timeframe}",
                ex.fetch_ohlcv, symbol, timeframe, cursor, want, {"until": window_end - 1},
            )
            rows = [r for r in (rows or []) if r and cursor <= int(r[0]) < window_end]
            if not rows:
                nxt = _after_empty(ex, call, symbol, timeframe, window_end, stop, page)
                if nxt is None:
                    break
                bar.update(max(0, min(total, (nxt - start) // step) - bar.n))
                cursor = nxt
                continue
            try:
                frame = rows_to_frame(rows, timeframe)
            except DataError as exc:
                raise DataError(f"{ex.id} sent invalid {symbol} {timeframe} candles: {exc}") from None
            if limit is not None:
                frame = frame.iloc[: int(limit) - got]
            got += len(frame)
            frames.append(frame)
            if on_page is not None:
                on_page(frame)
            cursor = int(frame.index[-1].value // 1_000_000) + step
            bar.update(max(0, min(total, (cursor - start) // step) - bar.n))
    finally:
        bar.close()
    if not frames:
        return empty_ohlcv()
    return validate_ohlcv(pd.concat(frames), timeframe=timeframe, allow_gaps=True)


def _after_empty(
    ex: ccxt.Exchange, call: _Caller, symbol: str, timeframe: str, window_end: int, stop: int, page: int
) -> int | None:
    """After an empty window: where data resumes before `stop`, or None if it does not.

    One probe of the rest of the range: empty means done; fewer than a page
    of bars is the whole rest, so jump to its first bar; a full page may be
    newest-first (bybit), so only step one window on.
    """
    if window_end >= stop:
        return None
    rows = call(
        f"fetch_ohlcv {symbol} {timeframe}", ex.fetch_ohlcv, symbol, timeframe, window_end, page, {"until": stop - 1}
    )
    times = sorted(int(r[0]) for r in (rows or []) if r and window_end <= int(r[0]) < stop)
    if not times:
        return None
    return times[0] if len(times) < page else window_end


class _NoBar:
    n = 0

    def update(self, k: int) -> None:
        self.n += k

    def close(self) -> None:
        pass


def _progress(enabled: bool, total: int, desc: str) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="bar", leave=False)


from .cache import OhlcvCache, cached_ohlcv, default_cache_root  # noqa: E402  (re-export; cache imports us lazily)

__all__ = [
    "DEFAULT_BARS", "OhlcvCache", "cached_ohlcv", "default_cache_root", "download_ohlcv", "make_exchange", "to_ms",
]
