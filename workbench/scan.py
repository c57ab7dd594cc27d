"""Compiled scans over a replay's bar arrays: how far a quiet stretch goes, in one call each.

A replay spends most bars in quiet stretches (no signal, no level reached, the risk guard quiet).
A stretch is a few dozen bars, where numpy's cost per call (about a microsecond, a dozen calls a
stretch) outweighs the work; these loops make the same comparisons, in the same float operations,
in one compiled call (numba, cached on disk). The rules stay with their owners: the paper venue
says which levels a bar must not reach (:meth:`PaperExchange.quiet_run`), the risk guard which
limits (:meth:`RiskGuard.quiet_limits`), the ledger how a position is valued (:class:`OpenPosition`);
here they are only applied to arrays, each tested equal to its owner's bar-by-bar form.

numba loads on the first scan, so a live engine that never replays never imports it.
"""
from __future__ import annotations

from typing import Any

_kernels: dict[str, Any] = {}


def _first_reach(floor: Any, ceil: Any, start: int, stop: int, below: float, above: float) -> int:
    for k in range(start, stop):
        if not (floor[k] > below and ceil[k] < above):
            return k - start
    return stop - start


def _books_prefix(close: Any, seconds: Any, t: Any, start: int, stop: int, cash: float, held: bool, margin: bool, sign: float,
                  amount: float, entry: float, day_end: float, dd_peak: float, use_dl: bool, day_start: float, ref: float,
                  dl_level: float, use_dd: bool, dd_level: float, out: Any) -> tuple[int, float]:
    top = -1.0e308
    for k in range(start, stop):
        if held:  # OpenPosition.value and gross_pnl, in the same float operations
            c = close[k]
            u = sign * (c - entry) * amount
            e = cash + (u if margin else amount * c)
        else:
            u = 0.0
            e = cash
        # the risk guard's quiet rule (RiskGuard.quiet): the same day, finite equity, no limit reached
        if not t[k] < day_end or not (e - e == 0.0):
            return k - start, top
        if e > dd_peak:
            dd_peak = e
        if use_dl and (ref - e) / day_start >= dl_level:
            return k - start, top
        if use_dd and dd_peak > 0 and (dd_peak - e) / dd_peak >= dd_level:
            return k - start, top
        if e > top:
            top = e
        row = k - start
        out[row, 0] = seconds[k]
        out[row, 1] = e
        out[row, 2] = cash
        out[row, 3] = u
    return stop - start, top


def _compiled(name: str, fn: Any) -> Any:
    kernel = _kernels.get(name)
    if kernel is None:
        import numba

        try:
            kernel = numba.njit(cache=True, nogil=True)(fn)
        except RuntimeError:  # no writable place for numba's cache: compile in each process (well under a second)
            kernel = numba.njit(nogil=True)(fn)
        _kernels[name] = kernel
    return kernel


def first_reach(floor: Any, ceil: Any, start: int, stop: int, below: float, above: float) -> int:
    """How many bars from `start` (before `stop`) stay strictly inside (below, above): envelope floor > below, ceil < above.

    A NaN envelope ends the run, as its comparisons are false.
    """
    return int(_compiled("first_reach", _first_reach)(floor, ceil, start, stop, float(below), float(above)))


def books_prefix(close: Any, seconds: Any, t: Any, start: int, stop: int, cash: float, position: tuple[bool, float, float, float] | None,
                 limits: tuple[float, float, tuple[float, float, float] | None, float | None], out: Any) -> tuple[int, float]:
    """Leading bars from `start` (before `stop`) whose books breach no risk limit, and the highest equity among them.

    The books hold `cash` and at most one position, marked at `close`.

    `position` is (margin, sign, amount, entry price) of :class:`~workbench.engine.ledger.OpenPosition`, or None
    when flat; `limits` are :meth:`RiskGuard.quiet_limits`. The equity rows of the bars that pass
    (at `seconds`, equity, cash, unrealized P&L) are written in `out` from its first row: one call takes in a
    quiet stretch, where numpy would spend a dozen calls on the arrays.

    A run ends at the first bar at or after the day's end (times `t`), with equity that is not finite, or
    that breaches: the daily loss (ref - equity) / day's start >= level, or the drawdown (peak - equity) /
    peak >= level, the peak running from the limits' drawdown peak.
    """
    day_end, dd_peak, daily_loss, drawdown = limits
    day_start, ref, dl_level = daily_loss if daily_loss is not None else (1.0, 0.0, 0.0)
    margin, sign, amount, entry = position if position is not None else (False, 0.0, 0.0, 0.0)
    n, top = _compiled("books_prefix", _books_prefix)(close, seconds, t, start, stop, float(cash), position is not None, margin,
                                                      float(sign), float(amount), float(entry), float(day_end), float(dd_peak),
                                                      daily_loss is not None, float(day_start), float(ref), float(dl_level),
                                                      drawdown is not None, float(drawdown or 0.0), out)
    return int(n), float(top)


__all__ = ["books_prefix", "first_reach"]
