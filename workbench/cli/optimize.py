"""`workbench optimize`: grid-optimize a strategy on symbols and save the winners, or walk it forward."""
from __future__ import annotations

import argparse
import math
from typing import Any

from ..errors import ConfigError
from . import csv_list


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "optimize",
        help="grid-optimize a strategy per symbol and save the winners to the parameter store",
        description="Backtest every parameter combination on each symbol, pick the best by --metric among "
        "combinations with at least --min-trades trades, and save it to --params-dir. "
        "With --walk-forward, report rolling out-of-sample results instead (nothing is saved).",
    )
    p.add_argument("--strategy", default="sma_cross", help="built-in name or module:attribute (default: sma_cross)")
    p.add_argument("--symbols", type=csv_list, default=["BTC/USDT"], help="comma-separated, e.g. BTC/USDT,ETH/USDT")
    p.add_argument("--timeframe", default="1h")
    p.add_argument("--metric", default="sharpe", help="total_return, sharpe, max_drawdown, win_rate (default: sharpe)")
    p.add_argument("--min-trades", type=int, default=10, help="never pick a combination with fewer trades (default: 10)")
    p.add_argument("--range", dest="ranges", action="append", default=[], metavar="NAME=LOW:HIGH[:STEP]|V1,V2",
                   help="override one parameter's grid, e.g. fast=5:50:5 or slow=30,60,90 (repeatable)")
    p.add_argument("--source", default="sample", help="data source: sample (offline), csv, or a ccxt exchange id")
    p.add_argument("--start", default=None, help="first bar (UTC date/time)")
    p.add_argument("--end", default=None, help="end of the data, exclusive")
    p.add_argument("--bars", type=int, default=None, help="number of bars (sample default: 5000)")
    p.add_argument("--direction", default="long", choices=("long", "short"))
    p.add_argument("--sl", type=float, default=None, help="stop loss as a fraction, e.g. 0.02")
    p.add_argument("--tp", type=float, default=None, help="take profit as a fraction, e.g. 0.05")
    p.add_argument("--fee", type=float, default=0.001, help="taker fee rate (default: 0.001 = 0.1%%)")
    p.add_argument("--slippage", type=float, default=0.0, help="slippage as a fraction (default: 0)")
    p.add_argument("--engine", default="auto", choices=("auto", "kernel", "vectorbt"))
    p.add_argument("--params-dir", default="params", help="parameter store folder (default: params)")
    p.add_argument("--walk-forward", action="store_true", help="rolling in-sample optimize, out-of-sample test")
    p.add_argument("--train-bars", type=int, default=1000, help="walk-forward training window (default: 1000)")
    p.add_argument("--test-bars", type=int, default=250, help="walk-forward test window (default: 250)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(handler=run)


def parse_range(text: str) -> tuple[str, list[float]]:
    """'fast=5:50:5' -> ('fast', [5, 10, ..., 50]); 'slow=30,60' -> ('slow', [30, 60])."""
    name, sep, spec = text.partition("=")
    name, spec = name.strip(), spec.strip()
    if not sep or not name or not spec:
        raise ConfigError(f"--range {text!r}: use NAME=LOW:HIGH[:STEP] or NAME=V1,V2,..., e.g. fast=5:50:5.")
    try:
        if ":" in spec:
            parts = [float(x) for x in spec.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            low, high, step = parts[0], parts[1], parts[2] if len(parts) == 3 else 1.0
            if step <= 0 or high < low:
                raise ValueError
            n = int(math.floor((high - low) / step + 1e-9)) + 1
            values = [low + k * step for k in range(n)]
        else:
            values = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--range {text!r}: bad numbers; use NAME=LOW:HIGH[:STEP] with LOW <= HIGH and STEP > 0, "
                          "or NAME=V1,V2,....") from None
    return name, [int(v) if float(v).is_integer() else round(v, 12) for v in values]


def run(args: argparse.Namespace) -> int:
    from ..backtest import BacktestConfig
    from ..fills import Costs

    ranges: dict[str, Any] = dict(parse_range(r) for r in args.ranges) or None
    config = BacktestConfig(costs=Costs(taker_fee=args.fee, maker_fee=args.fee, slippage=args.slippage),
                            direction=args.direction, sl=args.sl, tp=args.tp)
    common = dict(ranges=ranges, config=config, metric=args.metric, min_trades=args.min_trades, source=args.source,
                  start=args.start, end=args.end, bars=args.bars, progress=not args.no_progress, engine=args.engine)
    if args.walk_forward:
        return _walk_forward(args, common)
    from ..optimize import optimize
    from ..params import ParamStore

    res = optimize(args.strategy, args.symbols, args.timeframe, **common)
    best = res.best(skip_missing=True)
    store = ParamStore(args.params_dir)
    paths = dict(zip(best, res.save(store, skip_missing=True), strict=True))
    print(f"{res.strategy.name} {args.timeframe}: {len(res.combos)} combinations x {len(res.symbols)} symbol(s), "
          f"best by {res.metric}, min {res.min_trades} trades ({res.engine})")
    for sym, (params, m) in best.items():
        label = " ".join(f"{k}={v}" for k, v in params.items())
        print(f"  {sym:<12} {label:<24} return {m['total_return']:+8.2%}  sharpe {m['sharpe']:6.2f}  "
              f"maxDD {m['max_drawdown']:8.2%}  win {m['win_rate']:6.1%}  trades {int(m['trades']):4d}  -> {paths[sym]}")
    for sym in res.symbols:
        if sym not in best:
            most = int(res.table.loc[res.table["symbol"] == sym, "trades"].max())
            print(f"  {sym:<12} no combination made {res.min_trades} trades (most: {most}); nothing saved. "
                  "Lower --min-trades or use more --bars.")
    return 0 if best else 1


def _walk_forward(args: argparse.Namespace, common: dict[str, Any]) -> int:
    from ..optimize import walk_forward

    for sym in args.symbols:
        wf = walk_forward(args.strategy, sym, args.timeframe, train_bars=args.train_bars, test_bars=args.test_bars, **common)
        cols = ["test_start", "test_end", *wf.strategy.params, f"is_{wf.metric}", "oos_total_return", "oos_sharpe", "oos_trades"]
        print(f"{wf.strategy.name} {sym} {args.timeframe}: walk-forward, {len(wf.folds)} folds "
              f"(train {args.train_bars} bars, test {args.test_bars} bars)")
        print(wf.folds[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        m = wf.metrics
        print(f"  out-of-sample: return {m['total_return']:+.2%}  sharpe {m['sharpe']:.2f}  maxDD {m['max_drawdown']:.2%}  "
              f"trades {int(m['trades'])}")
    print("walk-forward saves nothing; run without --walk-forward to save the winners.")
    return 0
