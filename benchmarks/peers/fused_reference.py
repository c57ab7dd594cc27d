"""The hand-fused reference of issue #8: an SMA-cross grid in one numba pass, parallel over combinations.

Written the way a speed-minded quant would write one grid by hand, with no
workbench code: per combination (``prange``), both SMAs as running sums,
the crossover, an all-in long-only portfolio filling on the signal bar's
close with a proportional fee, and the total return, all in one loop over
the bars. It computes only the total return and the trade count (no Sharpe,
drawdown or win rate, no stops, slippage, sizing or confidence options), so
it is the floor the workbench kernel is measured against, not a substitute.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def sma_cross_grid(close: np.ndarray, fast: np.ndarray, slow: np.ndarray, fee: float, init_cash: float) -> np.ndarray:
    """(total_return, trades) per (fast[k], slow[k]) combination: rows of 2."""
    n = close.shape[0]
    out = np.empty((fast.shape[0], 2))
    for k in prange(fast.shape[0]):
        wf, ws = fast[k], slow[k]
        sf = 0.0
        ss = 0.0
        prev_diff = np.nan
        cash = init_cash
        units = 0.0
        trades = 0
        for i in range(n):
            c = close[i]
            sf += c
            ss += c
            if i >= wf:
                sf -= close[i - wf]
            if i >= ws:
                ss -= close[i - ws]
            if i + 1 < ws:
                continue
            diff = sf / wf - ss / ws
            if units == 0.0:
                if diff > 0.0 and prev_diff <= 0.0:
                    units = cash / (c * (1.0 + fee))
                    cash = 0.0
            elif diff < 0.0 and prev_diff >= 0.0:
                cash = units * c * (1.0 - fee)
                units = 0.0
                trades += 1
            prev_diff = diff
        if units != 0.0:
            trades += 1  # an open trade counts, as in vectorbt
        out[k, 0] = (cash + units * close[n - 1]) / init_cash - 1.0
        out[k, 1] = trades
    return out


def run(close: np.ndarray, fast: list[int], slow: list[int], fee: float = 0.001, init_cash: float = 10_000.0) -> np.ndarray:
    """The reference over the (fast, slow) pairs; `close` as float64."""
    return sma_cross_grid(np.ascontiguousarray(close, dtype=np.float64), np.asarray(fast, dtype=np.int64),
                          np.asarray(slow, dtype=np.int64), float(fee), float(init_cash))
