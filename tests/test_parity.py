"""Parity: a paper replay gives the same trades as the vectorbt backtest.

Same entry and exit bars, sides, amounts and prices, same P&L with fees and
slippage, for every built-in strategy with SL/TP on and off, on the sample
data and on the real candles in ../shared/data.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.backtest import BacktestConfig, backtest
from workbench.data import read_csv, sample_ohlcv
from workbench.engine import DeploymentSpec, replay
from workbench.fills import Costs
from workbench.strategies import BUILTINS

COSTS = Costs(taker_fee=0.001, maker_fee=0.001, slippage=0.0005)
STOPS = {"off": (None, None), "on": (0.02, 0.05)}


def fine_market(symbol: str) -> dict:
    """A paper market whose ticks are too fine to matter: only the trading rules are compared.

    (Venue rounding is the one documented difference; see workbench.backtest.)
    """
    return {"symbol": symbol, "price_step": 1e-12, "amount_step": 1e-12, "min_amount": 1e-12}


def compare(strategy: str, symbol: str, df: pd.DataFrame, stops: str, direction: str = "long", sizing: dict | None = None):
    sl, tp = STOPS[stops]
    sizing = sizing or {"size_mode": "pct_equity", "size_pct": 0.5}
    risk = {"daily_loss_limit": None, "drawdown_limit": None, "max_open_positions": None, "max_leverage": None,
            "stop_loss": sl, "take_profit": tp, **sizing}
    cfg = BacktestConfig(costs=COSTS, direction=direction, sl=sl, tp=tp,
                         **({"size_pct": sizing["size_pct"]} if sizing["size_mode"] == "pct_equity"
                            else {"size_pct": None, "size_quote": sizing["size_quote"], "leverage": sizing.get("leverage", 1.0)}))
    pf = backtest(strategy, df, None, cfg)
    want = pf.trades.records_readable
    want = want[want["Status"] == "Closed"].reset_index(drop=True)
    res = replay(DeploymentSpec(strategy=strategy, symbols=(symbol,), timeframe=_tf(df), params=BUILTINS[strategy].defaults,
                                risk=risk, direction=direction, costs=COSTS), data={symbol: df},
                 markets=[fine_market(symbol)])
    got = res.trades
    assert len(want) >= 5, f"too few trades to compare ({len(want)})"
    assert len(got) == len(want), f"{len(got)} replay trades vs {len(want)} backtest trades"
    entry = pd.to_datetime(got["entry_at"], unit="s", utc=True)
    exit_ = pd.to_datetime(got["exit_at"], unit="s", utc=True)
    assert (entry.to_numpy() == pd.to_datetime(want["Entry Timestamp"], utc=True).to_numpy()).all(), "entry bars differ"
    assert (exit_.to_numpy() == pd.to_datetime(want["Exit Timestamp"], utc=True).to_numpy()).all(), "exit bars differ"
    assert list(got["side"]) == [d.lower() for d in want["Direction"]]
    np.testing.assert_allclose(got["amount"], want["Size"], rtol=1e-9)
    np.testing.assert_allclose(got["entry_price"], want["Avg Entry Price"], rtol=1e-9)
    np.testing.assert_allclose(got["exit_price"], want["Avg Exit Price"], rtol=1e-9)
    np.testing.assert_allclose(got["pnl"], want["PnL"], rtol=1e-7, atol=1e-9)
    if stops == "on":
        assert set(got["exit_reason"]) & {"stop_loss", "take_profit"}, "stops never fired: the test would prove nothing"
    return got


def _tf(df: pd.DataFrame) -> str:
    seconds = int((df.index[1] - df.index[0]).total_seconds())
    return f"{seconds // 3600}h" if seconds % 3600 == 0 else f"{seconds // 60}m"


@pytest.mark.parametrize("stops", ["off", "on"])
@pytest.mark.parametrize("strategy", sorted(BUILTINS))
def test_parity_on_sample(strategy, stops):
    compare(strategy, "BTC/USDT", sample_ohlcv("BTC/USDT", "1h", 3000), stops)


@pytest.mark.parametrize("stops", ["off", "on"])
@pytest.mark.parametrize("strategy", sorted(BUILTINS))
def test_parity_on_real_candles(strategy, stops, shared_data):
    df = read_csv(shared_data / "candles" / "BITTREX_ETH-BTC_5m.csv", timeframe="5m")
    compare(strategy, "ETH/BTC", df, stops)


@pytest.mark.parametrize("strategy", sorted(BUILTINS))
def test_parity_short_on_real_perpetual(strategy, shared_data):
    df = read_csv(shared_data / "candles" / "BINANCE_XRP-USDT-USDT_5m.csv", timeframe="5m")
    compare(strategy, "XRP/USDT:USDT", df, "on", direction="short",
            sizing={"size_mode": "fixed_quote", "size_quote": 200.0, "leverage": 1.0, "max_leverage": None})


def test_parity_fixed_quote_with_leverage_seed_004():
    df = sample_ohlcv("ETH/USDT", "1h", 3000)
    compare("ema_rsi", "ETH/USDT:USDT", df, "on",
            sizing={"size_mode": "fixed_quote", "size_quote": 200.0, "leverage": 10.0, "max_leverage": 10.0})
