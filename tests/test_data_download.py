"""Downloads and the Parquet cache against real ccxt exchange classes whose HTTP layer is faked.

Each exchange instance is a real ``ccxt.binance``/``ccxt.bybit``; only its
``fetch(url, method, headers, body)`` (ccxt's HTTP layer) is replaced, serving
recorded responses or synthetic pages of the same shape built from the sample
generator. Error replies go through ccxt's own ``handle_errors`` so the
exception types are the ones ccxt raises for the real exchange.
"""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import ccxt
import numpy as np
import pandas as pd
import pytest

from workbench.data import load_ohlcv, sample_ohlcv
from workbench.data.cache import OhlcvCache, cached_ohlcv, default_cache_root, safe_symbol
from workbench.data.download import download_ohlcv, make_exchange, to_ms
from workbench.errors import ConfigError, DataError

H = 3_600_000
T0 = to_ms("2024-01-01")


def _market(symbol: str, market_id: str, kind: str, linear=None, inverse=None, settle=None) -> dict:
    base, rest = symbol.split("/")
    quote = rest.split(":")[0]
    return {
        "id": market_id, "symbol": symbol, "base": base, "quote": quote, "settle": settle,
        "baseId": base, "quoteId": quote, "settleId": settle, "type": kind, "spot": kind == "spot",
        "margin": False, "swap": kind == "swap", "future": False, "option": False, "contract": kind != "spot",
        "linear": linear, "inverse": inverse, "active": True, "contractSize": None if kind == "spot" else 1,
        "precision": {"amount": 1e-5, "price": 0.01},
        "limits": {"amount": {"min": 1e-5, "max": None}, "price": {}, "cost": {}}, "info": {},
    }


MARKETS = {
    "binance": [
        _market("BTC/USDT", "BTCUSDT", "spot"),
        _market("ETH/USDT", "ETHUSDT", "spot"),
        _market("BTC/USDT:USDT", "BTCUSDT", "swap", True, False, "USDT"),
        _market("BTC/USD:BTC", "BTCUSD_PERP", "swap", False, True, "BTC"),
    ],
    "bybit": [
        _market("BTC/USDT", "BTCUSDT", "spot"),
        _market("BTC/USDT:USDT", "BTCUSDT", "swap", True, False, "USDT"),
    ],
}


class FakeHttp:
    """ccxt's HTTP layer for one exchange instance: synthetic klines from a frame, scripted failures."""

    def __init__(self, exchange_id: str, bars: pd.DataFrame | None = None, now: int | None = None) -> None:
        self.ex = getattr(ccxt, exchange_id)({"enableRateLimit": False})
        self.ex.set_markets(MARKETS[exchange_id])
        self.ex.fetch = self.fetch
        self.bars = bars if bars is not None else sample_ohlcv("BTC/USDT", "1h", 3000)
        self.step = int((self.bars.index[1] - self.bars.index[0]).total_seconds() * 1000)
        self.now = now if now is not None else int(self.bars.index[-1].value // 1_000_000) + self.step // 2
        self.requests: list[dict] = []
        self.script: dict[int, object] = {}  # request number (1-based) -> exception, (status, json) or hook
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def clock(self) -> int:
        return self.now

    def download(self, symbol="BTC/USDT", timeframe="1h", **kw):
        kw.setdefault("progress", False)
        return download_ohlcv(self.ex, symbol, timeframe, sleep=self.sleep, now=self.clock, **kw)

    def update(self, cache: OhlcvCache, symbol="BTC/USDT", timeframe="1h", **kw):
        kw.setdefault("progress", False)
        return cache.update(self.ex, symbol, timeframe, sleep=self.sleep, now=self.clock, **kw)

    # -- the HTTP layer --------------------------------------------------------
    def fetch(self, url, method="GET", headers=None, body=None):
        parts = urlparse(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.requests.append({"path": parts.path, **query})
        scripted = self.script.get(len(self.requests))
        if callable(scripted) and not isinstance(scripted, BaseException):
            scripted = scripted()  # a hook: look around, then answer normally
        if isinstance(scripted, BaseException):
            raise scripted
        if scripted is not None:
            status, payload = scripted
        elif parts.path.endswith("/klines"):
            status, payload = 200, self._binance_klines(query)
        elif parts.path.endswith("/market/kline"):
            status, payload = 200, self._bybit_klines(query)
        else:
            status, payload = 404, {"code": -1, "msg": f"no route {parts.path}"}
        return self._respond(url, method, status, payload)

    def _respond(self, url, method, status, payload):
        text = json.dumps(payload)
        if status >= 400:
            self.ex.handle_errors(status, "ERR", url, method, {}, text, payload, {}, None)
            self.ex.handle_http_status_code(status, "ERR", url, method, text)
            raise ccxt.ExchangeError(f"{self.ex.id} {method} {url} {status}")
        self.ex.handle_errors(status, "OK", url, method, {}, text, payload, {}, None)
        return payload

    def _window(self, start, end) -> pd.DataFrame:
        ms = self.bars.index.asi8 // 1_000_000
        keep = (ms <= self.now) & (ms >= (int(start) if start is not None else -1))
        if end is not None:
            keep &= ms <= int(end)
        return self.bars[keep]

    def _binance_klines(self, q):
        rows = self._window(q.get("startTime"), q.get("endTime"))
        rows = rows.iloc[: int(q.get("limit", 500))] if "startTime" in q else rows.iloc[-int(q.get("limit", 500)):]
        out = []
        for ts, r in zip(rows.index.asi8 // 1_000_000, rows.itertuples(index=False), strict=True):
            out.append([int(ts), str(r.open), str(r.high), str(r.low), str(r.close), str(r.volume),
                        int(ts) + self.step - 1, "0", 10, "0", "0", "0"])
        return out

    def _bybit_klines(self, q):
        rows = self._window(q.get("start"), q.get("end")).iloc[-int(q.get("limit", 200)):]  # the newest in range
        lst = [[str(ts), str(r.open), str(r.high), str(r.low), str(r.close), str(r.volume), "0"]
               for ts, r in zip(rows.index.asi8 // 1_000_000, rows.itertuples(index=False), strict=True)]
        return {"retCode": 0, "retMsg": "OK", "result": {"symbol": "BTCUSDT", "category": q.get("category"),
                "list": lst[::-1]}, "retExtInfo": {}, "time": str(self.now)}

    def klines(self):
        return [r for r in self.requests if r["path"].endswith(("/klines", "/market/kline"))]


def _recorded(shared_data, exchange_id):
    data = json.loads((shared_data / "ccxt-static" / f"{exchange_id}.json").read_text())
    return data["methods"]["fetchOHLCV"]


# -- ccxt parses the recorded replies -------------------------------------------


@pytest.mark.parametrize("exchange_id", ["binance", "bybit"])
def test_recorded_ohlcv_replies_parse_to_recorded_result(shared_data, exchange_id):
    entries = _recorded(shared_data, exchange_id)
    assert entries
    for entry in entries:
        fake = FakeHttp(exchange_id)
        fake.script[1] = (200, entry["httpResponse"])
        assert fake.ex.fetch_ohlcv(*entry["input"]) == entry["parsedResponse"], entry["description"]


def test_download_of_a_recorded_binance_page_matches_parsed_response(shared_data):
    entry = next(e for e in _recorded(shared_data, "binance") if e["input"][:2] == ["BTC/USDT", "1h"])
    parsed = entry["parsedResponse"]
    fake = FakeHttp("binance", now=parsed[-1][0] + 2 * H)
    fake.script[1] = (200, entry["httpResponse"])
    fake.script[2] = (200, [])
    df = fake.download(since=parsed[0][0], until=parsed[-1][0] + H)
    assert list(df.index.asi8 // 1_000_000) == [row[0] for row in parsed]
    assert df.to_numpy().tolist() == [[float(x) for x in row[1:]] for row in parsed]
    assert fake.requests[0]["symbol"] == "BTCUSDT" and fake.requests[0]["interval"] == "1h"


# -- pagination ---------------------------------------------------------------


@pytest.mark.parametrize("exchange_id,symbol", [("binance", "BTC/USDT"), ("bybit", "BTC/USDT:USDT"), ("binance", "BTC/USDT:USDT")])
def test_pagination_covers_the_range_without_duplicates_or_gaps(exchange_id, symbol):
    fake = FakeHttp(exchange_id)
    bars = fake.bars
    since, until = bars.index[101], bars.index[101 + 950]
    df = fake.download(symbol, since=since, until=until, page_limit=100)
    expected = bars[(bars.index >= since) & (bars.index < until)]
    pd.testing.assert_frame_equal(df, expected, check_freq=False)
    assert df.index.is_unique and (np.diff(df.index.asi8) == H * 1_000_000).all()
    assert len(fake.klines()) == 10  # 950 bars in pages of 100
    assert fake.sleeps == [fake.ex.rateLimit / 1000] * 9  # paced, and only between calls


def test_since_between_bars_starts_at_the_next_bar():
    fake = FakeHttp("binance")
    since = fake.bars.index[10] + pd.Timedelta(minutes=20)
    df = fake.download(since=since, until=fake.bars.index[30])
    assert df.index[0] == fake.bars.index[11] and len(df) == 19


def test_the_still_open_bar_is_dropped():
    fake = FakeHttp("binance")  # now is half way through the last bar
    last_open = fake.bars.index[-1]
    assert fake._binance_klines({"startTime": str(to_ms(last_open))})  # the exchange does serve it
    df = fake.download(since=fake.bars.index[-50])
    assert df.index[-1] == fake.bars.index[-2] and len(df) == 49


def test_default_since_is_limit_bars_before_now_and_limit_caps():
    fake = FakeHttp("binance")
    df = fake.download(limit=30)
    assert len(df) == 30 and df.index[-1] == fake.bars.index[-2]
    df = fake.download(since=fake.bars.index[0], limit=250, page_limit=100)
    pd.testing.assert_frame_equal(df, fake.bars.iloc[:250], check_freq=False)


@pytest.mark.parametrize("exchange_id,symbol", [("binance", "BTC/USDT"), ("bybit", "BTC/USDT:USDT")])
def test_a_gap_longer_than_a_page_is_crossed(exchange_id, symbol):
    full = sample_ohlcv("BTC/USDT", "1h", 1000)
    bars = pd.concat([full.iloc[:200], full.iloc[550:]])  # 350 bars missing (exchange outage)
    fake = FakeHttp(exchange_id, bars=bars)
    df = fake.download(symbol, since=full.index[0], until=full.index[800], page_limit=100)
    pd.testing.assert_frame_equal(df, bars[bars.index < full.index[800]], check_freq=False)


@pytest.mark.parametrize("exchange_id,symbol", [("binance", "BTC/USDT"), ("bybit", "BTC/USDT:USDT")])
def test_since_before_listing_finds_the_first_bar(exchange_id, symbol):
    fake = FakeHttp(exchange_id, bars=sample_ohlcv("BTC/USDT", "1h", 300))
    df = fake.download(symbol, since=fake.bars.index[0] - pd.Timedelta(days=30), page_limit=100)
    pd.testing.assert_frame_equal(df, fake.bars.iloc[:-1], check_freq=False)
    assert len(fake.klines()) < 30


def test_progress_bar_runs(capsys):
    fake = FakeHttp("binance")
    df = fake.download(since=fake.bars.index[0], until=fake.bars.index[300], page_limit=100, progress=True)
    assert len(df) == 300


# -- errors ---------------------------------------------------------------------


def test_transient_errors_are_retried_with_backoff():
    fake = FakeHttp("binance")
    fake.script[2] = ccxt.RequestTimeout("binance GET timed out")  # what ccxt's fetch raises on a timeout
    fake.script[3] = (429, {"code": -1003, "msg": "Too many requests."})
    fake.script[4] = (503, None)
    fake.script[5] = ccxt.NetworkError("connection reset")
    since, until = fake.bars.index[0], fake.bars.index[300]
    df = fake.download(since=since, until=until, page_limit=100)
    pd.testing.assert_frame_equal(df, fake.bars.iloc[:300], check_freq=False)
    backoffs = [s for s in fake.sleeps if s != fake.ex.rateLimit / 1000]
    assert backoffs == [1.0, 2.0, 4.0, 8.0]
    assert len(fake.klines()) == 3 + 4


@pytest.mark.parametrize("status,payload,kind", [
    (400, {"code": -1121, "msg": "Invalid symbol."}, ccxt.BadSymbol),
    (401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}, ccxt.AuthenticationError),
])
def test_permanent_errors_surface_at_once(status, payload, kind):
    fake = FakeHttp("binance")
    fake.script[1] = (status, payload)
    with pytest.raises(DataError, match=kind.__name__) as info:
        fake.download(since=fake.bars.index[0], until=fake.bars.index[10])
    assert isinstance(info.value.__cause__, kind)
    assert len(fake.requests) == 1 and fake.sleeps == []


def test_invalid_candles_from_the_exchange_are_reported():
    fake = FakeHttp("binance")
    page = fake._binance_klines({"startTime": str(T0), "limit": "5"})
    page[2][2] = str(float(page[2][3]) / 2)  # high below low
    fake.script[1] = (200, page)
    with pytest.raises(DataError, match=r"binance sent invalid BTC/USDT 1h candles: Impossible bar at row 2"):
        fake.download(since=T0, until=T0 + 5 * H)


def test_transient_errors_give_up_after_the_retry_limit():
    fake = FakeHttp("binance")
    for i in range(1, 10):
        fake.script[i] = (503, None)
    with pytest.raises(DataError, match="after 3 attempt") as info:
        fake.download(since=fake.bars.index[0], until=fake.bars.index[10], retries=3)
    assert isinstance(info.value.__cause__, ccxt.ExchangeNotAvailable)
    assert len(fake.requests) == 3


def test_bad_arguments_raise_config_errors_that_say_how_to_fix():
    fake = FakeHttp("binance")
    with pytest.raises(ConfigError, match="Did you mean 'BTC/USDT'"):
        fake.download("BTC/USDTT")
    with pytest.raises(ConfigError, match="timeframe on binance"):
        fake.download(timeframe="7m")
    with pytest.raises(ConfigError, match="Did you mean 'binance'"):
        make_exchange("binanse")
    with pytest.raises(ConfigError, match="limit"):
        fake.download(limit=0)
    with pytest.raises(ConfigError, match="Not a time"):
        fake.download(since="yesterday-ish")
    assert fake.requests == []


def test_times_convert_to_epoch_ms():
    assert to_ms("2024-01-01") == to_ms(pd.Timestamp("2024-01-01", tz="UTC")) == 1_704_067_200_000
    assert to_ms("2024-01-01T01:00+01:00") == 1_704_067_200_000
    assert to_ms(1_704_067_200_000) == to_ms(1.7040672e12) == to_ms(np.int64(1_704_067_200_000))
    assert to_ms(None) is None
    with pytest.raises(ConfigError):
        to_ms(float("nan"))


def test_make_exchange_builds_a_ccxt_instance_without_network():
    ex = make_exchange("binance")
    assert isinstance(ex, ccxt.binance) and ex.enableRateLimit is False
    assert make_exchange(ex) is ex


# -- the cache --------------------------------------------------------------------


def test_cache_layout_and_safe_symbols(tmp_path):
    cache = OhlcvCache(tmp_path)
    assert cache.path("binance", "BTC/USDT:USDT", "1h") == tmp_path / "binance" / "BTC_USDT-USDT" / "1h.parquet"
    assert safe_symbol("ETH/BTC") == "ETH_BTC"
    assert "/" not in safe_symbol("A/B:C/../x")
    with pytest.raises(DataError):
        safe_symbol("//")


def test_cache_update_is_incremental(tmp_path):
    fake = FakeHttp("binance", now=T0 + 500 * H + H // 3)
    cache = OhlcvCache(tmp_path)
    first = fake.update(cache, since=fake.bars.index[0], page_limit=100)
    assert len(first) == 500 and len(fake.klines()) == 5
    pd.testing.assert_frame_equal(first, fake.bars.iloc[:500], check_freq=False)

    fake.requests.clear()
    fake.now += 130 * H  # 130 more bars closed
    second = fake.update(cache, page_limit=100)
    assert len(fake.klines()) == 2  # only the new bars
    assert int(fake.klines()[0]["startTime"]) == T0 + 500 * H
    pd.testing.assert_frame_equal(second, fake.bars.iloc[:630], check_freq=False)
    pd.testing.assert_frame_equal(cache.read("binance", "BTC/USDT", "1h"), second)

    fake.requests.clear()
    cached_ohlcv(fake.ex, "BTC/USDT", "1h", start=fake.bars.index[10], end=fake.bars.index[600], cache_dir=tmp_path)
    assert fake.requests == []  # covered: no network


def test_cache_backfills_before_the_first_cached_bar(tmp_path):
    fake = FakeHttp("binance")
    cache = OhlcvCache(tmp_path)
    fake.update(cache, since=fake.bars.index[200], until=fake.bars.index[300])
    fake.requests.clear()
    out = fake.update(cache, since=fake.bars.index[50], until=fake.bars.index[300])
    assert [int(r["startTime"]) for r in fake.klines()] == [to_ms(fake.bars.index[50])]
    pd.testing.assert_frame_equal(out, fake.bars.iloc[50:300], check_freq=False)


def test_interrupted_download_keeps_saved_pages_and_resumes(tmp_path):
    fake = FakeHttp("binance", now=T0 + 1000 * H + 1)
    cache = OhlcvCache(tmp_path)
    for i in range(4, 12):
        fake.script[i] = ccxt.ExchangeNotAvailable("maintenance")
    with pytest.raises(DataError, match="resumes"):
        fake.update(cache, since=fake.bars.index[0], page_limit=100, retries=2)
    saved = cache.read("binance", "BTC/USDT", "1h")
    pd.testing.assert_frame_equal(saved, fake.bars.iloc[:300], check_freq=False)

    fake.script.clear()
    fake.requests.clear()
    out = fake.update(cache, page_limit=100)
    assert int(fake.klines()[0]["startTime"]) == T0 + 300 * H
    assert len(fake.klines()) == 7
    pd.testing.assert_frame_equal(out, fake.bars.iloc[:1000], check_freq=False)


def test_ctrl_c_mid_download_keeps_the_pages_received(tmp_path):
    fake = FakeHttp("binance")
    cache = OhlcvCache(tmp_path)
    fake.script[3] = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        fake.update(cache, since=fake.bars.index[0], until=fake.bars.index[500], page_limit=100)
    pd.testing.assert_frame_equal(cache.read("binance", "BTC/USDT", "1h"), fake.bars.iloc[:200], check_freq=False)


def test_checkpoint_zero_saves_every_page_as_it_arrives(tmp_path):
    fake = FakeHttp("binance")
    cache = OhlcvCache(tmp_path)
    on_disk = []
    for i in range(2, 5):
        fake.script[i] = lambda: on_disk.append(len(cache.read("binance", "BTC/USDT", "1h")))
    fake.update(cache, since=fake.bars.index[0], until=fake.bars.index[400], page_limit=100, checkpoint_seconds=0)
    assert on_disk == [100, 200, 300]
    on_disk.clear()
    fake.requests.clear()
    fake.update(cache, until=fake.bars.index[800], page_limit=100, checkpoint_seconds=3600)
    assert on_disk == [400, 400, 400]  # a long interval: written once, at the end
    assert len(cache.read("binance", "BTC/USDT", "1h")) == 800


def test_writes_are_atomic(tmp_path, monkeypatch):
    fake = FakeHttp("binance")
    cache = OhlcvCache(tmp_path)
    before = fake.update(cache, since=fake.bars.index[0], until=fake.bars.index[100])
    path = cache.path("binance", "BTC/USDT", "1h")

    def broken(self, target, **kw):
        open(target, "wb").write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken)
    with pytest.raises(OSError, match="disk full"):
        cache.append("binance", "BTC/USDT", "1h", fake.bars.iloc[100:120])
    monkeypatch.undo()
    pd.testing.assert_frame_equal(cache.read("binance", "BTC/USDT", "1h"), before)
    assert sorted(p.name for p in path.parent.iterdir()) == ["1h.parquet"]


def test_a_corrupt_cache_file_says_to_delete_it(tmp_path):
    cache = OhlcvCache(tmp_path)
    path = cache.path("binance", "BTC/USDT", "1h")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="delete it"):
        cache.read("binance", "BTC/USDT", "1h")


def test_default_cache_root(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_cache_root() == tmp_path / ".workbench" / "cache"
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    assert default_cache_root() == tmp_path / "home" / "cache"
    assert OhlcvCache().root == tmp_path / "home" / "cache"


def test_load_ohlcv_reads_an_exchange_through_the_cache(tmp_path, monkeypatch):
    fake = FakeHttp("binance")
    monkeypatch.setattr(ccxt, "binance", lambda config=None: fake.ex)
    monkeypatch.setattr(fake.ex, "milliseconds", fake.clock)
    fake.ex.rateLimit = 0
    start, end = fake.bars.index[100], fake.bars.index[400]
    df = load_ohlcv("BTC/USDT", "1h", start=start, end=end, source="binance", cache_dir=tmp_path)
    pd.testing.assert_frame_equal(df, fake.bars.iloc[100:400], check_freq=False)
    assert (tmp_path / "binance" / "BTC_USDT" / "1h.parquet").is_file()
