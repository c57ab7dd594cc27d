"""Parameters panel: what the param store holds, how fresh it is (green/orange/red), its history, and load."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as w

from ..errors import WorkbenchError
from ..params import ParamSet, ParamStore
from .widgets import (
    Message,
    Panel,
    button,
    esc,
    freshness_badge,
    header,
    pct,
    set_options,
    styled,
    table,
    when,
)

COLUMNS = ["strategy", "symbol", "timeframe", "parameters", "optimized", "freshness", "sharpe", "total return", "trades"]


def _row(rec: ParamSet) -> dict[str, Any]:
    m = rec.metrics
    return {"strategy": rec.strategy, "symbol": rec.symbol, "timeframe": rec.timeframe,
            "parameters": ", ".join(f"{k}={v:g}" for k, v in rec.params.items()),
            "optimized": when(rec.optimized_at.timestamp()), "freshness": freshness_badge(rec.freshness),
            "sharpe": f"{m.get('sharpe', float('nan')):.2f}", "total return": pct(m.get("total_return")),
            "trades": str(int(m["trades"])) if m.get("trades") == m.get("trades") and m.get("trades") is not None else "—"}


class ParamsPanel(Panel):
    """The newest set per (strategy, symbol, timeframe), its history, and a Load button (`on_load(ParamSet)`)."""

    def __init__(self, params_dir: str | ParamStore = "params", on_load: Callable[[ParamSet], Any] | None = None) -> None:
        self.params_store = params_dir if isinstance(params_dir, ParamStore) else ParamStore(params_dir)
        self.on_load = on_load
        self.records: list[ParamSet] = []
        self.loaded: ParamSet | None = None
        self.message = Message("wb-params-message")
        self.table = styled(w.HTML(""), "wb-params-table")
        self.select = styled(w.Dropdown(options=[], description="set"), "wb-params-select")
        self.history = styled(w.HTML(""), "wb-params-history")
        self.load = button("Load", "wb-params-load", "primary")
        self.refresh_button = button("Refresh", "wb-params-refresh", icon="refresh")
        self.loaded_html = styled(w.HTML(""), "wb-params-loaded")
        self.select.observe(lambda _c: self.show_history(), names="value")
        self.load.on_click(lambda _b: self.do_load())
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.widget = styled(w.VBox([
            header("Parameters", str(self.params_store.root)), self.table, w.HBox([self.select, self.load, self.refresh_button]),
            self.message.widget, self.loaded_html, w.HTML("<b>History</b>"), self.history,
        ]), "wb-params-panel")
        self.refresh()

    def refresh(self) -> None:
        self.records, errors = self.params_store.list()
        self.table.value = table([_row(r) for r in self.records], COLUMNS, "wb-params-store-table", raw=("freshness", "total return"),
                                 empty=f"no optimized parameters in {self.params_store.root}: run the optimize panel or notebook")
        set_options(self.select, [(f"{r.strategy} {r.symbol} {r.timeframe}", i) for i, r in enumerate(self.records)])
        if errors:
            self.message.show(" | ".join(str(e) for e in errors), "warning")
        self.show_history()

    def selected(self) -> ParamSet | None:
        i = self.select.value
        return self.records[i] if i is not None and i < len(self.records) else None

    def show_history(self) -> None:
        rec = self.selected()
        if rec is None:
            self.history.value = ""
            return
        try:
            hist = self.params_store.history(rec.strategy, rec.symbol, rec.timeframe)
        except WorkbenchError as exc:
            self.message.show(str(exc), "error")
            return
        self.history.value = table([_row(r) for r in hist], COLUMNS, "wb-params-history-table", raw=("freshness", "total return"))

    def do_load(self) -> ParamSet | None:
        """Load the selected set (newest, freshness re-checked now) and hand it to `on_load`."""
        rec = self.selected()
        if rec is None:
            self.message.show("Nothing to load: the store is empty.", "error")
            return None
        try:
            self.loaded = self.params_store.load_latest(rec.strategy, rec.symbol, rec.timeframe)
        except WorkbenchError as exc:
            self.message.show(str(exc), "error")
            return None
        self.loaded_html.value = (f"loaded {esc(rec.strategy)} {esc(rec.symbol)} {esc(rec.timeframe)}: "
                                  f"<code>{esc(self.loaded.params)}</code> {freshness_badge(self.loaded.freshness)}")
        if self.on_load is not None:
            self.on_load(self.loaded)
        self.message.show("loaded", "ok")
        return self.loaded


def params_panel(params_dir: str | ParamStore = "params", on_load: Callable[[ParamSet], Any] | None = None) -> ParamsPanel:
    """The param store's contents with freshness in colour, history and load."""
    return ParamsPanel(params_dir, on_load=on_load)
