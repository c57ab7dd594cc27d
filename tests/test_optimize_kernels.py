"""Fused kernels: indicators bit-identical to pandas, every combination's metrics equal to the vectorbt path."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.backtest import BacktestConfig
from workbench.data import sample_ohlcv
from workbench.errors import ConfigError
from workbench.fills import Costs
from workbench.optimize import METRICS, kernels, optimize
from workbench.strategies import indicators


@pytest.fixture(scope="module")
def frames():
    return {s: sample_ohlcv(s, "1h", 1200) for s in ("BTC/USDT", "ETH/USDT")}


def close_cells(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Where two number arrays agree: equal (NaN and inf included) or within 1e-9 relative."""
    same = (x == y) | (np.isnan(x) & np.isnan(y))
    with np.errstate(invalid="ignore"):
        return same | (np.abs(np.where(same, 0.0, x - y)) <= 1e-9 * np.maximum(1.0, np.abs(np.where(same, 0.0, y))))


def assert_tables_match(a: pd.DataFrame, b: pd.DataFrame) -> None:
    bad = ~close_cells(a[list(METRICS)].to_numpy(), b[list(METRICS)].to_numpy())
    assert not bad.any(), a[bad.any(axis=1)].join(b[bad.any(axis=1)], rsuffix="_vbt").T


@pytest.mark.parametrize("period", [2, 7, 14, 30])
def test_ema_and_rsi_are_pandas_bit_for_bit(frames, period):
    close = frames["ETH/USDT"]["close"]
    np.testing.assert_array_equal(kernels.ema(close.to_numpy(), period), indicators.ema(close, period).to_numpy())
    np.testing.assert_array_equal(kernels.rsi(close.to_numpy(), period), indicators.rsi(close, period).to_numpy())
    flat = pd.Series(np.r_[np.full(50, 100.0), np.linspace(100, 90, 30), np.full(40, 90.0)])
    np.testing.assert_array_equal(kernels.rsi(flat.to_numpy(), period), indicators.rsi(flat, period).to_numpy())


GRIDS = {
    "rsi_reversion": {"period": [6, 14, 22], "oversold": [25, 35], "overbought": [65, 75]},
    "ema_rsi": {"fast": [5, 12], "slow": [20, 40], "rsi_period": [7, 14], "rsi_max": [60, 75]},
}
CONFIGS = {
    "long": BacktestConfig(),
    "sl-tp-slip": BacktestConfig(sl=0.02, tp=0.04, costs=Costs(taker_fee=0.0005, slippage=0.0005)),
    "short-sl-tp": BacktestConfig(direction="short", sl=0.02, tp=0.03),
    "quote-conf": BacktestConfig(min_confidence=0.7, size_pct=None, size_quote=3_000, sl=0.01),
}


@pytest.mark.parametrize("name", list(GRIDS))
@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_kernel_equals_vectorbt_on_every_combination(frames, name, config):
    kw = dict(data=frames, ranges=GRIDS[name], config=config, min_trades=0, progress=False)
    kernel = optimize(name, list(frames), "1h", engine="kernel", **kw)
    vbt = optimize(name, list(frames), "1h", engine="vectorbt", **kw)
    assert kernel.engine == "kernel" and vbt.engine == "vectorbt"
    assert (kernel.table["trades"] > 0).mean() > 0.25  # the grid actually trades
    pd.testing.assert_frame_equal(kernel.table.iloc[:, :-len(METRICS)], vbt.table.iloc[:, :-len(METRICS)])
    assert_tables_match(kernel.table, vbt.table)


def test_auto_engine_picks_kernels_for_builtins(frames):
    for name, ranges in GRIDS.items():
        assert optimize(name, ["BTC/USDT"], "1h", data=frames, ranges=ranges, progress=False).engine == "kernel"


def test_many_symbols_in_one_call_equal_one_symbol_at_a_time(frames):
    more = {**frames, "SOL/USDT": sample_ohlcv("SOL/USDT", "1h", 700)}  # a different length too
    together = optimize("ema_rsi", list(more), "1h", data=more, ranges=GRIDS["ema_rsi"], min_trades=0,
                        progress=False).table
    alone = pd.concat([optimize("ema_rsi", [s], "1h", data=more, ranges=GRIDS["ema_rsi"], min_trades=0,
                                progress=False).table for s in more], ignore_index=True)
    pd.testing.assert_frame_equal(together, alone, check_exact=True)


def test_small_memory_budget_splits_calls_without_changing_results(frames, monkeypatch):
    full = optimize("sma_cross", list(frames), "1h", data=frames, min_trades=0, progress=False).table
    calls = []
    real = kernels.grid_kernel

    def counting(*args):
        calls.append(len(args[8]))  # series in this call
        return real(*args)

    monkeypatch.setattr(kernels, "MAX_SERIES_CELLS", 1200 * 4)
    monkeypatch.setattr(kernels, "grid_kernel", counting)
    small = optimize("sma_cross", list(frames), "1h", data=frames, min_trades=0, progress=False).table
    assert len(calls) > 2 and max(calls) <= 4
    pd.testing.assert_frame_equal(small, full, check_exact=True)


def test_user_strategy_with_rsi_still_goes_to_vectorbt(frames):
    from workbench.strategies import Param, Signals, strategy
    from workbench.strategies.base import crossed_above, crossed_below

    @strategy(period=Param(14, 6, 30, 2), warmup=lambda p: 30 * int(p["period"]) + 1)
    def my_rsi(df, period):
        r = indicators.rsi(df.close, period)
        return Signals(entries=crossed_below(r, 30), exits=crossed_above(r, 70))

    res = optimize(my_rsi, ["BTC/USDT"], "1h", data=frames, ranges={"period": [6, 14]}, min_trades=0,
                   progress=False)
    builtin = optimize("rsi_reversion", ["BTC/USDT"], "1h", data=frames,
                       ranges={"period": [6, 14], "oversold": [30], "overbought": [70]}, min_trades=0, progress=False)
    assert res.engine == "vectorbt"
    assert_tables_match(res.table, builtin.table)  # same signals (confidence gate off): same metrics


@pytest.mark.parametrize("name", ["sma_cross", *GRIDS])
@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_kernel_value_curve_equals_vectorbts_portfolio_value(frames, name, config):
    """The winner's equity curve drawn without vectorbt: every bar's value equals Portfolio.value to 1e-9."""
    from workbench.backtest import backtest
    from workbench.strategies import get_strategy

    strat = get_strategy(name)
    grid = {"sma_cross": {"fast": [5, 10], "slow": [20, 40]}, **GRIDS}[name]
    df = frames["ETH/USDT"]
    moves = 0
    for combo in ({k: v[0] for k, v in grid.items()}, {k: v[-1] for k, v in grid.items()}):
        got = kernels.value_series(strat, df, combo, config)
        want = backtest(strat, df, combo, config).value()
        assert got is not None and got.index.equals(want.index)
        np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-9, atol=1e-9)
        moves += int((got.diff().fillna(0) != 0).sum())
    assert moves > 10  # they traded: the curves move


def assert_frames_close(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same columns and non-number cells; numbers as :func:`close_cells`."""
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    nums = a.select_dtypes("number").columns
    pd.testing.assert_frame_equal(a.drop(columns=nums), b.drop(columns=nums))
    ok = close_cells(a[nums].to_numpy(float), b[nums].to_numpy(float))
    assert ok.all(), a[~ok.all(axis=1)].T


@pytest.mark.parametrize("name", ["sma_cross", *GRIDS])
@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_walk_forward_on_kernels_equals_vectorbt(frames, name, config, monkeypatch):
    """Out-of-sample folds run on the fused kernel: every fold's choice and metrics, the stitched equity and
    its overall metrics equal the vectorbt walk-forward's (1e-9)."""
    from workbench.optimize import walk_forward, walkforward

    grid = {"sma_cross": {"fast": [5, 10], "slow": [20, 40]}, **GRIDS}[name]
    kw = dict(data=frames["ETH/USDT"], train_bars=400, test_bars=200, ranges=grid, config=config, min_trades=1,
              progress=False)
    vbt = walk_forward(name, "ETH/USDT", "1h", engine="vectorbt", **kw)
    with monkeypatch.context() as m:  # the kernel's folds must not fall back to vectorbt's backtest
        m.setattr(walkforward, "simulate", lambda *a, **k: pytest.fail("a fold fell back to vectorbt"))
        kernel = walk_forward(name, "ETH/USDT", "1h", engine="kernel", **kw)
    assert len(kernel.folds) == 4 and kernel.folds["oos_trades"].sum() > 0
    assert_frames_close(kernel.folds, vbt.folds)
    assert kernel.equity.index.equals(vbt.equity.index)
    np.testing.assert_allclose(kernel.equity.to_numpy(), vbt.equity.to_numpy(), rtol=1e-9)
    assert kernel.metrics.keys() == vbt.metrics.keys()
    for k, v in vbt.metrics.items():
        assert kernel.metrics[k] == pytest.approx(v, rel=1e-9, nan_ok=True), k


def test_out_of_sample_ends_flat_on_the_last_bar(frames):
    """A test window's open position is closed on its last bar, whatever the signal says."""
    from workbench.strategies import get_strategy

    strat, df, config = get_strategy("sma_cross"), frames["BTC/USDT"], BacktestConfig()
    combo = {"fast": 5, "slow": 20}
    for end in range(300, len(df)):  # the first window whose run still holds on its last two bars without the rule
        window = df.iloc[:end]
        still_open, open_value = kernels._run_one(strat, window, combo, config, 200, close_last=False)
        if open_value.iloc[-1] != open_value.iloc[-2] != open_value.iloc[-3]:
            break
    else:
        pytest.fail("no window ends in a position")
    oos, value = kernels.out_of_sample(strat, window, 200, combo, config)
    assert value.index.equals(df.index[end - 200: end]) and oos["final_value"] == value.iloc[-1]
    np.testing.assert_array_equal(value.to_numpy()[:-1], open_value.to_numpy()[:-1])
    assert oos["final_value"] < still_open["final_value"]  # the exit's fee was paid on the last bar
    assert oos["trades"] == still_open["trades"]  # an open trade counts too (as vectorbt counts it)
    with pytest.raises(ConfigError, match="from 2 to the frame's"):
        kernels.out_of_sample(strat, window, len(window) + 1, combo, config)


@pytest.mark.parametrize("freq", ["h", "2h", "D"])
def test_a_bar_period_written_as_vectorbt_reads_it(frames, freq):
    """config.freq as vectorbt takes it ('h' as well as '1h'): the kernel annualizes the Sharpe ratio the same."""
    kw = dict(data=frames, ranges={"fast": [5, 10], "slow": [20, 40]}, config=BacktestConfig(freq=freq), min_trades=0,
              progress=False)
    kernel = optimize("sma_cross", list(frames), "1h", engine="kernel", **kw)
    vbt = optimize("sma_cross", list(frames), "1h", engine="vectorbt", **kw)
    assert_tables_match(kernel.table, vbt.table)
    assert kernel.table["sharpe"].notna().all()
