"""Monitor panel: a card per deployment, open positions, trade history, controls, emergency stop, equity chart.

It reads the store (and, for deployments run by an engine in this kernel, the
engine's live marks) and refreshes every `interval` seconds by changing the
values of existing widgets in place, so nothing flickers. ``refresh()`` does
one update and can be called directly.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as w
import pandas as pd

from ..engine.ledger import OpenPosition
from ..errors import WorkbenchError
from . import control
from .widgets import (
    Message,
    Panel,
    button,
    duration,
    esc,
    header,
    mode_badge,
    money,
    num,
    pct,
    show,
    split,
    status_badge,
    styled,
    table,
    when,
)

LIVE_STATUSES = ("active", "paused")
POSITION_COLUMNS = ["deployment", "symbol", "side", "entry", "current", "quantity", "unrealized", "unrealized %", "duration"]
TRADE_COLUMNS = ["deployment", "symbol", "side", "entry time", "exit time", "entry", "exit", "quantity", "pnl", "pnl %", "exit reason"]


def _utc_midnight(now: float) -> float:
    return now - (now % 86400)


def deployment_view(engine: Any, store: Any, row: dict[str, Any], now: float, wall: float | None = None) -> dict[str, Any]:
    """What a card shows for one deployment (store row + the engine's live state when it runs here).

    `now` is the trading clock (bar times, positions, today's P&L); `wall` the
    wall clock that stamps deployment start and stop (uptime).
    """
    wall = time.time() if wall is None else wall
    dep_id = row["id"]
    rt = engine.deployments.get(dep_id) if engine is not None else None
    trades = store.trades(dep_id)
    eq = store.equity(dep_id)
    initial = float((row.get("config") or {}).get("initial_cash", 10_000.0))
    realized = float(trades["pnl"].sum()) if len(trades) else 0.0
    positions = position_views(engine, store, row, now)
    unrealized = sum(p["unrealized"] for p in positions if p["unrealized"] is not None)
    if rt is not None:
        equity = rt.equity()
    elif len(eq):
        equity = float(eq["equity"].iloc[-1])
    else:
        equity = initial + realized + unrealized
    peak = max([initial, equity, *(eq["equity"].tolist() if len(eq) else [])])
    midnight = _utc_midnight(now)
    before = eq[eq["at"] < midnight]["equity"] if len(eq) else pd.Series(dtype=float)
    day_start = float(before.iloc[-1]) if len(before) else initial
    started = row.get("started_at") or row.get("created_at")
    end = wall if row["status"] in LIVE_STATUSES else (row.get("stopped_at") or row.get("updated_at") or wall)
    wins = int((trades["pnl"] > 0).sum()) if len(trades) else 0
    return {
        "id": dep_id, "name": row["name"], "status": row["status"], "reason": row.get("status_reason"), "mode": row["mode"],
        "venue": row["venue"], "symbols": list(row["symbols"]), "uptime": (end - started) if started else None,
        "trades": int(len(trades)), "win_rate": wins / len(trades) if len(trades) else float("nan"),
        "total_pnl": equity - initial, "daily_pnl": equity - day_start if len(eq) or rt is not None else realized,
        "realized": realized, "unrealized": unrealized, "equity": equity,
        "open_positions": len(positions), "drawdown": equity / peak - 1.0 if peak > 0 else 0.0,
        "freshness": row.get("params_freshness"),
    }


def _marks(engine: Any, store: Any, row: dict[str, Any]) -> dict[str, float]:
    rt = engine.deployments.get(row["id"]) if engine is not None else None
    if rt is not None:
        return dict(rt.marks)
    if row["venue"] == "paper":  # the paper venue's last bar per symbol is in its saved state
        state = store.load_venue_state(f"paper:{row['id']}") or {}
        return {s: float(bar[4]) for s, bar in (state.get("last") or {}).items() if bar}
    return {}


def position_views(engine: Any, store: Any, row: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """Open positions of a deployment with current price, unrealized P&L ($ and %) and duration."""
    rt = engine.deployments.get(row["id"]) if engine is not None else None
    marks = _marks(engine, store, row)
    if rt is not None:
        held = list(rt.ledger.positions.values())
    else:
        held = [OpenPosition(r["id"], r["symbol"], r["side"], r["amount"], r["entry_price"], r["entry_at"], r["entry_fee"], True)
                for r in store.positions(row["id"])]
    out = []
    for p in held:
        mark = marks.get(p.symbol)
        upnl = p.gross_pnl(mark) if mark is not None else None
        sign = 1.0 if p.side == "long" else -1.0
        out.append({"deployment": row["id"], "symbol": p.symbol, "side": p.side, "entry": p.entry_price, "current": mark,
                    "quantity": p.amount, "unrealized": upnl,
                    "unrealized_pct": sign * (mark / p.entry_price - 1.0) if mark is not None and p.entry_price else None,
                    "duration": now - p.entry_at})
    return out


class Card:
    """The widgets of one deployment's card; updated in place."""

    def __init__(self, panel: MonitorPanel, dep_id: str) -> None:
        self.id = dep_id
        self.title = styled(w.HTML(), "wb-monitor-card-title")
        self.stats = styled(w.HTML(), "wb-monitor-card-stats")
        self.pause = button("Pause", "wb-monitor-pause", icon="pause")
        self.stop = button("Stop", "wb-monitor-stop", "warning", icon="stop")
        self.yes = button("Yes", "wb-monitor-confirm-yes", "danger")
        self.no = button("No", "wb-monitor-confirm-no")
        self.question = styled(w.HTML(), "wb-monitor-confirm-text")
        self.confirm_row = styled(w.HBox([self.question, self.yes, self.no]), "wb-monitor-confirm")
        show(self.confirm_row, False)
        self.asked: str | None = None
        self.pause.on_click(lambda _b: self.ask("resume" if self.pause.description == "Resume" else "pause"))
        self.stop.on_click(lambda _b: self.ask("stop"))
        self.yes.on_click(lambda _b: panel.control(self.id, self.asked) if self.asked else None)
        self.no.on_click(lambda _b: self.ask(None))
        self.widget = styled(w.VBox([self.title, self.stats, w.HBox([self.pause, self.stop]), self.confirm_row],
                                    layout=w.Layout(border="1px solid #ddd", padding="6px", margin="4px", width="360px")),
                             "wb-monitor-card")
        self.widget.add_class(f"wb-dep-{dep_id}")

    def ask(self, command: str | None) -> None:
        """Show 'really <command>?' with yes/no; None hides it."""
        self.asked = command
        if command:
            what = {"stop": "Stop this deployment and close its positions?", "pause": "Pause this deployment (no new entries)?",
                    "resume": "Resume this deployment?"}[command]
            self.question.value = f"<b>{esc(what)}</b>"
        show(self.confirm_row, command is not None)

    def update(self, v: dict[str, Any]) -> None:
        title = (f"<b>{esc(v['name'])}</b> <code>{esc(v['id'])}</code><br>{status_badge(v['status'])} {mode_badge(v['mode'])} "
                 f"<span style='color:#7f7f7f;font-size:11px'>{esc(v['venue'])}</span>")
        if v["reason"] and v["status"] != "active":
            title += f"<br><span style='font-size:11px;color:#7f7f7f'>{esc(v['reason'])}</span>"
        if title != self.title.value:
            self.title.value = title
        stats = (
            "<table style='font-size:12px'>"
            f"<tr><td>uptime</td><td>{duration(v['uptime'])}</td><td>trades</td><td class='wb-card-trades'>{v['trades']}</td></tr>"
            f"<tr><td>win rate</td><td>{pct(v['win_rate'], 1, signed=False)}</td><td>open</td><td class='wb-card-open'>{v['open_positions']}</td></tr>"
            f"<tr><td>total P&amp;L</td><td class='wb-card-pnl'>{money(v['total_pnl'])}</td><td>today</td><td>{money(v['daily_pnl'])}</td></tr>"
            f"<tr><td>equity</td><td>{num(v['equity'], 2)}</td><td>drawdown</td><td>{pct(v['drawdown'])}</td></tr></table>"
        )
        if stats != self.stats.value:
            self.stats.value = stats
        live = v["status"] in LIVE_STATUSES
        self.pause.description = "Resume" if v["status"] in ("paused", "error") else "Pause"
        self.pause.icon = "play" if self.pause.description == "Resume" else "pause"
        self.pause.disabled = not (live or v["status"] == "error")
        self.stop.disabled = not live and v["status"] != "error"


class MonitorPanel(Panel):
    """Cards, positions, trades, controls and the emergency stop over an Engine or a Store."""

    def __init__(self, engine_or_store: Any, interval: float = 2.0, clock: Callable[[], float] | None = None,
                 autostart: bool = True, max_trades: int = 50, show_stopped: bool = True) -> None:
        self.engine, self.store = split(engine_or_store)
        self.clock = clock or (self.engine.clock.now if self.engine is not None else time.time)
        self.interval = float(interval)
        self.max_trades = max_trades
        self.show_stopped = show_stopped
        self.cards: dict[str, Card] = {}
        self.views: list[dict[str, Any]] = []
        self.positions: list[dict[str, Any]] = []
        self.refreshes = 0
        self._task: asyncio.Task | None = None

        self.message = Message("wb-monitor-message")
        self.updated = styled(w.HTML(), "wb-monitor-updated")
        self.card_box = styled(w.Box([], layout=w.Layout(flex_flow="row wrap")), "wb-monitor-cards")
        self.positions_html = styled(w.HTML(), "wb-monitor-positions")
        self.trades_html = styled(w.HTML(), "wb-monitor-trades")
        self.emergency = button("EMERGENCY STOP", "wb-emergency-stop", "danger", "close every position of every deployment", "warning")
        self.emergency_yes = button("Yes, close everything", "wb-emergency-confirm", "danger")
        self.emergency_no = button("Cancel", "wb-emergency-cancel")
        self.emergency_box = styled(w.HBox([w.HTML("<b style='color:#d62728'>Cancel all orders and close ALL positions of ALL deployments?</b>"),
                                            self.emergency_yes, self.emergency_no]), "wb-emergency-confirm-box")
        show(self.emergency_box, False)
        self.emergency.on_click(lambda _b: show(self.emergency_box, True))
        self.emergency_no.on_click(lambda _b: show(self.emergency_box, False))
        self.emergency_yes.on_click(lambda _b: self.emergency_stop())
        self.refresh_button = button("Refresh", "wb-monitor-refresh", icon="refresh")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.chart_select = styled(w.Dropdown(options=[], description="chart"), "wb-monitor-chart-select")
        self.chart_select.observe(lambda _c: self._update_chart(force=True), names="value")
        self.chart = self._make_chart()
        self._chart_key: tuple[Any, ...] | None = None

        self.widget = styled(w.VBox([
            header("Monitor", "in-kernel engine" if self.engine is not None else f"store {self.store.url}"),
            w.HBox([self.emergency, self.refresh_button, self.updated]), self.emergency_box, self.message.widget,
            self.card_box, w.HTML("<b>Open positions</b>"), self.positions_html,
            w.HTML("<b>Trade history</b>"), self.trades_html, self.chart_select, self.chart,
        ]), "wb-monitor-panel")
        self.refresh()
        if autostart:
            self.start()

    # -- data -------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the store (and engine) once and update every widget in place."""
        try:
            self._refresh()
        except WorkbenchError as exc:
            self.message.show(f"refresh failed: {exc}", "error")

    def _refresh(self) -> None:
        now = self.clock()
        rows = self.store.deployments()
        if not self.show_stopped:
            rows = [r for r in rows if r["status"] != "stopped"]
        self.views = [deployment_view(self.engine, self.store, r, now) for r in rows]
        for v in self.views:
            card = self.cards.get(v["id"])
            if card is None:
                card = self.cards[v["id"]] = Card(self, v["id"])
            card.update(v)
        wanted = [self.cards[v["id"]].widget for v in self.views]
        if list(self.card_box.children) != wanted:
            self.card_box.children = wanted
        self.positions = [p for r in rows if r["status"] != "stopped" for p in position_views(self.engine, self.store, r, now)]
        shown = [{**p, "entry": num(p["entry"]), "current": num(p["current"]), "quantity": num(p["quantity"], 6),
                  "unrealized": money(p["unrealized"]), "unrealized %": pct(p["unrealized_pct"]), "duration": duration(p["duration"])}
                 for p in self.positions]
        self._set(self.positions_html, table(shown, POSITION_COLUMNS, "wb-positions-table", raw=("unrealized", "unrealized %"),
                                             empty="no open positions"))
        trades = self.store.trades()
        trades = trades.sort_values("exit_at").tail(self.max_trades).iloc[::-1] if len(trades) else trades
        trade_rows = [{"deployment": t["deployment_id"], "symbol": t["symbol"], "side": t["side"], "entry time": when(t["entry_at"]),
                       "exit time": when(t["exit_at"]), "entry": num(t["entry_price"]), "exit": num(t["exit_price"]),
                       "quantity": num(t["amount"], 6), "pnl": money(t["pnl"]), "pnl %": pct(t["pnl_pct"]), "exit reason": t["exit_reason"]}
                      for t in trades.to_dict("records")]
        self._set(self.trades_html, table(trade_rows, TRADE_COLUMNS, "wb-trades-table", raw=("pnl", "pnl %"), empty="no closed trades"))
        show(self.emergency, any(v["status"] in LIVE_STATUSES for v in self.views))
        options = [(f"{v['name']} ({v['id']})", v["id"]) for v in self.views]
        if list(self.chart_select.options) != options:
            keep = self.chart_select.value
            self.chart_select.options = options
            ids = [o[1] for o in options]
            if ids:
                self.chart_select.value = keep if keep in ids else ids[-1]
        self._update_chart()
        self.refreshes += 1
        self.updated.value = f"<span style='color:#7f7f7f;font-size:11px'>updated {when(time.time())} UTC</span>"

    @staticmethod
    def _set(widget: w.HTML, value: str) -> None:
        if widget.value != value:
            widget.value = value

    # -- chart ------------------------------------------------------------------
    def _make_chart(self) -> Any:
        try:
            from ..startup import defer_slow_imports

            defer_slow_imports()  # the widget imports nbformat -> jsonschema -> a 2-3 s IRI grammar build
            import plotly.graph_objects as go
            from plotly.subplots import make_subplots

            fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.04)
            fig.add_trace(go.Scatter(x=[], y=[], name="equity", line={"width": 1.5}), row=1, col=1)
            fig.add_trace(go.Scatter(x=[], y=[], name="drawdown", fill="tozeroy", line={"width": 1, "color": "#d62728"}), row=2, col=1)
            fig.update_layout(height=360, margin={"l": 40, "r": 20, "t": 30, "b": 30}, showlegend=False)
            fig.update_yaxes(tickformat=".0%", row=2, col=1)
            chart = go.FigureWidget(fig)
        except Exception:  # noqa: BLE001 - no anywidget/plotly widget support: the panel works without a chart
            chart = w.HTML("<i>equity chart unavailable (install anywidget)</i>")
        return styled(chart, "wb-monitor-chart")

    def _update_chart(self, force: bool = False) -> None:
        dep_id = self.chart_select.value
        if dep_id is None or not hasattr(self.chart, "data"):
            return
        eq = self.store.equity(dep_id)
        key = (dep_id, len(eq), float(eq["equity"].iloc[-1]) if len(eq) else None)
        if key == self._chart_key and not force:
            return
        self._chart_key = key
        x = pd.to_datetime(eq["at"], unit="s", utc=True) if len(eq) else []
        y = eq["equity"].to_numpy() if len(eq) else []
        dd = (eq["equity"] / eq["equity"].cummax() - 1.0).to_numpy() if len(eq) else []
        with self.chart.batch_update():
            self.chart.data[0].x, self.chart.data[0].y = x, y
            self.chart.data[1].x, self.chart.data[1].y = x, dd
            self.chart.layout.title = f"Equity {dep_id}"

    # -- controls -----------------------------------------------------------------
    def control(self, dep_id: str, command: str) -> str | None:
        """Stop, pause or resume one deployment (after its card's confirmation)."""
        card = self.cards.get(dep_id)
        if card is not None:
            card.ask(None)
        try:
            result = control.send(self.engine, self.store, command, dep_id)
        except WorkbenchError as exc:
            self.message.show(str(exc), "error")
            return None
        self.message.show(f"{dep_id}: {result}", "ok")
        self.refresh()
        return result

    def emergency_stop(self, reason: str = "emergency stop from the monitor panel") -> str | None:
        """Close everything (the confirmation button calls this)."""
        show(self.emergency_box, False)
        try:
            result = control.send(self.engine, self.store, "emergency_stop", None, {"reason": reason})
        except WorkbenchError as exc:
            self.message.show(str(exc), "error")
            return None
        self.message.show(result, "warning")
        self.refresh()
        return result

    # -- timer ------------------------------------------------------------------
    def start(self) -> bool:
        """Refresh every `interval` seconds in the kernel's event loop; False when there is no running loop."""
        if self._task is not None and not self._task.done():
            return True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        self._task = loop.create_task(self._loop())
        return True

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.refresh()


def monitor_panel(engine_or_store: Any, interval: float = 2.0, **kwargs: Any) -> MonitorPanel:
    """The monitor over an in-kernel Engine or a Store (path/URL); refreshes itself every `interval` seconds."""
    if not (isinstance(interval, (int, float)) and not isinstance(interval, bool) and math.isfinite(interval) and interval > 0):
        from ..errors import ConfigError

        raise ConfigError(f"interval must be a positive number of seconds, got {interval!r}.")
    return MonitorPanel(engine_or_store, interval=interval, **kwargs)
