"""The main job on the embedded offline sample: data -> optimize -> params -> paper replay -> summary."""
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
    from .engine import DeploymentSpec, replay
    from .optimize import optimize
    from .params import ParamStore

    symbols = symbols or ["BTC/USDT", "ETH/USDT"]
    train = {s: load_ohlcv(s, timeframe, bars=OPTIMIZE_BARS) for s in symbols}
    later = {s: load_ohlcv(s, timeframe, start=train[s].index[-1], bars=REPLAY_BARS + 1).iloc[1:] for s in symbols}
    print(f"1. data: {len(symbols)} symbol(s), {OPTIMIZE_BARS} {timeframe} bars to optimize on, {REPLAY_BARS} later bars to replay")

    result = optimize(strategy, symbols, timeframe, data=train, progress=progress)
    saved = result.save(ParamStore(params_dir))
    print(f"2. optimized {strategy}: {len(result.table)} runs; winners saved to:")
    for path in saved:
        print(f"   {path}")

    Path(store_path).parent.mkdir(parents=True, exist_ok=True)
    summaries = {}
    for sym in symbols:
        spec = DeploymentSpec(strategy=strategy, symbols=(sym,), timeframe=timeframe, params=None, params_dir=str(params_dir))
        res = replay(spec, data={sym: later[sym]}, store=str(store_path), progress=progress)
        summaries[sym] = res.summary
        s = res.summary
        print(f"3. paper replay {sym} ({res.deployment_id}): {s['trades']} trades, P&L {s['pnl']:+.2f} USDT, "
              f"return {s['total_return']:+.2%}, win rate {s['win_rate']:.0%}, max drawdown {s['max_drawdown']:.2%}, "
              f"exits {s['exit_reasons']}")
    print(f"4. every order, fill and trade is in {store_path}; parameters in {params_dir}/")
    return {"saved": [str(p) for p in saved], "replays": summaries}
