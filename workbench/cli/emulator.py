"""`workbench emulator`: serve the local Bybit-compatible exchange until Ctrl-C."""
from __future__ import annotations

import argparse
import sys
import threading
from typing import TextIO


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "emulator",
        help="serve a local Bybit-compatible exchange (ccxt's bybit class trades against it) until Ctrl-C",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free port, printed at start)")
    p.add_argument("--data", default="sample", help="'sample' (embedded series) or 'csv' with --csv")
    p.add_argument("--csv", action="append", default=[], metavar="SYMBOL=PATH",
                   help="replay a CSV for SYMBOL, e.g. BTC/USDT=btc_1h.csv (repeatable; needs --data csv)")
    p.add_argument("--symbols", default=None, help="sample symbols, comma-separated (default: all)")
    p.add_argument("--timeframe", default="1h", help="bar timeframe of the price feed (default 1h)")
    p.add_argument("--clock", choices=("real", "manual"), default="real",
                   help="real: bars follow the wall clock; manual: advance through POST /admin/advance")
    p.add_argument("--start", default=None, help="manual clock start, e.g. 2024-03-01")
    p.add_argument("--usdt", type=float, default=100_000.0, help="starting USDT balance (default 100000)")
    p.set_defaults(handler=run)


def build(args: argparse.Namespace):
    """The Emulator the arguments describe (not started)."""
    from ..emulator import Emulator
    from ..errors import ConfigError

    data: object = "sample"
    symbols = [s.strip() for s in args.symbols.split(",")] if args.symbols else None
    if args.data == "csv":
        from ..data import read_csv

        if not args.csv:
            raise ConfigError("--data csv needs at least one --csv SYMBOL=PATH, e.g. --csv BTC/USDT=btc_1h.csv")
        frames = {}
        for item in args.csv:
            symbol, sep, path = item.partition("=")
            if not sep or not symbol or not path:
                raise ConfigError(f"--csv expects SYMBOL=PATH, e.g. BTC/USDT=btc_1h.csv; got {item!r}.")
            frames[symbol.strip()] = read_csv(path.strip(), timeframe=args.timeframe)
        data = frames
    elif args.data != "sample":
        raise ConfigError(f"--data must be 'sample' or 'csv', got {args.data!r}.")
    return Emulator(symbols=symbols, timeframe=args.timeframe, data=data, start=args.start, clock=args.clock,
                    balances={"USDT": args.usdt}, host=args.host, port=args.port)


def serve(emulator, out: TextIO, stop: threading.Event) -> None:
    """Start `emulator`, print how to reach it, serve until `stop` is set, then stop it."""
    emulator.start()
    try:
        print(f"Bybit emulator listening on {emulator.url}", file=out)
        print(f"  API key:     {emulator.api_key.key}", file=out)
        print(f"  API secret:  {emulator.api_key.secret}", file=out)
        print(f"  admin token: {emulator.admin_token}  (header X-Admin-Token for POST /admin/...)", file=out)
        print("  ccxt: workbench.emulator.bybit_client(url, key, secret)  |  Ctrl-C stops", file=out)
        out.flush()
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()


def run(args: argparse.Namespace) -> int:
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: binding {args.host}: the emulator accepts a fixed demo key; keep it off public networks",
              file=sys.stderr)
    serve(build(args), sys.stdout, threading.Event())
    return 0
