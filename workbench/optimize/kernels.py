"""Fused numba kernels for the built-in strategies: indicators, signals, portfolio and metrics in one call.

One kernel call runs a grid on one or many symbols, in parallel over
(symbol, combination) pairs: each distinct indicator series (an SMA, EMA or
RSI of one period on one symbol) is computed once, then every pair turns its
series into entry/exit codes and simulates its portfolio. The portfolio step
reproduces vectorbt's ``from_signals`` with the options
:func:`workbench.backtest.portfolio_kwargs` sets (fill on close with
slippage, stops from the fill price checked from the next bar, stop loss
before take profit, stop exits at the stop level or the gapped open, percent
or value sizing, no accumulation), and the metrics reproduce vectorbt's total
return, Sharpe ratio, max drawdown, trade count and win rate, so results agree
to rounding (tests check 1e-9). The indicators repeat pandas' operations
(rolling mean with Kahan sums, ``ewm(adjust=False)``), so they are bit-identical
to :mod:`workbench.strategies.indicators`.

Speed comes from skipping: while flat, a bar changes nothing but the chance
of an entry, so the simulation jumps to the next entry code; only bars in a
position pay for valuation, returns and the metric sums.

Supported: long or short (not both), size_pct or size_quote, sl, tp, fees,
slippage, min_confidence, finite positive OHLC. Anything else (and the rare
combination whose short cover would be only partly funded) goes to
vectorbt, so results never depend on which engine ran. Compiled code is
cached on disk (``cache=True``), so a second process pays no compile.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numba
import numpy as np
import pandas as pd
from numba import njit, prange

from ..backtest import BacktestConfig, ann_factor, bar_freq
from ..errors import ConfigError
from ..strategies import BUILTINS, Strategy

REL_TOL = 1e-9  # vectorbt.utils.math_ tolerances
ABS_TOL = 1e-12
N_OUT = 7  # total_return, sharpe, max_drawdown, win_rate, trades, final_value, fallback

#: indicator kinds of a series
SMA, EMA, RSI = 0, 1, 2
#: strategy codes of the grid kernel
SMA_CROSS, RSI_REVERSION, EMA_RSI = 0, 1, 2
#: signal codes per bar
NONE, ENTRY, EXIT = 0, 1, 2
#: options of the helpers only kernels call: no Python or C entry points to build (less compile on a fresh
#: machine). No helper is ``inline="always"``: numba's IR inlining retypes the callee at every call site (the
#: ~40 calls of _add/_is_close in simulate took ~30 s of a cold compile); LLVM inlines these small functions
#: anyway, so the warm code is the same. Call sites pass non-literal arguments (0.0, np.int64(0), computed
#: flags) so that each helper compiles once.
_INNER: dict[str, Any] = {"error_model": "numpy", "no_cpython_wrapper": True, "no_cfunc_wrapper": True}
#: upper bound on bars x indicator series held by one kernel call (32 MB of float64)
MAX_SERIES_CELLS = 4_000_000
#: work groups per numba thread (each group reuses one signal buffer; more groups balance the load)
GROUPS_PER_THREAD = 4


@njit(cache=True, **_INNER)
def _is_close(a: float, b: float) -> bool:
    if np.isnan(a) or np.isnan(b) or np.isinf(a) or np.isinf(b):
        return False
    if a == b:
        return True
    return abs(a - b) <= max(REL_TOL * max(abs(a), abs(b)), ABS_TOL)


@njit(cache=True, **_INNER)
def _add(a: float, b: float) -> float:
    if np.sign(a) != np.sign(b):
        zero = _is_close(abs(a), abs(b))
    else:
        zero = _is_close(a + b, 0.0)
    return 0.0 if zero else a + b


# ---------------------------------------------------------------- indicators (bit-identical to pandas)


@njit(cache=True, error_model="numpy")
def _rolling_mean_into(x: np.ndarray, window: int, out: np.ndarray) -> None:
    n = x.shape[0]
    sum_x = 0.0
    comp_add = 0.0
    comp_rem = 0.0
    nobs = 0
    same = 0
    prev = x[0] if n else np.nan
    for i in range(n):
        if i >= window:
            r = x[i - window]
            if r == r:
                nobs -= 1
                y = -r - comp_rem
                t = sum_x + y
                comp_rem = t - sum_x - y
                sum_x = t
        v = x[i]
        if v == v:
            nobs += 1
            y = v - comp_add
            t = sum_x + y
            comp_add = t - sum_x - y
            sum_x = t
            if v == prev:
                same += 1
            else:
                same = 1
            prev = v
        res = np.nan
        if nobs >= window and nobs > 0:
            res = sum_x / nobs
            if same >= nobs:
                res = prev
            elif res < 0:
                res = 0.0  # all inputs positive (prices)
        out[i] = res


def rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """pandas' ``Series.rolling(window).mean()``, same operations (Kahan sums), so bit-identical."""
    out = np.empty(len(x))
    _rolling_mean_into(np.ascontiguousarray(x, dtype=np.float64), int(window), out)
    return out


@njit(cache=True, **_INNER)
def _ewm_step(w: float, cur: float, old_wt: float, new_wt: float) -> float:
    """One step of pandas' ``ewm(adjust=False).mean()`` (its Cython loop, same operations)."""
    if w == w:
        if cur == cur and w != cur:
            w = old_wt * w + new_wt * cur
            w /= old_wt + new_wt
        return w
    return cur


@njit(cache=True, error_model="numpy")
def _ema_into(x: np.ndarray, com: float, head: int, out: np.ndarray) -> None:
    alpha = 1.0 / (1.0 + com)
    old_wt = 1.0 - alpha
    w = np.nan
    for i in range(x.shape[0]):
        w = _ewm_step(w, x[i], old_wt, alpha)
        out[i] = np.nan if i < head else w


@njit(cache=True, error_model="numpy")
def _rsi_into(x: np.ndarray, com: float, period: int, out: np.ndarray) -> None:
    alpha = 1.0 / (1.0 + com)
    old_wt = 1.0 - alpha
    gain = np.nan
    loss = np.nan
    for i in range(x.shape[0]):
        d = x[i] - x[i - 1] if i else np.nan
        g = max(d, 0.0) if d == d else np.nan
        lo = -min(d, 0.0) if d == d else np.nan
        gain = _ewm_step(gain, g, old_wt, alpha)
        loss = _ewm_step(loss, lo, old_wt, alpha)
        if loss > 0:
            r = 100.0 - 100.0 / (1.0 + gain / loss)
        elif gain > 0:
            r = 100.0
        else:
            r = 50.0
        out[i] = np.nan if i < period else r


def ema(x: np.ndarray, period: int) -> np.ndarray:
    """:func:`workbench.strategies.indicators.ema` on an array, bit-identical."""
    out = np.empty(len(x))
    _ema_into(np.ascontiguousarray(x, dtype=np.float64), _com(EMA, period), int(period) - 1, out)
    return out


def rsi(x: np.ndarray, period: int) -> np.ndarray:
    """:func:`workbench.strategies.indicators.rsi` on an array, bit-identical."""
    out = np.empty(len(x))
    _rsi_into(np.ascontiguousarray(x, dtype=np.float64), _com(RSI, period), int(period), out)
    return out


def _com(kind: int, period: int) -> float:
    """pandas' center of mass for the EMA (span) and Wilder RSI (alpha = 1/period) of `period`."""
    if kind == EMA:
        return float((int(period) - 1) / 2)
    alpha = 1.0 / int(period)
    return float((1 - alpha) / alpha)


# ---------------------------------------------------------------- signals (as the strategies' pandas code)


@njit(cache=True, **_INNER)
def _gate(conf: float, min_conf: float) -> bool:
    if conf != conf:
        conf = 1.0  # Signals.aligned: NaN confidence counts as 1
    return min(max(conf, 0.0), 1.0) >= min_conf


UP, DOWN = 1, 2  # raw crossing bits before direction and confidence


@njit(cache=True, **_INNER)
def _resolve(code: int, raw: int, a: float, b: float, r: float, close: float, p0: float, p1: float,
             long: bool, min_conf: float) -> int:
    """The entry/exit code of a bar with crossing bits `raw` and series values `a`, `b`, `r` (scalars:
    arrays passed to a call cost reference counting)."""
    up = (raw & UP) != 0
    down = (raw & DOWN) != 0
    if code == RSI_REVERSION:  # UP: RSI crossed above overbought; DOWN: below oversold
        r = a
        x = (p0 - r) / 10.0 if r < 50 else (r - p1) / 10.0
        conf = 0.6 + max(x, 0.0)
        ent, ext = (down, up) if long else (up, down)
    else:
        d = a - b
        if code == SMA_CROSS:
            conf = 0.5 + 50.0 * abs(d) / close
            up_ok, down_ok = up, down
        else:  # EMA_RSI
            trend = min(max(abs(d) / close * 200.0, 0.0), 0.5)
            head = min(max(abs(p0 - r) / 100.0, 0.0), 0.5)
            conf = 0.3 + trend + head  # NaN (no RSI yet) only where the RSI test below fails anyway
            up_ok = up and r < p0
            down_ok = down and r > 100 - p0
        ent, ext = (up_ok, down) if long else (down_ok, up)
    ent = ent and _gate(conf, min_conf)
    if ent and not ext:
        return ENTRY
    if ext and not ent:
        return EXIT
    return NONE


@njit(cache=True, **_INNER)
def _cross_marks(a: np.ndarray, b: np.ndarray, kind: np.ndarray, marked: np.ndarray) -> int:
    kind[0] = NONE
    prev = a[0] - b[0]
    m = 0
    for i in range(1, a.shape[0]):
        d = a[i] - b[i]
        x = np.int8((d > 0.0) & (prev <= 0.0)) + np.int8((d < 0.0) & (prev >= 0.0)) * np.int8(DOWN)
        kind[i] = x
        marked[m] = i
        m += x != 0
        prev = d
    return m


@njit(cache=True, **_INNER)
def _level_marks(a: np.ndarray, lo: float, hi: float, kind: np.ndarray, marked: np.ndarray) -> int:
    kind[0] = NONE
    m = 0
    for i in range(1, a.shape[0]):
        r, rp = a[i], a[i - 1]
        x = np.int8((r > hi) & (rp <= hi)) + np.int8((r < lo) & (rp >= lo)) * np.int8(DOWN)
        kind[i] = x
        marked[m] = i
        m += x != 0
    return m


@njit(cache=True, **_INNER)
def _signals(code: int, a: np.ndarray, b: np.ndarray, c: np.ndarray, close: np.ndarray, p0: float, p1: float,
             long: bool, min_conf: float, kind: np.ndarray, marked: np.ndarray) -> None:
    """Entry/exit codes of one combination after the direction and confidence filters, as the strategies' pandas.

    A branch-free scan marks crossings (``crossed_above``/``crossed_below``) and
    lists the marked bars in `marked`; a second pass over that list applies
    direction and confidence (a conditional in the scan would be if-converted
    by LLVM into a confidence computation on every bar).
    """
    if code == RSI_REVERSION:
        m = _level_marks(a, p0, p1, kind, marked)
    else:
        m = _cross_marks(a, b, kind, marked)
    for q in range(m):
        i = marked[q]
        kind[i] = _resolve(code, kind[i], a[i], b[i], c[i], close[i], p0, p1, long, min_conf)


# ---------------------------------------------------------------- portfolio and metrics (as vectorbt)


@njit(cache=True, **_INNER)
def _stop_price(down: bool, base: float, stop: float, o: float, lo: float, hi: float) -> float:
    """Fill price of a stop `stop` away from `base`, below it when `down`, on a bar (open, low, high); NaN if not hit."""
    if down:
        p = base * (1 - stop)
        if o <= p:
            return o
        if lo <= p <= hi:
            return p
        return np.nan
    p = base * (1 + stop)
    if p <= o:
        return o
    if lo <= p <= hi:
        return p
    return np.nan


@njit(cache=True, **_INNER)
def _next_entry(kind: np.ndarray, i: int) -> int:
    n = kind.shape[0]
    while i < n and kind[i] != ENTRY:
        i += 1
    return i


@njit(cache=True, **_INNER)
def _hold(kind: np.ndarray, low: np.ndarray, high: np.ndarray, close: np.ndarray, i: int, lo_trig: float,
          hi_trig: float, cash: float, assets: float, prev_value: float, sum_r: float, sum_r2: float, peak: float,
          low_ratio: float, values: np.ndarray | None) -> tuple[int, float, float, float, float, float]:
    """Bars from i of a held position until an exit code or a reachable stop: value, return, Sharpe sums, drawdown.

    Each bar's value goes in `values` too unless it is None (a grid's call: numba compiles that branch out).
    """
    n = kind.shape[0]
    while i < n and kind[i] != EXIT and low[i] > lo_trig and high[i] < hi_trig:
        value = cash + close[i] * assets
        if values is not None:
            values[i] = value
        r = (value - prev_value) / prev_value
        prev_value = value
        sum_r += r
        sum_r2 += r * r
        peak = max(peak, value)
        low_ratio = min(low_ratio, value / peak)
        i += 1
    return i, prev_value, sum_r, sum_r2, peak, low_ratio


@njit(cache=True, error_model="numpy")
def simulate(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, kind: np.ndarray, long: bool,
    size_pct: float, size_value: float, fees: float, slippage: float, sl: float, tp: float,
    init_cash: float, ann_factor: float, out: np.ndarray, values: np.ndarray | None,
) -> None:
    """One column of vectorbt's from_signals (one direction) from entry/exit codes, and its metrics, into `out`.

    The portfolio's value on each bar (vectorbt's ``Portfolio.value``) goes in `values` too, unless it is
    None (a grid needs only the metrics: numba compiles that version without the stores); it is complete
    only when the run is not left to vectorbt.

    Bars while flat with no entry leave cash, value and returns unchanged (a
    zero return adds nothing to the Sharpe sums nor to the drawdown), so they
    are skipped, and bars in a position with no exit code and no reachable
    stop only revalue it, in a tight loop. The Sharpe sums equal vectorbt's
    over every bar; the drawdown is taken on the value rather than on
    cumulated returns (the same number, to ~n ulps). A combination whose value
    reaches zero or below is left to vectorbt.
    """
    n = close.shape[0]
    has_stops = sl == sl or tp == tp
    cash = init_cash
    free_cash = init_cash
    pos = 0.0
    debt = 0.0
    stop_base = np.nan
    e_size = 0.0
    e_gross = 0.0
    e_fees = 0.0
    in_trade = False
    n_trades = 0
    n_wins = 0
    rep_cash = init_cash
    rep_assets = 0.0
    tp_cash = 0.0
    tp_assets = 0.0
    n_orders = 0
    prev_value = init_cash
    fallback = False
    sum_r = 0.0
    sum_r2 = 0.0
    peak = -np.inf  # of the portfolio value; drawdown is value / peak - 1 (vectorbt: of cumulated returns)
    low_ratio = 1.0
    lo_trig = -np.inf  # a stop can only trigger on a bar whose low/high reaches these
    hi_trig = np.inf
    i = np.int64(0)  # not a literal 0: that would compile a second specialization of _hold
    while i < n:
        if pos == 0.0 and rep_assets == 0.0:
            if kind[i] != ENTRY:  # flat: value and returns unchanged until the next entry code
                peak = max(peak, prev_value)
                j = _next_entry(kind, i + 1)
                if values is not None:
                    values[i:j] = prev_value
                i = j
                continue
        elif peak > -np.inf:  # in a position: bars without an exit code or a reachable stop only revalue it
            j, prev_value, sum_r, sum_r2, peak, low_ratio = _hold(kind, low, high, close, i, lo_trig, hi_trig,
                                                                  rep_cash, rep_assets, prev_value, sum_r, sum_r2,
                                                                  peak, low_ratio, values)
            if prev_value <= 0:
                fallback = True  # a non-positive value: vectorbt's signed returns; leave to vectorbt
                break
            i = j
            if i == n:
                break
        price = close[i]
        stop = np.nan
        if pos != 0 and has_stops:
            if sl == sl:
                stop = _stop_price(pos > 0, stop_base, sl, open_[i], low[i], high[i])  # a long's stop loss lies below
            if np.isnan(stop) and tp == tp:
                stop = _stop_price(pos < 0, stop_base, tp, open_[i], low[i], high[i])  # a short's take profit lies below
        order = 0  # 1 open, 2 close
        if stop == stop:
            price = stop
            order = 2
        elif pos == 0:
            if kind[i] == ENTRY:
                order = 1
        elif kind[i] == EXIT:
            order = 2
        if order != 0:
            if _is_close(cash, 0.0):
                cash = 0.0
            if _is_close(pos, 0.0):
                pos = 0.0
            if _is_close(debt, 0.0):
                debt = 0.0
            if _is_close(free_cash, 0.0):
                free_cash = 0.0
            filled = False
            size = 0.0
            fee = 0.0
            buy = (order == 1) == long
            adj = price * (1 + slippage) if buy else price * (1 - slippage)
            if order == 1 and long:
                limit = cash
                req_size = np.inf
                if size_pct == size_pct:
                    limit = min(limit, size_pct * limit)
                else:
                    req_size = size_value / close[i]
                if limit != 0:
                    req = req_size * adj
                    req_fees = req * fees
                    total = req + req_fees
                    spend = 0.0
                    if _is_close(total, limit) or total < limit:
                        size, fee, spend = req_size, req_fees, total
                        filled = True
                    else:
                        max_req = _add(limit, -0.0) / (1 + fees)
                        if max_req > 0:
                            size, fee, spend = max_req / adj, limit - max_req, limit
                            filled = True
                    if filled and _is_close(req_size, 0.0):
                        filled = False
                    if filled:
                        cash = _add(cash, -spend)
                        pos = _add(pos, size)
                        free_cash = _add(free_cash, -spend)
            elif order == 1:  # open short
                if size_pct == size_pct:
                    total_free = _add(free_cash, 0.0)
                    limit = 0.0
                    if total_free > 0:
                        limit = _add(0.0, _add(total_free, -0.0) / (adj * (1 + fees)))
                    size = size_pct * limit
                    ok = limit > 0
                else:
                    size = size_value / close[i]
                    ok = True
                if ok and not _is_close(size, 0.0):
                    acq = size * adj
                    fee = acq * fees
                    net = _add(acq, -fee)
                    if net >= 0:
                        cash = cash + net
                        new_pos = _add(pos, -size)
                        short_value = abs(new_pos) * adj
                        debt = debt + short_value
                        free_cash = _add(free_cash, _add(net, -2 * short_value))
                        pos = new_pos
                        filled = True
            elif long:  # close long
                size = pos
                if pos != 0 and not _is_close(size, 0.0):
                    acq = size * adj
                    fee = acq * fees
                    net = _add(acq, -fee)
                    if net >= 0:
                        cash = cash + net
                        pos = _add(pos, -size)
                        free_cash = free_cash + net
                        filled = True
            elif pos != 0:  # cover short
                size = -pos
                req = size * adj
                fee = req * fees
                total = req + fee
                if not (_is_close(total, cash) or total < cash):
                    fallback = True  # partial cover: leave this combination to vectorbt
                    break
                if size != 0:
                    avg = debt / abs(pos)
                    diff = abs(pos) * avg
                    cash = _add(cash, -total)
                    pos = _add(pos, size)
                    debt = _add(debt, -diff)
                    free_cash = _add(free_cash + 2 * diff, -total)
                    filled = True
            if filled:
                n_orders += 1
                signed = size if buy else -size
                rep_cash = _add(rep_cash, _add(0.0, -signed * adj - fee))
                rep_assets = _add(rep_assets, signed)
                if buy:
                    tp_cash = _add(tp_cash, -(size * adj + fee))
                else:
                    tp_cash = _add(tp_cash, size * adj - fee)
                tp_assets = _add(tp_assets, signed)
                if order == 1:
                    stop_base = adj
                    lo_trig, hi_trig = -np.inf, np.inf
                    if long:
                        if sl == sl:
                            lo_trig = stop_base * (1 - sl)
                        if tp == tp:
                            hi_trig = stop_base * (1 + tp)
                    else:
                        if tp == tp:
                            lo_trig = stop_base * (1 - tp)
                        if sl == sl:
                            hi_trig = stop_base * (1 + sl)
                    in_trade = True
                    e_size = 0.0 + size
                    e_gross = 0.0 + size * adj
                    e_fees = 0.0 + fee
                else:
                    if pos == 0:
                        stop_base = np.nan
                    if not _is_close(size, e_size):
                        fallback = True  # partial exit: leave to vectorbt
                        break
                    entry_price = e_gross / e_size
                    entry_fees = (e_size / e_size) * e_fees
                    diff = _add(e_size * adj, -(e_size * entry_price))
                    if diff != 0 and not long:
                        diff *= -1
                    n_trades += 1
                    if diff - entry_fees - fee > 0:
                        n_wins += 1
                    in_trade = False
        value = rep_cash + close[i] * rep_assets
        if value <= 0:
            fallback = True  # see above
            break
        if values is not None:
            values[i] = value
        r = (value - prev_value) / prev_value
        prev_value = value
        sum_r += r
        sum_r2 += r * r
        peak = max(peak, value)
        low_ratio = min(low_ratio, value / peak)
        i += 1
    if fallback or (pos == 0.0) != (rep_assets == 0.0):
        out[:] = np.nan
        out[6] = 1.0
        return
    if in_trade and e_size > 0 and not _is_close(e_size, 0.0):
        entry_price = e_gross / e_size
        entry_fees = (e_size / e_size) * e_fees
        diff = _add(e_size * close[n - 1], -(e_size * entry_price))
        if diff != 0 and not long:
            diff *= -1
        n_trades += 1
        if diff - entry_fees > 0:
            n_wins += 1
    profit = tp_cash + tp_assets * close[n - 1] if n_orders else 0.0
    sharpe = np.nan
    if n >= 2:  # vectorbt: mean / std (ddof=1) * sqrt(ann); sums over the bars with a nonzero return
        mean = sum_r / n
        ssd = max(sum_r2 - sum_r * mean, 0.0)
        std = np.sqrt(ssd / n * n / (n - 1))
        sharpe = np.inf if std == 0.0 else mean / std * np.sqrt(ann_factor)
    out[0] = profit / init_cash
    out[1] = sharpe
    out[2] = low_ratio - 1
    out[3] = n_wins / n_trades if n_trades else np.nan
    out[4] = n_trades
    out[5] = profit + init_cash
    out[6] = 0.0


# ---------------------------------------------------------------- the grid kernel


@njit(cache=True, parallel=True, error_model="numpy")
def grid_kernel(
    code: int, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
    sym_lo: np.ndarray, sym_n: np.ndarray, sym_ann: np.ndarray,
    ser_sym: np.ndarray, ser_kind: np.ndarray, ser_period: np.ndarray, ser_com: np.ndarray,
    item_sym: np.ndarray, item_ser: np.ndarray, item_par: np.ndarray,
    long: bool, min_conf: float, size_pct: float, size_value: float, fees: float, slippage: float,
    sl: float, tp: float, init_cash: float, groups: int,
) -> np.ndarray:
    """Metrics (rows of N_OUT) of every item: a (symbol, combination) pair of strategy `code`.

    OHLC of all symbols are concatenated; symbol s is ``[sym_lo[s], sym_lo[s] + sym_n[s])``.
    Series k is indicator ``ser_kind[k]`` of ``ser_period[k]`` on symbol ``ser_sym[k]``; an item
    names up to three series (``item_ser``, -1 for none) and two numeric parameters (``item_par``).
    Items run in `groups` parallel groups, each reusing one signal buffer.
    """
    n_ser = ser_sym.shape[0]
    ser_lo = np.empty(n_ser, dtype=np.int64)
    total = 0
    for k in range(n_ser):
        ser_lo[k] = total
        total += sym_n[ser_sym[k]]
    series = np.empty(total)
    for k in prange(n_ser):
        s = ser_sym[k]
        x = close[sym_lo[s]: sym_lo[s] + sym_n[s]]
        dst = series[ser_lo[k]: ser_lo[k] + sym_n[s]]
        if ser_kind[k] == SMA:
            _rolling_mean_into(x, ser_period[k], dst)
        elif ser_kind[k] == EMA:
            _ema_into(x, ser_com[k], ser_period[k] - 1, dst)
        else:
            _rsi_into(x, ser_com[k], ser_period[k], dst)
    n_items = item_sym.shape[0]
    out = np.empty((n_items, N_OUT))
    longest = 0
    for s in range(sym_n.shape[0]):
        longest = max(longest, sym_n[s])
    groups = max(1, min(n_items, groups))
    for g in prange(groups):
        kind = np.empty(longest, dtype=np.int8)
        marked = np.empty(longest, dtype=np.int64)
        for j in range(g, n_items, groups):
            s = item_sym[j]
            lo, m = sym_lo[s], sym_n[s]
            ka, kb, kc = item_ser[j, 0], item_ser[j, 1], item_ser[j, 2]
            a = series[ser_lo[ka]: ser_lo[ka] + m]
            b = series[ser_lo[kb]: ser_lo[kb] + m] if kb >= 0 else a
            c = series[ser_lo[kc]: ser_lo[kc] + m] if kc >= 0 else a
            buf = kind[:m]
            _signals(code, a, b, c, close[lo: lo + m], item_par[j, 0], item_par[j, 1], long, min_conf, buf, marked)
            simulate(open_[lo: lo + m], high[lo: lo + m], low[lo: lo + m], close[lo: lo + m], buf, long,
                     size_pct, size_value, fees, slippage, sl, tp, init_cash, sym_ann[s], out[j], None)
    return out


@njit(cache=True, error_model="numpy")
def value_kernel(
    code: int, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, a: np.ndarray, b: np.ndarray,
    c: np.ndarray, p0: float, p1: float, long: bool, min_conf: float, size_pct: float, size_value: float, fees: float,
    slippage: float, sl: float, tp: float, init_cash: float, first: int, close_last: bool, ann_factor: float,
    out: np.ndarray, values: np.ndarray,
) -> bool:
    """One combination on bars ``[first, n)``: its metrics into `out` and its value on each of those bars into
    `values`; False when the run is left to vectorbt.

    Signals are computed on all the bars (series `a`, `b`, `c` as the grid kernel's), so the bars before
    `first` only give the indicators their history. With `close_last`, the last bar exits whatever its signal
    (a walk-forward test window ends flat).
    """
    n = close.shape[0]
    kind = np.empty(n, dtype=np.int8)
    _signals(code, a, b, c, close, p0, p1, long, min_conf, kind, np.empty(n, dtype=np.int64))
    if close_last:
        kind[n - 1] = EXIT
    simulate(open_[first:], high[first:], low[first:], close[first:], kind[first:], long, size_pct, size_value, fees,
             slippage, sl, tp, init_cash, ann_factor, out, values)
    return out[6] == 0.0


# ---------------------------------------------------------------- Python side: plans, batches, dispatch


def _sma_plan(c: Mapping[str, float]) -> tuple[list[tuple[int, int]], tuple[float, float]]:
    return [(SMA, int(c["fast"])), (SMA, int(c["slow"]))], (0.0, 0.0)


def _rsi_plan(c: Mapping[str, float]) -> tuple[list[tuple[int, int]], tuple[float, float]]:
    return [(RSI, int(c["period"]))], (float(c["oversold"]), float(c["overbought"]))


def _ema_rsi_plan(c: Mapping[str, float]) -> tuple[list[tuple[int, int]], tuple[float, float]]:
    return [(EMA, int(c["fast"])), (EMA, int(c["slow"])), (RSI, int(c["rsi_period"]))], (float(c["rsi_max"]), 0.0)


#: built-in Strategy object -> (strategy code, combination -> (indicator series it needs, numeric parameters))
KERNELS: dict[int, tuple[int, Callable[[Mapping[str, float]], tuple[list[tuple[int, int]], tuple[float, float]]]]] = {
    id(BUILTINS["sma_cross"]): (SMA_CROSS, _sma_plan),
    id(BUILTINS["rsi_reversion"]): (RSI_REVERSION, _rsi_plan),
    id(BUILTINS["ema_rsi"]): (EMA_RSI, _ema_rsi_plan),
}


def why_unsupported(strat: Strategy, config: BacktestConfig) -> str | None:
    """Why the kernel cannot run `strat` under `config`, or None when it can."""
    if id(strat) not in KERNELS:
        return f"no kernel for strategy {strat.name!r}"
    if config.direction == "both":
        return "direction='both'"
    if config.amount_step:
        return "amount_step"
    return None


def _config_args(config: BacktestConfig) -> tuple:
    return (
        config.direction == "long", float(config.min_confidence),
        float(config.size_pct) if config.size_pct is not None else math.nan,
        float(config.size_quote * config.leverage) if config.size_quote is not None else math.nan,
        float(config.costs.taker_fee), float(config.costs.slippage),
        float(config.sl) if config.sl else math.nan, float(config.tp) if config.tp else math.nan,
        float(config.init_cash),
    )


def _ann_factor(df: pd.DataFrame, config: BacktestConfig) -> float:
    return ann_factor(bar_freq(df, config))


def _combo_chunks(specs: list[list[tuple[int, int]]], max_bars: int, chunk_size: int | None) -> list[range]:
    """Contiguous ranges of combinations whose distinct series x `max_bars` stay under MAX_SERIES_CELLS."""
    budget = max(1, MAX_SERIES_CELLS // max(1, max_bars))
    cap = chunk_size or len(specs)
    chunks, lo, seen = [], 0, set()
    for j, sp in enumerate(specs):
        new = seen | set(sp)
        if j > lo and (len(new) > budget or j - lo >= cap):
            chunks.append(range(lo, j))
            lo, new = j, set(sp)
        seen = new
    chunks.append(range(lo, len(specs)))
    return chunks


def _symbol_groups(lengths: list[int], n_series: int) -> list[list[int]]:
    """Consecutive symbols whose bars x `n_series` stay under MAX_SERIES_CELLS (at least one each)."""
    groups: list[list[int]] = []
    cells = 0
    for s, n in enumerate(lengths):
        if groups and cells + n * n_series <= MAX_SERIES_CELLS:
            groups[-1].append(s)
            cells += n * n_series
        else:
            groups.append([s])
            cells = n * n_series
    return groups


def run_kernel(strat: Strategy, frames: Sequence[pd.DataFrame], combos: Sequence[Mapping[str, float]],
               config: BacktestConfig, chunk_size: int | None = None,
               arrays: Sequence[list[np.ndarray]] | None = None) -> list[np.ndarray]:
    """Per frame, the (n_combos, N_OUT) kernel output; all frames and combinations in few parallel calls.

    `arrays`: each frame's open, high, low and close as float64 arrays, when the caller has them already.

    Memory stays bounded: combinations are split so that each call's
    indicator series fit MAX_SERIES_CELLS, and symbols are grouped the same way.
    """
    code, plan = KERNELS[id(strat)]
    plans = [plan(c) for c in combos]
    specs = [p[0] for p in plans]
    par = np.array([p[1] for p in plans], dtype=np.float64).reshape(len(combos), 2)
    lengths = [len(df) for df in frames]
    chunks = _combo_chunks(specs, max(lengths), chunk_size)
    widest = max(len({s for sp in specs[r.start:r.stop] for s in sp}) for r in chunks)
    args = _config_args(config)
    anns = np.array([_ann_factor(df, config) for df in frames])
    arrays = arrays if arrays is not None else [_ohlc(df) for df in frames]
    outs = [np.empty((len(combos), N_OUT)) for _ in frames]
    for group in _symbol_groups(lengths, widest):
        ohlc = [np.concatenate([arrays[s][k] for s in group]) for k in range(4)]
        sym_n = np.array([lengths[s] for s in group], dtype=np.int64)
        sym_lo = np.concatenate([[0], np.cumsum(sym_n)[:-1]]).astype(np.int64)
        for r in chunks:
            distinct = sorted({s for sp in specs[r.start:r.stop] for s in sp})
            where = {s: k for k, s in enumerate(distinct)}
            n_d, n_c, n_g = len(distinct), len(r), len(group)
            ser_sym = np.repeat(np.arange(n_g, dtype=np.int64), n_d)
            ser_kind = np.tile(np.array([d[0] for d in distinct], dtype=np.int64), n_g)
            ser_period = np.tile(np.array([d[1] for d in distinct], dtype=np.int64), n_g)
            ser_com = np.tile(np.array([_com(*d) if d[0] != SMA else 0.0 for d in distinct]), n_g)
            local = np.full((n_c, 3), -1, dtype=np.int64)
            for j, sp in enumerate(specs[r.start:r.stop]):
                local[j, : len(sp)] = [where[s] for s in sp]
            item_sym = np.repeat(np.arange(n_g, dtype=np.int64), n_c)
            item_ser = np.where(local[None] >= 0, local[None] + (np.arange(n_g) * n_d)[:, None, None], -1)
            raw = grid_kernel(code, *ohlc, sym_lo, sym_n, anns[group], ser_sym, ser_kind, ser_period, ser_com,
                              item_sym, item_ser.reshape(-1, 3).astype(np.int64), np.tile(par[r.start:r.stop], (n_g, 1)),
                              *args, GROUPS_PER_THREAD * numba.get_num_threads())
            for q, s in enumerate(group):
                outs[s][r.start:r.stop] = raw[q * n_c:(q + 1) * n_c]
    return outs


def value_series(strat: Strategy, df: pd.DataFrame, params: Mapping[str, float], config: BacktestConfig) -> pd.Series | None:
    """The portfolio value of `strat` with `params` on every bar of `df` (vectorbt's ``Portfolio.value``, to rounding),
    by the fused kernel; None when the kernel cannot run it (then vectorbt must).

    An optimization's winner is drawn from this, so a notebook on a built-in strategy never imports vectorbt.
    """
    if len(df) < 2:
        return None
    run = _run_one(strat, df, params, config, len(df), close_last=False)
    return None if run is None else run[1]


def out_of_sample(strat: Strategy, window: pd.DataFrame, test_bars: int, params: Mapping[str, float],
                  config: BacktestConfig) -> tuple[dict[str, float], pd.Series] | None:
    """A walk-forward test: `params` traded on the last `test_bars` of `window` and closed on its last bar, signals
    computed over all of it; (metrics as :func:`workbench.backtest.metrics`, value on each test bar), to rounding
    the vectorbt backtest's. None when the kernel cannot run it (then vectorbt must)."""
    return _run_one(strat, window, params, config, test_bars, close_last=True)


def _run_one(strat: Strategy, df: pd.DataFrame, params: Mapping[str, float], config: BacktestConfig, bars: int,
             close_last: bool) -> tuple[dict[str, float], pd.Series] | None:
    """Metrics and value series of one combination traded on the last `bars` of `df` (:func:`value_kernel`)."""
    if not 2 <= bars <= len(df):
        raise ConfigError(f"The bars to trade must be from 2 to the frame's {len(df)}, got {bars}.")
    if why_unsupported(strat, config) is not None:
        return None
    ohlc = _ohlc(df)
    if not _usable(ohlc):
        return None
    code, plan = KERNELS[id(strat)]
    spec, (p0, p1) = plan(params)
    makers = {SMA: rolling_mean, EMA: ema, RSI: rsi}
    series = [makers[kind](ohlc[3], period) for kind, period in spec]
    a, b, c = (series + [series[0]] * 2)[:3]  # as the grid kernel: a missing second or third series is the first
    first = len(df) - bars
    out, values = np.empty(N_OUT), np.empty(bars)
    if not value_kernel(code, *ohlc, a, b, c, float(p0), float(p1), *_config_args(config), first, close_last,
                        _ann_factor(df.iloc[first:], config), out, values):
        return None
    from .grid import METRICS

    return dict(zip(METRICS, out[:6].tolist(), strict=True)), pd.Series(values, index=df.index[first:], name="value")


def _ohlc(df: pd.DataFrame) -> list[np.ndarray]:
    """Open, high, low and close of `df` as contiguous float64 arrays."""
    return [np.ascontiguousarray(df[k].to_numpy(dtype=np.float64)) for k in ("open", "high", "low", "close")]


def _usable(ohlc: Sequence[np.ndarray]) -> bool:
    """Prices the kernel runs as vectorbt would: all finite and positive (else vectorbt's own handling)."""
    return all(bool((x > 0).all() and np.isfinite(x).all()) for x in ohlc)


def run_many(strat: Strategy, frames: Sequence[pd.DataFrame], combos: Sequence[Mapping[str, float]],
             config: BacktestConfig, chunk_size: int | None = None, on_chunk: Any = None) -> list[pd.DataFrame]:
    """Per frame, the metric table of every combination (run_grid's rows), kernels where possible."""
    from .grid import METRICS, auto_chunk, run_grid

    frames = list(frames)
    arrays = [_ohlc(df) for df in frames]
    ok = [k for k, a in enumerate(arrays) if _usable(a)]
    tables: list[pd.DataFrame | None] = [None] * len(frames)
    raws = (run_kernel(strat, [frames[k] for k in ok], combos, config, chunk_size, [arrays[k] for k in ok])
            if ok and combos else [])
    for k, raw in zip(ok, raws, strict=True):
        table = pd.DataFrame(raw[:, :6], columns=list(METRICS))
        redo = np.flatnonzero(raw[:, 6] > 0)
        if len(redo):
            table.iloc[redo] = run_grid(strat, frames[k], [combos[j] for j in redo], config).to_numpy()
        tables[k] = table
    for k, df in enumerate(frames):
        if tables[k] is None:  # non-finite or non-positive prices: vectorbt's own handling
            tables[k] = run_grid(strat, df, combos, config, chunk_size, on_chunk)
        elif on_chunk is not None:
            for _ in range(-(-len(combos) // (chunk_size or auto_chunk(len(df), len(combos))))):
                on_chunk()
    return tables  # type: ignore[return-value]


def runner_for(strat: Strategy, config: BacktestConfig) -> Any:
    """A grid runner with run_grid's signature for `strat` under `config`, or None when unsupported.

    The runner's ``many`` attribute runs a list of frames in one go (both cores on many symbols).
    """
    if why_unsupported(strat, config) is not None:
        return None

    def run(strat_: Strategy, df: pd.DataFrame, combos: Sequence[Mapping[str, float]], config_: BacktestConfig,
            chunk_size: int | None = None, on_chunk: Any = None) -> pd.DataFrame:
        return run_many(strat_, [df], combos, config_, chunk_size, on_chunk)[0]

    run.engine_name = "kernel"
    run.many = run_many
    return run
