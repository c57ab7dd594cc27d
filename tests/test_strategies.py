"""The strategy contract: the vectorized and bar-by-bar forms agree on every bar."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.data import sample_ohlcv
from workbench.errors import ConfigError
from workbench.strategies import BUILTINS, Param, Signals, get_strategy, strategy


@pytest.mark.parametrize("name", sorted(BUILTINS))
@pytest.mark.parametrize("symbol", ["BTC/USDT", "SOL/USDT"])
def test_decide_equals_signals_on_every_bar(name, symbol):
    strat = BUILTINS[name]
    df = sample_ohlcv(symbol, "1h", strat.warmup() + 700)
    sig = strat.signals(df)
    cols = [sig.entries, sig.exits, sig.short_entries, sig.short_exits]
    assert sum(int(c.sum()) for c in cols) > 10, "the sample should produce signals worth testing"
    for i in range(strat.warmup(), len(df)):
        d = strat.decide(df.iloc[: i + 1])
        got = (d.enter_long, d.exit_long, d.enter_short, d.exit_short)
        want = tuple(bool(c.iat[i]) for c in cols)
        assert got == want, f"{name} differs on bar {i} ({df.index[i]}): decide={got} signals={want}"
        assert d.confidence == pytest.approx(float(sig.confidence.iat[i]), abs=1e-6)


@pytest.mark.parametrize("name", sorted(n for n, s in BUILTINS.items() if s.last is not None))
@pytest.mark.parametrize("symbol, timeframe", [("BTC/USDT", "1h"), ("SOL/USDT", "1h"), ("ETH/USDT", "1m"), ("XRP/USDT", "15m")])
def test_fast_last_bar_form_equals_signals_on_every_bar(name, symbol, timeframe):
    """The live loop's fast form of a built-in decides exactly as its signals, bar by bar."""
    strat = BUILTINS[name]
    p = strat.validate_params()
    df = sample_ohlcv(symbol, timeframe, strat.warmup() + 3000)
    sig = strat.signals(df)
    cols = [c.to_numpy() for c in (sig.entries, sig.exits, sig.short_entries, sig.short_exits)]
    conf = sig.confidence.to_numpy()
    rows = [(0, *r) for r in df[["open", "high", "low", "close", "volume"]].itertuples(index=False, name=None)]
    assert sum(int(c.sum()) for c in cols) > 50
    for i in range(strat.warmup(), len(df)):
        *flags, c = strat.last(rows[i + 1 - strat.warmup(): i + 1], **p)
        assert tuple(flags) == tuple(bool(col[i]) for col in cols), f"{name} differs on bar {i}"
        if any(flags):
            assert c == pytest.approx(conf[i], abs=1e-9)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_signals_are_causal(name):
    """Appending future bars never changes a past signal."""
    strat = BUILTINS[name]
    df = sample_ohlcv("ETH/USDT", "4h", 1500)
    short, full = strat.signals(df.iloc[:1000]), strat.signals(df)
    for a, b in zip((short.entries, short.exits, short.short_entries, short.short_exits),
                    (full.entries, full.exits, full.short_entries, full.short_exits), strict=True):
        assert a.equals(b.iloc[:1000])


def test_confidence_in_unit_interval():
    for strat in BUILTINS.values():
        conf = strat.signals(sample_ohlcv("BTC/USDT", "1h", 2000)).confidence
        assert conf.between(0, 1).all()


def test_unknown_parameter_suggests_the_right_one():
    with pytest.raises(ConfigError, match="Did you mean 'fast'"):
        BUILTINS["sma_cross"].validate_params({"fsat": 10})


@pytest.mark.parametrize("bad", [{"fast": "ten"}, {"fast": float("nan")}, {"fast": 10.5}, {"fast": 40, "slow": 20}])
def test_bad_parameter_values_rejected(bad):
    with pytest.raises(ConfigError):
        BUILTINS["sma_cross"].validate_params(bad)


def test_grid_respects_constraint_and_ranges():
    grid = BUILTINS["sma_cross"].grid({"fast": [5, 10, 50], "slow": [20, 40]})
    assert {(g["fast"], g["slow"]) for g in grid} == {(5, 20), (5, 40), (10, 20), (10, 40)}
    full = BUILTINS["sma_cross"].grid()
    assert len(full) == 90 and all(g["fast"] < g["slow"] for g in full)


def test_user_strategy_in_a_few_lines():
    @strategy(n=Param(20, 10, 40, 10), warmup=lambda p: p["n"] + 1)
    def breakout(df, n):
        hi = df.high.rolling(n).max().shift()
        lo = df.low.rolling(n).min().shift()
        return Signals(entries=df.close > hi, exits=df.close < lo)

    df = sample_ohlcv("BTC/USDT", "1h", 400)
    sig = breakout.signals(df, {"n": 20})
    assert sig.entries.dtype == bool and sig.entries.any()
    d = breakout.decide(df, {"n": 20})
    assert d.enter_long == bool(sig.entries.iat[-1])
    assert get_strategy(breakout) is breakout


def test_get_strategy_errors():
    with pytest.raises(ConfigError, match="Did you mean 'sma_cross'"):
        get_strategy("sma_cros")
    with pytest.raises(ConfigError, match="Cannot load"):
        get_strategy("no_such_module_xyz:thing")
    for bad in (":", "mod:", ":attr", ".relative:thing"):  # ':' once reached importlib as an empty module name
        with pytest.raises(ConfigError, match="Cannot load"):
            get_strategy(bad)


def test_param_grid_and_coerce():
    p = Param(0.5, 0.1, 0.3 + 0.2, 0.1)
    assert p.grid() == [0.1, 0.2, 0.3, 0.4, 0.5]
    with pytest.raises(ConfigError):
        Param(5, 10, 20)
    assert np.isclose(Param(1.0, 0.5, 2.0, 0.5).coerce("x", 1), 1.0)
    assert isinstance(pd.Series([1]), pd.Series)


def test_a_user_strategy_can_bring_its_fast_form():
    def last(bars, n):
        closes = [b[4] for b in bars]
        up = len(closes) > n and closes[-1] > max(closes[-n - 1:-1])
        return up, False, False, False, 1.0

    @strategy(n=Param(3, 2, 10, 1), warmup=lambda p: p["n"] + 1, last=last)
    def breakout(df, n):
        return Signals(entries=df.close > df.close.rolling(n).max().shift(), exits=df.close < 0)

    df = sample_ohlcv("BTC/USDT", "1h", 300)
    sig = breakout.signals(df, {"n": 3})
    rows = [(0, *r) for r in df[["open", "high", "low", "close", "volume"]].itertuples(index=False, name=None)]
    got = [breakout.last(rows[i - 3: i + 1], n=3)[0] for i in range(3, len(df))]
    assert got == sig.entries.iloc[3:].tolist() and any(got)


def _signal_input(draw, st, index, confidence=False):
    """One field of a Signals as a strategy might return it: on the bars' index or not, Series, array, list, scalar or None."""
    n = len(index)
    values = st.floats(-2, 2) | st.just(float("nan")) | st.just(float("inf")) | st.just(-float("inf")) if confidence else \
        st.booleans() | st.just(float("nan")) | st.just(0.0) | st.just(1.0)
    vals = draw(st.lists(values, min_size=n, max_size=n))
    kind = draw(st.sampled_from(["series", "shifted", "range", "subset", "array", "list", "scalar", "none", "nullable", "object"]))
    if kind == "series":
        return pd.Series(vals, index=index)
    if kind == "shifted":  # labels that only partly match the bars
        return pd.Series(vals, index=index + pd.Timedelta(hours=draw(st.integers(-2, 2))))
    if kind == "range":
        return pd.Series(vals, index=range(n))
    if kind == "subset":
        k = draw(st.integers(0, n))
        return pd.Series(vals[:k], index=index[:k])
    if kind == "array":
        return np.array(vals, dtype=float)
    if kind == "list":
        return vals
    if kind == "scalar":
        return vals[-1]
    if kind == "nullable" and not confidence:
        return pd.Series([None if v != v else bool(v) for v in vals], index=index, dtype="boolean")
    if kind == "object":
        return pd.Series([None if v != v else v for v in vals], index=index, dtype=object)
    return None


def test_newest_is_the_last_row_of_aligned():
    """decide() reads Signals.newest: the same flags and confidence as aligned() on the last bar, whatever the strategy returned."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=400, deadline=None)
    @given(st.data(), st.integers(1, 6))
    def check(data, n):
        index = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
        fields = [_signal_input(data.draw, st, index) for _ in range(4)] + [_signal_input(data.draw, st, index, confidence=True)]
        if fields[0] is None:
            fields[0] = pd.Series(False, index=index)
        if fields[1] is None:
            fields[1] = pd.Series(False, index=index)
        sig = Signals(*fields)
        full = sig.aligned(index)
        want = (*(bool(s.iat[-1]) for s in (full.entries, full.exits, full.short_entries, full.short_exits)), float(full.confidence.iat[-1]))
        assert sig.newest(index) == want

    check()
