"""Manual orders, positions and the account summary (OrderDesk, account_summary) on the paper venue."""
from __future__ import annotations

import pytest

from workbench.engine import Engine
from workbench.engine.clock import ManualClock
from workbench.engine.spec import DeploymentSpec
from workbench.errors import ConfigError, LiveTradingRefused, VenueError
from workbench.orders import OrderDesk, account_summary
from workbench.store import Store
from workbench.venues.ccxt_venue import CcxtVenue
from workbench.venues.paper_venue import paper_venue

PERP, SPOT = "BTC/USDT:USDT", "BTC/USDT"
T0 = 1_706_745_600_000
H = 3_600_000


def venue_with_prices(store, price=40_000.0, cash=100_000.0):
    spec = DeploymentSpec(strategy="sma_cross", symbols=(PERP,), params={"fast": 5, "slow": 20}, initial_cash=cash)
    venue = paper_venue("desk", spec, store)
    for sym in (PERP, SPOT):
        venue.exchange.feed_bar(sym, T0, price, price, price, price, 1.0)
    return venue


def bar(venue, symbol, i, o, h, lo, c):
    venue.exchange.feed_bar(symbol, T0 + i * H, o, h, lo, c, 1.0)


@pytest.fixture
def store():
    return Store(":memory:")


@pytest.fixture
def venue(store):
    return venue_with_prices(store)


@pytest.fixture
def desk(store, venue):
    return OrderDesk(store, venue, limits={"max_position_quote": 20_000, "max_leverage": 3, "leverage": 3})


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("BTC/USDT:USD", "buy", 0.1), {}, "Did you mean"),
        ((PERP, "long", 0.1), {}, "side"),
        ((PERP, "buy", 0), {}, "positive"),
        ((PERP, "buy", float("nan")), {}, "positive"),
        ((PERP, "buy", 0.1), {"type": "limit"}, "needs a price"),
        ((PERP, "buy", 0.1), {"type": "limit", "price": -1}, "positive"),
        ((PERP, "buy", 0.1), {"price": 40_000}, "market order takes no price"),
        ((PERP, "buy", 0.1), {"type": "stop_limit"}, "order type"),
        ((PERP, "buy", 0.00001), {}, "rounds to 0|below the minimum"),
        ((PERP, "buy", 0.6), {}, "max_position_quote"),
    ],
)
def test_validation_says_what_to_change(desk, args, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        desk.validate(*args, **kwargs)


def test_caps_per_order_and_leverage(store, venue):
    with pytest.raises(ConfigError, match="desk's cap"):
        OrderDesk(store, venue, max_notional=1_000).validate(PERP, "buy", 0.1)
    with pytest.raises(ConfigError, match="max_leverage"):
        OrderDesk(store, venue, limits={"max_leverage": 0.5}).validate(PERP, "buy", 2)
    checked = OrderDesk(store, venue).validate(PERP, "buy", 0.12345)
    assert checked.amount == venue.market(PERP).round_amount(0.12345) and checked.notional == pytest.approx(checked.amount * 40_000)


def test_preview_estimates_cost_fee_margin_and_resulting_position(desk, venue):
    venue.exchange.set_leverage(3, PERP)
    p = desk.preview(PERP, "buy", 0.25)
    taker = venue.exchange.markets[PERP]["taker"]
    assert p["notional"] == pytest.approx(0.25 * 40_000)
    assert p["fee"] == pytest.approx(p["notional"] * taker) and p["estimated_cost"] == pytest.approx(p["notional"] + p["fee"])
    assert p["margin"] == pytest.approx(p["notional"] / 3)
    assert p["position_before"]["side"] is None and p["position_after"] == {"side": "long", "amount": 0.25, "entry_price": 40_000}
    desk.place(PERP, "buy", 0.25, confirm=True)
    bar(venue, PERP, 1, 40_000, 44_000, 40_000, 44_000)
    more = desk.preview(PERP, "buy", 0.1)
    assert more["position_after"]["amount"] == pytest.approx(0.35)
    assert more["position_after"]["entry_price"] == pytest.approx((0.25 * 40_000 + 0.1 * 44_000) / 0.35, rel=1e-3)
    cut = desk.preview(PERP, "sell", 0.1, reduce_only=True)
    assert cut["position_after"]["amount"] == pytest.approx(0.15) and cut["margin"] == 0
    limit = desk.preview(PERP, "sell", 0.1, type="limit", price=50_000)
    assert limit["fee_rate"] == venue.exchange.markets[PERP]["maker"]  # resting: maker


def test_place_needs_confirmation_then_tracks_and_audits(store, desk, venue):
    with pytest.raises(ConfigError, match="confirm=True"):
        desk.place(PERP, "buy", 0.1)
    assert store.orders() == []
    row = desk.place(PERP, "buy", 0.1, confirm=True)
    assert row["status"] == "filled" and row["purpose"] == "manual" and row["filled"] == pytest.approx(0.1)
    assert [status for _, status in row["status_history"]] == ["pending", "filled"]
    rest = desk.place(PERP, "sell", 0.05, type="limit", price=42_000, confirm=True)
    assert rest["status"] == "open"
    assert desk.refresh()[0]["status"] == "open"
    bar(venue, PERP, 1, 40_000, 42_500, 39_900, 42_400)  # crosses the limit
    (after,) = desk.refresh()
    assert after["status"] == "filled" and after["avg_price"] == pytest.approx(42_000)
    other = desk.place(PERP, "sell", 0.05, type="limit", price=45_000, confirm=True)
    assert desk.cancel(other["client_order_id"])["status"] == "cancelled"
    with pytest.raises(ConfigError, match="already cancelled"):
        desk.cancel(other["client_order_id"])
    with pytest.raises(ConfigError, match="No manual order"):
        desk.cancel("nope")
    actions = list(store.frame("audit").action)
    assert actions.count("order_place") == 3 and "order_cancel" in actions and "order:filled" in actions
    assert {o["purpose"] for o in desk.orders()} == {"manual"} and len(desk.orders()) == 3


def test_positions_and_close_at_market(store, desk, venue):
    desk.place(PERP, "sell", 0.2, confirm=True)
    (pos,) = desk.positions()
    assert pos["side"] == "short" and pos["contracts"] == pytest.approx(0.2) and pos["liquidationPrice"] > 40_000
    closed = desk.close_position(PERP)
    assert closed["status"] == "filled" and closed["reduce_only"] and closed["side"] == "buy"
    assert desk.positions() == [] and desk.close_position(PERP) is None


def test_spot_position_is_the_base_coin_held(store, desk):
    desk.place(SPOT, "buy", 0.1, confirm=True)
    closed = desk.close_position(SPOT)
    assert closed["status"] == "filled" and closed["side"] == "sell"


def test_venue_refusal_is_recorded_and_raised(store, venue):
    desk = OrderDesk(store, venue)
    with pytest.raises(VenueError, match="InsufficientFunds"):
        desk.place(PERP, "buy", 10, confirm=True)  # 400k notional at 1x on 100k
    (row,) = store.orders()
    assert row["status"] == "rejected" and "InsufficientFunds" in row["error"]
    assert "order_rejected" in list(store.frame("audit").action)


def test_live_venue_without_confirmation_is_refused_and_recorded(store, venue):
    live = CcxtVenue(venue.exchange, venue_id="live-test", live=True, live_confirmed=False)
    desk = OrderDesk(store, live)
    with pytest.raises(LiveTradingRefused):
        desk.place(PERP, "buy", 0.1, confirm=True)
    (row,) = store.orders()
    assert row["status"] == "rejected"
    assert list(store.frame("risk_events").kind) == ["live_refused"]
    assert venue.exchange.fetch_positions() == [] or not any(p["contracts"] for p in venue.exchange.fetch_positions())


def test_close_of_a_deployment_position_is_booked_by_the_engine(tmp_path):
    store = Store(":memory:")
    engine = Engine(store, clock=ManualClock(T0 / 1000))
    rt = engine.deploy({"strategy": "sma_cross", "symbols": [PERP], "params": {"fast": 5, "slow": 20},
                        "risk": {"daily_loss_limit": None, "drawdown_limit": None, "stop_loss": None, "take_profit": None}})
    from workbench.data import sample_ohlcv

    df = sample_ohlcv("BTC/USDT", "1h", bars=400)
    for ts, r in zip(df.index.as_unit("ms").asi8, df.itertuples(index=False), strict=True):
        engine.on_bar(PERP, int(ts), r.open, r.high, r.low, r.close, r.volume)
        if rt.ledger.positions:
            break
    assert rt.ledger.positions
    desk = OrderDesk(engine, rt.venue, deployment_id=rt.id)
    row = desk.close_position(PERP)
    assert row["purpose"] == "exit" and not rt.ledger.positions
    assert store.trades(rt.id)["exit_reason"].tolist() == ["manual"]


def test_account_summary_balances_margin_and_positions(store, desk, venue):
    empty = account_summary(venue)
    assert empty["total_balance"] == pytest.approx(100_000) and empty["margin_status"] == "no positions"
    assert empty["open_positions"] == [] and empty["position_value"] == 0
    venue.exchange.set_leverage(3, PERP)
    desk.place(PERP, "buy", 0.3, confirm=True)
    bar(venue, PERP, 1, 40_000, 41_000, 39_000, 39_000)
    s = account_summary(venue)
    (pos,) = s["open_positions"]
    assert s["unrealized_pnl"] == pytest.approx(-0.3 * 1_000, rel=1e-3)
    assert s["position_value"] == pytest.approx(0.3 * 39_000)
    assert s["margin_balance"] == pytest.approx(s["total_balance"] + s["unrealized_pnl"])
    assert s["available"] < s["total_balance"] and s["initial_margin"] == pytest.approx(0.3 * 40_000 / 3, rel=1e-3)
    assert s["leverage"] == pytest.approx(s["position_value"] / s["margin_balance"])
    assert s["margin_status"] == "ok" and s["margin_level"] > 1 and pos["liquidationPrice"] < 39_000


# -- the CLI -------------------------------------------------------------------------------------
def cli(*argv):
    import argparse

    from workbench.cli import orders as cli_orders

    parser = argparse.ArgumentParser(prog="workbench")
    parser.add_argument("--home")
    cli_orders.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.handler(args)


@pytest.fixture
def cli_home(tmp_path, monkeypatch, emulator):
    from cryptography.fernet import Fernet

    from workbench.accounts import AccountStore, accounts_path
    from workbench.venues.live import emulator_account

    monkeypatch.setenv("WORKBENCH_ACCOUNTS_KEY", Fernet.generate_key().decode())
    monkeypatch.setattr("workbench.accounts.keys.system_keyring", lambda: None)
    AccountStore(accounts_path(tmp_path)).add(emulator_account(emulator, name="emu", timeout=1.0, rate_limit_ms=1))
    return str(tmp_path)


def test_cli_preview_place_list_close_and_summary_on_the_emulator(cli_home, emulator, capsys):
    import json

    assert cli("--home", cli_home, "order", "preview", PERP, "buy", "0.05", "--account", "emu", "--json") == 0
    preview = json.loads(capsys.readouterr().out)
    assert preview["amount"] == 0.05 and preview["position_after"]["side"] == "long"
    assert cli("--home", cli_home, "order", "place", PERP, "buy", "0.05", "--account", "emu") == 1  # no --yes: not sent
    assert "not sent" in capsys.readouterr().out and emulator.orders() == []
    assert cli("--home", cli_home, "order", "place", PERP, "buy", "0.05", "--account", "emu", "--yes", "--json") == 0
    placed = json.loads(capsys.readouterr().out)
    assert placed["status"] == "filled" and len(emulator.orders(placed["client_order_id"])) == 1
    assert cli("--home", cli_home, "order", "list", "--account", "emu", "--json") == 0
    assert [o["client_order_id"] for o in json.loads(capsys.readouterr().out)] == [placed["client_order_id"]]
    assert cli("--home", cli_home, "order", "summary", "--account", "emu") == 0
    out = capsys.readouterr().out
    assert "margin_status" in out and "wb-emulator-demo-secret" not in out
    assert cli("--home", cli_home, "close", PERP, "--account", "emu", "--json") == 0
    assert float(emulator.position(PERP)["size"]) == 0.0
    with pytest.raises(ConfigError, match="--account NAME"):
        cli("--home", cli_home, "order", "positions")


def test_cli_orders_on_a_paper_deployment_go_to_its_engine(tmp_path, capsys):
    """A paper venue lives in its engine's process: `order place|cancel --deployment` hand the order over as commands."""
    import threading

    from workbench.data import sample_ohlcv
    from workbench.engine import DeploymentSpec, Engine, ManualClock
    from workbench.store import Store

    path = str(tmp_path / "wb.sqlite")
    engine = Engine(Store(path), clock=ManualClock(0))
    rt = engine.deploy(DeploymentSpec(strategy="sma_cross", symbols=("BTC/USDT",), timeframe="1h", params={"fast": 10, "slow": 30}))
    for ts, r in sample_ohlcv("BTC/USDT", "1h", 5).iterrows():
        rt.step("BTC/USDT", int(ts.value // 1_000_000), r.open, r.high, r.low, r.close, r.volume)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            engine.process_commands()
            stop.wait(0.05)

    worker = threading.Thread(target=serve, daemon=True)
    worker.start()
    try:
        base = ("--home", str(tmp_path), "order")
        assert cli(*base, "place", "BTC/USDT", "buy", "0.01", "--deployment", rt.id, "--store", path) == 1  # no --yes
        assert "not sent" in capsys.readouterr().out
        assert cli(*base, "place", "BTC/USDT", "buy", "0.01", "--deployment", rt.id, "--store", path, "--yes") == 0
        assert "place_order: done" in capsys.readouterr().out
        assert cli(*base, "place", "BTC/USDT", "sell", "0.01", "--type", "limit", "--price", "999999",
                   "--deployment", rt.id, "--store", path, "--yes") == 0
        cid = capsys.readouterr().out.split("place_order: done ")[1].split()[0]
        assert cli(*base, "cancel", cid, "--deployment", rt.id, "--store", path) == 0
        assert "cancel_order: done cancelled" in capsys.readouterr().out
        assert cli(*base, "list", "--deployment", rt.id, "--store", path, "--json") == 0
        listed = {o["client_order_id"]: o["status"] for o in __import__("json").loads(capsys.readouterr().out)}
        assert sorted(listed.values()) == ["cancelled", "filled"] and listed[cid] == "cancelled"
    finally:
        stop.set()
        worker.join(5)


def test_client_order_id_encodes_the_bar_in_base_36():
    """The bar's seconds read back with int(_, 36) (restart recovery decodes them), for any time up to the year 9999."""
    from workbench.engine.deployment import _cid_bar_ms
    from workbench.venues.base import client_order_id

    for ms in [0, 35_000, 36_000, 1_295_000, 1_296_000, 1_700_000_040_000, 253_402_300_740_000]:
        cid = client_order_id("dep12345", "BTC/USDT", ms, "e")
        digits = cid.split("-")[2]
        assert _cid_bar_ms(cid) == ms and len(cid) <= 36
        assert digits == "0" or not digits.startswith("0")  # one text per bar
