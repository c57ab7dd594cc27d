"""The Bybit emulator, driven through ccxt's real bybit class over loopback HTTP, plus unit tests."""
from __future__ import annotations

import argparse
import io
import json
import math
import threading
import time
import urllib.request

import ccxt
import pytest

from workbench import fills
from workbench.emulator import Emulator, auth
from workbench.emulator.codes import BybitError
from workbench.emulator.faults import Faults
from workbench.errors import ConfigError

CLIENT_TIMEOUT_MS = 1500
PERP = "BTC/USDT:USDT"
SPOT = "BTC/USDT"


def next_bar(emu: Emulator, symbol: str = "BTC/USDT"):
    """The bar that closes on the next advance (tests may peek; the exchange may not)."""
    return emu.feed.bar(symbol, emu.feed.last_closed_index(symbol) + 1)


# -- markets and market data ------------------------------------------------------
def test_load_markets_lists_spot_and_linear_with_precision(emulator, bybit):
    assert {SPOT, PERP, "ETH/USDT", "ETH/USDT:USDT"} <= set(bybit.markets)
    perp, spot = bybit.market(PERP), bybit.market(SPOT)
    assert perp["swap"] and perp["linear"] and perp["settle"] == "USDT" and perp["contractSize"] == 1
    assert spot["spot"] and not spot["contract"]
    assert (perp["precision"]["amount"], perp["precision"]["price"]) == (0.001, 0.1)
    assert perp["limits"]["leverage"]["max"] == 100 and perp["limits"]["cost"]["min"] == 5
    ops = {op for _, _, op in emulator.requests}
    assert {"instruments", "coin_info"} <= ops  # load_markets also asks for coins when keyed


def test_ticker_and_ohlcv_follow_the_manual_clock(emulator, bybit):
    price = emulator.price(SPOT)
    assert bybit.fetch_ticker(SPOT)["last"] == price
    bars = bybit.fetch_ohlcv(SPOT, "1h", limit=5)
    assert len(bars) == 5 and bars[-1][4] == pytest.approx(price, abs=0.01)
    assert bars[-1][0] + 3_600_000 <= emulator.now_ms()  # only closed bars
    upcoming = next_bar(emulator)
    emulator.advance(bars=1)
    after = bybit.fetch_ohlcv(SPOT, "1h", limit=5)
    assert after[-1][0] == upcoming[0] and after[-1][4] == pytest.approx(upcoming[4], abs=0.01)
    assert bybit.fetch_ticker(PERP)["last"] == pytest.approx(upcoming[4], abs=0.1)
    four_h = bybit.fetch_ohlcv(SPOT, "4h", limit=2)
    assert all(b[0] % (4 * 3_600_000) == 0 for b in four_h)
    since = bars[0][0]
    assert [b[0] for b in bybit.fetch_ohlcv(SPOT, "1h", since=since, limit=2)] == [since, since + 3_600_000]


def test_order_book_is_synthetic_around_the_price(emulator, bybit):
    book = bybit.fetch_order_book(PERP, 5)
    price = emulator.price(PERP)
    assert len(book["bids"]) == len(book["asks"]) == 5
    assert book["bids"][0][0] < price < book["asks"][0][0]
    assert book["bids"] == sorted(book["bids"], reverse=True) and book["asks"] == sorted(book["asks"])


# -- parsed structures match the real exchange's ----------------------------------
def _same_shape(ours, ref, path="") -> list[str]:
    """Differences in keys and value types between two parsed ccxt structures."""
    if isinstance(ref, dict) and isinstance(ours, dict):
        out = []
        if path.endswith("info") or path == "":
            pass
        missing = set(ref) - set(ours)
        if missing and not path.endswith("info"):
            out.append(f"{path}: missing {sorted(missing)}")
        for k in set(ref) & set(ours):
            if k in ("info",):
                continue
            out += _same_shape(ours[k], ref[k], f"{path}.{k}")
        return out
    if isinstance(ref, list) and isinstance(ours, list):
        return _same_shape(ours[0], ref[0], path + "[0]") if ref and ours else []
    if ref is None or ours is None:
        return []
    num = (int, float)
    if isinstance(ref, num) and isinstance(ours, num) and not isinstance(ref, bool) and not isinstance(ours, bool):
        return []
    return [] if type(ref) is type(ours) else [f"{path}: {type(ours).__name__} vs recorded {type(ref).__name__}"]


def test_ccxt_parses_replies_into_the_recorded_unified_structures(emulator, bybit, shared_data):
    recorded = json.loads((shared_data / "ccxt-static" / "bybit.json").read_text())["methods"]
    bybit.set_leverage(5, PERP)
    created = bybit.create_order(PERP, "market", "buy", 0.01, params={"clientOrderId": "shape-1"})
    limit = bybit.create_order(PERP, "limit", "buy", 0.01, emulator.price(PERP) * 0.8)
    ours = {
        "createOrder": created,
        "fetchTicker": bybit.fetch_ticker(PERP),
        "fetchOHLCV": bybit.fetch_ohlcv(PERP, "1h", limit=3),
        "fetchOrderBook": bybit.fetch_order_book(PERP, 2),
        "fetchBalance": bybit.fetch_balance(),
        "fetchPositions": bybit.fetch_positions([PERP]),
        "fetchMyTrades": bybit.fetch_my_trades(PERP),
        "fetchClosedOrders": bybit.fetch_closed_orders(PERP),
        "fetchOpenOrder": bybit.fetch_open_order(limit["id"], PERP),
    }
    problems = {}
    for method, value in ours.items():
        ref = recorded[method][-1 if method == "fetchMyTrades" else 0]["parsedResponse"]
        diff = _same_shape(value, ref)
        if method == "fetchBalance":  # the recorded account holds other coins
            diff = [d for d in diff if not any(c in d for c in ("USDC", "ADA", "ETH", "BTC"))]
        if diff:
            problems[method] = diff
    assert not problems, problems
    assert ours["fetchOpenOrder"]["status"] == "open" and ours["fetchClosedOrders"][0]["status"] == "closed"


# -- trading a linear perpetual ---------------------------------------------------------
def test_market_order_opens_position_with_taker_fee_and_margin(emulator, bybit):
    price = emulator.price(PERP)
    order = bybit.create_order(PERP, "market", "buy", 0.02, params={"clientOrderId": "m-1"})
    assert order["clientOrderId"] == "m-1"
    (pos,) = [p for p in bybit.fetch_positions([PERP]) if p["contracts"]]
    assert pos["side"] == "long" and pos["contracts"] == 0.02 and pos["entryPrice"] == price
    assert pos["leverage"] == 10 and pos["initialMargin"] == pytest.approx(0.02 * price / 10)
    (trade,) = bybit.fetch_my_trades(PERP)
    assert trade["order"] == order["id"] and trade["takerOrMaker"] == "taker"
    assert trade["fee"]["currency"] == "USDT" and trade["fee"]["rate"] == 0.00055
    assert trade["fee"]["cost"] == pytest.approx(0.02 * price * 0.00055)
    usdt = bybit.fetch_balance()["USDT"]
    assert usdt["total"] == pytest.approx(100_000 - trade["fee"]["cost"])
    assert usdt["used"] == pytest.approx(pos["initialMargin"])
    emulator.advance(1)
    pos = bybit.fetch_positions([PERP])[0]
    assert pos["unrealizedPnl"] == pytest.approx(0.02 * (emulator.price(PERP) - price), abs=1e-6)


def test_limit_order_rests_then_fills_as_maker_when_a_bar_crosses(emulator, bybit):
    upcoming = next_bar(emulator)
    limit = round(min(upcoming[3] + 1.0, emulator.price(PERP) - 1.0), 1)
    assert limit < emulator.price(PERP)
    order = bybit.create_order(PERP, "limit", "buy", 0.01, limit, params={"clientOrderId": "l-1"})
    (open_,) = bybit.fetch_open_orders(PERP)
    assert open_["id"] == order["id"] and open_["status"] == "open" and open_["price"] == limit
    emulator.advance(1)
    assert bybit.fetch_open_orders(PERP) == []
    (closed,) = bybit.fetch_closed_orders(PERP)
    expected = fills.limit_fill("buy", limit, upcoming[1], upcoming[2], upcoming[3])
    assert closed["status"] == "closed" and closed["average"] == pytest.approx(expected, abs=0.1)
    (trade,) = bybit.fetch_my_trades(PERP)
    assert trade["takerOrMaker"] == "maker" and trade["fee"]["rate"] == 0.0002


def test_duplicate_client_order_id_is_rejected_like_bybit(emulator, bybit):
    bybit.create_order(PERP, "market", "buy", 0.01, params={"clientOrderId": "dup-1"})
    with pytest.raises(ccxt.InvalidOrder, match="110072"):
        bybit.create_order(PERP, "market", "buy", 0.01, params={"clientOrderId": "dup-1"})
    assert len(emulator.orders("dup-1")) == 1


def test_cancel_order_moves_it_to_history(emulator, bybit):
    order = bybit.create_order(PERP, "limit", "sell", 0.01, round(emulator.price(PERP) * 1.5, 1))
    bybit.cancel_order(order["id"], PERP)
    assert bybit.fetch_open_orders(PERP) == []
    (gone,) = bybit.fetch_canceled_and_closed_orders(PERP)
    assert gone["id"] == order["id"] and gone["status"] == "canceled"
    with pytest.raises(ccxt.OrderNotFound):
        bybit.cancel_order(order["id"], PERP)


def test_set_leverage_changes_margin_and_liquidation_price(emulator, bybit):
    bybit.set_leverage(5, PERP)
    with pytest.raises(ccxt.BadRequest, match="110043"):  # Bybit: leverage not modified
        bybit.set_leverage(5, PERP)
    bybit.create_order(PERP, "market", "sell", 0.01)
    pos = bybit.fetch_positions([PERP])[0]
    entry = pos["entryPrice"]
    assert pos["side"] == "short" and pos["leverage"] == 5
    assert pos["initialMargin"] == pytest.approx(0.01 * entry / 5)
    assert pos["liquidationPrice"] == pytest.approx(entry * (1 + 1 / 5 - 0.005), abs=0.1)


def test_reduce_only_without_a_position_is_refused(bybit):
    with pytest.raises(ccxt.InvalidOrder, match="110017"):
        bybit.create_order(PERP, "market", "sell", 0.01, params={"reduceOnly": True})


def test_realised_pnl_goes_to_the_wallet_on_close(emulator, bybit):
    entry = emulator.price(PERP)
    bybit.create_order(PERP, "market", "buy", 0.05)
    emulator.advance(3)
    exit_ = emulator.price(PERP)
    bybit.create_order(PERP, "market", "sell", 0.05, params={"reduceOnly": True})
    assert not [p for p in bybit.fetch_positions([PERP]) if p["contracts"]]
    fees = sum(t["fee"]["cost"] for t in bybit.fetch_my_trades(PERP))
    assert bybit.fetch_balance()["USDT"]["total"] == pytest.approx(100_000 + 0.05 * (exit_ - entry) - fees, abs=1e-6)


def test_attached_stop_loss_closes_the_position_by_the_fill_rules(emulator, bybit):
    upcoming = next_bar(emulator)
    price = emulator.price(PERP)
    sl = round(upcoming[3] + 0.2, 1)
    if sl >= price or upcoming[1] <= sl:  # keep the test about a touch, not a gap
        emulator.advance(1)
        return test_attached_stop_loss_closes_the_position_by_the_fill_rules(emulator, bybit)
    bybit.create_order(PERP, "market", "buy", 0.01, params={"stopLoss": {"triggerPrice": sl}})
    assert bybit.fetch_positions([PERP])[0]["stopLossPrice"] == sl
    emulator.advance(1)
    assert not [p for p in bybit.fetch_positions([PERP]) if p["contracts"]]
    exit_trade = bybit.fetch_my_trades(PERP)[-1]
    assert exit_trade["side"] == "sell" and exit_trade["price"] == pytest.approx(sl, abs=0.1)
    assert exit_trade["info"]["stopOrderType"] == "StopLoss"


# -- spot -----------------------------------------------------------------------------
def test_spot_buy_and_sell_move_coin_balances_with_bybit_fee_currencies(emulator, bybit):
    price = emulator.price(SPOT)
    bybit.create_order(SPOT, "market", "buy", 0.01)
    bal = bybit.fetch_balance()
    assert bal["BTC"]["total"] == pytest.approx(0.01 * (1 - 0.001))
    assert bal["USDT"]["total"] == pytest.approx(100_000 - 0.01 * price)
    (buy,) = bybit.fetch_my_trades(SPOT)
    assert buy["fee"]["currency"] == "BTC" and buy["fee"]["cost"] == pytest.approx(0.00001)
    limit = round(price * 1.5, 2)
    bybit.create_order(SPOT, "limit", "sell", 0.005, limit)
    assert bybit.fetch_balance()["BTC"]["used"] == pytest.approx(0.005)
    with pytest.raises(ccxt.InsufficientFunds):
        bybit.create_order(SPOT, "market", "sell", 0.009)
    bybit.create_order(SPOT, "market", "sell", 0.004)
    sell = bybit.fetch_my_trades(SPOT)[-1]
    assert sell["fee"]["currency"] == "USDT" and sell["fee"]["cost"] == pytest.approx(0.004 * price * 0.001)


# -- manual trades (the web page) -------------------------------------------------------
def test_manual_close_shows_in_trades_and_positions(emulator, bybit):
    bybit.create_order(PERP, "market", "buy", 0.03, params={"clientOrderId": "engine-1"})
    emulator.advance(1)
    emulator.manual_close(PERP)
    assert not [p for p in bybit.fetch_positions([PERP]) if p["contracts"]]
    trades = bybit.fetch_my_trades(PERP)
    assert [t["side"] for t in trades] == ["buy", "sell"]
    engine, manual = trades
    assert engine["info"]["orderLinkId"] == "engine-1" and manual["info"]["orderLinkId"] == ""
    assert manual["amount"] == 0.03 and manual["price"] == emulator.price(PERP)
    emulator.manual_order(PERP, "sell", 0.01)
    assert bybit.fetch_positions([PERP])[0]["side"] == "short"


# -- authentication ---------------------------------------------------------------------
def test_bad_key_bad_signature_and_stale_timestamp_are_refused(emulator):
    wrong_key = emulator.client(timeout_ms=CLIENT_TIMEOUT_MS, apiKey="not-a-key")
    with pytest.raises(ccxt.AuthenticationError, match="10003"):
        wrong_key.fetch_balance()
    wrong_secret = emulator.client(timeout_ms=CLIENT_TIMEOUT_MS, secret="wrong-secret")
    with pytest.raises(ccxt.AuthenticationError, match="10004"):
        wrong_secret.fetch_balance()
    stale = emulator.client(timeout_ms=CLIENT_TIMEOUT_MS)
    stale.options["timeDifference"] = 60_000  # its clock runs a minute behind: outside the 5 s recv window
    with pytest.raises(ccxt.InvalidNonce, match="10002"):  # ccxt's mapping of Bybit's 10002
        stale.fetch_balance()
    stale.options["recvWindow"] = 120_000
    assert stale.fetch_balance()["USDT"]["total"] == 100_000


def test_signature_verification_unit():
    key = auth.ApiKey("k1", "s1")
    keys = {"k1": "s1"}
    now = 1_700_000_000_000
    payload = "category=linear&symbol=BTCUSDT"
    headers = auth.signed_headers(key, payload, now - 100)
    assert auth.verify(headers, payload, keys, now) == "k1"
    assert "s1" not in repr(key)
    cases = [
        ({**headers, "X-BAPI-API-KEY": "k2"}, payload, 10003),
        (headers, payload + "&x=1", 10004),
        (auth.signed_headers(key, payload, now - 6000), payload, 10002),
        (auth.signed_headers(key, payload, now + 1500), payload, 10002),
        (auth.signed_headers(key, payload, now - 6000, recv_window=10_000), payload, None),
    ]
    for hdrs, body, code in cases:
        if code is None:
            assert auth.verify(hdrs, body, keys, now) == "k1"
        else:
            with pytest.raises(BybitError) as err:
                auth.verify(hdrs, body, keys, now)
            assert err.value.code == code
    expected = __import__("hmac").new(b"s1", f"{now}k15000{payload}".encode(), "sha256").hexdigest()
    assert auth.sign("s1", now, "k1", 5000, payload) == expected


# -- faults ------------------------------------------------------------------------------
def test_latency_fault_delays_but_answers(emulator, bybit):
    emulator.faults.add("tickers", "latency", seconds=0.3)
    t0 = time.perf_counter()
    assert bybit.fetch_ticker(PERP)["last"] > 0
    assert time.perf_counter() - t0 >= 0.3


@pytest.mark.parametrize(
    ("kind", "params", "error"),
    [
        ("timeout", {}, ccxt.RequestTimeout),
        ("http_error", {"status": 503}, ccxt.ExchangeNotAvailable),
        ("http_error", {"status": 502}, ccxt.ExchangeNotAvailable),
        ("rate_limit", {}, ccxt.RateLimitExceeded),
        ("drop", {}, ccxt.NetworkError),
        ("insufficient_balance", {}, ccxt.InsufficientFunds),
    ],
)
def test_faults_before_accept_map_to_ccxt_errors_and_place_nothing(emulator, bybit, kind, params, error):
    emulator.faults.add("create_order", kind, times=1, **params)
    with pytest.raises(error):
        bybit.create_order(PERP, "market", "buy", 0.01, params={"clientOrderId": f"f-{kind}"})
    assert emulator.orders(f"f-{kind}") == []
    assert emulator.faults.log == [("create_order", kind)]
    bybit.create_order(PERP, "market", "buy", 0.01, params={"clientOrderId": f"f-{kind}"})  # fault used up
    assert len(emulator.orders(f"f-{kind}")) == 1


@pytest.mark.parametrize("kind", ["drop_after_accept", "timeout_after_accept"])
def test_order_accepted_before_the_reply_was_lost_can_be_found_by_client_id(emulator, bybit, kind):
    emulator.faults.add("create_order", kind, times=1)
    with pytest.raises(ccxt.NetworkError):
        bybit.create_order(PERP, "market", "buy", 0.01, params={"clientOrderId": "lost-1"})
    found = bybit.fetch_closed_orders(PERP, params={"orderLinkId": "lost-1"})
    assert [o["clientOrderId"] for o in found] == ["lost-1"] and found[0]["filled"] == 0.01
    with pytest.raises(ccxt.InvalidOrder, match="110072"):  # a blind resend is refused as a duplicate
        bybit.create_order(PERP, "market", "buy", 0.01, params={"clientOrderId": "lost-1"})


def test_rate_limit_reply_carries_bybit_limit_headers(emulator):
    emulator.faults.add("tickers", "rate_limit")
    with urllib.request.urlopen(f"{emulator.url}/v5/market/tickers?category=linear&symbol=BTCUSDT", timeout=2) as r:
        body = json.loads(r.read())
        assert body["retCode"] == 10006 and r.headers["X-Bapi-Limit-Status"] == "0"
        assert int(r.headers["X-Bapi-Limit-Reset-Timestamp"]) > time.time() * 1000


def test_real_insufficient_margin_is_refused(bybit):
    with pytest.raises(ccxt.InsufficientFunds, match="110007"):
        bybit.create_order(PERP, "market", "buy", 50)  # about 2M USDT of BTC at 10x on 100k


def test_ccxt_venue_retry_after_a_dropped_reply_places_exactly_one_order(emulator, bybit):
    from workbench.venues.base import OrderRequest
    from workbench.venues.ccxt_venue import CcxtVenue, RetryPolicy

    venue = CcxtVenue(bybit, retry=RetryPolicy(attempts=3), sleep=lambda s: None)
    emulator.faults.add("create_order", "drop_after_accept", times=1)
    order = venue.create_order(OrderRequest(PERP, "buy", "market", 0.01, client_order_id="venue-1"))
    assert order["clientOrderId"] == "venue-1"
    assert len(emulator.orders("venue-1")) == 1


def test_faults_schedule_unit():
    faults = Faults(("create_order", "tickers"))
    faults.add("create_order", "rate_limit", times=2)
    faults.add("*", "latency", times=None, seconds=0)
    assert [faults.take("create_order").kind for _ in range(3)] == ["rate_limit", "rate_limit", "latency"]
    assert faults.take("tickers").kind == "latency"
    with pytest.raises(ConfigError, match="Did you mean 'timeout'"):
        faults.add("create_order", "timeot")
    with pytest.raises(ConfigError, match="operation"):
        faults.add("create_ordr", "drop")


def test_down_fault_fails_every_request_until_its_time_on_an_injected_clock(emulator_factory):
    now = [1_000.0]
    emu = emulator_factory(fault_clock=lambda: now[0]).start()
    bybit = emu.client(timeout_ms=CLIENT_TIMEOUT_MS)
    bybit.load_markets()
    fault = emu.faults.down(seconds=60)
    assert fault.until == 1_060.0 and emu.faults.is_down("create_order")
    for call in (lambda: bybit.fetch_ticker(PERP), lambda: bybit.fetch_ohlcv(PERP, "1h", limit=2),
                 lambda: bybit.create_order(PERP, "market", "buy", 0.01, params={"clientOrderId": "down-1"})):
        with pytest.raises(ccxt.ExchangeNotAvailable):
            call()
    assert emu.orders("down-1") == []  # nothing processed while down
    emu.advance(1)  # the admin side (the market) keeps moving while the API is down
    now[0] = 1_059.9
    with pytest.raises(ccxt.ExchangeNotAvailable):
        bybit.fetch_ticker(PERP)
    now[0] = 1_060.0  # a minute later, without waiting one
    assert bybit.fetch_ticker(PERP)["last"] > 0 and not emu.faults.is_down()
    bybit.create_order(PERP, "market", "buy", 0.01, params={"clientOrderId": "down-1"})
    assert len(emu.orders("down-1")) == 1
    assert [k for _, k in emu.faults.log].count("down") == 4


def test_down_fault_refusing_connections_until_brought_up(emulator, bybit):
    emulator.faults.down(refuse=True)  # no end: until up()
    with pytest.raises(ccxt.NetworkError):
        bybit.fetch_ticker(PERP)
    emulator.faults.add("tickers", "http_error", status=500)  # other faults are untouched by up()
    emulator.faults.up()
    with pytest.raises(ccxt.ExchangeNotAvailable):
        bybit.fetch_ticker(PERP)
    assert bybit.fetch_ticker(PERP)["last"] > 0
    with pytest.raises(ConfigError, match="positive"):
        emulator.faults.down(seconds=0)
    status, body = _admin(emulator, "down", {"seconds": 30}, emulator.admin_token)
    assert status == 200 and body["result"]["kind"] == "down" and emulator.faults.is_down()
    _admin(emulator, "up", {}, emulator.admin_token)
    assert not emulator.faults.is_down() and bybit.fetch_ticker(PERP)["last"] > 0


# -- matching and accounting without HTTP --------------------------------------------------
def test_exchange_matching_and_fees_unit(emulator_factory):
    emu = emulator_factory(symbols=["ETH/USDT"], balances={"USDT": 10_000.0})
    ex = emu.exchange
    price = emu.price("ETH/USDT:USDT")
    upcoming = next_bar(emu, "ETH/USDT")
    ex.manual_order("ETH/USDT:USDT", "buy", 1.0)
    limit = round(upcoming[3] + 0.01, 2)
    resting = ex.manual_order("ETH/USDT:USDT", "buy", 1.0, price=min(limit, price - 0.01))
    assert resting.is_open and ex.order_im() == pytest.approx(resting.price / 10)
    emu.advance(1)
    taker, maker = ex.executions
    assert taker.fee == pytest.approx(price * 0.00055) and not taker.is_maker
    assert maker.is_maker and maker.fee == pytest.approx(maker.price * 0.0002)
    assert maker.price == pytest.approx(fills.limit_fill("buy", resting.price, *upcoming[1:4]), abs=0.01)
    pos = ex.positions["ETHUSDT"]
    assert pos.size == 2.0 and pos.avg == pytest.approx((price + maker.price) / 2)
    assert ex.coins["USDT"] == pytest.approx(10_000 - taker.fee - maker.fee)


def test_liquidation_closes_a_leveraged_position_unit(emulator_factory):
    emu = emulator_factory(symbols=["BTC/USDT"])
    ex = emu.exchange
    ex.set_leverage("linear", "BTCUSDT", "100", "100")
    ex.manual_order("BTC/USDT:USDT", "buy", 0.1)
    liq = ex.positions["BTCUSDT"].liq_price()
    assert liq == pytest.approx(ex.positions["BTCUSDT"].avg * (1 - 0.01 + 0.005))
    for _ in range(500):
        emu.advance(1)
        if not ex.positions["BTCUSDT"].side:
            break
    bust = [e for e in ex.executions if e.exec_type == "BustTrade"]
    assert len(bust) == 1 and bust[0].price == pytest.approx(liq, abs=0.1)


def test_emulator_refuses_bad_setup(emulator_factory):
    with pytest.raises(ConfigError, match="clock"):
        Emulator(clock="later")
    with pytest.raises(ConfigError, match="sample symbol"):
        Emulator(symbols=["DOGE/USDT"])
    emu = emulator_factory(symbols=["BTC/USDT"])
    with pytest.raises(ConfigError, match="backwards"):
        emu.set_time("2024-01-15")
    with pytest.raises(ConfigError, match="no open"):
        emu.manual_close(PERP)


def test_csv_replay_runs_out_of_data_with_a_clear_error(tmp_path):
    from workbench.data import sample_ohlcv
    from workbench.errors import DataError

    df = sample_ohlcv("ETH/USDT", "1h", 50)
    emu = Emulator(data={"ETH/USDT": df}, timeframe="1h")
    assert emu.price("ETH/USDT") == pytest.approx(df["close"].iloc[24], abs=0.01)
    with pytest.raises(DataError, match="ends at"):
        emu.advance(100)


# -- admin HTTP and CLI ----------------------------------------------------------------
def _admin(emu: Emulator, action: str, payload: dict, token: str | None):
    req = urllib.request.Request(f"{emu.url}/admin/{action}", data=json.dumps(payload).encode(), method="POST",
                                 headers={"X-Admin-Token": token or ""})
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_admin_http_needs_the_token_and_drives_the_emulator(emulator, bybit):
    assert _admin(emulator, "advance", {"bars": 2}, "wrong")[0] == 401
    before = emulator.now_ms()
    status, body = _admin(emulator, "advance", {"bars": 2}, emulator.admin_token)
    assert status == 200 and body["result"]["now"] == before + 2 * 3_600_000
    _admin(emulator, "manual_order", {"symbol": PERP, "side": "buy", "amount": 0.01}, emulator.admin_token)
    assert bybit.fetch_positions([PERP])[0]["contracts"] == 0.01
    _admin(emulator, "fault", {"op": "tickers", "kind": "http_error", "status": 500}, emulator.admin_token)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        bybit.fetch_ticker(PERP)


def test_cli_prints_url_and_demo_key_and_serves():
    from workbench.cli import emulator as cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["emulator", "--port", "0", "--data", "sample", "--symbols", "BTC/USDT", "--clock", "manual"])
    emu = cli.build(args)
    stop, out = threading.Event(), io.StringIO()
    thread = threading.Thread(target=cli.serve, args=(emu, out, stop))
    thread.start()
    try:
        for _ in range(100):
            if "API secret" in out.getvalue():
                break
            time.sleep(0.02)
        text = out.getvalue()
        assert emu.url in text and emu.api_key.key in text and emu.url.startswith("http://127.0.0.1:")
        client = emu.client(timeout_ms=CLIENT_TIMEOUT_MS)
        assert math.isclose(client.fetch_ticker(SPOT)["last"], emu.price(SPOT))
    finally:
        stop.set()
        thread.join(5)
    with pytest.raises(ConfigError, match="SYMBOL=PATH"):
        cli.build(parser.parse_args(["emulator", "--data", "csv"]))
