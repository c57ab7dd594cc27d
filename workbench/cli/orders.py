"""Manual orders from the shell: `workbench order preview|place|cancel|list|positions|summary` and `workbench close`.

Orders go straight to the account's venue (demo/sandbox unless the account
is live; a live account also needs --confirm-live), through the same
:class:`~workbench.orders.OrderDesk` as the panels, so they are validated,
audited and recorded with purpose 'manual'. `workbench close SYMBOL
--deployment ID` asks the running engine to close a deployment's position
(booked as its trade); with --account it closes the venue position directly.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import ConfigError
from .engine import home, open_store


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", help="store path or URL (default <home>/workbench.sqlite)")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--account", help="account name (see `workbench accounts list`)")
    where.add_argument("--deployment", help="tag orders with a deployment id (its account is used)")
    where.add_argument("--confirm-live", action="store_true", help="explicit confirmation for a live (real money) account")
    where.add_argument("--max-position", type=float, default=None, help="risk cap: largest position notional in quote")
    where.add_argument("--json", action="store_true")

    order = sub.add_parser("order", help="manual orders: preview, place, cancel, list, positions, summary")
    osub = order.add_subparsers(dest="order_command", metavar="ACTION")
    for name, help_ in (("preview", "what an order would cost (nothing is sent)"), ("place", "send an order (needs --yes)")):
        p = osub.add_parser(name, parents=[common, where], help=help_)
        p.add_argument("symbol")
        p.add_argument("side", choices=["buy", "sell"])
        p.add_argument("amount", type=float)
        p.add_argument("--type", default="market", choices=["market", "limit"])
        p.add_argument("--price", type=float, default=None)
        p.add_argument("--reduce-only", action="store_true")
        if name == "place":
            p.add_argument("--yes", action="store_true", help="confirm: send the order")
            p.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the engine (paper deployment)")
        p.set_defaults(handler=cmd_preview if name == "preview" else cmd_place)
    p = osub.add_parser("cancel", parents=[common, where], help="cancel a manual order by client order id")
    p.add_argument("client_order_id")
    p.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the engine (paper deployment)")
    p.set_defaults(handler=cmd_cancel)
    p = osub.add_parser("list", parents=[common, where], help="manual orders (refreshed from the venue with --account)")
    p.set_defaults(handler=cmd_list)
    p = osub.add_parser("positions", parents=[common, where], help="open positions at the venue")
    p.set_defaults(handler=cmd_positions)
    p = osub.add_parser("summary", parents=[common, where], help="account summary: balance, margin, positions")
    p.add_argument("--quote", default="USDT")
    p.set_defaults(handler=cmd_summary)
    order.set_defaults(handler=lambda args: (order.print_help(), 2)[1])

    p = sub.add_parser("close", parents=[common, where], help="close one position at market")
    p.add_argument("symbol")
    p.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the engine (with --deployment)")
    p.set_defaults(handler=cmd_close)


def desk(args: argparse.Namespace):
    """The OrderDesk for --account (or the account of --deployment)."""
    from ..accounts import AccountStore, accounts_path
    from ..orders import OrderDesk
    from ..venues.live import account_venue

    store = open_store(args)
    name = args.account
    if args.deployment:
        dep = store.deployment(args.deployment)
        if dep is None:
            raise ConfigError(f"No deployment {args.deployment!r} in {store.url}; see `workbench status`.")
        if dep["venue"] == "paper":
            raise ConfigError("A paper deployment's venue lives in its engine: `workbench order place|cancel --deployment ID` "
                              "hands the order to that engine; previews need its kernel's panel.")
        if name and name != dep["account"]:
            raise ConfigError(f"Deployment {args.deployment} trades on account {dep['account']!r}, not {name!r}.")
        name = dep["account"]
    if not name:
        raise ConfigError("Say where: --account NAME (see `workbench accounts list`) or --deployment ID.")
    account = AccountStore(accounts_path(home(args))).get(name)
    if account.is_live and not args.confirm_live:
        print(f"note: {account.name} is a LIVE account; orders are refused without --confirm-live")
    venue = account_venue(account, live_confirmed=bool(args.confirm_live))
    limits = {"max_position_quote": args.max_position} if args.max_position else None
    return OrderDesk(store, venue, deployment_id=args.deployment, limits=limits, actor="cli")


def _show(args: argparse.Namespace, data: Any) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    elif isinstance(data, list):
        if not data:
            print("none")
            return
        import pandas as pd

        print(pd.DataFrame(data).to_string(index=False))
    else:
        for key, value in data.items():
            print(f"{key:>18}: {value}")


def _order_view(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("client_order_id", "venue_order_id", "symbol", "side", "type", "amount", "price", "status", "filled", "avg_price", "error")
    return {k: row.get(k) for k in keys}


def cmd_preview(args: argparse.Namespace) -> int:
    _show(args, desk(args).preview(args.symbol, args.side, args.amount, args.type, args.price, args.reduce_only))
    return 0


def _paper_deployment(args: argparse.Namespace) -> bool:
    """A paper deployment's orders go to its engine as commands (its venue lives in that process)."""
    return bool(args.deployment and not args.account and (open_store(args).deployment(args.deployment) or {}).get("venue") == "paper")


def _to_engine(args: argparse.Namespace, command: str, payload: dict[str, Any]) -> int:
    from .engine import _wait

    store = open_store(args)
    cid = store.submit_command(command, args.deployment, payload, actor="cli")
    print(f"{command} for {args.deployment} queued (command {cid})")
    return _wait(store, cid, args.wait, command)


def cmd_place(args: argparse.Namespace) -> int:
    if _paper_deployment(args):
        if not args.yes:
            print("not sent: add --yes to hand this order to the deployment's engine")
            return 1
        return _to_engine(args, "place_order", {"symbol": args.symbol, "side": args.side, "amount": args.amount, "type": args.type,
                                                "price": args.price, "reduce_only": args.reduce_only, "confirm": True})
    d = desk(args)
    preview = d.preview(args.symbol, args.side, args.amount, args.type, args.price, args.reduce_only)
    if not args.yes:
        _show(args, preview)
        print("not sent: add --yes to place this order")
        return 1
    row = d.place(args.symbol, args.side, args.amount, args.type, args.price, args.reduce_only, confirm=True)
    _show(args, _order_view(row))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    if _paper_deployment(args):
        return _to_engine(args, "cancel_order", {"client_order_id": args.client_order_id})
    _show(args, _order_view(desk(args).cancel(args.client_order_id)))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    if args.account or (args.deployment and not _paper_deployment(args)):
        d = desk(args)
        d.refresh()
        rows = d.orders()
    else:
        rows = [r for r in open_store(args).orders(args.deployment) if r["purpose"] == "manual"]
    _show(args, [_order_view(r) for r in rows])
    return 0


def cmd_positions(args: argparse.Namespace) -> int:
    _show(args, desk(args).positions())
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from ..orders import account_summary

    summary = account_summary(desk(args).venue, args.quote)
    if not args.json:
        summary = {k: v for k, v in summary.items() if k != "open_positions"} | {"open_positions": len(summary["open_positions"])}
    _show(args, summary)
    return 0


def cmd_close(args: argparse.Namespace) -> int:
    if args.deployment and not args.account:
        from .engine import _wait

        store = open_store(args)
        if store.deployment(args.deployment) is None:
            raise ConfigError(f"No deployment {args.deployment!r} in {store.url}; see `workbench status`.")
        cid = store.submit_command("close_position", args.deployment, {"symbol": args.symbol}, actor="cli")
        print(f"close {args.symbol} of {args.deployment} queued (command {cid})")
        return _wait(store, cid, args.wait, "close")
    row = desk(args).close_position(args.symbol)
    if row is None:
        print(f"no open position in {args.symbol}")
        return 0
    _show(args, _order_view(row))
    return 0 if row.get("status") == "filled" else 1
