"""The optimizer: its table equals direct backtests, winners are guarded and saved, walk-forward never peeks."""
from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd
import pytest

from workbench.backtest import BacktestConfig, backtest, metrics
from workbench.data import sample_ohlcv
from workbench.errors import ConfigError
from workbench.fills import Costs
from workbench.optimize import METRICS, NoQualifyingCombination, optimize, walk_forward
from workbench.params import ParamStore
from workbench.strategies import Param, Signals, strategy

BARS = 1500
RANGES = {"fast": [5, 10, 20], "slow": [30, 60]}


@pytest.fixture(scope="module")
def frames():
    return {s: sample_ohlcv(s, "1h", BARS) for s in ("BTC/USDT", "ETH/USDT")}


@pytest.fixture(scope="module")
def result(frames):
    return optimize("sma_cross", list(frames), "1h", data=frames, ranges=RANGES, min_trades=5, progress=False,
                    engine="vectorbt")


def assert_rows_match_direct(res, frames, strat, config, rows=None):
    table = res.table if rows is None else res.table.iloc[rows]
    assert len(table)
    for _, row in table.iterrows():
        params = {k: row[k] for k in strat.params}
        direct = metrics(backtest(strat, frames[row["symbol"]], params, config))
        for m in METRICS:
            a, b = float(row[m]), direct[m]
            assert a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9 * max(1.0, abs(b)), (params, m, a, b)


CONFIGS = [
    BacktestConfig(),
    BacktestConfig(sl=0.02, tp=0.04, costs=Costs(taker_fee=0.0005, slippage=0.0005)),
    BacktestConfig(sl=0.015, min_confidence=0.7, size_pct=0.5),
]


@pytest.mark.parametrize("config", CONFIGS, ids=["long", "sl-tp-slip", "conf-half"])
def test_table_equals_direct_backtest(frames, config):
    from workbench.strategies import sma_cross

    res = optimize("sma_cross", list(frames), "1h", data=frames, ranges=RANGES, config=config, progress=False,
                   engine="vectorbt")
    assert len(res.table) == 2 * 6
    assert list(res.table.columns[:3]) == ["symbol", "fast", "slow"]
    assert_rows_match_direct(res, frames, sma_cross, config)


@pytest.mark.slow  # a direct short backtest costs vectorbt another ~15 s numba compile
@pytest.mark.parametrize("config", [
    BacktestConfig(direction="short", sl=0.02, tp=0.04, costs=Costs(taker_fee=0.0005, slippage=0.0005)),
    BacktestConfig(direction="both", size_pct=None, size_quote=2_000, tp=0.03),
], ids=["short", "both"])
def test_table_equals_direct_backtest_short(frames, config):
    from workbench.strategies import sma_cross

    res = optimize("sma_cross", list(frames), "1h", data=frames, ranges=RANGES, config=config, progress=False,
                   engine="vectorbt")
    assert_rows_match_direct(res, frames, sma_cross, config)


def test_chunking_does_not_change_results(frames, result):
    res = optimize("sma_cross", list(frames), "1h", data=frames, ranges=RANGES, min_trades=5, progress=False,
                   chunk_size=1, engine="vectorbt")
    pd.testing.assert_frame_equal(res.table, result.table)


def test_best_never_picks_a_combination_under_min_trades(result):
    top = result.table.loc[result.table["sharpe"].idxmax()]
    guard = int(top["trades"]) + 1
    best = result.best(min_trades=guard)
    assert best, "some combination should have more trades than the top-sharpe one"
    for sym, (params, m) in best.items():
        rows = result.table[(result.table["symbol"] == sym) & (result.table["trades"] >= guard)]
        assert m["trades"] >= guard
        assert m["sharpe"] == rows["sharpe"].max()
        assert params == {k: int(v) for k, v in rows.loc[rows["sharpe"].idxmax(), ["fast", "slow"]].items()}
    unguarded = result.best(min_trades=0)[top["symbol"]][1]
    assert unguarded["sharpe"] == top["sharpe"]


def test_best_explains_when_nothing_qualifies(result):
    too_many = int(result.table["trades"].max()) + 1
    with pytest.raises(NoQualifyingCombination, match="Lower min_trades"):
        result.best(min_trades=too_many)
    assert result.best(min_trades=too_many, skip_missing=True) == {}
    assert result.missing(min_trades=too_many) == result.symbols


def test_best_by_other_metric(result):
    params, m = result.best(metric="total_return")["ETH/USDT"]
    rows = result.table[(result.table["symbol"] == "ETH/USDT") & (result.table["trades"] >= 5)]
    assert m["total_return"] == rows["total_return"].max()


def test_save_writes_loadable_param_sets(result, tmp_path, frames):
    store = ParamStore(tmp_path / "params")
    paths = result.save(store)
    assert len(paths) == 2 and all(p.exists() for p in paths)
    best = result.best()
    for sym in frames:
        rec = store.load_latest("sma_cross", sym, "1h")
        assert rec.params == best[sym][0]
        assert rec.metrics["sharpe"] == pytest.approx(best[sym][1]["sharpe"])
        assert rec.freshness == "fresh"
        assert pd.Timestamp(rec.data_start) == frames[sym].index[0]
        assert pd.Timestamp(rec.data_end) == frames[sym].index[-1]
        assert rec.optimizer["metric"] == "sharpe" and rec.optimizer["min_trades"] == 5
        assert rec.optimizer["ranges"] == RANGES
        assert rec.optimizer["config"]["costs"]["taker_fee"] == 0.001
    assert result.save(tmp_path / "by_path")[0].parent == tmp_path / "by_path" / "sma_cross"


def test_figures(result):
    import plotly.graph_objects as go

    fig = result.heatmap("fast", "slow", symbol="ETH/USDT")
    assert isinstance(fig, go.Figure)
    assert np.asarray(fig.data[0].z).shape == (2, 3)
    eq = result.equity("BTC/USDT")
    assert isinstance(eq, go.Figure) and len(eq.data[0].y) == BARS
    with pytest.raises(ConfigError, match="Did you mean 'fast'"):
        result.heatmap("fats", "slow")


@strategy(
    lookback=Param(20, 10, 60, 10),
    hold=Param(10, 5, 20, 5),
    warmup=lambda p: int(p["lookback"]) + int(p["hold"]) + 1,
)
def breakout(df, lookback, hold):
    """Long on a new `lookback` high, out after `hold` bars below the entry trigger."""
    high = df.close.rolling(int(lookback)).max().shift()
    up = df.close > high
    return Signals(entries=up, exits=~up.rolling(int(hold)).max().astype(bool))


def test_user_strategy(frames):
    config = BacktestConfig(tp=0.03)
    res = optimize(breakout, ["BTC/USDT"], "1h", data=frames, ranges={"lookback": [10, 40], "hold": [5, 15]},
                   config=config, min_trades=1, progress=False)
    assert res.engine == "vectorbt"
    assert list(res.table.columns[:3]) == ["symbol", "lookback", "hold"]
    assert_rows_match_direct(res, frames, breakout, config)
    assert res.best()["BTC/USDT"][0]["lookback"] in (10, 40)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ranges": {"fats": [5]}}, "Did you mean 'fast'"),
        ({"ranges": {"fast": "5,10"}}, "must be a list of numbers"),
        ({"ranges": {"fast": []}}, "empty range"),
        ({"ranges": {"fast": [5.5]}}, "whole number"),
        ({"ranges": {"fast": [40], "slow": [20]}}, "satisfies its constraint"),
        ({"ranges": {"fast": [300]}}, "outside its declared range"),
        ({"ranges": [5, 10]}, "ranges must be a dict"),
        ({"metric": "sharp"}, "Did you mean 'sharpe'"),
        ({"min_trades": -1}, "min_trades"),
        ({"symbols": ["SOL/USDT"]}, "no frame for 'SOL/USDT'"),
        ({"engine": "rust"}, "Unknown engine"),
    ],
)
def test_bad_input_raises_config_error(frames, kwargs, message):
    kwargs = {"symbols": ["BTC/USDT"], **kwargs}
    with pytest.raises(ConfigError, match=message):
        optimize("sma_cross", timeframe="1h", data=frames, progress=False, **kwargs)


def test_walk_forward_folds_tile_and_never_train_on_their_test(frames):
    df = frames["BTC/USDT"]
    kw = dict(train_bars=600, test_bars=300, ranges=RANGES, min_trades=2, progress=False, engine="vectorbt")
    wf = walk_forward("sma_cross", "BTC/USDT", "1h", data=df, **kw)
    f = wf.folds
    assert len(f) == (BARS - 600) // 300
    assert (f["train_end"] < f["test_start"]).all()
    assert (f["test_start"].iloc[1:].to_numpy() > f["test_end"].iloc[:-1].to_numpy()).all()
    assert f["test_start"].iloc[0] == df.index[600]
    assert len(wf.equity) == len(f) * 300 and wf.equity.index.is_unique and wf.equity.index.is_monotonic_increasing
    assert wf.metrics["trades"] == f["oos_trades"].sum()
    assert wf.metrics["total_return"] == pytest.approx(wf.equity.iloc[-1] / 10_000 - 1)

    # Scramble the prices of the last test window: no in-sample choice may change.
    shocked = df.copy()
    last = shocked.index >= f["test_start"].iloc[-1]
    rng = np.random.default_rng(1)
    shocked.loc[last, ["open", "high", "low", "close"]] *= rng.uniform(0.8, 1.2, (int(last.sum()), 1))
    wf2 = walk_forward("sma_cross", "BTC/USDT", "1h", data=shocked, **kw)
    insample = ["fast", "slow"] + [c for c in f.columns if c.startswith("is_")]
    pd.testing.assert_frame_equal(wf2.folds[insample], f[insample])
    assert wf2.folds["oos_total_return"].iloc[-1] != f["oos_total_return"].iloc[-1]

    # Each fold's choice is the optimizer's choice on exactly its training window.
    k = 1
    train = df.loc[f["train_start"].iloc[k] : f["train_end"].iloc[k]]
    alone = optimize("sma_cross", ["BTC/USDT"], "1h", data={"BTC/USDT": train}, ranges=RANGES, min_trades=2,
                     progress=False, engine="vectorbt").best()["BTC/USDT"][0]
    assert alone == {p: int(f[p].iloc[k]) for p in ("fast", "slow")}
    assert wf.plot().data


@pytest.mark.parametrize("returns", [
    np.random.default_rng(3).normal(0.001, 0.01, 500),
    np.r_[np.nan, np.random.default_rng(4).normal(0, 0.02, 50), np.nan],
    np.zeros(20), np.full(20, 0.01), np.array([0.01]), np.array([np.nan, 0.02]),
], ids=["normal", "nans", "zeros", "constant", "one", "one-valid"])
@pytest.mark.parametrize("freq", ["1h", "h", "1D", "D", "15min", pd.Timedelta("4h")])
def test_walk_forward_sharpe_is_vectorbts(returns, freq):
    """The stitched equity's Sharpe equals vectorbt's returns accessor for every way a bar period is written."""
    import vectorbt  # noqa: F401  (the returns accessor)

    from workbench.optimize.walkforward import sharpe_ratio

    index = pd.date_range("2024-01-01", periods=len(returns), freq=freq)
    want = pd.Series(returns, index=index).vbt.returns(freq=freq).sharpe_ratio()
    assert sharpe_ratio(returns, freq) == pytest.approx(want, rel=1e-12, nan_ok=True)


def test_walk_forward_sharpe_without_a_bar_period_is_nan():
    from workbench.optimize.walkforward import sharpe_ratio

    assert math.isnan(sharpe_ratio(np.random.default_rng(5).normal(0, 0.01, 50), None))


def test_walk_forward_needs_enough_bars(frames):
    with pytest.raises(ConfigError, match="at least train_bars"):
        walk_forward("sma_cross", "BTC/USDT", "1h", data=frames["BTC/USDT"], train_bars=1400, test_bars=200,
                     progress=False)


def test_cli_optimizes_sample_and_writes_params(tmp_path, capsys):
    from workbench.cli import optimize as cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args([
        "optimize", "--strategy", "sma_cross", "--symbols", "BTC/USDT,ETH/USDT", "--timeframe", "1h",
        "--bars", "1200", "--range", "fast=5:15:5", "--range", "slow=30,60", "--min-trades", "3",
        "--sl", "0.03", "--params-dir", str(tmp_path), "--no-progress",
    ])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    store = ParamStore(tmp_path)
    for sym in ("BTC/USDT", "ETH/USDT"):
        rec = store.load_latest("sma_cross", sym, "1h")
        assert rec.params["fast"] in (5, 10, 15) and rec.params["slow"] in (30, 60)
        assert rec.optimizer["config"]["sl"] == 0.03
        assert sym in out and str(rec.path) in out


def test_cli_range_parsing():
    from workbench.cli.optimize import parse_range

    assert parse_range("fast=5:20:5") == ("fast", [5, 10, 15, 20])
    assert parse_range("x=0.5,1.5") == ("x", [0.5, 1.5])
    for bad in ("fast", "fast=", "fast=9:1", "fast=1:5:0", "fast=a,b"):
        with pytest.raises(ConfigError, match="--range"):
            parse_range(bad)


@pytest.mark.parametrize("config", [
    BacktestConfig(),
    BacktestConfig(sl=0.02, tp=0.04, costs=Costs(taker_fee=0.0005, slippage=0.0005)),
    BacktestConfig(direction="short", sl=0.02, tp=0.04, costs=Costs(taker_fee=0.0005, slippage=0.0005)),
    BacktestConfig(direction="short", size_pct=0.5, tp=0.03),
    BacktestConfig(min_confidence=0.7, size_pct=None, size_quote=3_000, sl=0.01),
], ids=["long", "sl-tp-slip", "short-sl-tp", "short-half", "quote-conf"])
def test_kernel_equals_vectorbt_on_every_combination(frames, config):
    kw = dict(data=frames, config=config, min_trades=0, progress=False)
    kernel = optimize("sma_cross", list(frames), "1h", engine="kernel", **kw)
    vbt = optimize("sma_cross", list(frames), "1h", engine="vectorbt", **kw)
    assert kernel.engine == "kernel" and vbt.engine == "vectorbt"
    assert len(kernel.table) == 2 * 90
    a, b = kernel.table[list(METRICS)].to_numpy(), vbt.table[list(METRICS)].to_numpy()
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(invalid="ignore"):
            close = np.abs(np.where(same, 0.0, a - b)) <= 1e-9 * np.maximum(1.0, np.abs(np.where(same, 0.0, b)))
    assert (same | close).all()
    pd.testing.assert_frame_equal(kernel.table[["symbol", "fast", "slow"]], vbt.table[["symbol", "fast", "slow"]])


def test_kernel_rolling_mean_is_pandas_bit_for_bit(frames):
    from workbench.optimize.kernels import rolling_mean

    close = frames["ETH/USDT"]["close"]
    for w in (5, 37, 200):
        np.testing.assert_array_equal(rolling_mean(close.to_numpy(), w), close.rolling(w).mean().to_numpy())


def test_engine_choice(frames):
    auto = optimize("sma_cross", ["BTC/USDT"], "1h", data=frames, ranges=RANGES, progress=False)
    assert auto.engine == "kernel"
    both = BacktestConfig(direction="both", size_pct=None, size_quote=1_000)
    assert optimize("sma_cross", ["BTC/USDT"], "1h", data=frames, ranges=RANGES, config=both,
                    progress=False).engine == "vectorbt"
    with pytest.raises(ConfigError, match="No fused kernel"):
        optimize(breakout, ["BTC/USDT"], "1h", data=frames, progress=False, engine="kernel")


def test_winners_equity_of_a_builtin_needs_no_vectorbt():
    """A built-in's optimization, its winner's equity curve and its walk-forward run on the fused kernels alone (a
    fresh interpreter never imports vectorbt, seconds of a notebook's run), and the curve is the vectorbt backtest's
    value."""
    import subprocess
    import sys

    code = (
        "import sys, json\n"
        "from workbench.optimize import optimize\n"
        "res = optimize('sma_cross', ['BTC/USDT'], '1h', bars=800, min_trades=1, progress=False)\n"
        "fig = res.equity('BTC/USDT')\n"
        "from workbench.optimize import walk_forward\n"
        "wf = walk_forward('sma_cross', 'BTC/USDT', '1h', bars=800, train_bars=400, test_bars=200, min_trades=1,"
        " progress=False)\n"
        "wf.plot()\n"
        "print(json.dumps({'engine': res.engine, 'vectorbt': 'vectorbt' in sys.modules, 'y': list(fig.data[0].y),"
        " 'winner': res.winner('BTC/USDT'), 'folds': len(wf.folds)}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True)
    import json

    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["engine"] == "kernel" and out["vectorbt"] is False and out["folds"] == 2
    from workbench.strategies import get_strategy

    want = backtest(get_strategy("sma_cross"), sample_ohlcv("BTC/USDT", "1h", 800), out["winner"], BacktestConfig()).value()
    np.testing.assert_allclose(out["y"], want.to_numpy(), rtol=1e-9)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_bar_freq_is_the_pandas_median_gap(unit):
    """The annualizing bar period (both engines use it) is pandas' median gap of the first 1000 bars, truncated to the
    index's unit, also where the median falls between two gaps or the bars are irregular."""
    from workbench.backtest import bar_freq

    rng = np.random.default_rng(7)
    for n in (2, 3, 4, 11, 1500):
        steps = rng.integers(1, 4, n - 1) * 1_001 + rng.integers(0, 2, n - 1)
        index = pd.DatetimeIndex(pd.to_datetime(np.cumsum(np.r_[1_700_000_000_000, steps]), unit="ms")).as_unit(unit)
        head = index[:1000]
        want = pd.Timedelta((head[1:] - head[:-1]).median())
        got = bar_freq(pd.DataFrame(index=index), BacktestConfig())
        assert got == want and str(got) == str(want)
    with_nat = pd.DatetimeIndex(["2024-01-01 00:00", None, "2024-01-01 00:02", "2024-01-01 00:03"]).as_unit(unit)
    assert bar_freq(pd.DataFrame(index=with_nat), BacktestConfig()) == pd.Timedelta(minutes=1)
    assert bar_freq(pd.DataFrame(index=with_nat), BacktestConfig(freq="1h")) == "1h"
