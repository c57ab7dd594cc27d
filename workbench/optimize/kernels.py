"""Fused numba kernels for built-in strategies: indicators, signals, portfolio and metrics in one pass.

One kernel call runs a whole grid on one symbol, in parallel over
combinations. The portfolio step reproduces vectorbt's ``from_signals`` with
the options :func:`workbench.backtest.portfolio_kwargs` sets (fill on close
with slippage, stops from the fill price checked from the next bar, stop loss
before take profit, stop exits at the stop level or the gapped open, percent
or value sizing, no accumulation), and the metrics reproduce vectorbt's
total return, Sharpe ratio, max drawdown, trade count and win rate, operation
for operation, so results agree to rounding (tests check 1e-9).

Supported: long or short (not both), size_pct or size_quote, sl, tp, fees,
slippage, min_confidence, finite positive OHLC. Anything else (and the rare
combination whose short cover would be only partly funded) goes to
vectorbt, so results never depend on which engine ran.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numba import njit, prange

from ..backtest import BacktestConfig, portfolio_kwargs
from ..strategies import BUILTINS, Strategy

REL_TOL = 1e-9  # vectorbt.utils.math_ tolerances
ABS_TOL = 1e-12
YEAR = pd.Timedelta(days=365)  # vectorbt's default returns year_freq
N_OUT = 7  # total_return, sharpe, max_drawdown, win_rate, trades, final_value, fallback


@njit(cache=True, inline="always")
def _is_close(a: float, b: float) -> bool:
    if np.isnan(a) or np.isnan(b) or np.isinf(a) or np.isinf(b):
        return False
    if a == b:
        return True
    return abs(a - b) <= max(REL_TOL * max(abs(a), abs(b)), ABS_TOL)


@njit(cache=True, inline="always")
def _add(a: float, b: float) -> float:
    if np.sign(a) != np.sign(b):
        zero = _is_close(abs(a), abs(b))
    else:
        zero = _is_close(a + b, 0.0)
    return 0.0 if zero else a + b


@njit(cache=True)
def rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """pandas' ``Series.rolling(window).mean()``, same operations (Kahan sums), so bit-identical."""
    n = x.shape[0]
    out = np.full(n, np.nan)
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
        if nobs >= window and nobs > 0:
            res = sum_x / nobs
            if same >= nobs:
                res = prev
            elif res < 0:
                res = 0.0  # all inputs positive (prices)
            out[i] = res
    return out


@njit(cache=True)
def _stop_price(pos: float, base: float, stop: float, o: float, lo: float, hi: float, below: bool) -> float:
    if (pos > 0 and below) or (pos < 0 and not below):
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


@njit(cache=True)
def simulate(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
    entries: np.ndarray, exits: np.ndarray, long: bool,
    size_pct: float, size_value: float, fees: float, slippage: float, sl: float, tp: float,
    init_cash: float, ann_factor: float, returns: np.ndarray, out: np.ndarray,
) -> None:
    """One column of vectorbt's from_signals (one direction) and its metrics, written to `out`."""
    n = close.shape[0]
    cash = init_cash
    free_cash = init_cash
    pos = 0.0
    debt = 0.0
    stop_base = np.nan
    # trade bookkeeping (vectorbt's exit trades)
    e_size = 0.0
    e_gross = 0.0
    e_fees = 0.0
    in_trade = False
    n_trades = 0
    n_wins = 0
    # reporting (vectorbt's cash/asset series and total profit)
    rep_cash = init_cash
    rep_assets = 0.0
    tp_cash = 0.0
    tp_assets = 0.0
    n_orders = 0
    prev_value = init_cash
    fallback = 0.0
    for i in range(n):
        price = close[i]
        val_price = close[i]
        stop = np.nan
        slip = slippage
        if pos != 0 and (sl == sl or tp == tp):
            if sl == sl:
                stop = _stop_price(pos, stop_base, sl, open_[i], low[i], high[i], True)
            if np.isnan(stop) and tp == tp:
                stop = _stop_price(pos, stop_base, tp, open_[i], low[i], high[i], False)
        order = 0  # 1 open, 2 close
        if stop == stop:
            price = stop
            order = 2
        else:
            ent = entries[i]
            ext = exits[i]
            if ent and ext:
                ent = False
                ext = False
            if pos == 0:
                if ent:
                    order = 1
            elif ext:
                order = 2
        if order == 0:
            cf = 0.0
        else:
            # execute_order_nb's numerical-stability zeroing
            if _is_close(cash, 0):
                cash = 0.0
            if _is_close(pos, 0):
                pos = 0.0
            if _is_close(debt, 0):
                debt = 0.0
            if _is_close(free_cash, 0):
                free_cash = 0.0
            filled = False
            size = 0.0
            fill = 0.0
            fee = 0.0
            buy = (order == 1) == long
            if buy:
                adj = price * (1 + slip)
            else:
                adj = price * (1 - slip)
            if order == 1 and long:
                limit = cash
                req_size = np.inf
                if size_pct == size_pct:
                    limit = min(limit, size_pct * limit)
                else:
                    req_size = size_value / val_price
                if limit != 0:
                    req = req_size * adj
                    req_fees = req * fees
                    total = req + req_fees
                    if _is_close(total, limit) or total < limit:
                        size, fee, spend = req_size, req_fees, total
                        filled = True
                    else:
                        max_req = _add(limit, -0.0) / (1 + fees)
                        if max_req > 0:
                            size, fee, spend = max_req / adj, limit - max_req, limit
                            filled = True
                    if filled and _is_close(req_size, 0):
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
                    size = size_value / val_price
                    ok = True
                if ok and not _is_close(size, 0):
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
                if pos != 0 and not _is_close(size, 0):
                    acq = size * adj
                    fee = acq * fees
                    net = _add(acq, -fee)
                    if net >= 0:
                        cash = cash + net
                        pos = _add(pos, -size)
                        free_cash = free_cash + net
                        filled = True
            else:  # cover short
                if pos != 0:
                    size = -pos
                    req = size * adj
                    fee = req * fees
                    total = req + fee
                    if not (_is_close(total, cash) or total < cash):
                        fallback = 1.0  # partial cover: leave this combination to vectorbt
                        break
                    if size != 0:
                        avg = debt / abs(pos)
                        diff = abs(pos) * avg
                        cash = _add(cash, -total)
                        pos = _add(pos, size)
                        debt = _add(debt, -diff)
                        free_cash = _add(free_cash + 2 * diff, -total)
                        filled = True
            cf = 0.0
            if filled:
                fill = adj
                n_orders += 1
                signed = size if buy else -size
                cf = _add(0.0, -signed * fill - fee)
                rep_assets_flow = signed
                rep_assets = _add(rep_assets, rep_assets_flow)
                if buy:
                    tp_cash = _add(tp_cash, -(size * fill + fee))
                else:
                    tp_cash = _add(tp_cash, size * fill - fee)
                tp_assets = _add(tp_assets, signed)
                if order == 1:
                    stop_base = fill
                    in_trade = True
                    e_size = 0.0 + size
                    e_gross = 0.0 + size * fill
                    e_fees = 0.0 + fee
                else:
                    if pos == 0:
                        stop_base = np.nan
                    if not _is_close(size, e_size):
                        fallback = 1.0  # partial exit: leave to vectorbt
                        break
                    entry_price = e_gross / e_size
                    entry_fees = (e_size / e_size) * e_fees
                    diff = _add(e_size * fill, -(e_size * entry_price))
                    if diff != 0 and not long:
                        diff *= -1
                    pnl = diff - entry_fees - fee
                    n_trades += 1
                    if pnl > 0:
                        n_wins += 1
                    in_trade = False
        rep_cash = _add(rep_cash, cf)
        value = rep_cash + close[i] * rep_assets
        if prev_value == 0:
            returns[i] = 0.0 if value == 0 else np.inf * np.sign(value)
        else:
            r = (value - prev_value) / prev_value
            returns[i] = -r if prev_value < 0 else r
        prev_value = value
    if fallback:
        out[:] = np.nan
        out[6] = 1.0
        return
    if in_trade and e_size > 0 and not _is_close(e_size, 0):
        exit_price = close[n - 1]
        entry_price = e_gross / e_size
        entry_fees = (e_size / e_size) * e_fees
        diff = _add(e_size * exit_price, -(e_size * entry_price))
        if diff != 0 and not long:
            diff *= -1
        n_trades += 1
        if diff - entry_fees > 0:
            n_wins += 1
    profit = tp_cash + tp_assets * close[n - 1] if n_orders else 0.0
    # sharpe as vectorbt (numba's nanmean/nanvar, ddof=1)
    sharpe = np.nan
    if n >= 2:
        s = 0.0
        for i in range(n):
            s += returns[i]
        mean = s / n
        ssd = 0.0
        for i in range(n):
            d = returns[i] - mean
            ssd += d * d
        std = np.sqrt(ssd / n * n / (n - 1))
        sharpe = np.inf if std == 0.0 else mean / std * np.sqrt(ann_factor)
    cum = 1.0
    peak = -np.inf
    mdd = np.inf
    for i in range(n):
        cum *= returns[i] + 1
        level = cum * 100.0
        peak = max(peak, level)
        mdd = min(mdd, level / peak - 1)
    out[0] = profit / init_cash
    out[1] = sharpe
    out[2] = mdd
    out[3] = n_wins / n_trades if n_trades else np.nan
    out[4] = n_trades
    out[5] = profit + init_cash
    out[6] = 0.0


@njit(cache=True, parallel=True)
def sma_cross_grid(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
    periods: np.ndarray, fast_idx: np.ndarray, slow_idx: np.ndarray, long: bool, min_conf: float,
    size_pct: float, size_value: float, fees: float, slippage: float, sl: float, tp: float,
    init_cash: float, ann_factor: float,
) -> np.ndarray:
    """Metrics of sma_cross for every (fast, slow) pair (indices into `periods`): rows of N_OUT."""
    n = close.shape[0]
    m = periods.shape[0]
    smas = np.empty((m, n))
    for k in prange(m):
        smas[k] = rolling_mean(close, periods[k])
    n_combos = fast_idx.shape[0]
    out = np.empty((n_combos, N_OUT))
    for c in prange(n_combos):
        f = smas[fast_idx[c]]
        s = smas[slow_idx[c]]
        entries = np.zeros(n, dtype=np.bool_)
        exits = np.zeros(n, dtype=np.bool_)
        for i in range(1, n):
            up = f[i] > s[i] and f[i - 1] <= s[i - 1]
            down = f[i] < s[i] and f[i - 1] >= s[i - 1]
            if not (up or down):
                continue
            conf = 0.5 + 50.0 * abs(f[i] - s[i]) / close[i]
            conf = min(max(conf, 0.0), 1.0)
            gate = conf >= min_conf
            if long:
                entries[i] = up and gate
                exits[i] = down
            else:
                entries[i] = down and gate
                exits[i] = up
        returns = np.empty(n)
        simulate(open_, high, low, close, entries, exits, long, size_pct, size_value, fees, slippage, sl, tp,
                 init_cash, ann_factor, returns, out[c])
    return out


def _sma_cross_runner(df: pd.DataFrame, combos: Sequence[Mapping[str, float]], args: tuple) -> np.ndarray:
    periods = np.array(sorted({int(c["fast"]) for c in combos} | {int(c["slow"]) for c in combos}), dtype=np.int64)
    where = {p: k for k, p in enumerate(periods)}
    fast = np.array([where[int(c["fast"])] for c in combos], dtype=np.int64)
    slow = np.array([where[int(c["slow"])] for c in combos], dtype=np.int64)
    ohlc = [np.ascontiguousarray(df[k].to_numpy(dtype=np.float64)) for k in ("open", "high", "low", "close")]
    return sma_cross_grid(*ohlc, periods, fast, slow, *args)


#: built-in Strategy object -> function(df, combos, kernel args) -> (n_combos, N_OUT) array
KERNELS: dict[int, Callable[..., np.ndarray]] = {id(BUILTINS["sma_cross"]): _sma_cross_runner}


def why_unsupported(strat: Strategy, config: BacktestConfig) -> str | None:
    """Why the kernel cannot run `strat` under `config`, or None when it can."""
    if id(strat) not in KERNELS:
        return f"no kernel for strategy {strat.name!r}"
    if config.direction == "both":
        return "direction='both'"
    if config.amount_step:
        return "amount_step"
    return None


def runner_for(strat: Strategy, config: BacktestConfig) -> Any:
    """A grid runner with run_grid's signature for `strat` under `config`, or None when unsupported."""
    if why_unsupported(strat, config) is not None:
        return None
    kernel = KERNELS[id(strat)]

    def run(strat_: Strategy, df: pd.DataFrame, combos: Sequence[Mapping[str, float]], config_: BacktestConfig,
            chunk_size: int | None = None, on_chunk: Any = None) -> pd.DataFrame:
        from .grid import METRICS, run_grid

        ohlc = df[["open", "high", "low", "close"]].to_numpy(dtype=np.float64)
        if not (np.isfinite(ohlc).all() and (ohlc > 0).all()):
            return run_grid(strat_, df, combos, config_, chunk_size, on_chunk)
        freq = portfolio_kwargs(df.iloc[:2], config_)["freq"] if config_.freq is None else pd.Timedelta(config_.freq)
        ann = YEAR / pd.Timedelta(freq) if freq is not None else math.nan
        args = (
            config_.direction == "long", float(config_.min_confidence),
            float(config_.size_pct) if config_.size_pct is not None else math.nan,
            float(config_.size_quote * config_.leverage) if config_.size_quote is not None else math.nan,
            float(config_.costs.taker_fee), float(config_.costs.slippage),
            float(config_.sl) if config_.sl else math.nan, float(config_.tp) if config_.tp else math.nan,
            float(config_.init_cash), float(ann),
        )
        raw = kernel(df, combos, args)
        table = pd.DataFrame(raw[:, :6], columns=list(METRICS))
        redo = np.flatnonzero(raw[:, 6] > 0)
        if len(redo):
            table.iloc[redo] = run_grid(strat_, df, [combos[k] for k in redo], config_).to_numpy()
        if on_chunk is not None:
            for _ in range(-(-len(combos) // (chunk_size or len(combos)))):
                on_chunk()
        return table

    run.engine_name = "kernel"
    return run
