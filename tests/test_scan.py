"""The compiled scans of a replay's quiet stretches make the comparisons numpy and the owners' rules make, bar for bar."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.scan import books_prefix, first_reach

prices = st.lists(st.one_of(st.floats(90, 110), st.just(float("nan"))), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(lows=prices, spread=st.floats(0, 5), below=st.floats(80, 105), above=st.floats(95, 120), data=st.data())
def test_first_reach_counts_the_bars_numpy_passes(lows, spread, below, above, data):
    floor = np.array(lows)
    ceil = floor + spread
    start = data.draw(st.integers(0, len(floor)))
    stop = data.draw(st.integers(start, len(floor)))
    ok = (floor[start:stop] > below) & (ceil[start:stop] < above)
    want = int(ok.argmin()) if not ok.all() else stop - start
    assert first_reach(floor, ceil, start, stop, below, above) == want


def guard_rule(eq, t, start, day_end, daily, drawdown):
    """The risk guard's quiet rule, bar by bar (day's start equity, loss reference and peak all 10,000)."""
    peak = 10_000.0
    n, top = 0, -np.inf
    for k in range(start, len(eq)):
        e = float(eq[k])
        if not t[k] < day_end or not np.isfinite(e):
            break
        peak = max(peak, e)
        if daily is not None and (10_000.0 - e) / 10_000.0 >= daily:
            break
        if drawdown is not None and (peak - e) / peak >= drawdown:
            break
        n, top = n + 1, max(top, e)
    return n, top


@settings(max_examples=300, deadline=None)
@given(returns=st.lists(st.floats(-0.02, 0.02), min_size=1, max_size=60), bad=st.sampled_from([None, float("nan"), float("-inf")]),
       daily=st.sampled_from([None, 0.01, 0.03]), drawdown=st.sampled_from([None, 0.02, 0.04]), data=st.data())
def test_books_prefix_stops_where_the_guards_rule_stops_bar_by_bar(returns, bad, daily, drawdown, data):
    """Any equity path (the marks of a position worth its mark: equity = close), any day end, non-finite equity."""
    eq = 10_000.0 * np.cumprod(1 + np.array(returns))
    if bad is not None:
        eq[len(eq) // 2] = bad
    t = 60.0 * np.arange(1, len(eq) + 1)
    start = data.draw(st.integers(0, len(eq)))
    day_end = data.draw(st.sampled_from([np.inf, float(t[-1]), float(t[len(t) // 2])]))
    n, top = guard_rule(eq, t, start, day_end, daily, drawdown)
    out = np.empty((len(eq) - start, 4))
    limits = (day_end, 10_000.0, None if daily is None else (10_000.0, 10_000.0, daily), drawdown)
    got_n, got_top = books_prefix(eq, t - 60.0, t, start, len(eq), 0.0, (True, 1.0, 1.0, 0.0), limits, out)
    assert got_n == n
    if n:
        assert got_top == top
        assert np.array_equal(out[:n, 1], eq[start:start + n])


@settings(max_examples=300, deadline=None)
@given(returns=st.lists(st.floats(-0.02, 0.02), min_size=1, max_size=60), held=st.sampled_from([None, "spot", "long", "short"]),
       daily=st.sampled_from([None, 0.01, 0.03]), drawdown=st.sampled_from([None, 0.02, 0.04]), data=st.data())
def test_books_prefix_is_the_ledgers_equity_through_the_guards_rule(returns, held, daily, drawdown, data):
    """The books' equity on each bar is OpenPosition.value's (the same floats), and the count and top are the guard's rule's."""
    from workbench.engine.ledger import OpenPosition

    close = 100.0 * np.cumprod(1 + np.array(returns))
    t = 60.0 * np.arange(1, len(close) + 1)
    seconds = t - 60.0
    start = data.draw(st.integers(0, len(close)))
    cash = 5_000.0 if held == "spot" else 10_000.0
    pos = None if held is None else OpenPosition(1, "X", "short" if held == "short" else "long", 50.0, 100.0, 0.0, 0.0, held != "spot")
    eq = np.full(len(close), cash) if pos is None else cash + pos.value(close)
    unrealized = np.zeros(len(close)) if pos is None else pos.gross_pnl(close)
    limits = (float(t[-1]), 10_000.0, None if daily is None else (10_000.0, 10_000.0, daily), drawdown)
    want_n, want_top = guard_rule(eq, t, start, float(t[-1]), daily, drawdown)
    terms = None if pos is None else (pos.margin, 1.0 if pos.side == "long" else -1.0, pos.amount, pos.entry_price)
    out = np.full((len(close) - start, 4), np.nan)
    n, top = books_prefix(close, seconds, t, start, len(close), cash, terms, limits, out)
    assert n == want_n and (not n or top == want_top)
    rows = np.column_stack([seconds, eq, np.full(len(close), cash), unrealized])[start:start + n]
    assert np.array_equal(out[:n], rows)  # bit for bit: the replay's equity rows do not depend on the path taken
