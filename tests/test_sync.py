"""Reconciliation: the pure diff finds exactly the injected differences; corrections, learning records, the CLI."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.errors import ConfigError
from workbench.fills import Costs
from workbench.store import Store
from workbench.strategies import Signals
from workbench.sync import (
    ApplyRules,
    Correction,
    Ledger,
    Tolerances,
    VenueReport,
    apply_corrections,
    counterfactual_exit,
    diff,
    differences_frame,
    learning_records,
    learning_summary,
)

STEP, TICK = 0.001, 0.01
SYMS = [f"S{i}/USDT:USDT" for i in range(6)]
TOL = Tolerances(steps={s: (STEP, TICK) for s in SYMS + [f"P{i}/USDT:USDT" for i in range(12)]})


# -- the property: random consistent books, injected differences, exactly those found ------------------------
@st.composite
def books(draw):
    n = draw(st.integers(0, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    fills, trades, orders, vorders = [], [], [], []
    for i in range(n):
        sym = SYMS[int(rng.integers(len(SYMS)))]
        side = "buy" if rng.random() < 0.5 else "sell"
        amount = int(rng.integers(1, 500)) * STEP
        price = int(rng.integers(1000, 9000)) * TICK
        cur = "BNB" if rng.random() < 0.2 else "USDT"
        fee = round(amount * price * 0.001, 10)
        at = 1000.0 + i
        noise = float(rng.uniform(-0.4, 0.4)) * STEP  # inside the tolerance: never a difference
        if rng.random() < 0.25:  # recorded from an order report (synthetic id): the venue split it in two trades
            half = round(amount / 2 / STEP) * STEP or STEP
            fills.append(dict(deployment_id="d1", venue_trade_id=f"o{i}:{amount}", venue_order_id=f"o{i}", client_order_id=f"c{i}", symbol=sym,
                              side=side, amount=amount + half, price=price, fee=fee * 2, fee_currency=cur, at=at))
            for part, amt, f in (("a", amount, fee), ("b", half, fee)):
                trades.append(dict(trade_id=f"t{i}{part}", order_id=f"o{i}", client_order_id=f"c{i}", symbol=sym, side=side, amount=amt,
                                   price=price, fee=f, fee_currency=cur, at=at))
        else:
            fills.append(dict(deployment_id="d1", venue_trade_id=f"t{i}", venue_order_id=f"o{i}", client_order_id=f"c{i}", symbol=sym,
                              side=side, amount=amount, price=price, fee=fee, fee_currency=cur, at=at))
            trades.append(dict(trade_id=f"t{i}", order_id=f"o{i}", client_order_id=f"c{i}", symbol=sym, side=side, amount=amount + noise,
                               price=price, fee=fee, fee_currency=cur, at=at))
        status = ["filled", "open", "cancelled"][int(rng.integers(3))]
        orders.append(dict(deployment_id="d1", client_order_id=f"c{i}", venue_order_id=f"o{i}", symbol=sym, side=side, status=status,
                           amount=amount, filled=0.0, purpose="entry", position_id=None))
        vorders.append(dict(order_id=f"o{i}", client_order_id=f"c{i}", symbol=sym, side=side,
                            status={"filled": "closed", "open": "open", "cancelled": "canceled"}[status], amount=amount, filled=0.0))
    positions, vpos = [], []
    for j in range(draw(st.integers(0, 4))):
        sym, side, amt = f"P{j}/USDT:USDT", draw(st.sampled_from(["long", "short"])), draw(st.integers(1, 900)) * STEP
        positions.append(dict(id=j + 1, deployment_id="d1", symbol=sym, side=side, amount=amt, entry_price=100.0, entry_at=900.0, entry_fee=0.1))
        vpos.append(dict(symbol=sym, side=side, amount=amt, entry_price=100.0, at=900.0))
    return fills, trades, orders, vorders, positions, vpos


INJECTED = ("missing_fill", "phantom_fill", "fill_mismatch", "order_status_mismatch", "order_unknown",
            "position_mismatch", "position_closed_externally", "unknown_position")
INJECTIONS = st.fixed_dictionaries({k: st.integers(0, 2) for k in INJECTED})


def inject(book, counts, rng):
    fills, trades, orders, vorders, positions, vpos = (list(x) for x in book)
    expected = set()
    for k in range(counts["missing_fill"]):
        trades.append(dict(trade_id=f"x{k}", order_id=f"xo{k}", client_order_id=None, symbol=SYMS[0], side="sell", amount=0.5, price=10.0,
                           fee=0.005, fee_currency="USDT", at=2000.0 + k, manual=True))
        expected.add(("missing_fill", f"x{k}"))
    for k in range(counts["phantom_fill"]):
        fills.append(dict(deployment_id="d1", venue_trade_id=f"ph{k}", venue_order_id=f"pho{k}", client_order_id=f"phc{k}", symbol=SYMS[1],
                          side="buy", amount=0.2, price=10.0, fee=0.002, fee_currency="USDT", at=2000.0 + k))
        expected.add(("phantom_fill", f"ph{k}"))
    exact = [i for i, t in enumerate(trades) if t["trade_id"].startswith("t") and t["trade_id"][1:].isdigit()]
    for n, i in enumerate(rng.permutation(exact)[: counts["fill_mismatch"]]):
        t = dict(trades[i])
        field = ["amount", "price", "fee", "fee_currency"][n % 4]
        if field == "amount":
            t["amount"] += 3 * STEP
        elif field == "price":
            t["price"] += 2 * TICK
        elif field == "fee":
            t["fee"] = t["fee"] * 1.5 + 1e-6
        else:
            t["fee_currency"] = "ETH" if t["fee_currency"] != "ETH" else "USDT"
        trades[i] = t
        expected.add(("fill_mismatch", t["trade_id"]))
    for k in range(counts["order_status_mismatch"]):
        orders.append(dict(deployment_id="d1", client_order_id=f"sl{k}", venue_order_id=f"slo{k}", symbol=SYMS[2], side="sell", status="open",
                           amount=1.0, filled=0.0, purpose="stop_loss", position_id=None))
        vorders.append(dict(order_id=f"slo{k}", client_order_id=f"sl{k}", symbol=SYMS[2], side="sell", status="canceled", amount=1.0, filled=0.0))
        expected.add(("order_status_mismatch", f"sl{k}"))
    for k in range(counts["order_unknown"]):
        orders.append(dict(deployment_id="d1", client_order_id=f"un{k}", venue_order_id=None, symbol=SYMS[2], side="buy", status="pending",
                           amount=1.0, filled=0.0, purpose="entry", position_id=None))
        expected.add(("order_status_mismatch", f"un{k}"))
    base = len(positions)
    for k in range(counts["position_mismatch"]):
        sym = f"P{base + k}/USDT:USDT"
        positions.append(dict(id=100 + k, deployment_id="d1", symbol=sym, side="long", amount=1.0, entry_price=50.0, entry_at=900.0, entry_fee=0.05))
        vpos.append(dict(symbol=sym, side="long" if k % 2 == 0 else "short", amount=0.4, entry_price=50.0, at=900.0))
        expected.add(("position_mismatch", f"symbol:{sym}"))
    base += counts["position_mismatch"]
    for k in range(counts["position_closed_externally"]):
        sym = f"P{base + k}/USDT:USDT"
        positions.append(dict(id=200 + k, deployment_id="d1", symbol=sym, side="short", amount=2.0, entry_price=50.0, entry_at=900.0, entry_fee=0.1))
        expected.add(("position_closed_externally", f"position:{200 + k}"))
    base += counts["position_closed_externally"]
    for k in range(counts["unknown_position"]):
        sym = f"P{base + k}/USDT:USDT"
        vpos.append(dict(symbol=sym, side="long", amount=3.0, entry_price=20.0, at=900.0))
        expected.add(("unknown_position", f"symbol:{sym}"))
    ledger = Ledger.of(fills, orders, positions, symbols={s: "d1" for s in SYMS})
    return ledger, VenueReport.of(trades, vorders, vpos), expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(books(), INJECTIONS, st.integers(0, 2**31))
def test_diff_finds_exactly_the_injected_differences(book, counts, seed):
    ledger, venue, expected = inject(book, counts, np.random.default_rng(seed))
    found = diff(ledger, venue, TOL)
    got = [(d.kind, d.key) for d in found]
    assert len(got) == len(set(got)), "each difference reported once"
    assert set(got) == expected
    for d in found:
        assert d.evidence["ours"] or d.evidence["venue"], "every difference shows its rows"
        assert d.correction is not None


@settings(max_examples=20, deadline=None)
@given(books())
def test_identical_books_have_no_differences_and_diff_is_pure(book):
    ledger, venue, _ = inject(book, dict.fromkeys(INJECTED, 0), np.random.default_rng(0))
    before = (ledger.fills.copy(), venue.trades.copy())
    assert diff(ledger, venue, TOL) == []
    pd.testing.assert_frame_equal(ledger.fills, before[0])
    pd.testing.assert_frame_equal(venue.trades, before[1])


# -- specific cases ---------------------------------------------------------------------------------------
def _fill(**kw):
    base = dict(deployment_id="d1", venue_trade_id="t1", venue_order_id="o1", client_order_id="c1", symbol="BTC/USDT", side="buy",
                amount=0.01, price=50_000.0, fee=0.00001, fee_currency="BTC", at=100.0)
    return base | kw


def _trade(**kw):
    base = dict(trade_id="t1", order_id="o1", client_order_id="c1", symbol="BTC/USDT", side="buy", amount=0.01, price=50_000.0,
                fee=0.00001, fee_currency="BTC", at=100.0)
    return base | kw


def test_fees_compare_in_their_own_currency_and_spot_holdings_net_of_base_fees():
    tol = Tolerances(steps={"BTC/USDT": (0.00001, 0.01)})
    orders = [dict(deployment_id="d1", client_order_id="c1", venue_order_id="o1", symbol="BTC/USDT", side="buy", status="filled",
                   amount=0.01, filled=0.01, purpose="entry", position_id=7)]
    pos = [dict(id=7, deployment_id="d1", symbol="BTC/USDT", side="long", amount=0.01, entry_price=50_000.0, entry_at=100.0, entry_fee=0.5)]
    ledger = Ledger.of([_fill()], orders, pos)
    held = VenueReport.of([_trade()], [], [dict(symbol="BTC/USDT", side="long", amount=0.00999, source="balance")])
    assert diff(ledger, held, tol) == []  # the venue took its fee in BTC: it holds 0.00999, as it should
    bnb = diff(ledger, VenueReport.of([_trade(fee=0.0004, fee_currency="BNB")], [], [dict(symbol="BTC/USDT", side="long", amount=0.00999)]), tol)
    assert [d.kind for d in bnb] == ["fill_mismatch"] and bnb[0].evidence["fields"] == ["fee_currency"]
    assert bnb[0].correction.params["fee_currency"] == "BNB"


def test_incremental_window_judges_only_what_the_venue_covers():
    ledger = Ledger.of([_fill(venue_trade_id="old", at=10.0), _fill(venue_trade_id="new", at=500.0)])
    venue = VenueReport.of([_trade(trade_id="new", at=500.0)])
    assert diff(ledger, venue, since=400.0) == []
    assert [d.key for d in diff(ledger, venue)] == ["old"]


def test_tolerances_are_in_precision_units_and_checked():
    ledger = Ledger.of([_fill(amount=0.01)])
    small = VenueReport.of([_trade(amount=0.01 + 0.4 * 0.00001)])
    big = VenueReport.of([_trade(amount=0.01 + 0.6 * 0.00001)])
    tol = Tolerances(steps={"BTC/USDT": (0.00001, 0.01)})
    assert diff(ledger, small, tol) == []
    assert [d.kind for d in diff(ledger, big, tol)] == ["fill_mismatch"]
    with pytest.raises(ConfigError, match="non-negative"):
        Tolerances(amount_steps=-1)
    with pytest.raises(ConfigError, match="Did you mean"):
        ApplyRules.of("missing_fills")
    with pytest.raises(ConfigError, match="Unknown correction"):
        Correction("delete_everything")


# -- corrections ------------------------------------------------------------------------------------------
@pytest.fixture
def store():
    s = Store(":memory:")
    s.insert_deployment({"id": "d1", "name": "t", "strategy": "sma_cross", "params": {"fast": 5, "slow": 20}, "symbols": ["BTC/USDT:USDT"],
                         "timeframe": "1h", "venue": "paper", "account": None, "mode": "paper", "risk": {}, "config": {"costs": {"taker_fee": 0.001}},
                         "status": "active", "status_reason": None, "created_at": 0.0, "started_at": 0.0, "updated_at": 0.0, "cursor": {}, "risk_state": {}})
    return s


def _books(store):
    from workbench.sync import ledger_from_store

    return ledger_from_store(store, "v", ["d1"], {"BTC/USDT:USDT": "d1"})


def test_corrections_apply_only_by_choice_and_are_audited(store):
    pid = store.open_position({"deployment_id": "d1", "symbol": "BTC/USDT:USDT", "side": "long", "amount": 2.0, "entry_price": 100.0,
                               "entry_at": 0.0, "entry_fee": 0.2})
    venue = VenueReport.of([dict(trade_id="m1", order_id="mo", client_order_id=None, symbol="BTC/USDT:USDT", side="sell", amount=0.5,
                                 price=110.0, fee=0.055, fee_currency="USDT", at=3600.0, manual=True)],
                           [], [dict(symbol="BTC/USDT:USDT", side="long", amount=1.5)])
    diffs = diff(_books(store), venue, TOL)
    assert sorted(d.kind for d in diffs) == ["missing_fill", "position_mismatch"]
    assert apply_corrections(store, "v", diffs, ApplyRules.none()) == {}
    assert store.fills() == [] and "sync:" not in " ".join(store.frame("audit")["action"])
    results = apply_corrections(store, "v", diffs, ApplyRules.of("missing_fill", "position_mismatch"))
    assert len(results) == 2 and not any(r.startswith("failed") for r in results.values())
    trade = store.trades("d1").iloc[0]
    assert trade["exit_reason"] == "manual" and trade["amount"] == 0.5
    assert trade["pnl"] == pytest.approx(0.5 * 10 - 0.05 - 0.055)  # a quarter of the entry fee, the exit fee
    (left,) = store.positions("d1")
    assert left["amount"] == 1.5 and left["id"] != pid and left["entry_fee"] == pytest.approx(0.15)
    assert store.fills()[0]["external"]
    assert diff(_books(store), venue, TOL) == []  # healed
    assert {"sync:record_fill", "sync:resize_position"} <= set(store.frame("audit")["action"])
    (rec,) = learning_records(store).to_dict("records")  # the part closed by hand, beside what the strategy would have done
    assert rec["position_id"] == pid and rec["amount"] == 0.5 and rec["exit_price"] == 110.0 and rec["cf_status"] == "pending"
    assert rec["pnl"] == pytest.approx(trade["pnl"])
    (closed,) = store.positions("d1", status="closed")  # the closed part's row, which the counterfactual reads its entry fee from
    assert closed["id"] == pid and closed["amount"] == 0.5 and closed["entry_fee"] == pytest.approx(0.05)


def test_unknown_positions_adopted_or_ignored(store):
    venue = VenueReport.of([], [], [dict(symbol="BTC/USDT:USDT", side="short", amount=0.3, entry_price=90.0)])
    (d,) = diff(_books(store), venue, TOL)
    assert d.kind == "unknown_position" and d.correction.action == "adopt_position"
    apply_corrections(store, "v", [d], ApplyRules.of("unknown_position", unknown_position_action="ignore"))
    assert diff(_books(store), venue, TOL) == []  # ignored holdings are subtracted from then on
    bigger = VenueReport.of([], [], [dict(symbol="BTC/USDT:USDT", side="short", amount=0.5, entry_price=90.0)])
    (d2,) = diff(_books(store), bigger, TOL)
    assert d2.kind == "unknown_position" and d2.correction.params["amount"] == pytest.approx(0.2)
    apply_corrections(store, "v", [d2], ApplyRules.of("unknown_position", unknown_position_action="adopt"))
    (pos,) = store.positions("d1")
    assert pos["side"] == "short" and pos["amount"] == pytest.approx(0.2) and pos["entry_price"] == 90.0
    assert diff(_books(store), bigger, TOL) == []


def test_a_failed_correction_is_recorded_not_raised(store):
    d = diff(_books(store), VenueReport.of([], [], [dict(symbol="ETH/USDT:USDT", side="long", amount=1.0)]), TOL)[0]
    assert d.correction.action == "ignore_position"  # no deployment trades ETH here
    res = apply_corrections(store, "v", [d], ApplyRules.of("unknown_position", unknown_position_action="adopt"))
    assert res[0].startswith("failed") and "adopt it into one by hand" in res[0]


def test_differences_frame_has_one_row_per_difference():
    ledger = Ledger.of([_fill()])
    df = differences_frame(diff(ledger, VenueReport.of()))
    assert list(df["kind"]) == ["phantom_fill"] and df["action"].iat[0] == "review"


# -- learning records -------------------------------------------------------------------------------------
def _bars(closes, highs=None, lows=None):
    idx = pd.date_range("2024-01-01", periods=len(closes), freq="1h", tz="UTC")
    c = np.asarray(closes, dtype=float)
    return pd.DataFrame({"open": c, "high": highs if highs is not None else c, "low": lows if lows is not None else c, "close": c, "volume": 1.0}, index=idx)


def _sig(n, exits_at=()):
    e = pd.Series(False, index=range(n))
    x = pd.Series(False, index=range(n))
    x.iloc[list(exits_at)] = True
    return Signals(e, x, e, e, pd.Series(1.0, index=range(n)))


def test_counterfactual_exit_uses_the_fill_rules():
    df = _bars([100, 101, 102, 103, 104, 105])
    after = df.index[1].timestamp()
    costs = Costs(taker_fee=0.001, slippage=0.0)
    cf = counterfactual_exit(df, _sig(6, exits_at=[4]), "long", 100.0, 1.0, 0.1, after, None, None, costs)
    assert cf["cf_reason"] == "signal" and cf["cf_exit_price"] == 104 and cf["cf_exit_at"] == df.index[4].timestamp()
    assert cf["cf_pnl"] == pytest.approx(4 - 0.1 - 0.104)
    hit = _bars([100, 101, 102, 96, 104, 105], lows=[100, 101, 102, 95, 104, 105])
    cf = counterfactual_exit(hit, _sig(6, exits_at=[4]), "long", 100.0, 1.0, 0.0, after, 97.0, 110.0, costs)
    assert cf["cf_reason"] == "stop_loss" and cf["cf_exit_price"] == 96  # gapped below the stop: the open
    assert counterfactual_exit(df, _sig(6), "long", 100.0, 1.0, 0.0, after, None, None, costs) is None  # not yet known
    short = counterfactual_exit(df, _sig(6), "short", 100.0, 1.0, 0.0, after, 103.5, None, costs)
    assert short["cf_reason"] == "stop_loss" and short["cf_exit_price"] == 104 and short["cf_pnl"] < 0


def test_learning_summary_compares_interventions_with_the_system(store):
    from workbench.sync import records
    from workbench.sync.learning import record_intervention, resolve

    pid = store.open_position({"deployment_id": "d1", "symbol": "BTC/USDT:USDT", "side": "long", "amount": 1.0, "entry_price": 100.0,
                               "entry_at": pd.Timestamp("2024-01-01 05:00", tz="UTC").timestamp(), "entry_fee": 0.1, "confidence": 0.7})
    pos = records.position(store, pid)
    trade = {"amount": 1.0, "exit_price": 103.0, "exit_at": pd.Timestamp("2024-01-01 09:00", tz="UTC").timestamp(), "pnl": 2.8}
    closes = [100 + i for i in range(40)] + [140 - 2 * i for i in range(40)]
    calls = []

    def bars(symbol, tf, since_ms):
        calls.append((symbol, tf))
        return _bars(closes)

    assert record_intervention(store, pos, trade) is not None
    assert record_intervention(store, pos, trade) is None  # once per position
    assert learning_summary(store)["pending"] == 1
    assert resolve(store, bars) == 1 and calls == [("BTC/USDT:USDT", "1h")]
    rec = learning_records(store).iloc[0]
    assert rec["confidence"] == 0.7 and rec["strategy"] == "sma_cross" and rec["duration_s"] == 4 * 3600
    assert rec["cf_reason"] == "signal" and rec["cf_exit_price"] > 103  # the cross down came later and higher
    s = learning_summary(store)
    assert s["interventions"] == 1 and s["resolved"] == 1 and s["hurt"] == 1 and s["benefit"] == pytest.approx(2.8 - rec["cf_pnl"])
