"""The fill rules agree with vectorbt's own stop logic, which the backtest uses."""
from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from vectorbt.portfolio.nb import get_stop_price_nb

from workbench.errors import ConfigError
from workbench.fills import Costs, fee, floor_to_step, limit_fill, market_fill_price, stop_exit, stop_levels

prices = st.floats(min_value=1.0, max_value=1000.0, allow_nan=False)
fracs = st.floats(min_value=0.001, max_value=0.2)


@settings(max_examples=300, deadline=None)
@given(entry=prices, sl=fracs, tp=fracs, o=prices, a=prices, b=prices, side=st.sampled_from(["long", "short"]))
def test_stop_exit_matches_vectorbt(entry, sl, tp, o, a, b, side):
    lo, hi = min(a, b, o), max(a, b, o)
    sl_price, tp_price = stop_levels(side, entry, sl, tp)
    got = stop_exit(side, sl_price, tp_price, o, hi, lo)
    pos = 1.0 if side == "long" else -1.0
    want = get_stop_price_nb(pos, entry, sl, o, lo, hi, True)
    reason = "stop_loss"
    if math.isnan(want):
        want = get_stop_price_nb(pos, entry, tp, o, lo, hi, False)
        reason = "take_profit"
    if math.isnan(want):
        assert got is None
    else:
        assert got is not None and got[1] == reason and got[0] == pytest.approx(want, rel=1e-12)


def test_stop_loss_wins_when_both_cross():
    sl, tp = stop_levels("long", 100.0, 0.02, 0.05)
    assert stop_exit("long", sl, tp, 100.0, 106.0, 97.0) == (pytest.approx(98.0), "stop_loss")


def test_gap_fills_at_open():
    sl, tp = stop_levels("long", 100.0, 0.02, 0.05)
    assert stop_exit("long", sl, tp, 95.0, 96.0, 94.0) == (95.0, "stop_loss")
    assert stop_exit("long", sl, tp, 107.0, 108.0, 106.5) == (107.0, "take_profit")
    assert stop_exit("long", sl, tp, 100.0, 101.0, 99.0) is None


def test_market_and_limit_and_fee():
    assert market_fill_price("buy", 100.0, 0.001) == pytest.approx(100.1)
    assert market_fill_price("sell", 100.0, 0.001) == pytest.approx(99.9)
    assert limit_fill("buy", 99.0, 100.0, 101.0, 98.5) == 99.0
    assert limit_fill("buy", 99.0, 98.0, 99.5, 97.0) == 98.0
    assert limit_fill("sell", 105.0, 100.0, 104.0, 99.0) is None
    assert fee(-200.0, 0.001) == pytest.approx(0.2)
    assert floor_to_step(1.23456, 0.001) == pytest.approx(1.234)


@settings(max_examples=3000, deadline=None)
@given(amount=st.floats(0, 1e7, allow_nan=False), step=st.sampled_from([1e-8, 1e-6, 1e-4, 0.001, 0.01, 0.1, 1.0, 10.0, 5e-5, 0.25, 0.5, 0.3, 2.5e-3]))
def test_floor_to_step_is_the_clean_multiple_of_the_step(amount, step):
    """The fast form (a division by 10**k) gives the float round() gave, and needs no second rounding.

    (Up to 10**12 steps: past that a float cannot hold every multiple of the step.)
    """
    assume(amount / step < 1e12)
    n = math.floor(amount / step * (1 + 1e-12))
    reference = round(round(n * step, max(0, -math.floor(math.log10(step)) + 2)), 12)
    out = floor_to_step(amount, step)
    assert out == reference
    assert round(out, 12) == out
    assert out <= amount * (1 + 1e-12) + 1e-12


@pytest.mark.parametrize("bad", [-0.001, 0.5, float("nan"), "x"])
def test_costs_reject_bad_values(bad):
    with pytest.raises(ConfigError, match="fraction"):
        Costs(taker_fee=bad)
