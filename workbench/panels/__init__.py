"""ipywidgets panels over the Python API: one call each, no trading logic of their own.

    from workbench.panels import deploy_panel, monitor_panel
    deploy_panel(engine, params_dir="../params")       # in-kernel engine: deploys at once
    monitor_panel(store)                               # a store: commands are queued for a running engine

Each ``*_panel(...)`` returns a panel object that displays as its widget tree
(``panel.widget``); its buttons and fields are attributes, so a test can set
values and ``.click()`` them in the kernel. Secrets are never displayed.

Stable CSS classes (for browser tests and styling):

- optimize: wb-opt-panel, wb-opt-strategy, wb-opt-symbols, wb-opt-timeframe, wb-opt-bars, wb-opt-metric,
  wb-opt-min-trades, wb-opt-range-<param>, wb-opt-walkforward, wb-opt-train-bars, wb-opt-test-bars, wb-opt-run,
  wb-opt-progress, wb-opt-results, wb-opt-heatmap, wb-opt-equity, wb-opt-save, wb-opt-message
- params: wb-params-panel, wb-params-table, wb-params-select, wb-params-history, wb-params-load, wb-params-refresh,
  wb-params-loaded, wb-params-message; freshness badges wb-fresh-fresh / wb-fresh-stale / wb-fresh-expired
- accounts: wb-acct-panel, wb-acct-table, wb-acct-select, wb-acct-name, wb-acct-exchange, wb-acct-mode,
  wb-acct-live-ack, wb-acct-api-key, wb-acct-secret, wb-acct-passphrase, wb-acct-api-key-env, wb-acct-secret-env,
  wb-acct-add, wb-acct-update, wb-acct-remove, wb-acct-remove-confirm, wb-acct-remove-cancel, wb-acct-message;
  badges wb-badge-demo / wb-badge-live
- deploy: wb-deploy-panel, wb-deploy-mode, wb-deploy-venue, wb-deploy-account, wb-deploy-strategy, wb-deploy-symbols,
  wb-deploy-timeframe, wb-deploy-direction, wb-deploy-cash, wb-deploy-freshness, wb-deploy-load-params,
  wb-deploy-params, wb-deploy-param-<name>, wb-deploy-risk-<field> (e.g. wb-deploy-risk-size-pct), wb-deploy-sl,
  wb-deploy-tp, wb-deploy-review, wb-deploy-message, wb-deploy-confirm-box, wb-deploy-summary, wb-deploy-disclosure,
  wb-deploy-live-warning, wb-deploy-live-confirm-text, wb-deploy-confirm, wb-deploy-cancel
- monitor: wb-monitor-panel, wb-monitor-cards, wb-monitor-card (+ wb-dep-<id>), wb-monitor-card-title,
  wb-monitor-card-stats (cells wb-card-trades, wb-card-open, wb-card-pnl), wb-monitor-pause, wb-monitor-stop,
  wb-monitor-confirm, wb-monitor-confirm-yes, wb-monitor-confirm-no, wb-monitor-positions (table wb-positions-table),
  wb-monitor-trades (table wb-trades-table), wb-emergency-stop, wb-emergency-confirm-box, wb-emergency-confirm,
  wb-emergency-cancel, wb-monitor-refresh, wb-monitor-updated, wb-monitor-chart-select, wb-monitor-chart,
  wb-monitor-message; badges wb-badge-paper / wb-badge-live, wb-status-active / -paused / -stopped / -error
- orders: wb-orders-panel, wb-orders-deployment, wb-orders-symbol, wb-orders-side, wb-orders-type, wb-orders-amount,
  wb-orders-price, wb-orders-preview, wb-orders-preview-box, wb-orders-confirm, wb-orders-message, wb-orders-table,
  wb-orders-open, wb-orders-cancel, wb-orders-refresh, wb-orders-positions, wb-orders-close-symbol, wb-orders-close,
  wb-orders-close-confirm
- connection: wb-conn-panel, wb-conn-row (+ wb-conn-<n>), wb-conn-status, wb-conn-connect, wb-conn-disconnect,
  wb-conn-refresh
- reconcile: wb-reconcile-panel, wb-reconcile-deployment, wb-reconcile-apply, wb-reconcile-run, wb-reconcile-summary,
  wb-reconcile-differences, wb-reconcile-corrections, wb-reconcile-learning, wb-reconcile-learning-summary,
  wb-reconcile-message
- every panel's status line: wb-msg-info / wb-msg-ok / wb-msg-warning / wb-msg-error inside its *-message element
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "optimize_panel": "optimize", "OptimizePanel": "optimize",
    "params_panel": "params", "ParamsPanel": "params",
    "accounts_panel": "accounts", "AccountsPanel": "accounts",
    "deploy_panel": "deploy", "DeployPanel": "deploy",
    "monitor_panel": "monitor", "MonitorPanel": "monitor",
    "orders_panel": "orders", "OrdersPanel": "orders",
    "connection_panel": "connection", "ConnectionPanel": "connection",
    "reconcile_panel": "reconcile", "ReconcilePanel": "reconcile",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench.panels' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))


__all__ = sorted(_LAZY)
