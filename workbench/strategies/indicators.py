"""Causal indicators shared by the built-in strategies (and by users)."""
from __future__ import annotations

import pandas as pd


def sma(close: pd.Series, period: int) -> pd.Series:
    """Simple moving average (NaN until `period` bars)."""
    return close.rolling(int(period), min_periods=int(period)).mean()


def ema(close: pd.Series, period: int) -> pd.Series:
    """Exponential moving average, alpha = 2/(period+1), NaN for the first period-1 bars."""
    out = close.ewm(span=int(period), adjust=False).mean()
    out.iloc[: int(period) - 1] = float("nan")
    return out


def rsi(close: pd.Series, period: int) -> pd.Series:
    """Wilder's relative strength index in [0, 100], NaN until `period` bars."""
    delta = close.diff()
    gain = delta.clip(lower=0.0)
    loss = -delta.clip(upper=0.0)
    alpha = 1.0 / int(period)
    avg_gain = gain.ewm(alpha=alpha, adjust=False).mean()
    avg_loss = loss.ewm(alpha=alpha, adjust=False).mean()
    rs = avg_gain / avg_loss
    out = 100.0 - 100.0 / (1.0 + rs)
    out = out.where(avg_loss > 0, 100.0).where((avg_gain > 0) | (avg_loss > 0), 50.0)
    out.iloc[: int(period)] = float("nan")
    return out
