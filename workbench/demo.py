"""The main job on the embedded offline sample: data -> optimize -> params -> paper replay -> summary.

The optimizer trades the way the deployment will (the same stop loss, take
profit, costs and sizing), so the parameters it picks are the ones that suit
the live rules; the paper replay then runs on bars the optimizer never saw,
and a vectorized backtest of those same bars is printed beside it.
"""
from __future__ import annotations

from pathlib import Path

from .data import load_ohlcv

OPTIMIZE_BARS = 4000
REPLAY_BARS = 2000


def run_demo(
    strategy: str = "sma_cross",
    symbols: list[str] | None = None,
    timeframe: str = "1h",
    params_dir: str | Path = "params",
    store_path: str | Path = ".workbench/demo.sqlite",
    progress: bool = True,
) -> dict:
    """Optimize on the first part of the sample, save the winners, replay them on the rest."""
    from .backtest import BacktestConfig, backtest, metrics
    from .engine import DeploymentSpec, replay
    from .fills import Costs
    from .optimize import optimize
    from .params import ParamStore
    from .risk import RiskLimits

    symbols = symbols or ["BTC/USDT", "ETH/USDT"]
    limits = RiskLimits()
    costs = Costs(taker_fee=0.001, maker_fee=0.001, slippage=0.0005)
    config = BacktestConfig(costs=costs, sl=limits.stop_loss, tp=limits.take_profit, size_pct=limits.size_pct)
    train = {s: load_ohlcv(s, timeframe, bars=OPTIMIZE_BARS) for s in symbols}
    later = {s: load_ohlcv(s, timeframe, start=train[s].index[-1], bars=REPLAY_BARS + 1).iloc[1:] for s in symbols}
    print(f"1. data: {', '.join(symbols)}: {OPTIMIZE_BARS} {timeframe} bars to optimize on "
          f"({train[symbols[0]].index[0]:%Y-%m-%d} to {train[symbols[0]].index[-1]:%Y-%m-%d}), "
          f"{REPLAY_BARS} later bars to paper-trade")

    result = optimize(strategy, symbols, timeframe, data=train, config=config, progress=progress)
    saved = result.save(ParamStore(params_dir))
    print(f"2. optimized {strategy} ({len(result.table)} backtests, SL {limits.stop_loss:.0%} / TP {limits.take_profit:.0%}, "
          f"{limits.size_pct:.0%} of equity per trade); winners saved to:")
    for sym, path in zip(symbols, saved, strict=False):
        params, m = result.best()[sym]
        print(f"   {path}  {params}  in-sample sharpe {m['sharpe']:.2f}, {int(m['trades'])} trades")

    Path(store_path).parent.mkdir(parents=True, exist_ok=True)
    summaries = {}
    print("3. paper deployment replayed on the later bars (same strategy definition, same parameters):")
    for sym in symbols:
        spec = DeploymentSpec(strategy=strategy, symbols=(sym,), timeframe=timeframe, params=None,
                              params_dir=str(params_dir), costs=costs)
        res = replay(spec, data={sym: later[sym]}, store=str(store_path), progress=progress)
        summaries[sym] = res.summary
        s = res.summary
        bt = metrics(backtest(strategy, later[sym], res.store.deployment(res.deployment_id)["params"], config))
        print(f"   {sym} ({res.deployment_id}): {s['trades']} trades, P&L {s['pnl']:+.2f} USDT, return {s['total_return']:+.2%}, "
              f"win rate {s['win_rate']:.0%}, max drawdown {s['max_drawdown']:.2%}, exits {s['exit_reasons']}")
        print(f"   {'':{len(sym)}}  vectorbt backtest of the same bars: {int(bt['trades'])} trades, return {bt['total_return']:+.2%}")
    print(f"4. every order, fill, trade and audit event is in {store_path}; parameters in {params_dir}/")
    return {"saved": [str(p) for p in saved], "replays": summaries}
