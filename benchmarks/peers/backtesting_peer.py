"""backtesting.py's side of the engine benchmark: SMA fast/slow cross, long only, SL/TP, fees.

Orders fill on the signal bar's close (``trade_on_close=True``), as in workbench. backtesting.py
trades whole units, so prices are scaled to a thousandth (a "milli-BTC" instrument): returns and
trade count are unchanged; the final equity is that of the scaled instrument.
"""
from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

PRICE_SCALE = 1000.0


def _sma(values: Any, n: int) -> np.ndarray:
    return pd.Series(values).rolling(n).mean().to_numpy()


def run(df: pd.DataFrame, fast: int = 10, slow: int = 30, sl: float = 0.02, tp: float = 0.04, fee: float = 0.001,
        size: float = 0.5, cash: float = 10_000.0) -> dict[str, Any]:
    """Backtest.run over `df` (open/high/low/close/volume); bars/s, trades, final equity."""
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover

    class SmaCross(Strategy):
        def init(self) -> None:
            self.f = self.I(_sma, self.data.Close, fast)
            self.s = self.I(_sma, self.data.Close, slow)

        def next(self) -> None:
            if crossover(self.f, self.s) and not self.position:
                price = self.data.Close[-1]
                self.buy(size=size, sl=price * (1 - sl), tp=price * (1 + tp))
            elif crossover(self.s, self.f) and self.position:
                self.position.close()

    data = df.rename(columns=str.title)
    data[["Open", "High", "Low", "Close"]] = data[["Open", "High", "Low", "Close"]] / PRICE_SCALE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = Backtest(data, SmaCross, cash=cash, commission=fee, trade_on_close=True, finalize_trades=True)
        t0 = time.perf_counter()
        stats = bt.run()
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "bars": len(df), "trades": int(stats["# Trades"]), "final_equity": float(stats["Equity Final [$]"])}
