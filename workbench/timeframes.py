"""Timeframe strings ('1m', '4h', '1d') and their lengths."""
from __future__ import annotations

from .errors import ConfigError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
TIMEFRAMES = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d")


def timeframe_seconds(timeframe: str) -> int:
    """Length of one bar of `timeframe` in seconds ('1h' -> 3600)."""
    tf = str(timeframe).strip()
    try:
        n, unit = int(tf[:-1]), tf[-1]
        seconds = n * _UNITS[unit]
    except (ValueError, KeyError, IndexError):
        raise ConfigError(
            f"Invalid timeframe {timeframe!r}: use a number and a unit s/m/h/d/w, e.g. '1m', '4h', '1d'."
        ) from None
    if n <= 0:
        raise ConfigError(f"Invalid timeframe {timeframe!r}: the number must be positive.")
    return seconds


def timeframe_pandas(timeframe: str) -> str:
    """A pandas frequency string for `timeframe` ('1h' -> '3600s')."""
    return f"{timeframe_seconds(timeframe)}s"
