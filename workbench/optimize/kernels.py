"""Fused numba kernels for the built-in strategies (indicators, signals and portfolio in one pass)."""
from __future__ import annotations

from typing import Any

from ..backtest import BacktestConfig
from ..strategies import Strategy


def runner_for(strat: Strategy, config: BacktestConfig) -> Any:
    """A grid runner with run_grid's signature for `strat` under `config`, or None when unsupported."""
    return None


def why_unsupported(strat: Strategy, config: BacktestConfig) -> str:
    return f"no kernel for {strat.name!r}"
