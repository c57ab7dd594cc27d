"""workbench: research in notebooks, then paper, then live, with one strategy definition.

The ten-minute API::

    import workbench as wb
    df = wb.load_ohlcv("BTC/USDT", "1h")                  # embedded sample by default
    pf = wb.backtest("sma_cross", df, {"fast": 10, "slow": 30})
    res = wb.optimize("sma_cross", ["BTC/USDT"], "1h")    # grid; res.best(), res.heatmap(), res.save()

Heavy libraries (vectorbt, ccxt, SQLAlchemy) load only when first used.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from .startup import defer_slow_imports as _defer_slow_imports  # noqa: E402

_defer_slow_imports()  # a kernel that shows a plotly figure would otherwise build IRI grammars for 2-3 s

_LAZY = {
    "load_ohlcv": "workbench.data",
    "sample_ohlcv": "workbench.data",
    "read_csv": "workbench.data",
    "validate_ohlcv": "workbench.data",
    "Param": "workbench.strategies",
    "Signals": "workbench.strategies",
    "Strategy": "workbench.strategies",
    "strategy": "workbench.strategies",
    "get_strategy": "workbench.strategies",
    "crossed_above": "workbench.strategies",
    "crossed_below": "workbench.strategies",
    "backtest": "workbench.backtest",
    "BacktestConfig": "workbench.backtest",
    "Costs": "workbench.fills",
    "ParamStore": "workbench.params",
    "optimize": "workbench.optimize",
    "walk_forward": "workbench.optimize",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
