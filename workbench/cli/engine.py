"""Deployment commands: deploy, status, stop, pause, resume, emergency-stop, engine, replay.

Control commands go through the store's command queue, so they reach an
engine running in another process (or a notebook kernel) within a second.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import csv_list


def home(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "home", None) or os.environ.get("WORKBENCH_HOME") or ".workbench")


def open_store(args: argparse.Namespace):
    from ..store import Store

    return Store(getattr(args, "store", None) or home(args) / "workbench.sqlite")


def parse_pairs(items: list[str] | None, what: str) -> dict[str, Any]:
    """['fast=10', 'slow=30'] -> {'fast': 10, 'slow': 30} (values parsed as JSON when they can be)."""
    out: dict[str, Any] = {}
    for item in items or []:
        for part in item.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"{what} must look like name=value (e.g. fast=10), got {part!r}.")
            try:
                out[key.strip()] = json.loads(value)
            except json.JSONDecodeError:
                out[key.strip()] = value
    return out


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", help="store path or URL (default <home>/workbench.sqlite)")

    p = sub.add_parser("deploy", parents=[common], help="deploy a strategy (trading starts in the running engine)")
    p.add_argument("--strategy", required=True)
    p.add_argument("--symbols", required=True, type=csv_list)
    p.add_argument("--timeframe", default="1h")
    p.add_argument("--venue", default="paper", choices=["paper", "ccxt", "ib"])
    p.add_argument("--account", default=None)
    p.add_argument("--params", nargs="*", help="name=value ... (default: newest optimized from the param store)")
    p.add_argument("--risk", nargs="*", help="risk limits as name=value, e.g. size_pct=0.02 max_open_positions=3")
    p.add_argument("--direction", default="long", choices=["long", "short", "both"])
    p.add_argument("--cash", type=float, default=10_000.0, help="paper starting cash")
    p.add_argument("--params-dir", default="params")
    p.add_argument("--name", default=None)
    p.add_argument("--live", action="store_true", help="trade real money (needs a live account)")
    p.add_argument("--confirm-live", action="store_true", help="explicit confirmation for live trading")
    p.set_defaults(handler=cmd_deploy)

    p = sub.add_parser("status", parents=[common], help="list deployments with status, trades and P&L")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_status)

    for name, help_ in (("stop", "close a deployment's positions, then stop it"), ("pause", "pause a deployment"), ("resume", "resume a paused deployment")):
        p = sub.add_parser(name, parents=[common], help=help_)
        p.add_argument("id")
        p.add_argument("--reason", default=None)
        p.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the engine to confirm")
        p.set_defaults(handler=cmd_control, command=name)

    p = sub.add_parser("emergency-stop", parents=[common], help="cancel all orders and close all positions of all deployments")
    p.add_argument("--reason", default="emergency stop from CLI")
    p.add_argument("--wait", type=float, default=10.0)
    p.set_defaults(handler=cmd_control, command="emergency_stop", id=None)

    p = sub.add_parser("engine", parents=[common], help="run the long-lived engine (Ctrl-C to stop)")
    p.add_argument("--feed", default="sample", choices=["sample", "venue", "mixed"],
                   help="bars from the embedded sample on the wall clock, from each venue, or mixed: paper deployments "
                        "from the sample and the others from their venue (an unreachable venue pauses only its own)")
    p.add_argument("--poll", type=float, default=0.5)
    p.add_argument("--for-seconds", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--sync-interval", type=float, default=30.0, help="seconds between reconciliations with the venues (>= 1)")
    p.set_defaults(handler=cmd_engine)

    p = sub.add_parser("replay", parents=[common], help="run a deployment over historical data as fast as possible")
    p.add_argument("--strategy", required=True)
    p.add_argument("--symbols", required=True, type=csv_list)
    p.add_argument("--timeframe", default="1h")
    p.add_argument("--params", nargs="*")
    p.add_argument("--risk", nargs="*")
    p.add_argument("--direction", default="long", choices=["long", "short", "both"])
    p.add_argument("--cash", type=float, default=10_000.0)
    p.add_argument("--params-dir", default="params")
    p.add_argument("--start", default=None)
    p.add_argument("--end", default=None)
    p.add_argument("--bars", type=int, default=None)
    p.add_argument("--csv", default=None, help="replay this OHLCV CSV instead of the sample (one symbol)")
    p.set_defaults(handler=cmd_replay)


def _spec_dict(args: argparse.Namespace) -> dict[str, Any]:
    params = parse_pairs(args.params, "--params") if args.params else None
    return {
        "strategy": args.strategy, "symbols": list(args.symbols), "timeframe": args.timeframe, "params": params,
        "risk": parse_pairs(args.risk, "--risk"), "direction": args.direction, "initial_cash": args.cash,
        "params_dir": args.params_dir,
    }


def cmd_deploy(args: argparse.Namespace) -> int:
    from ..engine import DeploymentSpec
    from ..engine.core import resolve_params

    d = _spec_dict(args) | {"venue": args.venue, "account": args.account, "name": args.name,
                            "mode": "live" if args.live else "paper", "live_confirmed": bool(args.confirm_live)}
    spec = DeploymentSpec.from_dict(d)  # checked here, at the boundary
    params, freshness, _ = resolve_params(spec)
    store = open_store(args)
    cid = store.submit_command("deploy", None, spec.to_dict(), actor="cli")
    print(f"deploy queued (command {cid}): {spec.strategy} {','.join(spec.symbols)} {spec.timeframe} on {spec.venue}, params {params} ({freshness})")
    return _wait(store, cid, 5.0, "deploy")


def cmd_status(args: argparse.Namespace) -> int:
    store = open_store(args)
    rows = []
    for d in store.deployments():
        trades = store.trades(d["id"])
        rows.append({"id": d["id"], "status": d["status"], "mode": d["mode"].upper(), "strategy": d["strategy"],
                     "symbols": ",".join(d["symbols"]), "tf": d["timeframe"], "trades": len(trades),
                     "pnl": round(float(trades["pnl"].sum()), 2) if len(trades) else 0.0,
                     "open": len(store.positions(d["id"])), "reason": d["status_reason"] or ""})
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no deployments")
    else:
        import pandas as pd

        print(pd.DataFrame(rows).to_string(index=False))
    return 0


def cmd_control(args: argparse.Namespace) -> int:
    store = open_store(args)
    dep_id = args.id
    if dep_id is not None and store.deployment(dep_id) is None:
        ids = [d["id"] for d in store.deployments()]
        raise ConfigError(f"No deployment {dep_id!r} in {store.url}; known: {', '.join(ids) or 'none'}.")
    cid = store.submit_command(args.command, dep_id, {"reason": args.reason} if args.reason else {}, actor="cli")
    print(f"{args.command} queued (command {cid})")
    return _wait(store, cid, args.wait, args.command)


def _wait(store, cid: int, seconds: float, what: str) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = store.command(cid)
        if row and row["status"] != "pending":
            print(f"{what}: {row['status']} {row['result'] or ''}".rstrip())
            return 0 if row["status"] == "done" else 1
        time.sleep(0.1)
    print(f"{what}: still pending after {seconds:.0f}s; is an engine running? start one with `workbench engine`")
    return 3


def cmd_engine(args: argparse.Namespace) -> int:
    import asyncio

    from ..accounts import AccountStore, accounts_path
    from ..engine import Engine
    from ..engine.feeds import MixedFeed, SampleFeed, VenueFeed
    from ..venues.ccxt_venue import RetryPolicy
    from ..venues.live import venue_factory

    store = open_store(args)
    from ..sync import SyncService

    if not args.sync_interval >= 1:
        raise ConfigError(f"--sync-interval must be at least 1 second, got {args.sync_interval}.")
    # orders ride out a venue that is down for a minute or so (looked up by client id before each retry)
    factory = venue_factory(store, AccountStore(accounts_path(home(args))), retry=RetryPolicy(patience=90.0))
    engine = Engine(store, venue_factory=factory)
    sync = SyncService(store, engine, interval=args.sync_interval).attach(engine)
    recovered = engine.recover()
    print(f"engine {engine.id} on {engine.store.url}: recovered {len(recovered)} deployment(s); Ctrl-C to stop")
    feed = {"sample": SampleFeed, "venue": VenueFeed, "mixed": MixedFeed}[args.feed]()
    stop_at = time.monotonic() + args.for_seconds if args.for_seconds else None
    try:
        asyncio.run(engine.run(feed, poll_seconds=args.poll, until=(lambda: time.monotonic() >= stop_at) if stop_at else None, sync=sync))
    except KeyboardInterrupt:
        engine.flush()
        print("engine stopped; deployments stay active in the store and resume with the next engine")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from ..data import read_csv
    from ..engine import DeploymentSpec, replay

    spec = DeploymentSpec.from_dict(_spec_dict(args))
    data = None
    if args.csv:
        if len(spec.symbols) != 1:
            raise ConfigError("--csv replays one symbol: pass a single --symbols value.")
        data = {spec.symbols[0]: read_csv(args.csv, timeframe=args.timeframe)}
    res = replay(spec, data=data, store=open_store(args), start=args.start, end=args.end, bars=args.bars, progress=True)
    s = res.summary
    print(f"replay {res.deployment_id}: {s['trades']} trades, P&L {s['pnl']:+.2f}, return {s['total_return']:+.2%}, "
          f"win rate {s['win_rate']:.0%}, max drawdown {s['max_drawdown']:.2%}, exits {s['exit_reasons']}")
    return 0
