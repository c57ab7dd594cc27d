"""Reconciliation commands: `workbench reconcile` and `workbench manual-trades`.

    workbench reconcile                       # every active paper deployment, look only
    workbench reconcile --deployment ab12cd34 --apply
    workbench reconcile --account bybit-demo  # the account's ccxt deployments
    workbench manual-trades --csv manual.csv  # learning records of manual interventions

`reconcile` exits 0 when nothing is left unresolved, 1 when differences
remain (so a scheduled run shows up), 2 on an error. Apply corrections from
the CLI while no engine runs the deployment; a running engine reconciles its
own deployments with workbench.sync.SyncService.
"""
from __future__ import annotations

import argparse
from typing import Any

import pandas as pd

from ..errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reconcile", help="compare the ledger with the venue's trades, orders and positions")
    p.add_argument("--store", help="store path or URL (default <home>/workbench.sqlite)")
    p.add_argument("--deployment", default=None, help="one deployment (paper, or on --account)")
    p.add_argument("--account", default=None, help="an account: reconcile its ccxt deployments against it")
    p.add_argument("--apply", action="store_true", help="apply the safe corrections (external fills, settled orders, manual closes)")
    p.set_defaults(handler=run_reconcile)
    m = sub.add_parser("manual-trades", help="manual interventions beside what the strategy would have done")
    m.add_argument("--store", help="store path or URL (default <home>/workbench.sqlite)")
    m.add_argument("--csv", default=None, help="also write the records to this CSV file")
    m.set_defaults(handler=run_manual_trades)


def _store(args: argparse.Namespace) -> Any:
    from .engine import open_store

    return open_store(args)


def _targets(store: Any, args: argparse.Namespace) -> list[Any]:
    from ..sync.service import Target, paper_venue_of

    if args.account:
        from ..accounts import AccountStore, accounts_path
        from ..venues.live import account_venue

        account = AccountStore(accounts_path(getattr(args, "home", None))).get(args.account)
        venue = account_venue(account)
        deps = [r["id"] for r in store.deployments() if r["account"] == args.account and r["venue"] != "paper"]
        if args.deployment:
            if args.deployment not in deps:
                raise ConfigError(f"Deployment {args.deployment!r} does not trade on account {args.account!r} (its deployments: {deps or 'none'}).")
            deps = [args.deployment]
        return [Target(venue, deps)]
    if args.deployment:
        return [Target(paper_venue_of(store, args.deployment), [args.deployment])]
    rows = [r for r in store.deployments(status=("active", "paused", "error")) if r["venue"] == "paper"]
    if not rows:
        raise ConfigError("No paper deployment to reconcile: pass --deployment ID or --account NAME.")
    return [Target(paper_venue_of(store, r["id"]), [r["id"]]) for r in rows]


def run_reconcile(args: argparse.Namespace) -> int:
    from ..sync import SyncService

    store = _store(args)
    service = SyncService(store, _targets(store, args), rules=bool(args.apply), actor="cli")
    left = 0
    for report in service.run_once(args.deployment):
        s = report.summary
        print(f"{report.venue_id}: {s['venue_trades']} venue trades vs {s['ledger_fills']} fills, "
              f"{s['venue_positions']} venue positions vs {s['ledger_positions']} ours: {s['differences']} difference(s), {s['applied']} applied")
        if report.diffs:
            df = report.differences[["kind", "symbol", "key", "detail", "applied"]].fillna("")
            with pd.option_context("display.max_colwidth", 90, "display.width", 200):
                print(df.to_string(index=False))
        left += len(report.diffs) - s["applied"]
    return 1 if left else 0


def run_manual_trades(args: argparse.Namespace) -> int:
    from ..sync import learning_records, learning_summary

    store = _store(args)
    df = learning_records(store)
    if args.csv:
        df.to_csv(args.csv, index=False)
    if not len(df):
        print("No manual interventions recorded.")
        return 0
    cols = ["position_id", "deployment_id", "symbol", "side", "entry_price", "exit_price", "pnl", "cf_status", "cf_reason", "cf_exit_price", "cf_pnl", "helped"]
    with pd.option_context("display.width", 200):
        print(df[cols].to_string(index=False))
    s = learning_summary(store)
    print(f"{s['interventions']} intervention(s), P&L {s['manual_pnl']:.2f}; on the {s['resolved']} resolved: "
          f"yours {s['manual_pnl_resolved']:.2f} vs the system's {s['system_pnl_resolved']:.2f} "
          f"(helped {s['helped']}, hurt {s['hurt']}, benefit {s['benefit']:+.2f})")
    return 0
