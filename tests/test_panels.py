"""Panels driven in process: set widget values, .click() buttons, assert on the store and the engine."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from workbench.accounts import AccountStore
from workbench.data import sample_ohlcv
from workbench.engine import Engine, ManualClock
from workbench.panels import (
    accounts_panel,
    connection_panel,
    deploy_panel,
    monitor_panel,
    optimize_panel,
    orders_panel,
    params_panel,
    reconcile_panel,
)
from workbench.params import ParamSet, ParamStore
from workbench.store import Store
from workbench.venues.paper_venue import paper_venue

NO_DAILY_LIMITS = {"daily_loss_limit": "off", "drawdown_limit": "off"}


@pytest.fixture
def engine(tmp_path):
    return Engine(Store(tmp_path / "wb.sqlite"), clock=ManualClock(0))


@pytest.fixture(scope="module")
def btc():
    return sample_ohlcv("BTC/USDT", "1h", 900)


def deploy(engine, tmp_path, **risk):
    panel = deploy_panel(engine, params_dir=str(tmp_path / "params"), warm_up=False)
    for name, value in {**NO_DAILY_LIMITS, **risk}.items():
        panel.risk_inputs[name].value = value
    panel.review.click()
    panel.confirm.click()
    assert panel.last_deployment, panel.message.text
    return panel, engine.deployments[panel.last_deployment]


def feed(engine, df, symbol="BTC/USDT", until_open=True, start=0):
    """Closed bars into the engine; stop at the first bar after `start` that leaves a position open."""
    for i, (ts, r) in enumerate(zip(df.index, df.itertuples(index=False), strict=True)):
        t = int(ts.value // 1_000_000)
        engine.clock.set(t / 1000 + 3600)
        engine.on_bar(symbol, t, r.open, r.high, r.low, r.close, r.volume)
        if until_open and i > start and any(rt.ledger.positions for rt in engine.deployments.values()):
            return i
    return len(df)


def displayed(widget) -> bool:
    return widget.layout.display != "none"


# -- deploy ------------------------------------------------------------------------------
def test_deploy_needs_review_then_creates_the_deployment_with_the_entered_limits(engine, tmp_path):
    panel = deploy_panel(engine, params_dir=str(tmp_path / "params"), warm_up=False)
    panel.confirm.click()
    assert panel.message.kind == "error" and engine.store.deployments() == []
    panel.symbols.value = "BTC/USDT, ETH/USDT"
    panel.risk_inputs["size_pct"].value = "0.05"
    panel.risk_inputs["max_open_positions"].value = "2"
    panel.use_tp.value = False
    panel.review.click()
    assert displayed(panel.confirm_box) and not displayed(panel.live_warning)
    assert "Trading involves substantial risk" in panel.disclosure.value and "5.00% of equity" in panel.summary.value
    assert engine.store.deployments() == [], "reviewing deploys nothing"
    panel.confirm.click()
    rows = engine.store.deployments()
    assert len(rows) == 1 and rows[0]["id"] == panel.last_deployment and rows[0]["symbols"] == ["BTC/USDT", "ETH/USDT"]
    assert rows[0]["risk"]["size_pct"] == 0.05 and rows[0]["risk"]["max_open_positions"] == 2
    assert rows[0]["risk"]["take_profit"] is None and rows[0]["risk"]["stop_loss"] == 0.02
    assert not displayed(panel.confirm_box) and panel.message.kind == "ok"


def test_changing_an_input_after_review_withdraws_the_confirmation(engine, tmp_path):
    panel = deploy_panel(engine, params_dir=str(tmp_path / "params"), warm_up=False)
    panel.review.click()
    panel.risk_inputs["size_pct"].value = "0.5"
    assert not displayed(panel.confirm_box)
    panel.confirm.click()
    assert engine.store.deployments() == []


@pytest.mark.parametrize(("field", "value", "match"), [("size_pct", "abc", "not a number"), ("size_pct", "2", "size_pct"),
                                                       ("leverage", "5", "max_leverage")])
def test_deploy_shows_validation_errors_and_deploys_nothing(engine, tmp_path, field, value, match):
    panel = deploy_panel(engine, params_dir=str(tmp_path / "params"), warm_up=False)
    panel.risk_inputs[field].value = value
    panel.review.click()
    assert panel.message.kind == "error" and match in panel.message.text
    assert not displayed(panel.confirm_box) and engine.store.deployments() == []


def test_deploy_loads_the_newest_optimized_parameters_and_their_freshness(engine, tmp_path):
    params = ParamStore(tmp_path / "params")
    old = datetime.now(UTC) - timedelta(days=10)
    params.save(ParamSet("sma_cross", "BTC/USDT", "1h", {"fast": 15, "slow": 60}, optimized_at=old))
    panel = deploy_panel(engine, params_dir=str(tmp_path / "params"), warm_up=False)
    assert panel.param_inputs["fast"].value == 15 and panel.param_inputs["slow"].value == 60
    assert "wb-fresh-stale" in panel.freshness.value
    for name, value in NO_DAILY_LIMITS.items():
        panel.risk_inputs[name].value = value
    panel.review.click()
    panel.confirm.click()
    row = engine.store.deployment(panel.last_deployment)
    assert row["params"] == {"fast": 15, "slow": 60} and row["params_freshness"] == "stale"
    panel.timeframe.value = "4h"  # nothing stored for 4h: the strategy defaults, marked as such
    assert panel.param_inputs["fast"].value == 10 and "no optimized parameters" in panel.freshness.value


def test_live_deployment_needs_the_red_warning_and_a_typed_confirmation(tmp_path):
    store = Store(tmp_path / "wb.sqlite")
    engine = Engine(store, clock=ManualClock(0), venue_factory=lambda dep_id, spec: paper_venue(dep_id, spec, store))
    accounts = AccountStore(tmp_path / "accounts.json", keyring=False, environ={})
    accounts.add("bybit-main", exchange="bybit", mode="live", api_key_env="K", secret_env="S")
    panel = deploy_panel(engine, params_dir=str(tmp_path / "params"), accounts=accounts, warm_up=False)
    panel.mode.value = "live"
    assert panel.venue.value == "ccxt"
    panel.review.click()
    assert panel.message.kind == "error" and "account" in panel.message.text  # no account chosen yet
    panel.account.value = "bybit-main"
    panel.review.click()
    assert displayed(panel.live_warning) and "REAL MONEY" in panel.live_warning.value and displayed(panel.live_confirm)
    assert panel.confirm.button_style == "danger"
    panel.confirm.click()
    assert panel.message.kind == "error" and store.deployments() == []
    panel.live_confirm.value = "bybit"
    panel.confirm.click()
    assert store.deployments() == []
    panel.live_confirm.value = "bybit-main"
    panel.confirm.click()
    row = store.deployments()[0]
    assert row["mode"] == "live" and row["config"]["live_confirmed"] is True and row["account"] == "bybit-main"


def test_deploy_over_a_store_queues_a_command_a_running_engine_executes(tmp_path):
    store = Store(tmp_path / "wb.sqlite")
    panel = deploy_panel(store, params_dir=str(tmp_path / "params"))
    panel.symbols.value = "ETH/USDT"
    panel.review.click()
    panel.confirm.click()
    cmd = store.pending_commands()
    assert len(cmd) == 1 and cmd[0]["command"] == "deploy" and cmd[0]["actor"] == "panel"
    engine = Engine(store, clock=ManualClock(1_720_000_000))  # after the sample starts (warm-up bars)
    assert engine.process_commands() == 1
    rows = store.deployments()
    assert store.command(panel.last_command)["status"] == "done" and rows[0]["symbols"] == ["ETH/USDT"]


# -- monitor -----------------------------------------------------------------------------
def test_monitor_refresh_updates_cards_and_positions_in_place(engine, tmp_path, btc):
    _, rt = deploy(engine, tmp_path)
    mon = monitor_panel(engine, autostart=False)
    card = mon.cards[rt.id]
    stats_widget, positions_widget = card.stats, mon.positions_html
    assert "wb-status-active" in card.title.value and "wb-badge-paper" in card.title.value
    assert displayed(mon.emergency) and "no open positions" in mon.positions_html.value
    feed(engine, btc, start=300)
    rt.flush()
    mon.refresh()
    view = next(v for v in mon.views if v["id"] == rt.id)
    assert view["open_positions"] == 1 and view["trades"] == len(engine.store.trades(rt.id)) > 0
    assert mon.cards[rt.id] is card and card.stats is stats_widget and mon.positions_html is positions_widget
    assert f"wb-card-trades'>{view['trades']}<" in card.stats.value
    assert "BTC/USDT" in mon.positions_html.value and "no closed trades" not in mon.trades_html.value
    pos = mon.positions[0]
    held = rt.ledger.positions["BTC/USDT"]
    assert pos["current"] == rt.marks["BTC/USDT"] and pos["unrealized"] == pytest.approx(held.gross_pnl(rt.marks["BTC/USDT"]))
    assert view["equity"] == pytest.approx(rt.equity()) and view["total_pnl"] == pytest.approx(rt.equity() - 10_000)
    assert len(mon.chart.data[0].y) == len(engine.store.equity(rt.id)) > 0


def test_emergency_stop_needs_confirmation_and_closes_every_position(engine, tmp_path, btc):
    _, rt = deploy(engine, tmp_path)
    mon = monitor_panel(engine, autostart=False)
    feed(engine, btc, start=300)
    mon.emergency.click()
    assert displayed(mon.emergency_box) and rt.ledger.positions, "the first click only asks"
    mon.emergency_no.click()
    assert not displayed(mon.emergency_box) and rt.ledger.positions
    mon.emergency.click()
    mon.emergency_yes.click()
    assert engine.store.positions() == [] and engine.store.deployment(rt.id)["status"] == "stopped"
    assert engine.store.trades(rt.id)["exit_reason"].iloc[-1] == "emergency_stop"
    assert not displayed(mon.emergency), "hidden once nothing is deployed"
    assert "wb-status-stopped" in mon.cards[rt.id].title.value


def test_card_controls_ask_first_then_pause_resume_and_stop(engine, tmp_path):
    _, rt = deploy(engine, tmp_path)
    mon = monitor_panel(engine, autostart=False)
    card = mon.cards[rt.id]
    card.pause.click()
    assert displayed(card.confirm_row) and engine.store.deployment(rt.id)["status"] == "active"
    card.yes.click()
    assert engine.store.deployment(rt.id)["status"] == "paused" and card.pause.description == "Resume"
    card.pause.click()
    card.yes.click()
    assert engine.store.deployment(rt.id)["status"] == "active"
    card.stop.click()
    card.no.click()
    assert engine.store.deployment(rt.id)["status"] == "active" and not displayed(card.confirm_row)
    card.stop.click()
    card.yes.click()
    assert engine.store.deployment(rt.id)["status"] == "stopped" and card.stop.disabled


def test_monitor_over_a_store_queues_commands_for_the_running_engine(engine, tmp_path):
    _, rt = deploy(engine, tmp_path)
    mon = monitor_panel(Store(engine.store.url.replace("sqlite:///", "")), autostart=False)
    card = mon.cards[rt.id]
    card.pause.click()
    card.yes.click()
    assert "queued" in mon.message.text
    cmd = engine.store.pending_commands()
    assert [c["command"] for c in cmd] == ["pause"] and cmd[0]["deployment_id"] == rt.id
    engine.process_commands()
    mon.refresh()
    assert "wb-status-paused" in card.title.value


def test_monitor_refreshes_itself_on_the_event_loop(engine, tmp_path):
    mon = monitor_panel(engine, autostart=False)
    assert mon.start() is False, "no running loop outside a kernel: no timer"

    async def main():
        panel = monitor_panel(engine, interval=0.01)
        before = panel.refreshes
        await asyncio.sleep(0.1)
        panel.stop()
        return panel.refreshes - before

    assert asyncio.run(main()) >= 3


# -- orders ------------------------------------------------------------------------------
def test_orders_panel_validates_previews_confirms_and_closes(engine, tmp_path, btc):
    _, rt = deploy(engine, tmp_path)
    feed(engine, btc.iloc[:50], until_open=False)
    panel = orders_panel(engine)
    assert panel.deployment.value == rt.id and "BTC/USDT" in panel.symbol.options
    panel.symbol.value = "BTC/USDT"
    panel.preview_button.click()
    assert panel.message.kind == "error" and "amount must be a positive number" in panel.message.text and panel.confirm.disabled
    panel.type.value = "limit"
    panel.amount.value = 0.01
    panel.preview_button.click()
    assert "price must be a positive number" in panel.message.text
    panel.type.value = "market"
    panel.symbol.value = "BTC/USDX"
    panel.preview_button.click()
    assert "Did you mean" in panel.message.text
    panel.symbol.value = "BTC/USDT"
    panel.preview_button.click()
    assert panel.message.kind == "info" and not panel.confirm.disabled and "notional" in panel.preview_box.value
    panel.amount.value = 0.02
    assert panel.confirm.disabled, "changing the order withdraws the preview"
    panel.confirm.click()
    assert engine.store.orders(rt.id) == [] or all(o["purpose"] != "manual" for o in engine.store.orders(rt.id))
    panel.preview_button.click()
    panel.confirm.click()
    manual = [o for o in engine.store.orders(rt.id) if o["purpose"] == "manual"]
    assert len(manual) == 1 and manual[0]["status"] == "filled" and manual[0]["amount"] == pytest.approx(0.02)
    assert "filled" in panel.orders_html.value and panel.close_symbol.options == ("BTC/USDT",)
    panel.close.click()
    assert displayed(panel.close_confirm)
    panel.close_confirm.click()
    assert panel.message.kind == "ok" and "no open positions" in panel.positions_html.value


# -- connection --------------------------------------------------------------------------
def test_connection_panel_shows_status_and_connects_and_disconnects(engine, tmp_path):
    _, rt = deploy(engine, tmp_path)
    panel = connection_panel(engine)
    row = panel.rows[rt.venue.id]
    row.disconnect.click()
    assert rt.venue.connection.status == "disconnected" and "wb-conn-state-disconnected" in row.status.value
    assert row.connect.disabled is False
    row.connect.click()
    assert rt.venue.connection.status == "connected" and "wb-conn-state-connected" in row.status.value and row.connect.disabled


# -- reconcile ---------------------------------------------------------------------------
def test_reconcile_panel_finds_a_manual_close_and_shows_the_learning_record(engine, tmp_path, btc):
    _, rt = deploy(engine, tmp_path)
    panel = reconcile_panel(engine)
    assert panel.deployment.value == rt.id and "no manual interventions" in panel.learning.value
    feed(engine, btc, start=300)
    panel.apply.value = "safe"
    panel.run.click()  # books what the engine did but did not record as fills
    rt.venue.exchange.manual_close("BTC/USDT")  # by hand, on the exchange
    panel.run.click()
    assert "position_closed_externally" in panel.differences.value and "position_closed_externally" in panel.summary.value
    assert engine.store.positions(rt.id) == [] and engine.store.trades(rt.id)["exit_reason"].iloc[-1] == "manual"
    assert "1 intervention(s)" in panel.learning_summary.value and "wb-reconcile-learning-table" in panel.learning.value


# -- params and optimize -----------------------------------------------------------------
def test_params_panel_colours_freshness_shows_history_and_loads(tmp_path):
    store = ParamStore(tmp_path / "params")
    now = datetime.now(UTC)
    store.save(ParamSet("sma_cross", "BTC/USDT", "1h", {"fast": 10, "slow": 40}, optimized_at=now - timedelta(days=40)))
    store.save(ParamSet("sma_cross", "BTC/USDT", "1h", {"fast": 20, "slow": 60}, optimized_at=now - timedelta(days=8)))
    store.save(ParamSet("sma_cross", "ETH/USDT", "1h", {"fast": 5, "slow": 20}, optimized_at=now))
    got = []
    panel = params_panel(tmp_path / "params", on_load=got.append)
    assert "wb-fresh-stale" in panel.table.value and "wb-fresh-fresh" in panel.table.value
    assert "wb-fresh-expired" not in panel.table.value, "the table shows the newest of each key"
    panel.select.value = 0
    assert "wb-fresh-expired" in panel.history.value and "fast=10" in panel.history.value
    panel.load.click()
    assert got and got[0].params == {"fast": 20, "slow": 60} and got[0].freshness == "stale"


def test_optimize_panel_runs_shows_and_saves(tmp_path):
    data = {"BTC/USDT": sample_ohlcv("BTC/USDT", "1h", 800)}
    panel = optimize_panel(tmp_path / "params", data=data, min_trades=1)
    panel.ranges["fast"].value = "5, 10"
    panel.ranges["slow"].value = "20:40:20"
    panel.run.click()
    assert panel.progress.value == panel.progress.max == 1 and panel.message.kind == "ok", panel.message.text
    assert "wb-opt-results-table" in panel.results_html.value and not panel.save.disabled
    assert set(panel.figures) == {"heatmap", "equity"} and len(panel.figures["heatmap"].data) == 1
    panel.save.click()
    rec = ParamStore(tmp_path / "params").load_latest("sma_cross", "BTC/USDT", "1h")
    assert rec.params == panel.winners()["BTC/USDT"][0] and rec.freshness == "fresh"
    panel.ranges["fast"].value = "5:x"
    panel.run.click()
    assert panel.message.kind == "error" and "low:high:step" in panel.message.text


def test_optimize_panel_walk_forward(tmp_path):
    data = {"BTC/USDT": sample_ohlcv("BTC/USDT", "1h", 800)}
    panel = optimize_panel(tmp_path / "params", data=data, min_trades=1)
    panel.ranges["fast"].value = "5, 10"
    panel.ranges["slow"].value = "20, 40"
    panel.walkforward.value = True
    panel.train_bars.value, panel.test_bars.value = 400, 200
    panel.run.click()
    res = panel.results["BTC/USDT"]
    assert len(res.folds) == 2 and "oos_total_return" in panel.results_html.value
    panel.save.click()
    rec = ParamStore(tmp_path / "params").load_latest("sma_cross", "BTC/USDT", "1h")
    assert rec.optimizer["method"] == "walk_forward" and rec.params == panel.winners()["BTC/USDT"][0]


# -- accounts ----------------------------------------------------------------------------
SECRET = "S3cr3t-value-that-must-never-show-0123456789"


def test_accounts_panel_never_shows_secrets_and_marks_live(tmp_path):
    accounts = AccountStore(tmp_path / "accounts.json", keyring=False, environ={})
    panel = accounts_panel(accounts)
    panel.name.value, panel.exchange.value = "bybit-demo", "bybit"
    panel.api_key.value, panel.secret.value = "AKEY-0123456789abcdef", SECRET
    panel.add.click()
    assert panel.message.kind == "ok" and accounts.get("bybit-demo").secret == SECRET
    assert panel.api_key.value == "" and panel.secret.value == "", "typed secrets are cleared at once"
    html = panel.table.value + panel.message.text + repr(panel.widget.get_state())
    assert SECRET not in html and "AKEY-0123456789abcdef" not in html and "wb-badge-demo" in panel.table.value
    panel.name.value, panel.exchange.value, panel.mode.value = "bybit-live", "bybit", "live"
    panel.add.click()
    assert panel.message.kind == "error" and "bybit-live" not in accounts.names()
    panel.live_ack.value = True
    panel.add.click()
    assert accounts.get("bybit-live").is_live and "wb-badge-live" in panel.table.value
    panel.select.value = "bybit-demo"
    assert panel.secret.value == "" and panel.exchange.value == "bybit"
    panel.secret_env.value = "BYBIT_SECRET"
    panel.update.click()
    assert accounts.get("bybit-demo").secret is None and accounts.get("bybit-demo").secret_env == "BYBIT_SECRET"
    panel.remove.click()
    assert "bybit-demo" in accounts.names()
    panel.remove_yes.click()
    assert "bybit-demo" not in accounts.names()


def test_panels_display_as_widgets(engine):
    mon = monitor_panel(engine, autostart=False)
    bundle = mon._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert isinstance(pd.DataFrame(mon.views), pd.DataFrame)
