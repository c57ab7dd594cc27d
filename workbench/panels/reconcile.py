"""Reconcile panel: run a sync for a deployment, see the differences, the corrections applied,
and the manual-trade learning records with their summary (:mod:`workbench.sync`)."""
from __future__ import annotations

from typing import Any

import ipywidgets as w

from ..errors import WorkbenchError
from .widgets import Message, Panel, button, esc, frame_table, header, money, split, styled

APPLY = (("look only (apply nothing)", "none"), ("apply the safe corrections", "safe"), ("apply every correction", "all"))
DIFF_COLUMNS = ["kind", "symbol", "deployment_id", "detail", "action", "applied"]
LEARN_COLUMNS = ["symbol", "side", "amount", "entry_price", "exit_price", "pnl", "cf_status", "cf_reason", "cf_exit_price", "cf_pnl", "helped"]


def _sync() -> Any:
    try:
        from .. import sync
    except ImportError:  # pragma: no cover - the sync module is part of workbench
        return None
    return sync


class ReconcilePanel(Panel):
    """Run `workbench.sync.reconcile` for one deployment and show what it found and did."""

    def __init__(self, engine_or_store: Any, venue: Any = None, deployment_id: str | None = None) -> None:
        self.engine, self.store = split(engine_or_store)
        self.venue = venue
        self.report: Any = None
        self.message = Message("wb-reconcile-message")
        self.deployment = styled(w.Dropdown(options=self._options(), description="deployment"), "wb-reconcile-deployment")
        if deployment_id is not None:
            self.deployment.value = deployment_id
        self.apply = styled(w.Dropdown(options=APPLY, value="none", description="corrections"), "wb-reconcile-apply")
        self.run = button("Run sync", "wb-reconcile-run", "primary", icon="refresh")
        self.summary = styled(w.HTML(""), "wb-reconcile-summary")
        self.differences = styled(w.HTML(""), "wb-reconcile-differences")
        self.corrections = styled(w.HTML(""), "wb-reconcile-corrections")
        self.learning = styled(w.HTML(""), "wb-reconcile-learning")
        self.learning_summary = styled(w.HTML(""), "wb-reconcile-learning-summary")
        self.run.on_click(lambda _b: self.do_run())
        self.widget = styled(w.VBox([
            header("Reconcile", "our ledger vs the venue's trades, orders and positions"),
            w.HBox([self.deployment, self.apply, self.run]), self.message.widget, self.summary,
            w.HTML("<b>Differences</b>"), self.differences, w.HTML("<b>Corrections</b>"), self.corrections,
            w.HTML("<b>Manual trades: learning records</b>"), self.learning_summary, self.learning,
        ]), "wb-reconcile-panel")
        if _sync() is None:
            self.run.disabled = True
            self.message.show("sync module not available: reconciliation cannot run in this install.", "warning")
        else:
            self.show_learning()

    def _options(self) -> list[tuple[str, str]]:
        return [(f"{r['id']} {r['name']} ({r['status']})", r["id"]) for r in self.store.deployments()]

    def do_run(self) -> Any:
        """One reconciliation of the chosen deployment; corrections applied only as chosen."""
        sync = _sync()
        dep = self.deployment.value
        if sync is None or not dep:
            self.message.show("Choose a deployment." if sync else "sync module not available.", "error")
            return None
        apply = {"none": False, "safe": "safe", "all": "all"}[self.apply.value]
        try:
            if self.engine is not None and dep in self.engine.deployments:
                report = sync.reconcile(self.store, dep, apply=apply, source=self.engine)
            else:
                report = sync.reconcile(self.store, dep, venue=self.venue, apply=apply)
        except WorkbenchError as exc:
            self.message.show(str(exc), "error")
            return None
        self.report = report
        s = report.summary
        kinds = ", ".join(f"{k}: {n}" for k, n in s["by_kind"].items()) or "none"
        self.summary.value = (f"<div>run #{s['run_id']} on <b>{esc(s['venue'])}</b>: {s['differences']} difference(s) ({esc(kinds)}), "
                              f"{s['applied']} correction(s) applied; compared {s.get('ledger_fills', 0)} ledger fills with "
                              f"{s.get('venue_trades', 0)} venue trades, {s.get('ledger_positions', 0)} / {s.get('venue_positions', 0)} positions</div>")
        diffs = report.differences
        cols = [c for c in DIFF_COLUMNS if c in diffs.columns]
        self.differences.value = frame_table(diffs[cols] if cols else diffs, "wb-reconcile-diff-table", empty="no differences: the books agree")
        self.corrections.value = frame_table(report.corrections, "wb-reconcile-corr-table", empty="no corrections applied")
        self.message.show(f"sync done: {s['differences']} difference(s)", "ok" if not s["differences"] else "warning")
        self.show_learning()
        return report

    def show_learning(self) -> None:
        sync = _sync()
        try:
            records = sync.learning_records(self.store)
            summary = sync.learning_summary(self.store)
        except WorkbenchError as exc:
            self.message.show(str(exc), "error")
            return
        cols = [c for c in LEARN_COLUMNS if c in records.columns]
        self.learning.value = frame_table(records[cols], "wb-reconcile-learning-table", empty="no manual interventions recorded")
        self.learning_summary.value = (
            f"<div>{summary['interventions']} intervention(s): {summary['resolved']} resolved, {summary['pending']} pending; "
            f"manual P&amp;L {money(summary['manual_pnl'])}; on the resolved ones manual {money(summary['manual_pnl_resolved'])} "
            f"vs the strategy's own {money(summary['system_pnl_resolved'])} (benefit {money(summary['benefit'])}; "
            f"helped {summary['helped']}, hurt {summary['hurt']})</div>")


def reconcile_panel(engine_or_store: Any, venue: Any = None, deployment_id: str | None = None) -> ReconcilePanel:
    """Reconciliation over an in-kernel Engine or a Store (paper venues are rebuilt from the store)."""
    return ReconcilePanel(engine_or_store, venue=venue, deployment_id=deployment_id)
