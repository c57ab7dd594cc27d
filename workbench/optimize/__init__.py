"""Parameter optimization: grid search over symbols and walk-forward analysis.

    res = optimize("sma_cross", ["BTC/USDT", "ETH/USDT"], "1h")
    res.best()                 # {symbol: (params, metrics)}, min_trades guarded
    res.heatmap("fast", "slow")
    res.save("params")         # one ParamSet per symbol
    wf = walk_forward("sma_cross", "BTC/USDT", "1h", train_bars=2000, test_bars=500)
"""
from __future__ import annotations

from .grid import METRICS, NoQualifyingCombination, OptimizeResult, optimize
from .walkforward import WalkForwardResult, walk_forward

__all__ = ["METRICS", "NoQualifyingCombination", "OptimizeResult", "WalkForwardResult", "optimize", "walk_forward"]
