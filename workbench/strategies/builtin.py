"""The built-in strategies: SMA crossover, RSI mean reversion, EMA trend + RSI filter.

Each emits long signals and mirrored short signals; a deployment or backtest
chooses the direction (long, short or both). Warmups follow the rule in
:mod:`workbench.strategies.base`: the longest window for SMAs, and 10x (EMA)
or 30x (Wilder RSI) the period for recursive indicators.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from itertools import islice
from math import fsum

import numpy as np
import pandas as pd

from .base import Param, Signals, crossed_above, crossed_below, strategy
from .indicators import ema, rsi, sma


@strategy(
    fast=Param(10, 5, 50, 5, "fast SMA period"),
    slow=Param(30, 20, 200, 20, "slow SMA period"),
    warmup=lambda p: int(p["slow"]) + 1,
    constraint=lambda p: p["fast"] < p["slow"],
)
def sma_cross(df: pd.DataFrame, fast: int, slow: int) -> Signals:
    """Long when the fast SMA crosses above the slow one, out when it crosses below.

    Confidence grows with the gap between the averages relative to price.
    """
    f, s = sma(df.close, fast), sma(df.close, slow)
    up, down = crossed_above(f, s), crossed_below(f, s)
    conf = (0.5 + 50.0 * (f - s).abs() / df.close).clip(0.0, 1.0)
    return Signals(entries=up, exits=down, short_entries=down, short_exits=up, confidence=conf)


def _sma_cross_last(bars: Sequence[Sequence[float]], fast: int, slow: int) -> tuple[bool, bool, bool, bool, float]:
    """sma_cross on the newest bar from the last slow + 1 closes: a few microseconds instead of a pandas pass.

    Each mean is the correctly rounded one (math.fsum), which is what pandas' compensated rolling
    sum approximates; tests/test_strategies.py checks it against the signals on every bar.
    """
    n = len(bars)
    if n < slow + 1:
        return False, False, False, False, 1.0
    closes = [b[4] for b in islice(bars, n - slow - 1, n)]
    f1, f0 = fsum(closes[-fast:]) / fast, fsum(closes[-fast - 1:-1]) / fast
    s1, s0 = fsum(closes[-slow:]) / slow, fsum(closes[:-1]) / slow
    up, down = f1 > s1 and f0 <= s0, f1 < s1 and f0 >= s0
    conf = min(max(0.5 + 50.0 * abs(f1 - s1) / closes[-1], 0.0), 1.0)
    return up, down, down, up, conf


sma_cross = replace(sma_cross, last=_sma_cross_last)


@strategy(
    period=Param(14, 6, 30, 2, "RSI period"),
    oversold=Param(30, 15, 40, 5, "enter long when RSI falls below"),
    overbought=Param(70, 60, 85, 5, "exit long when RSI rises above"),
    warmup=lambda p: 30 * int(p["period"]) + 1,
    constraint=lambda p: p["oversold"] < p["overbought"],
)
def rsi_reversion(df: pd.DataFrame, period: int, oversold: float, overbought: float) -> Signals:
    """Buy when RSI drops below `oversold`, sell when it rises above `overbought`.

    Mirrored for shorts. Confidence grows with how far past the level RSI went.
    """
    r = rsi(df.close, period)
    long_in, long_out = crossed_below(r, oversold), crossed_above(r, overbought)
    conf = pd.Series(
        np.where(r < 50, (oversold - r) / 10.0, (r - overbought) / 10.0), index=df.index
    )
    conf = (0.6 + conf.clip(lower=0.0)).clip(0.0, 1.0)
    return Signals(entries=long_in, exits=long_out, short_entries=long_out, short_exits=long_in, confidence=conf)


def _closes(bars: Sequence[Sequence[float]]) -> np.ndarray:
    return np.fromiter((b[4] for b in bars), dtype=float, count=len(bars))


def _rsi_reversion_last(bars: Sequence[Sequence[float]], period: int, oversold: float, overbought: float) -> tuple[bool, bool, bool, bool, float]:
    """rsi_reversion on the newest bar: the same Wilder RSI over the window, computed by the optimizer's
    numba indicator (bit-identical to the pandas one), instead of a pandas pass."""
    from ..optimize.kernels import rsi as rsi_nb

    if len(bars) < 2:
        return False, False, False, False, 1.0
    r0, r1 = rsi_nb(_closes(bars), period)[-2:]
    long_in, long_out = bool(r1 < oversold and r0 >= oversold), bool(r1 > overbought and r0 <= overbought)
    gap = (oversold - r1) / 10.0 if r1 < 50 else (r1 - overbought) / 10.0
    conf = min(max(0.6 + max(gap, 0.0), 0.0), 1.0) if r1 == r1 else 1.0
    return long_in, long_out, long_out, long_in, conf


rsi_reversion = replace(rsi_reversion, last=_rsi_reversion_last)


@strategy(
    fast=Param(12, 5, 30, 1, "fast EMA period"),
    slow=Param(26, 20, 100, 2, "slow EMA period"),
    rsi_period=Param(14, 7, 21, 7, "RSI period"),
    rsi_max=Param(70, 55, 80, 5, "no long entry above this RSI"),
    warmup=lambda p: max(10 * int(p["slow"]), 30 * int(p["rsi_period"])) + 1,
    constraint=lambda p: p["fast"] < p["slow"],
)
def ema_rsi(df: pd.DataFrame, fast: int, slow: int, rsi_period: int, rsi_max: float) -> Signals:
    """EMA trend with an RSI filter (the seeds' RSI/EMA signal).

    Long when the fast EMA crosses above the slow EMA while RSI is below
    `rsi_max` (not overbought); out when the fast EMA crosses back below.
    Shorts mirror it with RSI above 100 - `rsi_max`. Confidence combines trend
    strength and RSI headroom.
    """
    f, s, r = ema(df.close, fast), ema(df.close, slow), rsi(df.close, rsi_period)
    up, down = crossed_above(f, s), crossed_below(f, s)
    trend = ((f - s).abs() / df.close * 200.0).clip(0.0, 0.5)
    headroom = ((rsi_max - r).abs() / 100.0).clip(0.0, 0.5)
    conf = (0.3 + trend + headroom).clip(0.0, 1.0)
    return Signals(
        entries=up & (r < rsi_max),
        exits=down,
        short_entries=down & (r > 100 - rsi_max),
        short_exits=up,
        confidence=conf,
    )


def _ema_rsi_last(bars: Sequence[Sequence[float]], fast: int, slow: int, rsi_period: int, rsi_max: float) -> tuple[bool, bool, bool, bool, float]:
    """ema_rsi on the newest bar, with the optimizer's numba indicators (bit-identical to the pandas ones)."""
    from ..optimize.kernels import ema as ema_nb
    from ..optimize.kernels import rsi as rsi_nb

    if len(bars) < 2:
        return False, False, False, False, 1.0
    closes = _closes(bars)
    (f0, f1), (s0, s1), r1 = ema_nb(closes, fast)[-2:], ema_nb(closes, slow)[-2:], rsi_nb(closes, rsi_period)[-1]
    up, down = bool(f1 > s1 and f0 <= s0), bool(f1 < s1 and f0 >= s0)
    trend = min(max(abs(f1 - s1) / closes[-1] * 200.0, 0.0), 0.5)
    headroom = min(max(abs(rsi_max - r1) / 100.0, 0.0), 0.5)
    conf = min(max(0.3 + trend + headroom, 0.0), 1.0)
    return up and bool(r1 < rsi_max), down, down and bool(r1 > 100 - rsi_max), up, float(conf) if conf == conf else 1.0


ema_rsi = replace(ema_rsi, last=_ema_rsi_last)
