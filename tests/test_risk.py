"""workbench.risk: limits, sizing, pre-trade rules, assessment and the pause guard."""
from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.errors import ConfigError
from workbench.fills import Costs, stop_levels
from workbench.markets import MarketRules
from workbench.risk import (
    OrderIntent,
    PortfolioView,
    PositionView,
    RiskGuard,
    RiskLimits,
    assess,
    check_order,
    size_entry,
    size_position,
    stop_prices,
)

BTC = MarketRules("BTC/USDT", amount_step=0.001, min_amount=0.001, min_notional=5.0)
FREE = MarketRules("BTC/USDT")  # no step, no minimums
OFF = dict(max_leverage=None, max_open_positions=None, max_position_quote=None, min_confidence=None,
           one_position_per_direction=False, daily_loss_limit=None, drawdown_limit=None)
DAY = 86_400.0


def view(equity: float = 10_000.0, positions: dict | None = None, day_start: float | None = None,
         peak: float | None = None) -> PortfolioView:
    return PortfolioView(equity, equity, day_start if day_start is not None else equity,
                         peak if peak is not None else equity, positions or {})


def pos(symbol: str, side: str = "long", amount: float = 1.0, mark: float = 100.0) -> PositionView:
    return PositionView(symbol, side, amount, mark, mark)


def buy(symbol: str = "BTC/USDT", amount: float = 0.01, price: float = 50_000.0, **kw) -> OrderIntent:
    return OrderIntent(symbol, "buy", amount, price, **kw)


# -- limits -------------------------------------------------------------------
def test_from_dict_rejects_unknown_field_with_suggestion():
    with pytest.raises(ConfigError) as err:
        RiskLimits.from_dict({"size_pct": 0.05, "max_open_position": 2})
    msg = str(err.value)
    assert "max_open_position" in msg and "Did you mean 'max_open_positions'?" in msg and "drawdown_limit" in msg


def test_from_dict_round_trip_and_off_words():
    limits = RiskLimits.from_dict({"size_mode": "fixed_quote", "leverage": 10, "max_leverage": 20,
                                   "stop_loss": "off", "take_profit": None, "max_open_positions": "none"})
    assert limits.stop_loss is None and limits.take_profit is None and limits.max_open_positions is None
    assert RiskLimits.from_dict(json.loads(json.dumps(limits.to_dict()))) == limits
    assert RiskLimits.from_dict(None) == RiskLimits() == RiskLimits.from_dict({})


def test_leverage_above_cap_says_how_to_fix():
    with pytest.raises(ConfigError, match="raise max_leverage to at least 10 or lower leverage"):
        RiskLimits(leverage=10)
    assert RiskLimits(leverage=10, max_leverage=None).leverage == 10


@pytest.mark.parametrize("changes, needle", [
    ({"size_mode": "pct_equty"}, "Did you mean 'pct_equity'"),
    ({"size_pct": 0}, "size_pct"), ({"size_pct": 1.5}, "size_pct"), ({"size_pct": math.nan}, "size_pct"),
    ({"size_pct": None}, "cannot be off"), ({"size_quote": -1}, "size_quote"), ({"leverage": 0.5}, "leverage"),
    ({"max_open_positions": 0}, "whole number"), ({"max_open_positions": 2.5}, "whole number"),
    ({"max_open_positions": True}, "whole number"), ({"daily_loss_limit": 1.0}, "daily_loss_limit"),
    ({"drawdown_limit": -0.1}, "drawdown_limit"), ({"cooldown_seconds": -1}, "cooldown_seconds"),
    ({"stop_loss": 2}, "stop_loss"), ({"min_confidence": 1.2}, "min_confidence"),
    ({"one_position_per_direction": "yes"}, "true or false"), ({"max_position_quote": "lots"}, "max_position_quote"),
])
def test_invalid_limits_raise_config_error(changes, needle):
    with pytest.raises(ConfigError, match=needle):
        RiskLimits.from_dict(changes)


# -- sizing -------------------------------------------------------------------
def test_pct_equity_sizing_is_the_vectorbt_percent_formula():
    costs = Costs(taker_fee=0.001, slippage=0.0005)
    limits = RiskLimits(size_pct=0.1)
    raw = 0.1 * 12_345.0 / (43_210.0 * 1.0005 * 1.001)
    assert size_entry(limits, 12_345.0, 43_210.0, FREE, costs) == pytest.approx(raw, rel=1e-12)
    stepped = size_position(limits, 12_345.0, 43_210.0, BTC, costs)
    assert stepped.raw_amount == pytest.approx(raw, rel=1e-12)
    assert stepped.amount == pytest.approx(math.floor(raw / 0.001) * 0.001) and stepped.amount <= raw


@pytest.mark.slow  # importing vectorbt alone takes 8-20 s on the shared machine
def test_pct_equity_sizing_matches_vectorbt_first_order():
    import numpy as np
    import pandas as pd
    import vectorbt as vbt

    close = pd.Series([101.3, 102.0, 99.0], index=pd.date_range("2024-01-01", periods=3, freq="1h"))
    entries = pd.Series([True, False, False], index=close.index)
    costs = Costs(taker_fee=0.00075, slippage=0.001)
    pf = vbt.Portfolio.from_signals(close, entries, size=0.3, size_type="percent", fees=costs.taker_fee,
                                    slippage=costs.slippage, init_cash=5_000.0, size_granularity=0.01)
    got = size_entry(RiskLimits(size_pct=0.3), 5_000.0, 101.3, MarketRules("X/USDT", amount_step=0.01), costs)
    assert got == pytest.approx(float(np.asarray(pf.orders.records["size"])[0]), rel=1e-12)


def test_fixed_quote_sizing_uses_margin_times_leverage():
    limits = RiskLimits(size_mode="fixed_quote", size_quote=200.0, leverage=10, max_leverage=10)
    assert size_entry(limits, 1_000.0, 25_000.0, FREE, Costs()) == pytest.approx(200.0 * 10 / 25_000.0)
    contracts = MarketRules("BTC/USDT:USDT", contract=True, contract_size=0.01)
    assert size_entry(limits, 1_000.0, 25_000.0, contracts, Costs()) == pytest.approx(200.0 * 10 / 25_000.0 / 0.01)


def test_sizing_below_venue_minimum_is_zero_with_reason():
    small = size_position(RiskLimits(), 100.0, 50_000.0, BTC, Costs())  # 2 USDT of equity: below one step
    assert small.amount == 0 and small.raw_amount > 0 and "below venue minimum" in small.reason
    notional = MarketRules("BTC/USDT", amount_step=0.0001, min_notional=10.0)
    tiny = size_position(RiskLimits(), 400.0, 50_000.0, notional, Costs(taker_fee=0.0))  # 8 USDT order
    assert tiny.amount == 0 and "minimum order value 10" in tiny.reason
    lot = MarketRules("BTC/USDT", amount_step=0.001, min_amount=0.01)
    assert size_position(RiskLimits(), 10_000.0, 50_000.0, lot, Costs()).amount == 0


def test_sizing_caps_at_venue_maximum_and_refuses_bad_input():
    capped = MarketRules("BTC/USDT", amount_step=0.001, max_amount=0.002)
    s = size_position(RiskLimits(size_pct=1.0), 1e6, 50_000.0, capped, Costs())
    assert s.amount == pytest.approx(0.002) and "maximum" in s.reason
    for equity, price in ((0.0, 100.0), (-5.0, 100.0), (math.nan, 100.0), (100.0, math.inf)):
        bad = size_position(RiskLimits(), equity, price, FREE, Costs())
        assert bad.amount == 0 and "positive number" in bad.reason


def test_stop_prices_delegate_to_fill_rules():
    limits = RiskLimits(stop_loss=0.02, take_profit=0.05)
    assert stop_prices("long", 100.0, limits) == stop_levels("long", 100.0, 0.02, 0.05)
    assert stop_prices("sell", 100.0, limits) == stop_levels("short", 100.0, 0.02, 0.05)
    sl, tp = stop_prices("long", 100.0, limits.with_(stop_loss=None))
    assert math.isnan(sl) and tp == pytest.approx(105.0)
    with pytest.raises(ConfigError):
        stop_prices("up", 100.0, limits)


# -- check_order: each rule denies, each off switch allows -------------------
def denied(intent, v, limits, market=FREE, **kw):
    verdict = check_order(intent, v, limits, market, 0.0, **kw)
    assert not verdict.allowed and verdict.amount == 0 and verdict.reasons
    return " ".join(verdict.reasons)


def allowed(intent, v, limits, market=FREE, **kw):
    verdict = check_order(intent, v, limits, market, 0.0, **kw)
    assert verdict.allowed, verdict.reasons
    return verdict


def test_paused_denies_new_exposure():
    msg = denied(buy(), view(), RiskLimits(), paused="daily loss 1.2% reached the 1% limit")
    assert "paused" in msg and "daily loss 1.2%" in msg
    allowed(buy(), view(), RiskLimits(), paused=False)


def test_min_confidence():
    limits = RiskLimits(min_confidence=0.6)
    assert "0.40 is below min_confidence 0.60" in denied(buy(confidence=0.4), view(), limits)
    allowed(buy(confidence=0.6), view(), limits)
    allowed(buy(confidence=0.1), view(), limits.with_(min_confidence=None))


def test_max_open_positions():
    held = view(positions={s: pos(s) for s in ("A/USDT", "B/USDT", "C/USDT")})
    assert "3 positions are open, the max_open_positions limit is 3" in denied(buy(), held, RiskLimits())
    allowed(buy(), held, RiskLimits(max_open_positions=4))
    allowed(buy(), held, RiskLimits(max_open_positions=None))


def test_one_position_per_direction():
    held = view(positions={"BTC/USDT": pos("BTC/USDT", "long", 0.01, 50_000.0)})
    assert "already has an open long position" in denied(buy(), held, RiskLimits())
    allowed(buy(), held, RiskLimits(one_position_per_direction=False))


def test_max_position_quote_counts_the_open_position():
    limits = RiskLimits(max_position_quote=1_000.0, one_position_per_direction=False)
    assert "notional would be 1,500.00 USDT, above max_position_quote 1,000.00" in denied(buy(amount=0.03), view(), limits)
    allowed(buy(amount=0.02), view(), limits)  # exactly at the limit
    held = view(positions={"BTC/USDT": pos("BTC/USDT", "long", 0.01, 50_000.0)})
    assert "1,500.00" in denied(buy(amount=0.02), held, limits)
    allowed(buy(amount=0.01), held, limits)
    allowed(buy(amount=0.03), view(), limits.with_(max_position_quote=None))


def test_max_leverage_counts_all_positions():
    held = view(positions={"ETH/USDT": pos("ETH/USDT", "short", 5.0, 3_000.0)})  # 15k notional on 10k equity
    assert "Total leverage would be 2.00x" in denied(buy(amount=0.1), held, RiskLimits(max_leverage=1.5))
    allowed(buy(amount=0.1), held, RiskLimits(max_leverage=2.0))
    allowed(buy(amount=1.0), held, RiskLimits(max_leverage=None))


def test_venue_minimums_and_maximum():
    assert "below venue minimum" in denied(buy(amount=0.0), view(), RiskLimits(), BTC)
    assert "below venue minimum order value 5" in denied(buy(amount=0.001, price=1_000.0), view(), RiskLimits(), BTC)
    lot = MarketRules("BTC/USDT", min_amount=0.01, max_amount=1.0)
    assert "below venue minimum amount 0.01" in denied(buy(amount=0.005), view(), RiskLimits(), lot)
    assert "above the venue maximum 1" in denied(buy(amount=2.0, price=1.0), view(), RiskLimits(), lot)


@pytest.mark.parametrize("intent, v", [
    (buy(amount=math.nan), view()), (buy(amount=-1.0), view()), (buy(price=math.inf), view()),
    (buy(price=0.0), view()), (buy(confidence=math.nan), view()), (buy(), view(equity=0.0)),
    (buy(), view(equity=math.nan)), (buy(), view(positions={"ETH/USDT": pos("ETH/USDT", mark=math.nan)})),
])
def test_non_finite_or_non_positive_input_is_denied_not_raised(intent, v):
    assert "finite" in denied(intent, v, RiskLimits(**OFF))


def test_allowed_amount_is_floored_to_the_step_once():
    v = allowed(buy(amount=0.0035), view(), RiskLimits(), BTC)
    assert v.amount == pytest.approx(0.003) and "floored" in v.reasons[0]
    sized = size_entry(RiskLimits(), 10_000.0, 50_000.0, BTC, Costs())  # 0.003: 0.003 // 0.001 would be 2
    assert allowed(buy(amount=sized), view(), RiskLimits(), BTC).amount == sized


def test_exits_are_allowed_even_when_everything_is_breached():
    strict = RiskLimits(max_open_positions=1, max_leverage=1.0, max_position_quote=1.0, min_confidence=0.99)
    held = view(equity=1.0, positions={"BTC/USDT": pos("BTC/USDT", "long", 1.0, 50_000.0),
                                       "ETH/USDT": pos("ETH/USDT", "short", 9.0, 3_000.0)})
    exit_long = OrderIntent("BTC/USDT", "sell", 1.0, 50_000.0, reduce_only=True, confidence=0.0)
    assert allowed(exit_long, held, strict, BTC, paused=True).amount == 1.0
    close_short = OrderIntent("ETH/USDT", "buy", 9.0, 3_000.0)  # not flagged, but only closes
    assert allowed(close_short, held, strict, paused=True).amount == 9.0


def test_flip_is_cut_to_a_close_when_the_reversal_is_denied():
    held = view(positions={"BTC/USDT": pos("BTC/USDT", "long", 0.02, 50_000.0)})
    flip = OrderIntent("BTC/USDT", "sell", 0.05, 50_000.0)
    cut = allowed(flip, held, RiskLimits(), BTC, paused=True)
    assert cut.amount == pytest.approx(0.02) and "reversal is denied" in cut.reasons[0]
    assert allowed(flip, held, RiskLimits(), BTC).amount == pytest.approx(0.05)


def test_denial_event_and_datetime_now():
    limits = RiskLimits(min_confidence=0.5)
    intent = buy(confidence=0.1)
    when = datetime(2024, 3, 1, 12, tzinfo=UTC)
    verdict = check_order(intent, view(), limits, FREE, when)
    event = verdict.event(intent, when)
    assert event.kind == "denied" and event.at == when.timestamp() and event.details["confidence"] == 0.1
    assert "min_confidence" in event.reason
    assert check_order(buy(), view(), limits, FREE, when).event(buy(), when) is None


# -- assess ---------------------------------------------------------------------
def test_assess_levels_follow_limit_use():
    limits = RiskLimits(max_leverage=3.0, max_open_positions=None)
    low = assess(buy(amount=0.01), view(), limits, FREE)
    assert low.level == "LOW" and low.can_trade and low.metrics["leverage"] == pytest.approx(500.0 / 10_000.0)
    medium = assess(buy(amount=0.12), view(), limits, FREE)  # 60% of equity in one symbol
    assert medium.level == "MEDIUM" and medium.metrics["concentration"] == pytest.approx(0.6)
    spread = view(positions={s: pos(s, amount=50.0, mark=100.0) for s in ("A/USDT", "B/USDT", "C/USDT", "D/USDT")})
    high = assess(buy(amount=0.1), spread, limits, FREE)  # 25k notional on 10k: 2.5x of a 3x cap
    assert high.level == "HIGH" and high.metrics["leverage_use"] == pytest.approx(2.5 / 3.0)
    assert high.metrics["concentration"] == pytest.approx(0.5)
    assert any("total leverage 2.50x uses 83% of max_leverage 3x" in r for r in high.reasons)
    uncapped = assess(buy(amount=0.1), spread, limits.with_(max_leverage=None), FREE)
    assert uncapped.metrics["leverage_use"] is None and uncapped.level == "HIGH"  # against the 3x reference


def test_assess_counts_distance_to_loss_limits():
    near_dd = view(equity=9_580.0, day_start=9_580.0, peak=10_000.0)  # drawdown 4.2% of a 5% limit
    a = assess(buy(amount=0.001), near_dd, RiskLimits(), FREE)
    assert a.level == "HIGH" and a.metrics["drawdown"] == pytest.approx(0.042) and a.can_trade
    near_day = view(equity=9_940.0, day_start=10_000.0)  # 0.6% of a 1% daily limit
    b = assess(buy(amount=0.001), near_day, RiskLimits(), FREE)
    assert b.level == "MEDIUM" and b.metrics["daily_loss_use"] == pytest.approx(0.6)
    off = assess(buy(amount=0.001), near_dd, RiskLimits(drawdown_limit=None), FREE)
    assert off.metrics["drawdown_use"] is None and off.level == "LOW"


def test_assess_reports_denials():
    a = assess(buy(confidence=0.2), view(), RiskLimits(min_confidence=0.5), FREE)
    assert not a.can_trade and "min_confidence" in a.reasons[0]


# -- the guard ----------------------------------------------------------------
T0 = datetime(2024, 5, 6, 10, tzinfo=UTC).timestamp()


def test_guard_quiet_without_breach():
    g = RiskGuard(RiskLimits())
    assert g.update(view(10_000.0), T0) == [] and g.update(view(9_950.0), T0 + 1) == []
    assert g.can_open(T0 + 2) == (True, "")


def test_daily_loss_pause_lasts_until_next_utc_day():
    g = RiskGuard(RiskLimits(daily_loss_limit=0.01, drawdown_limit=None, cooldown_seconds=60))
    g.update(view(10_000.0), T0)
    [event] = g.update(view(9_890.0), T0 + 10)
    assert event.kind == "paused" and event.details["rule"] == "daily_loss" and "1.10%" in event.reason
    ok, why = g.can_open(T0 + 20)
    assert not ok and "next UTC day" in why and "cooldown ends in 50 s" in why
    assert g.update(view(10_100.0), T0 + 3_600) == []  # a recovery within the day does not lift a daily stop
    assert not g.can_open(T0 + 3_600)[0]
    [resumed] = g.update(view(10_100.0), T0 + DAY)
    assert resumed.kind == "resumed" and "new UTC day" in resumed.reason and g.can_open(T0 + DAY)[0]
    assert g.day_start_equity == 10_100.0


def test_cooldown_delays_resume_after_midnight():
    midnight = datetime(2024, 5, 7, tzinfo=UTC).timestamp()
    g = RiskGuard(RiskLimits(drawdown_limit=None, cooldown_seconds=600))
    g.update(view(10_000.0), midnight - 100)
    assert g.update(view(9_000.0), midnight - 60)[0].kind == "paused"
    assert g.update(view(9_000.0), midnight + 10) == []  # new day, but only 70 s since the pause
    assert g.update(view(9_000.0), midnight + 540)[0].kind == "resumed"


def test_drawdown_pause_resumes_on_recovery_with_hysteresis():
    g = RiskGuard(RiskLimits(daily_loss_limit=None, drawdown_limit=0.05, cooldown_seconds=60))
    g.update(view(10_000.0), T0)
    [event] = g.update(view(9_400.0), T0 + 1)
    assert event.details["rule"] == "drawdown" and event.details["reference"] == 10_000.0
    assert g.update(view(9_900.0), T0 + 30) == []  # recovered, but cooldown not over
    assert g.update(view(9_700.0), T0 + 120) == []  # 3% drawdown: above half the limit
    [resumed] = g.update(view(9_760.0), T0 + 180)  # 2.4%
    assert resumed.kind == "resumed" and "2.40%" in resumed.reason


def test_manual_resume_rearms_from_current_equity():
    g = RiskGuard(RiskLimits(daily_loss_limit=0.01, drawdown_limit=0.05))
    g.update(view(10_000.0), T0)
    assert {e.details["rule"] for e in g.update(view(9_400.0), T0 + 1)} == {"daily_loss", "drawdown"}
    event = g.resume(T0 + 2, view(9_400.0))
    assert event.kind == "resumed" and event.details["manual"] and g.can_open(T0 + 2)[0]
    assert g.update(view(9_350.0), T0 + 3) == []  # 0.5% more: within the re-armed limits
    assert g.day_start_equity == 10_000.0 and g.peak_equity == 10_000.0  # the true references stay
    [again] = g.update(view(9_300.0), T0 + 4)  # 100 more = 1% of the day's start since the resume
    assert again.details["rule"] == "daily_loss" and "manual resume" in again.reason


def test_reset_without_view_rearms_at_next_update():
    g = RiskGuard(RiskLimits(daily_loss_limit=0.01, drawdown_limit=None))
    g.update(view(10_000.0), T0)
    g.update(view(9_800.0), T0 + 1)
    g.reset(T0 + 2)
    assert g.update(view(9_790.0), T0 + 3) == [] and g.can_open(T0 + 3)[0]
    assert g.resume(T0 + 4).details["rules"] == []  # nothing to lift


def test_limits_off_never_pause_and_no_cooldown_resumes_at_once():
    g = RiskGuard(RiskLimits(daily_loss_limit=None, drawdown_limit=None))
    g.update(view(10_000.0), T0)
    assert g.update(view(1_000.0), T0 + 1) == []
    g = RiskGuard(RiskLimits(daily_loss_limit=None, drawdown_limit=0.1, cooldown_seconds=None))
    g.update(view(10_000.0), T0)
    assert g.update(view(8_900.0), T0 + 1)[0].kind == "paused"
    assert g.update(view(9_600.0), T0 + 1)[0].kind == "resumed"


def test_guard_state_survives_a_restart():
    limits = RiskLimits(drawdown_limit=None, cooldown_seconds=60)
    g = RiskGuard(limits)
    g.update(view(10_000.0), T0)
    g.update(view(9_800.0), T0 + 5)
    stored = json.loads(json.dumps(g.state()))
    g2 = RiskGuard.from_state(limits, stored)
    assert g2.state() == g.state() and not g2.can_open(T0 + 6)[0]
    assert g2.update(view(9_800.0), T0 + DAY)[0].kind == "resumed"
    assert RiskGuard.from_state(limits, {}).state() == RiskGuard(limits).state()
    with pytest.raises(ConfigError, match="clear the deployment's risk_state"):
        RiskGuard.from_state(limits, {"version": 1, "breaches": {"margin_call": {}}})


def test_guard_uses_view_references_first_and_ignores_bad_equity():
    g = RiskGuard(RiskLimits(daily_loss_limit=0.01, drawdown_limit=None))
    assert g.update(view(9_850.0, day_start=10_000.0), datetime(2024, 5, 6, 10))[0].kind == "paused"
    assert g.update(view(math.nan), T0 + 5) == []


# -- properties ---------------------------------------------------------------
SYMBOLS = ("A/USDT", "B/USDT", "C/USDT", "D/USDT", "E/USDT")
money = st.floats(1.0, 1e6)
prices = st.floats(0.01, 1e5)


@st.composite
def scenario(draw):
    limits = RiskLimits(
        max_open_positions=draw(st.none() | st.integers(1, 4)),
        max_position_quote=draw(st.none() | money),
        max_leverage=draw(st.none() | st.floats(1.0, 10.0)),
        one_position_per_direction=draw(st.booleans()),
        min_confidence=draw(st.none() | st.floats(0, 1)),
    )
    symbol = draw(st.sampled_from(SYMBOLS))
    price = draw(prices)
    positions = {}
    for s in draw(st.lists(st.sampled_from(SYMBOLS), unique=True, max_size=5)):
        mark = price if s == symbol else draw(prices)
        positions[s] = PositionView(s, draw(st.sampled_from(("long", "short"))), draw(st.floats(1e-4, 100.0)), mark, mark)
    v = view(draw(money), positions)
    intent = OrderIntent(symbol, draw(st.sampled_from(("buy", "sell"))), draw(st.floats(1e-4, 200.0)), price,
                         draw(st.booleans()), draw(st.floats(0, 1)))
    step = draw(st.sampled_from((None, 0.001, 0.1)))
    return limits, v, intent, MarketRules(symbol, amount_step=step), draw(st.booleans())


def _after(v: PortfolioView, intent: OrderIntent, amount: float) -> dict[str, float]:
    """Signed notional per symbol after `amount` of `intent` fills (computed here, independently)."""
    book = {s: (p.notional if p.side == "long" else -p.notional) for s, p in v.positions.items()}
    before = book.get(intent.symbol, 0.0)
    after = before + (amount if intent.side == "buy" else -amount) * intent.price
    if intent.reduce_only and before * after <= 0:  # reduce-only never opens or reverses
        after = 0.0
    if intent.reduce_only and abs(after) > abs(before):  # nor adds
        after = before
    book[intent.symbol] = after
    return {s: n for s, n in book.items() if abs(n) > 1e-9}


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_allowed_orders_never_break_limits(case):
    limits, v, intent, market, paused = case
    verdict = check_order(intent, v, limits, market, T0, paused=paused)
    if not verdict.allowed:
        assert verdict.amount == 0 and verdict.reasons
        return
    before, after = _after(v, intent, 0.0), _after(v, intent, verdict.amount)
    grew = abs(after.get(intent.symbol, 0.0)) > abs(before.get(intent.symbol, 0.0)) * (1 + 1e-9)
    if not grew:
        return  # an exit or a reduction: always allowed, limits or not
    assert not paused
    if limits.max_open_positions is not None and len(after) > len(before):
        assert len(after) <= limits.max_open_positions
    if limits.max_position_quote is not None:
        assert abs(after[intent.symbol]) <= limits.max_position_quote * (1 + 1e-6)
    if limits.max_leverage is not None:
        assert sum(map(abs, after.values())) / v.equity <= limits.max_leverage * (1 + 1e-6)
    if limits.one_position_per_direction and intent.symbol in before:
        assert before[intent.symbol] * after[intent.symbol] < 0  # only a flip may add on a held symbol


@settings(max_examples=150, deadline=None)
@given(scenario(), st.floats(0.01, 1.0))
def test_exits_are_always_allowed(case, fraction):
    limits, v, intent, market, _ = case
    held = v.positions.get(intent.symbol)
    if held is None:
        return
    side = "sell" if held.side == "long" else "buy"
    amount = held.amount * fraction
    for reduce_only in (True, False):
        exit_ = OrderIntent(intent.symbol, side, amount, intent.price, reduce_only, confidence=0.0)
        verdict = check_order(exit_, v, limits, market, T0, paused=True)
        assert verdict.allowed and verdict.amount == amount


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True),
       st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True))
def test_check_order_never_raises(amount, price, equity, mark):
    v = PortfolioView(equity, equity, equity, equity, {"A/USDT": PositionView("A/USDT", "long", 1.0, mark, mark)})
    for symbol in ("A/USDT", "B/USDT"):
        verdict = check_order(OrderIntent(symbol, "buy", amount, price), v, RiskLimits(), FREE, T0)
        assert verdict.level in ("LOW", "MEDIUM", "HIGH")
        if verdict.allowed:
            assert math.isfinite(verdict.amount) and verdict.amount > 0


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.tuples(st.floats(-0.03, 0.03), st.floats(0, 30_000)), min_size=1, max_size=80),
    daily=st.sampled_from([None, 0.01, 0.03]),
    drawdown=st.sampled_from([None, 0.02, 0.05]),
    resume_at=st.integers(0, 80),
)
def test_guard_equity_fast_path_equals_the_full_update(steps, daily, drawdown, resume_at):
    """The engine hands the guard a bare equity on every bar; it must decide exactly as with a full view."""
    limits = RiskLimits(daily_loss_limit=daily, drawdown_limit=drawdown, cooldown_seconds=600)
    fast, full = RiskGuard(limits), RiskGuard(limits)
    eq, t = 10_000.0, T0
    for i, (ret, dt) in enumerate(steps):
        eq, t = eq * (1 + ret), t + dt
        if i == resume_at:
            assert fast.resume(t).reason == full.resume(t).reason
        got = fast.update(float(eq), float(t))
        want = full.update(view(eq, day_start=full.day_start_equity or eq, peak=max(full.peak_equity or eq, eq)), t)
        assert [(e.kind, e.reason) for e in got] == [(e.kind, e.reason) for e in want]
        assert fast.state() == full.state()


#: equity paths for the guard's quiet tests: limits, where the day is, per-bar returns, one bad equity
QUIET_PATHS = dict(
    daily=st.sampled_from([None, 0.01, 0.03]),
    drawdown=st.sampled_from([None, 0.02, 0.05]),
    start=st.floats(-7_200, 7_200),
    returns=st.lists(st.floats(-0.01, 0.01), min_size=1, max_size=120),
    bad=st.sampled_from([None, float("nan"), float("inf")]),
)


@settings(max_examples=200, deadline=None)
@given(**QUIET_PATHS)
def test_quiet_bars_leave_the_guard_as_updating_bar_by_bar(daily, drawdown, start, returns, bad):
    """A replay calls quiet() alone while it passes: the guard ends as full updates leave it, and later updates agree."""
    limits = RiskLimits(daily_loss_limit=daily, drawdown_limit=drawdown, cooldown_seconds=0)
    midnight = datetime(2024, 5, 7, tzinfo=UTC).timestamp()
    times = [midnight + start + 60.0 * (i + 1) for i in range(len(returns))]
    equity = [10_000.0]
    for r in returns:
        equity.append(equity[-1] * (1 + r))
    equity = equity[1:]
    if bad is not None:
        equity[len(equity) // 2] = bad
    quiet, stepped = RiskGuard(limits), RiskGuard(limits)
    for g in (quiet, stepped):
        g.update(10_000.0, float(midnight + start))
    n = 0
    while n < len(equity) and quiet.quiet(equity[n], times[n]):
        n += 1
    events = [stepped.update(e, t) for e, t in zip(equity, times, strict=True)]
    assert all(ev == [] for ev in events[:n])
    rest = [quiet.update(e, t) for e, t in zip(equity[n:], times[n:], strict=True)]
    assert [[(e.kind, e.reason) for e in ev] for ev in rest] == [[(e.kind, e.reason) for e in ev] for ev in events[n:]]
    assert quiet.state() == stepped.state()


def scan_quiet(guard, equity, times):
    """A replay's scan of a stretch: quiet_limits, books_prefix on books worth their mark (equity = close), take_peak."""
    from workbench.scan import books_prefix

    limits = guard.quiet_limits(float(times[0]))
    if limits is None:
        return 0
    n, top = books_prefix(equity, times - 60.0, times, 0, len(equity), 0.0, (True, 1.0, 1.0, 0.0), limits, np.empty((len(equity), 4)))
    guard.take_peak(n, top)
    return n


@settings(max_examples=200, deadline=None)
@given(**QUIET_PATHS, paused=st.booleans())
def test_a_scanned_stretch_passes_the_bars_quiet_passes_one_by_one(daily, drawdown, start, returns, bad, paused):
    """The guard's limits scanned over arrays are quiet() on each bar in turn: the same count, and the guard ends the
    same after the next update."""
    limits = RiskLimits(daily_loss_limit=daily, drawdown_limit=drawdown, cooldown_seconds=0)
    midnight = datetime(2024, 5, 7, tzinfo=UTC).timestamp()
    times = np.array([midnight + start + 60.0 * (i + 1) for i in range(len(returns))])
    equity = 10_000.0 * np.cumprod(1 + np.array(returns))
    if bad is not None:
        equity[len(equity) // 2] = bad
    run, one = RiskGuard(limits), RiskGuard(limits)
    for g in (run, one):
        g.update(10_000.0, float(midnight + start))
        if paused and drawdown is not None:
            g.update(10_000.0 * (1 - 2 * drawdown), float(midnight + start + 1))
    n = 0
    while n < len(equity) and one.quiet(float(equity[n]), float(times[n])):
        n += 1
    assert scan_quiet(run, equity, times) == n
    if n < len(equity):  # the bar that was not quiet goes through update() in both
        got, want = run.update(float(equity[n]), float(times[n])), one.update(float(equity[n]), float(times[n]))
        assert [(e.kind, e.reason) for e in got] == [(e.kind, e.reason) for e in want]
    assert run.state() == one.state()


def test_quiet_answers_alike_for_one_equity_until_the_day_ends():
    """A replay takes a flat stretch's bars at once up to day_end: quiet() is the same for one equity until then."""
    limits = RiskLimits(daily_loss_limit=0.01, drawdown_limit=0.02, cooldown_seconds=0)
    t0 = datetime(2024, 5, 7, 13, 30, tzinfo=UTC).timestamp()
    guard = RiskGuard(limits)
    guard.update(10_000.0, t0)
    assert guard.day_end == datetime(2024, 5, 8, tzinfo=UTC).timestamp()
    assert all(guard.quiet(9_950.0, t) for t in (t0 + 60, t0 + 3_600, guard.day_end - 1e-6))
    assert not guard.quiet(9_950.0, guard.day_end)  # a new day: update() moves the day's start
    assert not guard.quiet(9_899.0, t0 + 120)  # the daily loss limit is reached: update() pauses
