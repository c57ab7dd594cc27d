"""The paper exchange: ccxt structures, fill rules, money, persistence, and an accounting property."""
from __future__ import annotations

import importlib
import json
import math

import ccxt
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.data import sample_ohlcv
from workbench.fills import Costs, fee, limit_fill, market_fill_price, stop_exit
from workbench.venues.paper import PaperExchange

# ccxt's own structure validators (its base package re-exports functions under the module names).
_v = {n: importlib.import_module(f"ccxt.test.exchange.base.test_{n}") for n in
      ("balance", "market", "ohlcv", "order", "position", "ticker", "trade")}
ccxt_balance, ccxt_market, ccxt_ohlcv, ccxt_order, ccxt_position, ccxt_ticker, ccxt_trade = (
    _v[n] for n in ("balance", "market", "ohlcv", "order", "position", "ticker", "trade"))

T0 = 1_704_067_200_000  # 2024-01-01 UTC
H = 3_600_000
COSTS = Costs(taker_fee=0.001, maker_fee=0.0008, slippage=0.0005)
PERP = "SOL/USDT:USDT"


def make(**kw) -> PaperExchange:
    cfg = {"balance": {"USDT": 10_000}, "costs": COSTS}
    cfg.update(kw)
    return PaperExchange(cfg)


def bar(ex: PaperExchange, symbol: str, i: int, o: float, h: float, lo: float, c: float, v: float = 1_000.0) -> None:
    ex.feed_bar(symbol, T0 + i * H, o, h, lo, c, v)


def flat(ex: PaperExchange, symbol: str, i: int, price: float) -> None:
    bar(ex, symbol, i, price, price, price, price)


def usdt(ex: PaperExchange) -> float:
    return ex.fetch_balance()["total"]["USDT"]


# -- ccxt's own structure validators -----------------------------------------------
def test_ccxt_validators_accept_every_structure():
    ex = make()
    for m in ex.fetch_markets():
        ccxt_market.test_market(ex, {}, "fetchMarkets", ex.markets[m["symbol"]])
    for i, df_row in enumerate(sample_ohlcv("BTC/USDT", "1h", bars=30).itertuples()):
        bar(ex, "BTC/USDT", i, df_row.open, df_row.high, df_row.low, df_row.close, df_row.volume)
        bar(ex, "BTC/USDT:USDT", i, df_row.open, df_row.high, df_row.low, df_row.close, df_row.volume)
    flat(ex, PERP, 0, 100.0)
    now = ex.now()
    for sym in ("BTC/USDT", "BTC/USDT:USDT"):
        ccxt_ticker.test_ticker(ex, {}, "fetchTicker", ex.fetch_ticker(sym), sym)
        rows = ex.fetch_ohlcv(sym, "1h")
        assert len(rows) == 30
        for row in rows + ex.fetch_ohlcv(sym, "4h"):
            ccxt_ohlcv.test_ohlcv(ex, {}, "fetchOHLCV", row, sym, now)
    orders = [
        ex.create_order("BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "m1"}),
        ex.create_order("BTC/USDT", "limit", "buy", 0.01, 30_000, {"clientOrderId": "l1"}),
        ex.create_order("BTC/USDT", "market", "sell", 0.005, None, {"stopLossPrice": 30_000}),
        ex.create_order("BTC/USDT:USDT", "market", "buy", 0.05, None, {"leverage": 5}),
        ex.create_order(PERP, "market", "sell", 3, None, {"leverage": 3}),
    ]
    orders.append(ex.cancel_order(orders[1]["id"], "BTC/USDT"))
    for o in orders + ex.fetch_orders():
        ccxt_order.test_order(ex, {}, "createOrder", o, o["symbol"], now)
    trades = ex.fetch_my_trades()
    assert len(trades) == 3
    for t in trades:
        ccxt_trade.test_trade(ex, {}, "fetchMyTrades", t, t["symbol"], now, False)
    positions = ex.fetch_positions()
    assert {p["side"] for p in positions} == {"long", "short"}
    for p in positions:
        ccxt_position.test_position(ex, {}, "fetchPositions", p, p["symbol"], now)
    ccxt_balance.test_balance(ex, {}, "fetchBalance", ex.fetch_balance())


# -- market orders, fees ------------------------------------------------------------
def test_market_buy_fills_at_close_with_slippage_and_taker_fee():
    ex = make()
    bar(ex, "ETH/USDT", 0, 2_290, 2_310, 2_280, 2_300)
    o = ex.create_order("ETH/USDT", "market", "buy", 1.5)
    px = market_fill_price("buy", 2_300, COSTS.slippage)
    assert o["status"] == "closed" and o["filled"] == 1.5
    assert o["average"] == pytest.approx(px)
    assert o["fee"]["cost"] == pytest.approx(fee(1.5 * px, COSTS.taker_fee))
    bal = ex.fetch_balance()
    assert bal["total"]["ETH"] == pytest.approx(1.5)
    assert bal["total"]["USDT"] == pytest.approx(10_000 - 1.5 * px * (1 + COSTS.taker_fee))
    sell = ex.create_order("ETH/USDT", "market", "sell", 1.5)
    spx = market_fill_price("sell", 2_300, COSTS.slippage)
    assert sell["average"] == pytest.approx(spx)
    assert usdt(ex) == pytest.approx(10_000 - 1.5 * px * 1.001 + 1.5 * spx * 0.999)
    assert usdt(ex) < 10_000  # a round trip at one price loses the spread and fees


def test_amount_is_truncated_to_the_market_step():
    ex = make()
    flat(ex, "BTC/USDT", 0, 40_000)
    o = ex.create_order("BTC/USDT", "market", "buy", 0.0123456789)
    assert o["amount"] == pytest.approx(0.01234)


# -- limit orders -------------------------------------------------------------------
def test_limit_rests_then_fills_at_limit_or_better_open_with_maker_fee():
    ex = make()
    flat(ex, "ETH/USDT", 0, 2_300)
    o = ex.create_order("ETH/USDT", "limit", "buy", 1, 2_200)
    assert o["status"] == "open" and o["filled"] == 0
    assert ex.fetch_balance()["used"]["USDT"] == pytest.approx(2_200 * 1.0008)
    bar(ex, "ETH/USDT", 1, 2_300, 2_320, 2_250, 2_260)
    assert ex.fetch_order(o["id"])["status"] == "open"
    bar(ex, "ETH/USDT", 2, 2_260, 2_270, 2_150, 2_180)
    done = ex.fetch_order(o["id"])
    assert done["status"] == "closed" and done["average"] == pytest.approx(2_200)
    assert done["trades"][0]["takerOrMaker"] == "maker"
    assert done["fee"]["cost"] == pytest.approx(2_200 * COSTS.maker_fee)
    assert ex.fetch_balance()["used"]["USDT"] == pytest.approx(0)
    # a sell limit below a gap-up open fills at the open
    s = ex.create_order("ETH/USDT", "limit", "sell", 1, 2_250)
    bar(ex, "ETH/USDT", 3, 2_400, 2_410, 2_390, 2_400)
    assert ex.fetch_order(s["id"])["average"] == pytest.approx(limit_fill("sell", 2_250, 2_400, 2_410, 2_390)) == 2_400


def test_partial_fills_are_capped_by_bar_volume():
    ex = make(partial_fill_volume_fraction=0.1)
    flat(ex, PERP, 0, 100)
    o = ex.create_order(PERP, "limit", "buy", 1.2, 99, {"clientOrderId": "p"})
    bar(ex, PERP, 1, 100, 100, 98, 99, v=5)
    first = ex.fetch_order(o["id"])
    assert first["status"] == "open" and first["filled"] == pytest.approx(0.5) and first["remaining"] == pytest.approx(0.7)
    bar(ex, PERP, 2, 99, 100, 98, 99, v=5)
    bar(ex, PERP, 3, 99, 100, 98, 99, v=5)
    done = ex.fetch_order(None, PERP, {"clientOrderId": "p"})
    assert done["status"] == "closed" and done["filled"] == pytest.approx(1.2)
    assert [t["amount"] for t in done["trades"]] == pytest.approx([0.5, 0.5, 0.2])
    assert ex.fetch_positions([PERP])[0]["contracts"] == pytest.approx(1.2)


def test_cancel_keeps_partial_fill_and_releases_reservation():
    ex = make(partial_fill_volume_fraction=0.1)
    flat(ex, "SOL/USDT", 0, 100)
    o = ex.create_order("SOL/USDT", "limit", "buy", 10, 99)
    bar(ex, "SOL/USDT", 1, 100, 100, 98, 99, v=40)
    c = ex.cancel_order(o["id"], "SOL/USDT")
    assert c["status"] == "canceled" and c["filled"] == pytest.approx(4)
    bal = ex.fetch_balance()
    assert bal["used"]["USDT"] == 0 and bal["total"]["SOL"] == pytest.approx(4)
    with pytest.raises(ccxt.OrderNotFound):
        ex.cancel_order(o["id"], "SOL/USDT")


# -- protective stops ---------------------------------------------------------------
def _long_with_stops(ex: PaperExchange, sl: float = 95, tp: float = 105):
    flat(ex, PERP, 0, 100)
    ex.create_order(PERP, "market", "buy", 10)
    slo = ex.create_order(PERP, "market", "sell", 10, None, {"stopLossPrice": sl, "reduceOnly": True, "clientOrderId": "sl"})
    tpo = ex.create_order(PERP, "market", "sell", 10, None, {"takeProfitPrice": tp, "reduceOnly": True, "clientOrderId": "tp"})
    return slo, tpo


def test_stop_loss_wins_when_a_bar_crosses_both_levels_and_cancels_take_profit():
    ex = make()
    slo, tpo = _long_with_stops(ex)
    bar(ex, PERP, 1, 100, 106, 94, 101)
    sl, tp = ex.fetch_order(slo["id"]), ex.fetch_order(tpo["id"])
    assert sl["status"] == "closed" and sl["info"]["reason"] == "stop_loss"
    assert sl["average"] == pytest.approx(market_fill_price("sell", 95, COSTS.slippage))
    assert sl["trades"][0]["takerOrMaker"] == "taker"
    assert tp["status"] == "canceled"
    assert ex.fetch_positions() == []


def test_take_profit_fills_at_level_and_cancels_stop_loss():
    ex = make()
    slo, tpo = _long_with_stops(ex)
    bar(ex, PERP, 1, 100, 106, 99, 104)
    assert ex.fetch_order(tpo["id"])["average"] == pytest.approx(market_fill_price("sell", 105, COSTS.slippage))
    assert ex.fetch_order(slo["id"])["status"] == "canceled"


def test_gap_through_stop_fills_at_the_open():
    ex = make()
    slo, _ = _long_with_stops(ex)
    bar(ex, PERP, 1, 90, 92, 88, 91)
    assert ex.fetch_order(slo["id"])["average"] == pytest.approx(market_fill_price("sell", 90, COSTS.slippage))


def test_stop_placed_after_a_bar_is_first_evaluated_on_the_next_bar():
    ex = make()
    bar(ex, PERP, 0, 100, 100, 90, 100)  # this bar's low is under the stop placed after it
    ex.create_order(PERP, "market", "buy", 1)
    s = ex.create_order(PERP, "market", "sell", 1, None, {"stopLossPrice": 95})
    assert ex.fetch_order(s["id"])["status"] == "open"
    flat(ex, PERP, 1, 99)
    assert ex.fetch_order(s["id"])["status"] == "open"
    bar(ex, PERP, 2, 99, 99, 94, 96)
    assert ex.fetch_order(s["id"])["status"] == "closed"


@settings(max_examples=150, deadline=None)
@given(
    side=st.sampled_from(["long", "short"]),
    moves=st.tuples(*[st.floats(-0.2, 0.2) for _ in range(3)]),
    sl=st.one_of(st.none(), st.floats(0.01, 0.1)),
    tp=st.one_of(st.none(), st.floats(0.01, 0.1)),
    pair=st.booleans(),
)
def test_stop_fills_match_fills_stop_exit(side, moves, sl, tp, pair):
    """Stop loss and take profit as two orders, or as one stop pair (both levels on one order): the same fill."""
    ex = make()
    flat(ex, PERP, 0, 100)
    entry = ex.create_order(PERP, "market", "buy" if side == "long" else "sell", 1)["average"]
    sl_px, tp_px = (entry * (1 - sl) if sl else None, entry * (1 + tp) if tp else None) if side == "long" else \
        (entry * (1 + sl) if sl else None, entry * (1 - tp) if tp else None)
    exit_side = "sell" if side == "long" else "buy"
    params = {key: float(ex.price_to_precision(PERP, level)) for key, level in (("stopLossPrice", sl_px), ("takeProfitPrice", tp_px))
              if level is not None}
    for one in ([params] if pair else [{k: v} for k, v in params.items()]):
        if one:
            ex.create_order(PERP, "market", exit_side, 1, None, one)
    levels = [float(ex.price_to_precision(PERP, x)) if x else math.nan for x in (sl_px, tp_px)]
    o = 100 * (1 + moves[0])
    hi, lo = max(o, 100 * (1 + moves[1])), min(o, 100 * (1 + moves[2]))
    bar(ex, PERP, 1, o, hi, lo, (hi + lo) / 2)
    expected = stop_exit(side, levels[0], levels[1], o, hi, lo)
    fills = [t for t in ex.fetch_my_trades(PERP) if t["side"] == exit_side]
    if expected is None:
        assert fills == []
    else:
        assert len(fills) == 1 and fills[0]["price"] == pytest.approx(market_fill_price(exit_side, expected[0], COSTS.slippage))
        assert fills[0]["info"]["reason"] == expected[1]
        assert ex.fetch_open_orders() == []


def test_plain_stop_market_order_triggers():
    ex = make()
    flat(ex, "ETH/USDT", 0, 2_000)
    o = ex.create_order("ETH/USDT", "market", "buy", 1, None, {"triggerPrice": 2_100})
    bar(ex, "ETH/USDT", 1, 2_000, 2_050, 1_990, 2_040)
    assert ex.fetch_order(o["id"])["status"] == "open"
    bar(ex, "ETH/USDT", 2, 2_040, 2_150, 2_030, 2_120)
    assert ex.fetch_order(o["id"])["average"] == pytest.approx(2_100 * 1.0005)


# -- rejections -------------------------------------------------------------------------
def test_insufficient_funds_and_no_spot_shorting():
    ex = make()
    flat(ex, "BTC/USDT", 0, 40_000)
    flat(ex, "BTC/USDT:USDT", 0, 40_000)
    with pytest.raises(ccxt.InsufficientFunds, match="USDT"):
        ex.create_order("BTC/USDT", "market", "buy", 1)
    with pytest.raises(ccxt.InsufficientFunds, match="BTC"):
        ex.create_order("BTC/USDT", "market", "sell", 0.01)
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order("BTC/USDT:USDT", "market", "sell", 0.5)
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order("BTC/USDT", "limit", "buy", 1, 39_000)
    ex.set_leverage(10, "BTC/USDT:USDT")
    short = ex.create_order("BTC/USDT:USDT", "market", "sell", 0.5)
    assert short["status"] == "closed"
    assert ex.fetch_positions()[0]["side"] == "short"
    assert ex.fetch_orders() == [ex.fetch_order(short["id"])]  # rejected orders leave no trace


@pytest.mark.parametrize("args, err, text", [
    (("NOPE/USDT", "market", "buy", 1), ccxt.BadSymbol, "no market"),
    (("ETH/USTD", "market", "buy", 1), ccxt.BadSymbol, "Did you mean 'ETH/USDT'"),
    (("ETH/USDT", "market", "buy", 0), ccxt.InvalidOrder, "positive"),
    (("ETH/USDT", "market", "buy", float("nan")), ccxt.InvalidOrder, "positive"),
    (("ETH/USDT", "market", "buy", -1), ccxt.InvalidOrder, "positive"),
    (("ETH/USDT", "limit", "buy", 1), ccxt.InvalidOrder, "price"),
    (("ETH/USDT", "stop", "buy", 1), ccxt.InvalidOrder, "type"),
    (("ETH/USDT", "market", "hold", 1), ccxt.InvalidOrder, "side"),
    (("ETH/USDT", "market", "buy", 0.00001), ccxt.InvalidOrder, "step"),
    (("ETH/USDT", "market", "buy", 0.001), ccxt.InvalidOrder, "minimum"),
    (("ETH/USDT:USDT", "market", "sell", 1, None, {"reduceOnly": True}), ccxt.InvalidOrder, "no position"),
    (("ETH/USDT", "market", "buy", 1, None, {"stopLossPrice": 2_100}), ccxt.InvalidOrder, "spot"),
    (("ETH/USDT", "limit", "buy", 1, 1_900, {"triggerPrice": 1_950}), ccxt.NotSupported, "stop-market"),
    (("ETH/USDT:USDT", "market", "buy", 1, None, {"stopLossPrice": 1, "triggerPrice": 3}), ccxt.InvalidOrder, "not both"),
])
def test_bad_orders_are_rejected_with_clear_errors(args, err, text):
    ex = make()
    flat(ex, "ETH/USDT", 0, 2_000)
    flat(ex, "ETH/USDT:USDT", 0, 2_000)
    with pytest.raises(err, match=text):
        ex.create_order(*args)


def test_duplicate_client_order_id_is_rejected_and_fetch_by_client_id_works():
    ex = make()
    flat(ex, "ETH/USDT", 0, 2_000)
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order("ETH/USDT", "market", "buy", 10, None, {"clientOrderId": "x1"})
    first = ex.create_order("ETH/USDT", "market", "buy", 1, None, {"clientOrderId": "x1"})  # a rejected id may be reused
    with pytest.raises(ccxt.InvalidOrder, match="duplicate"):
        ex.create_order("ETH/USDT", "market", "buy", 1, None, {"clientOrderId": "x1"})
    assert len(ex.fetch_my_trades()) == 1
    assert ex.fetch_order(None, "ETH/USDT", {"clientOrderId": "x1"})["id"] == first["id"]
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order(None, "ETH/USDT", {"clientOrderId": "nope"})
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order(first["id"], "BTC/USDT")


def test_market_order_without_a_price_is_not_fillable():
    with pytest.raises(ccxt.OrderNotFillable, match="feed a bar"):
        make().create_order("ETH/USDT", "market", "buy", 1)


# -- swaps ------------------------------------------------------------------------------
def test_swap_margin_leverage_realized_pnl_and_flip():
    ex = make()
    flat(ex, PERP, 0, 100)
    ex.set_leverage(5, PERP)
    buy = ex.create_order(PERP, "market", "buy", 20)
    entry = buy["average"]
    bal = ex.fetch_balance()
    assert bal["used"]["USDT"] == pytest.approx(20 * entry / 5)
    assert bal["total"]["USDT"] == pytest.approx(10_000 - buy["fee"]["cost"])
    pos = ex.fetch_positions([PERP])[0]
    assert (pos["contracts"], pos["leverage"], pos["marginMode"]) == (20, 5, "isolated")
    assert pos["liquidationPrice"] < entry
    flat(ex, PERP, 1, 110)
    assert ex.fetch_positions()[0]["unrealizedPnl"] == pytest.approx((110 - entry) * 20)
    flip = ex.create_order(PERP, "market", "sell", 30)
    exit_px = flip["average"]
    realized = (exit_px - entry) * 20
    assert flip["trades"][0]["info"]["realizedPnl"] == pytest.approx(realized)
    pos = ex.fetch_positions()[0]
    assert pos["side"] == "short" and pos["contracts"] == pytest.approx(10) and pos["entryPrice"] == pytest.approx(exit_px)
    bal = ex.fetch_balance()
    assert bal["total"]["USDT"] == pytest.approx(10_000 + realized - buy["fee"]["cost"] - flip["fee"]["cost"])
    assert bal["used"]["USDT"] == pytest.approx(10 * exit_px / 5)


def test_reduce_only_never_increases_or_flips():
    ex = make()
    flat(ex, PERP, 0, 100)
    ex.create_order(PERP, "market", "buy", 5)
    o = ex.create_order(PERP, "market", "sell", 8, None, {"reduceOnly": True})
    assert o["filled"] == 5
    assert ex.fetch_positions() == []
    with pytest.raises(ccxt.InvalidOrder):
        ex.create_order(PERP, "market", "buy", 1, None, {"reduceOnly": True})


def test_isolated_liquidation_closes_the_position_at_its_price():
    ex = make()
    flat(ex, PERP, 0, 100)
    ex.create_order(PERP, "market", "buy", 50, None, {"leverage": 10})
    liq = ex.fetch_positions()[0]["liquidationPrice"]
    assert 89 < liq < 91
    bar(ex, PERP, 1, 99, 99, 85, 88)
    trade = ex.fetch_my_trades()[-1]
    assert trade["info"]["reason"] == "liquidation" and trade["price"] == pytest.approx(liq)
    assert ex.fetch_positions() == []
    assert usdt(ex) > 0


def test_leverage_is_validated():
    ex = make()
    with pytest.raises(ccxt.BadRequest, match="1 to 75"):
        ex.set_leverage(500, PERP)
    with pytest.raises(ccxt.BadRequest, match="spot"):
        ex.set_leverage(2, "ETH/USDT")
    assert ex.set_leverage(3, PERP)["leverage"] == 3 == ex.fetch_leverage(PERP)["longLeverage"]


# -- manual trades --------------------------------------------------------------------
def test_manual_trades_are_visible_and_close_cancels_protection():
    ex = make()
    _, tpo = _long_with_stops(ex)
    m = ex.manual_order(PERP, "buy", 2)
    assert m["clientOrderId"] is None and m["info"]["manual"] is True
    assert ex.fetch_positions()[0]["contracts"] == 12
    c = ex.manual_close(PERP)
    assert c["filled"] == 12 and c["info"]["manual"] is True
    assert ex.fetch_positions() == []
    assert ex.fetch_order(tpo["id"])["status"] == "canceled"
    manual = [t for t in ex.fetch_my_trades(PERP) if t["info"].get("manual")]
    assert len(manual) == 2 and {o["id"] for o in ex.fetch_orders(PERP)} >= {m["id"], c["id"]}
    with pytest.raises(ccxt.InvalidOrder, match="no SOL/USDT:USDT position"):
        ex.manual_close(PERP)
    flat(ex, "SOL/USDT", 0, 100)
    ex.manual_order("SOL/USDT", "buy", 3)
    assert ex.manual_close("SOL/USDT")["filled"] == 3
    assert ex.fetch_balance()["total"]["SOL"] == 0


# -- data -----------------------------------------------------------------------------
def test_ohlcv_since_limit_and_resampling():
    ex = make()
    for i in range(10):
        bar(ex, "ETH/USDT", i, 100 + i, 101 + i, 99 + i, 100.5 + i, 1)
    assert [r[0] for r in ex.fetch_ohlcv("ETH/USDT", "1h", limit=3)] == [T0 + 7 * H, T0 + 8 * H, T0 + 9 * H]
    assert [r[0] for r in ex.fetch_ohlcv("ETH/USDT", "1h", since=T0 + 2 * H, limit=2)] == [T0 + 2 * H, T0 + 3 * H]
    four = ex.fetch_ohlcv("ETH/USDT", "4h")
    assert four[0] == [T0, 100, 104, 99, 103.5, 4]
    with pytest.raises(ccxt.BadRequest, match="coarser"):
        ex.fetch_ohlcv("ETH/USDT", "1m")
    t = ex.fetch_ticker("ETH/USDT")
    assert t["last"] == 109.5 and t["bid"] < t["last"] < t["ask"] and t["open"] == 100


def test_load_history_preloads_without_processing_orders():
    ex = make()
    df = sample_ohlcv("ETH/USDT", "1h", bars=50)
    flat(ex, "ETH/USDT", -1000, 100_000)  # far earlier bar, absurd price
    o = ex.create_order("ETH/USDT", "limit", "buy", 0.01, 10_000)  # would fill on any of these bars
    assert ex.load_history("ETH/USDT", df) == 51
    assert ex.fetch_order(o["id"])["status"] == "open"
    assert ex.fetch_ticker("ETH/USDT")["last"] == pytest.approx(df["close"].iloc[-1])
    assert len(ex.fetch_ohlcv("ETH/USDT", "1h", since=int(df.index[0].value // 1_000_000))) == 50
    assert not ex.feed_bar("ETH/USDT", int(df.index[-1].value // 1_000_000), 1, 1, 1, 1, 1)  # stale: ignored


def test_unknown_csv_symbol_gets_a_market_and_explicit_markets_work():
    ex = make(balance={"BTC": 1.0}, markets=[{"symbol": "ETH/BTC", "price_step": 1e-6, "amount_step": 0.001, "min_cost": 0.0001}])
    assert ex.symbols == ["ETH/BTC"]
    flat(ex, "ETH/BTC", 0, 0.05)
    o = ex.create_order("ETH/BTC", "market", "buy", 2)
    assert o["fee"]["currency"] == "BTC"
    assert ex.fetch_balance()["total"]["BTC"] == pytest.approx(1 - 2 * 0.05 * 1.0005 * 1.001)
    flat(ex, "XRP/ETH", 0, 0.00027)  # fed without a spec: a market is inferred
    assert ex.markets["XRP/ETH"]["precision"]["price"] == pytest.approx(1e-9)
    ccxt_market.test_market(ex, {}, "fetchMarkets", ex.markets["XRP/ETH"])
    with pytest.raises(ccxt.BadSymbol):
        make(auto_markets=False).feed_bar("XRP/ETH", T0, 1, 1, 1, 1, 1)


def test_feed_tick_drives_orders_and_builds_minute_candles():
    ex = make(clock=lambda: T0 + 3 * 60_000)
    ex.feed_tick("ETH/USDT", T0 + 1_000, 2_000)
    o = ex.create_order("ETH/USDT", "limit", "buy", 1, 1_990)
    assert o["timestamp"] == T0 + 3 * 60_000  # the injected clock
    ex.feed_tick("ETH/USDT", T0 + 20_000, 1_995)
    ex.feed_tick("ETH/USDT", T0 + 70_000, 1_989)
    assert ex.fetch_order(o["id"])["status"] == "closed"
    assert ex.fetch_ohlcv("ETH/USDT", "1m") == [[T0, 2_000, 2_000, 1_995, 1_995, 0], [T0 + 60_000, 1_989, 1_989, 1_989, 1_989, 0]]


# -- persistence -------------------------------------------------------------------------
def _busy(ex: PaperExchange) -> None:
    _long_with_stops(ex)
    flat(ex, "ETH/USDT", 0, 2_000)
    ex.create_order("ETH/USDT", "market", "buy", 1, None, {"clientOrderId": "e1"})
    ex.create_order("ETH/USDT", "limit", "sell", 0.5, 2_100, {"clientOrderId": "e2"})
    ex.set_leverage(4, "BTC/USDT:USDT")


def test_snapshot_restore_round_trip_continues_exactly():
    a = make()
    _busy(a)
    snap = a.snapshot()
    b = PaperExchange({"costs": COSTS, "state": json.loads(json.dumps(snap))})
    assert b.snapshot() == snap
    for ex in (a, b):
        bar(ex, PERP, 1, 100, 106, 99, 104)
        bar(ex, "ETH/USDT", 1, 2_000, 2_150, 1_990, 2_120)
        ex.create_order("ETH/USDT", "market", "sell", 0.25, None, {"clientOrderId": "e3"})
    assert a.snapshot() == b.snapshot()
    assert a.fetch_balance() == b.fetch_balance() and a.fetch_orders() == b.fetch_orders()
    with pytest.raises(ccxt.InvalidOrder, match="duplicate"):
        b.create_order("ETH/USDT", "market", "buy", 0.1, None, {"clientOrderId": "e1"})


def test_on_change_fires_on_mutations_not_on_price_only_bars():
    calls = []
    ex = make(on_change=calls.append)
    for i in range(500):
        flat(ex, "ETH/USDT", i, 2_000 + i % 7)
    assert calls == [] and not ex.dirty
    ex.create_order("ETH/USDT", "limit", "buy", 1, 1_000)
    assert len(calls) == 1 and calls[-1]["orders"][0]["status"] == "open"
    for i in range(500, 1000):
        flat(ex, "ETH/USDT", i, 2_000 + i % 7)
    assert len(calls) == 1
    bar(ex, "ETH/USDT", 1000, 1_100, 1_100, 900, 950)
    assert len(calls) == 2 and calls[-1]["orders"][0]["status"] == "closed"
    ex.load_markets()
    assert not ex.dirty


def test_restore_rejects_garbage_state():
    with pytest.raises(Exception, match="snapshot"):
        PaperExchange({"state": {"version": 99}})


# -- accounting property -------------------------------------------------------------------
_SYMS = ["ETH/USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"]
_START = {"ETH/USDT": 2_000.0, "ETH/USDT:USDT": 2_000.0, "SOL/USDT:USDT": 100.0}

_bar_op = st.tuples(st.just("bar"), st.sampled_from(_SYMS), st.floats(-0.06, 0.06), st.floats(0, 0.03), st.floats(0, 0.03))
_op = st.one_of(
    _bar_op, _bar_op, _bar_op,
    st.tuples(st.just("market"), st.sampled_from(_SYMS), st.sampled_from(["buy", "sell"]), st.floats(0.05, 2.0)),
    st.tuples(st.just("limit"), st.sampled_from(_SYMS), st.sampled_from(["buy", "sell"]), st.floats(0.05, 2.0), st.floats(-0.05, 0.05)),
    st.tuples(st.just("stop"), st.sampled_from(_SYMS), st.sampled_from(["stopLossPrice", "takeProfitPrice"]), st.floats(0.005, 0.05)),
    st.tuples(st.just("lev"), st.sampled_from(_SYMS[1:]), st.integers(1, 20)),
    st.tuples(st.just("manual"), st.sampled_from(_SYMS), st.sampled_from(["buy", "sell", "close"]), st.floats(0.05, 1.0)),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
)


def _replay_trades(trades):
    """Average-cost accounting from the trade list alone: realized P&L, fees, and open positions."""
    realized = fees = 0.0
    book: dict[str, list[float]] = {}
    for t in trades:
        assert t["fee"]["cost"] >= 0
        fees += t["fee"]["cost"]
        q, avg = book.get(t["symbol"], [0.0, 0.0])
        d = t["amount"] if t["side"] == "buy" else -t["amount"]
        if q * d < 0:
            close = min(abs(d), abs(q))
            realized += (t["price"] - avg) * close * (1 if q > 0 else -1)
            q += close if q < 0 else -close
            d += -close if d > 0 else close
            if abs(q) < 1e-12:
                q = 0.0
        if abs(d) > 1e-12:
            avg = (avg * abs(q) + t["price"] * abs(d)) / (abs(q) + abs(d))
            q += d
        book[t["symbol"]] = [q, avg]
    return realized, fees, book


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_op, min_size=10, max_size=80), partial=st.booleans())
def test_equity_equals_cash_plus_realized_plus_unrealized_minus_fees(ops, partial):
    ex = make(partial_fill_volume_fraction=0.3 if partial else None)
    price = dict(_START)
    step = dict.fromkeys(_SYMS, 0)
    for s in _SYMS:
        flat(ex, s, 0, price[s])
    for op in ops:
        kind, rest = op[0], op[1:]
        try:
            if kind == "bar":
                s, r, up, down = rest
                o = price[s]
                c = o * (1 + r)
                step[s] += 1
                bar(ex, s, step[s], o, max(o, c) * (1 + up), min(o, c) * (1 - down), c, v=2.0)
                price[s] = c
            elif kind == "market":
                ex.create_order(rest[0], "market", rest[1], rest[2])
            elif kind == "limit":
                s, side, amt, off = rest
                ex.create_order(s, "limit", side, amt, price[s] * (1 + off))
            elif kind == "stop":
                s, key, dist = rest
                qty = ex._position_qty(s)
                if abs(qty) > 0.001:
                    exit_side = "sell" if qty > 0 else "buy"
                    sign = -1 if (exit_side == "sell") == (key == "stopLossPrice") else 1
                    ex.create_order(s, "market", exit_side, abs(qty), None, {key: price[s] * (1 + sign * dist)})
            elif kind == "manual":
                s, what, amt = rest
                ex.manual_close(s) if what == "close" else ex.manual_order(s, what, amt)
            elif kind == "lev":
                ex.set_leverage(rest[1], rest[0])
            elif kind == "cancel":
                opened = ex.fetch_open_orders()
                if opened:
                    ex.cancel_order(opened[rest[0] % len(opened)]["id"])
        except (ccxt.InsufficientFunds, ccxt.InvalidOrder):
            pass
    realized, fees, book = _replay_trades(ex.fetch_my_trades())
    marks = {s: ex.fetch_ticker(s)["last"] for s in _SYMS}
    unrealized = sum((marks[s] - avg) * q for s, (q, avg) in book.items())
    bal = ex.fetch_balance()
    positions = {p["symbol"]: p for p in ex.fetch_positions()}
    for s in _SYMS[1:]:
        q = book.get(s, [0.0, 0.0])[0]
        p = positions.get(s)
        assert (p["contracts"] * (1 if p["side"] == "long" else -1) if p else 0.0) == pytest.approx(q, abs=1e-9)
        if p:
            assert p["unrealizedPnl"] == pytest.approx((marks[s] - book[s][1]) * q, rel=1e-9, abs=1e-6)
    assert bal["total"].get("ETH", 0.0) == pytest.approx(book.get("ETH/USDT", [0.0])[0], abs=1e-8)
    equity = bal["total"]["USDT"] + bal["total"].get("ETH", 0.0) * marks["ETH/USDT"] + sum(p["unrealizedPnl"] for p in positions.values())
    assert equity == pytest.approx(10_000 + realized + unrealized - fees, abs=1e-6)
    assert equity == pytest.approx(ex.equity(), abs=1e-6)
    for k in ("free", "used"):
        assert all(v >= 0 for v in bal[k].values())


def _book_with_levels(leverage: int, side: str, levels: list[float], skip: bool = True) -> PaperExchange:
    """A perpetual position with its stops, a resting limit and a stop-market order, at price 100."""
    ex = make(balance={"USDT": 100_000})
    if not skip:
        ex._reach = lambda symbol: (float("inf"), -float("inf"))  # always process
    flat(ex, PERP, 0, 100)
    ex.set_leverage(leverage, PERP)
    ex.create_order(PERP, "market", side, 10, None, {"clientOrderId": "entry"})
    exit_side = "sell" if side == "buy" else "buy"
    sl, tp = (100 * levels[0], 100 * levels[1]) if side == "buy" else (100 * levels[1], 100 * levels[0])
    if (side == "buy" and sl < 100 < tp) or (side == "sell" and tp < 100 < sl):
        ex.create_order(PERP, "market", exit_side, 10, None, {"clientOrderId": "sl", "stopLossPrice": sl})
        ex.create_order(PERP, "market", exit_side, 10, None, {"clientOrderId": "tp", "takeProfitPrice": tp})
    ex.create_order(PERP, "limit", side, 2, 100 * min(levels[2], 0.999) if side == "buy" else 100 * max(levels[2], 1.001), {"clientOrderId": "lim"})
    ex.create_order(PERP, "market", side, 1, None, {"clientOrderId": "stop", "triggerPrice": 100 * max(levels[3], 1.001) if side == "buy" else 100 * min(levels[3], 0.999)})
    return ex


def _path(moves: list[tuple[float, float, float]]) -> list[tuple[int, float, float, float, float, float]]:
    rows, price = [], 100.0
    for i, (ret, up, down) in enumerate(moves, start=1):
        o, c = price, price * (1 + ret)
        rows.append((T0 + i * H, o, max(o, c) * (1 + up), min(o, c) * (1 - down), c, 1_000.0 + i))
        price = c
    return rows


LEVEL_BOOKS = dict(
    leverage=st.sampled_from([1, 5, 20]),
    side=st.sampled_from(["buy", "sell"]),
    levels=st.lists(st.floats(0.85, 1.15), min_size=4, max_size=4),
    moves=st.lists(st.tuples(st.floats(-0.04, 0.04), st.floats(0, 0.03), st.floats(0, 0.03)), min_size=1, max_size=40),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**LEVEL_BOOKS)
def test_skipping_bars_that_reach_no_level_changes_nothing(leverage, side, levels, moves):
    """Bars that reach no order's level (nor the liquidation price) skip the book: same result as processing every bar."""
    def run(skip: bool) -> dict:
        ex = _book_with_levels(leverage, side, levels, skip)
        for row in _path(moves):
            ex.feed_bar(PERP, *row)
        return ex.snapshot()

    assert run(skip=True) == run(skip=False)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**LEVEL_BOOKS, bad=st.sampled_from([None, "nan", "stale"]))
def test_quiet_bars_fed_as_arrays_equal_feeding_each_bar(leverage, side, levels, moves, bad):
    """quiet_bars counts the leading bars feed_bar would only record; feed_quiet records them at once, the same way."""
    rows = _path(moves)
    if bad == "nan":
        rows[len(rows) // 2] = (*rows[len(rows) // 2][:2], float("nan"), *rows[len(rows) // 2][3:])
    elif bad == "stale":
        rows[len(rows) // 2] = (T0, *rows[len(rows) // 2][1:])
    each, arrays = _book_with_levels(leverage, side, levels), _book_with_levels(leverage, side, levels)
    cols = [np.array(c) for c in zip(*rows, strict=True)]
    i = 0
    while i < len(rows):
        n = arrays.quiet_bars(PERP, *(c[i:] for c in cols[:5]))
        if n:
            arrays.feed_quiet(PERP, *(c[i:i + n] for c in cols))
            i += n
            continue
        try:
            arrays.feed_bar(PERP, *rows[i])
        except ccxt.BadRequest:
            pass
        i += 1
    for row in rows:
        try:
            each.feed_bar(PERP, *row)
        except ccxt.BadRequest:
            pass
    assert arrays.snapshot() == each.snapshot()
    assert arrays.fetch_ohlcv(PERP, "1h") == each.fetch_ohlcv(PERP, "1h")
    assert arrays.fetch_ticker(PERP) == each.fetch_ticker(PERP)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(-10, 10**16), st.sampled_from([0, 86_399_999, 86_400_000, 253_402_300_799_999, 253_402_300_800_000, True, None, 1.5])))
def test_order_times_are_formatted_exactly_as_ccxt_does(timestamp):
    """The paper venue formats its own ISO-8601 times (faster); the text is ccxt's for every input."""
    assert PaperExchange.iso8601(timestamp) == ccxt.Exchange.iso8601(timestamp)
