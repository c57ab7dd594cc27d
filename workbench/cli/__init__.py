"""The `workbench` command line: the same operations as the panels, for shells and schedulers.

Each command group lives in its own module with a ``register(subparsers)``
function that adds its sub-commands; handlers return an exit code.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..errors import WorkbenchError

#: command modules, in the order `workbench --help` lists them
COMMAND_MODULES = (
    "workbench.cli.demo",
    "workbench.cli.optimize",
    "workbench.cli.engine",
    "workbench.cli.accounts",
    "workbench.cli.emulator",
    "workbench.cli.orders",
    "workbench.cli.sync",
    "workbench.cli.run",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Research-to-live trading workbench: optimize, deploy, monitor, reconcile.",
    )
    parser.add_argument("--home", default=None, help="workbench home folder (store, accounts, cache); default ./.workbench")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `workbench` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def csv_list(text: str) -> list[str]:
    """'BTC/USDT, ETH/USDT' -> ['BTC/USDT', 'ETH/USDT'] (argparse type)."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, e.g. BTC/USDT,ETH/USDT")
    return items


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
