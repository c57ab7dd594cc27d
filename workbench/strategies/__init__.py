"""Strategies: see :mod:`workbench.strategies.base` for the contract."""
from __future__ import annotations

import importlib

from ..errors import ConfigError, unknown
from .base import Decision, Param, Signals, Strategy, crossed_above, crossed_below, strategy
from .builtin import ema_rsi, rsi_reversion, sma_cross

BUILTINS: dict[str, Strategy] = {s.name: s for s in (sma_cross, rsi_reversion, ema_rsi)}


def get_strategy(name: str | Strategy) -> Strategy:
    """A built-in strategy by name, a user one by 'module:attribute', or the Strategy itself."""
    if isinstance(name, Strategy):
        return name
    if name in BUILTINS:
        return BUILTINS[name]
    if isinstance(name, str) and ":" in name:
        module, _, attr = name.partition(":")
        if not module or not attr:
            raise ConfigError(f"Cannot load strategy {name!r}: write it as 'package.module:attribute', e.g. 'my_strats:breakout'.")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError, TypeError) as exc:
            raise ConfigError(f"Cannot load strategy {name!r}: {exc}") from None
        if not isinstance(obj, Strategy):
            raise ConfigError(f"{name!r} is a {type(obj).__name__}, not a Strategy (use the @strategy decorator).")
        return obj
    raise unknown("strategy", str(name), list(BUILTINS) + ["<module>:<attribute>"])


__all__ = [
    "BUILTINS", "Decision", "Param", "Signals", "Strategy", "crossed_above", "crossed_below",
    "get_strategy", "strategy", "sma_cross", "rsi_reversion", "ema_rsi",
]
