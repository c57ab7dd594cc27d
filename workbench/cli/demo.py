"""`workbench demo`: the main job end to end on the embedded offline sample."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the main job on the embedded sample: optimize, save params, paper replay, summary")
    p.add_argument("--params-dir", default="params", help="parameter store folder (default: params)")
    p.add_argument("--strategy", default="sma_cross")
    p.add_argument("--symbols", default="BTC/USDT,ETH/USDT")
    p.add_argument("--timeframe", default="1h")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(strategy=args.strategy, symbols=args.symbols.split(","), timeframe=args.timeframe, params_dir=args.params_dir)
    return 0
