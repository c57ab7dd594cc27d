"""The data package: the sample generator, validate_ohlcv, read_csv and load_ohlcv."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.data import SAMPLE_EPOCH, SAMPLE_SYMBOLS, load_ohlcv, read_csv, sample_ohlcv, validate_ohlcv
from workbench.data.validate import COLUMNS
from workbench.errors import ConfigError, DataError
from workbench.timeframes import TIMEFRAMES, timeframe_seconds

# -- the sample generator -------------------------------------------------------


def test_sample_is_deterministic_and_seeded():
    a = sample_ohlcv("ETH/USDT", "15m", 700)
    pd.testing.assert_frame_equal(a, sample_ohlcv("ETH/USDT", "15m", 700))
    assert not np.allclose(a["close"], sample_ohlcv("ETH/USDT", "15m", 700, seed=8)["close"])
    assert not np.allclose(a["close"], sample_ohlcv("BTC/USDT", "15m", 700)["close"] / 18)


def test_sample_windows_are_slices_of_one_series():
    long = sample_ohlcv("BTC/USDT", "1h", 9000)  # spans three generator blocks
    pd.testing.assert_frame_equal(sample_ohlcv("BTC/USDT", "1h", 100), long.iloc[:100])
    for offset in (0, 1, 4000, 4090, 8190):
        window = sample_ohlcv("BTC/USDT", "1h", 300, start=long.index[offset])
        pd.testing.assert_frame_equal(window, long.iloc[offset : offset + 300])
    between = sample_ohlcv("BTC/USDT", "1h", 5, start=long.index[10] + pd.Timedelta(minutes=1))
    assert between.index[0] == long.index[11]
    naive = sample_ohlcv("BTC/USDT", "1h", 5, start="2024-01-02")
    assert naive.index[0] == pd.Timestamp("2024-01-02", tz="UTC")


@pytest.mark.parametrize("symbol", sorted(SAMPLE_SYMBOLS))
@pytest.mark.parametrize("timeframe", TIMEFRAMES)
def test_sample_every_symbol_and_timeframe_is_valid_ohlcv(symbol, timeframe):
    df = sample_ohlcv(symbol, timeframe, 400)
    assert list(df.columns) == list(COLUMNS) and (df.dtypes == "float64").all()
    assert df.index.name == "timestamp" and str(df.index.tz) == "UTC" and df.index[0] == SAMPLE_EPOCH
    assert (np.diff(df.index.asi8) == timeframe_seconds(timeframe) * 10**9).all()
    pd.testing.assert_frame_equal(validate_ohlcv(df, timeframe), df, check_freq=False)
    o, h, lo, c, v = (df[k].to_numpy() for k in COLUMNS)
    assert (h >= np.maximum(o, c)).all() and (lo <= np.minimum(o, c)).all() and (lo > 0).all() and (v > 0).all()
    assert 0.8 < df["open"].iloc[0] / SAMPLE_SYMBOLS[symbol][0] < 1.25


@pytest.mark.parametrize("symbol", sorted(SAMPLE_SYMBOLS))
def test_sample_has_visible_regimes_and_its_configured_volatility(symbol):
    df = sample_ohlcv(symbol, "1h", 8000)
    r = np.log(df["close"]).diff().dropna()
    weekly_vol = r.rolling(168).std().dropna()
    assert weekly_vol.max() / weekly_vol.min() > 2  # calm and wild stretches (GARCH and regimes)
    two_week = np.log(df["close"]).diff(336).dropna()
    assert two_week.max() > 0.1 and two_week.min() < -0.1  # trending up and trending down
    yearly = r.std() * np.sqrt(365.25 * 24)
    assert 0.6 < yearly / SAMPLE_SYMBOLS[symbol][1] < 1.6


def test_sample_rejects_bad_arguments_with_hints():
    with pytest.raises(ConfigError, match="Did you mean 'BTC/USDT'"):
        sample_ohlcv("BTC/USD")
    with pytest.raises(ConfigError, match="positive integer"):
        sample_ohlcv(bars=0)
    with pytest.raises(ConfigError, match="before it"):
        sample_ohlcv(start="2023-12-31")
    with pytest.raises(ConfigError, match="Invalid timeframe"):
        sample_ohlcv(timeframe="1x")


# -- validate_ohlcv: each check and its repair -------------------------------------


@pytest.fixture
def bars():
    return sample_ohlcv("BTC/USDT", "1h", 20)


def _raises(df, match, **kw):
    with pytest.raises(DataError, match=match) as info:
        validate_ohlcv(df, "1h", **kw)
    return str(info.value)


def test_unsorted(bars):
    df = bars.iloc[[0, 1, 2, 4, 3, 5, 6]]
    msg = _raises(df, r"not sorted: row 4 \(2024-01-01 03:00")
    assert "repair=['sort']" in msg
    pd.testing.assert_frame_equal(validate_ohlcv(df, "1h", repair=["sort"]), bars.iloc[:7], check_freq=False)


def test_duplicated(bars):
    later = bars.iloc[[5]].assign(close=bars["close"].iloc[5] * 1.001, high=bars["high"].iloc[5] * 1.01)
    df = pd.concat([bars.iloc[:6], later, bars.iloc[6:10]])
    msg = _raises(df, r"Duplicated timestamp at row 5 \(2024-01-01 05:00")
    assert "repair=['dedupe']" in msg
    out = validate_ohlcv(df, "1h", repair=["dedupe"])
    assert out.index.is_unique and len(out) == 10
    assert out.loc[bars.index[5], "close"] == later["close"].iloc[0]  # keeps the last


def test_missing_bars(bars):
    df = bars.drop(bars.index[[7, 8, 12]])
    msg = _raises(df, r"3 missing 1h bar\(s\); the first gap follows row 6 \(2024-01-01 06:00")
    assert "repair=['fill_gaps']" in msg and "allow_gaps=True" in msg
    filled = validate_ohlcv(df, "1h", repair=["fill_gaps"])
    pd.testing.assert_index_equal(filled.index, bars.index, check_exact=True)
    flat = filled.loc[bars.index[[7, 8]]]
    prev_close = bars["close"].iloc[6]
    assert (flat[["open", "high", "low", "close"]] == prev_close).all().all() and (flat["volume"] == 0).all()
    pd.testing.assert_frame_equal(filled.drop(bars.index[[7, 8, 12]]), df, check_freq=False)
    pd.testing.assert_frame_equal(validate_ohlcv(df, "1h", allow_gaps=True), df, check_freq=False)
    pd.testing.assert_frame_equal(validate_ohlcv(filled, "1h"), filled, check_freq=False)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_infinite(bars, value):
    df = bars.copy()
    df.iloc[9, 3] = value
    msg = _raises(df, r"in \['close'\] at row 9 \(2024-01-01 09:00")
    assert "repair=['drop_invalid']" in msg
    out = validate_ohlcv(df, "1h", repair=["drop_invalid"], allow_gaps=True)
    pd.testing.assert_frame_equal(out, bars.drop(bars.index[9]), check_freq=False)


@pytest.mark.parametrize("column,factor,why", [
    ("high", 0.5, "high < low"),
    ("low", -1.0, "non-positive price"),
    ("open", 0.0, "non-positive price"),
    ("volume", -1.0, "negative volume"),
    ("close", 1.5, "do not enclose"),
])
def test_impossible_bars(bars, column, factor, why):
    df = bars.copy()
    df.loc[df.index[11], column] = df[column].iloc[11] * factor if column != "high" else df["low"].iloc[11] * factor
    msg = _raises(df, rf"Impossible bar at row 11 \(2024-01-01 11:00.*{why}")
    assert "repair=['drop_invalid']" in msg
    out = validate_ohlcv(df, "1h", repair=["drop_invalid"], allow_gaps=True)
    pd.testing.assert_frame_equal(out, bars.drop(bars.index[11]), check_freq=False)
    with pytest.raises(DataError, match="missing 1h bar"):  # dropping leaves a gap: never silent
        validate_ohlcv(df, "1h", repair=["drop_invalid"])


def test_off_grid(bars):
    idx = bars.index.tolist()
    idx[4] = idx[4] + pd.Timedelta(minutes=30)
    df = bars.set_axis(pd.DatetimeIndex(idx, name="timestamp"))
    msg = _raises(df, r"row 4 \(2024-01-01 04:30.*not on the 1h grid")
    assert "Resample" in msg
    with pytest.raises(DataError, match="grid"):
        validate_ohlcv(df, "1h", repair=True)  # no repair invents a resampling


def test_nat_timestamp(bars):
    idx = bars.index.tolist()
    idx[0] = pd.NaT
    df = bars.set_axis(pd.DatetimeIndex(idx, name="timestamp"))
    msg = _raises(df, r"Missing timestamp \(NaT\) at row 0")
    assert "repair=['drop_invalid']" in msg
    with pytest.raises(DataError, match="NaT"):
        validate_ohlcv(df)  # also without a timeframe
    pd.testing.assert_frame_equal(validate_ohlcv(df, "1h", repair=["drop_invalid"]), bars.iloc[1:], check_freq=False)


def test_non_numeric_value_names_the_row(bars):
    df = bars.astype({"volume": object})
    df.iloc[6, 4] = "12,5"
    msg = _raises(df, r"Non-numeric volume '12,5' at row 6")
    assert "to_numeric" in msg


def test_structure_errors_say_how_to_fix(bars):
    with pytest.raises(DataError, match=r"lacks column\(s\) \['volume'\].*Rename"):
        validate_ohlcv(bars.drop(columns="volume"))
    with pytest.raises(DataError, match="set_index"):
        validate_ohlcv(bars.reset_index())
    with pytest.raises(DataError, match="DataFrame"):
        validate_ohlcv(bars.to_numpy())
    with pytest.raises(DataError, match="Unknown repair"):
        validate_ohlcv(bars, repair=["fix_everything"])


def test_nothing_is_repaired_unless_asked(bars):
    broken = pd.concat([bars.iloc[[1, 0]], bars.iloc[2:]])
    with pytest.raises(DataError, match="not sorted"):
        validate_ohlcv(broken, "1h", repair=["dedupe", "fill_gaps", "drop_invalid"])
    clean = validate_ohlcv(bars.copy(), "1h", repair=True)
    pd.testing.assert_frame_equal(clean, bars, check_freq=False)  # repairs change nothing on valid data


def test_naive_index_is_taken_as_utc_and_extra_columns_dropped(bars):
    df = bars.tz_localize(None).assign(trades=1)
    out = validate_ohlcv(df, "1h")
    pd.testing.assert_frame_equal(out, bars, check_freq=False)


# -- property tests -------------------------------------------------------------------


@st.composite
def valid_frames(draw):
    n = draw(st.integers(3, 40))
    tf = draw(st.sampled_from(["1m", "5m", "1h", "1d"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    price = draw(st.floats(1e-6, 1e6))
    close = price * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = np.concatenate(([price], close[:-1]))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
    volume = rng.uniform(0, 1e6, n) * draw(st.sampled_from([0.0, 1.0]))
    start = pd.Timestamp("2020-01-01", tz="UTC") + draw(st.integers(0, 10**4)) * pd.Timedelta(timeframe_seconds(tf), "s")
    index = pd.date_range(start, periods=n, freq=pd.Timedelta(timeframe_seconds(tf), "s"), name="timestamp")
    index = index.as_unit("ns")  # validate_ohlcv normalizes to ns
    df = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index)
    return df, tf


CORRUPTIONS = ("swap", "duplicate", "delete", "nan", "inf", "high_below_low", "non_positive", "negative_volume", "off_grid")


def _corrupt(df: pd.DataFrame, kind: str, i: int) -> pd.DataFrame:
    df = df.copy()
    idx = df.index.tolist()
    step = idx[1] - idx[0]
    if kind == "swap":
        return df.iloc[[*range(i), i + 1, i, *range(i + 2, len(df))]]
    if kind == "duplicate":
        idx[i + 1] = idx[i]
        return df.set_axis(pd.DatetimeIndex(idx, name="timestamp"))
    if kind == "delete":
        return df.drop(df.index[i + 1])
    if kind == "off_grid":
        idx[i] = idx[i] + step / 3
        return df.set_axis(pd.DatetimeIndex(idx, name="timestamp"))
    col = {"nan": "open", "inf": "high", "high_below_low": "high", "non_positive": "close", "negative_volume": "volume"}[kind]
    value = {
        "nan": np.nan, "inf": np.inf, "high_below_low": df["low"].iloc[i] * 0.99,
        "non_positive": -df["close"].iloc[i], "negative_volume": -1.0,
    }[kind]
    df.iloc[i, df.columns.get_loc(col)] = value
    return df


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_frames())
def test_random_valid_frames_pass_unchanged(frame):
    df, tf = frame
    pd.testing.assert_frame_equal(validate_ohlcv(df, tf), df, check_freq=False)
    pd.testing.assert_frame_equal(validate_ohlcv(df, tf, repair=True), df, check_freq=False)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_frames(), st.sampled_from(CORRUPTIONS), st.data())
def test_random_single_corruptions_are_always_caught(frame, kind, data):
    df, tf = frame
    i = data.draw(st.integers(0, len(df) - 3))
    bad = _corrupt(df, kind, i)
    with pytest.raises(DataError) as info:
        validate_ohlcv(bad, tf)
    msg = str(info.value)
    assert re.search(r"row \d+ \(", msg), msg
    assert "repair=" in msg or "Resample" in msg, msg


# -- read_csv and the real candles ------------------------------------------------------


REAL = [("BITTREX_ETH-BTC_5m.csv", "5m", 5760), ("BINANCE_XRP-USDT-USDT_5m.csv", "5m", 1999)]


@pytest.mark.parametrize("name,timeframe,rows", REAL)
def test_real_candles_load(shared_data, name, timeframe, rows):
    df = read_csv(shared_data / "candles" / name, timeframe=timeframe)
    raw = pd.read_csv(shared_data / "candles" / name)
    assert len(df) == rows == len(raw)
    assert df.index[0] == pd.Timestamp(int(raw["timestamp"].iloc[0]), unit="ms", tz="UTC")
    np.testing.assert_array_equal(df["close"].to_numpy(), raw["close"].to_numpy())


def test_real_gappy_minute_candles_need_an_explicit_choice(shared_data):
    path = shared_data / "candles" / "BINANCE_XRP-ETH_1m.csv"
    with pytest.raises(DataError, match=r"1091 missing 1m bar.*CSV line = row \+ 2"):
        read_csv(path, timeframe="1m")
    sparse = read_csv(path, timeframe="1m", allow_gaps=True)
    filled = read_csv(path, timeframe="1m", repair=["fill_gaps"])
    assert len(sparse) == 2469 and len(filled) == 2469 + 1091
    assert (np.diff(filled.index.asi8) == 60 * 10**9).all()
    pd.testing.assert_frame_equal(filled.loc[sparse.index], sparse, check_freq=False)
    assert (filled.drop(sparse.index)["volume"] == 0).all()


def _write(tmp_path, text, name="c.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_csv_time_formats_and_column_names(tmp_path):
    iso = _write(tmp_path, "Date,Open,High,Low,Close,Volume\n2024-01-01 00:00,1,2,0.5,1.5,10\n2024-01-01 01:00,1.5,2,1,1.2,5\n")
    secs = _write(tmp_path, "time,open,high,low,close,volume\n1704067200,1,2,0.5,1.5,10\n1704070800,1.5,2,1,1.2,5\n", "s.csv")
    a, b = read_csv(iso, "1h"), read_csv(secs, "1h")
    pd.testing.assert_frame_equal(a, b)
    assert a.index[0] == pd.Timestamp("2024-01-01", tz="UTC") and a["close"].tolist() == [1.5, 1.2]


def test_read_csv_errors_name_the_file_and_row(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_csv(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="no time column"):
        read_csv(_write(tmp_path, "when,open,high,low,close,volume\n1,1,1,1,1,1\n"))
    with pytest.raises(DataError, match="not a time"):
        read_csv(_write(tmp_path, "timestamp,open,high,low,close,volume\nsoon,1,1,1,1,1\n"))
    bad = _write(tmp_path, "timestamp,open,high,low,close,volume\n1704067200000,1,2,0.5,1.5,10\n1704070800000,1.5,x,1,1.2,5\n")
    with pytest.raises(DataError, match=r"c\.csv: NaN or infinite value in \['high'\] at row 1 .*CSV line = row \+ 2"):
        read_csv(bad, "1h")
    assert len(read_csv(bad, "1h", repair=["drop_invalid"])) == 1


# -- load_ohlcv -------------------------------------------------------------------------


def test_load_ohlcv_sample_and_csv(tmp_path):
    df = load_ohlcv("SOL/USDT", "4h", start="2024-01-10", end="2024-01-20")
    assert df.index[0] == pd.Timestamp("2024-01-10", tz="UTC") and len(df) == 60
    pd.testing.assert_frame_equal(df, sample_ohlcv("SOL/USDT", "4h", 60, start="2024-01-10"))
    path = tmp_path / "x.csv"
    df.reset_index().assign(timestamp=lambda d: d["timestamp"].astype("int64") // 10**6).to_csv(path, index=False)
    pd.testing.assert_frame_equal(load_ohlcv(timeframe="4h", source="csv", path=path), df, check_freq=False)
    with pytest.raises(ConfigError, match="path="):
        load_ohlcv(source="csv")
