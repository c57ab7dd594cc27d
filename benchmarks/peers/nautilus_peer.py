"""nautilus_trader's side of the engine benchmark: a BacktestEngine on the same bars and strategy.

nautilus_trader needs pandas < 3, so it runs in its own virtualenv as a subprocess::

    python -m venv /path/nautilus && /path/nautilus/bin/pip install nautilus_trader
    BENCH_NAUTILUS_PYTHON=/path/nautilus/bin/python python -m benchmarks.run

The script reads the bars from an .npz file (ts ms, open, high, low, close, volume) and prints one
JSON line: seconds (engine.run only), bars, trades (closed positions), cash.
"""
from __future__ import annotations

import json
import sys
import time
from decimal import Decimal


def main(path: str, fast: int = 10, slow: int = 30, sl: float = 0.02, tp: float = 0.04, fee: float = 0.001, size: float = 0.5) -> dict:
    import numpy as np
    import pandas as pd
    from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
    from nautilus_trader.config import LoggingConfig
    from nautilus_trader.model.currencies import USDT
    from nautilus_trader.model.data import BarType
    from nautilus_trader.model.enums import AccountType, OmsType, OrderSide
    from nautilus_trader.model.identifiers import TraderId, Venue
    from nautilus_trader.model.objects import Money
    from nautilus_trader.persistence.wranglers import BarDataWrangler
    from nautilus_trader.test_kit.providers import TestInstrumentProvider
    from nautilus_trader.trading.strategy import Strategy

    z = np.load(path)
    idx = pd.to_datetime(z["ts"], unit="ms", utc=True)
    df = pd.DataFrame({k: z[k] for k in ("open", "high", "low", "close", "volume")}, index=idx)
    cash = 10_000.0

    venue = Venue("BINANCE")
    instrument = TestInstrumentProvider.btcusdt_binance()
    bar_type = BarType.from_str(f"{instrument.id}-1-MINUTE-LAST-EXTERNAL")
    bars = BarDataWrangler(bar_type, instrument).process(df)

    class SmaCross(Strategy):
        def __init__(self) -> None:
            super().__init__()
            self.closes: list[float] = []
            self.prev = None

        def on_start(self) -> None:
            self.subscribe_bars(bar_type)

        def on_bar(self, bar) -> None:
            self.closes.append(float(bar.close))
            c = self.closes
            if len(c) < slow:
                return
            f = sum(c[-fast:]) / fast
            s = sum(c[-slow:]) / slow
            prev, self.prev = self.prev, (f, s)
            if prev is None:
                return
            flat = self.portfolio.is_flat(instrument.id)
            if f > s and prev[0] <= prev[1] and flat:
                price = float(bar.close)
                equity = float(self.portfolio.account(venue).balance_total(USDT).as_double())
                qty = instrument.make_qty(equity * size / price)
                if qty <= 0:
                    return
                bracket = self.order_factory.bracket(
                    instrument_id=instrument.id, order_side=OrderSide.BUY, quantity=qty,
                    sl_trigger_price=instrument.make_price(price * (1 - sl)),
                    tp_price=instrument.make_price(price * (1 + tp)),
                )
                self.submit_order_list(bracket)
            elif f < s and prev[0] >= prev[1] and not flat:
                self.cancel_all_orders(instrument.id)
                self.close_all_positions(instrument.id)

    engine = BacktestEngine(BacktestEngineConfig(trader_id=TraderId("BENCH-001"), logging=LoggingConfig(bypass_logging=True)))
    engine.add_venue(venue=venue, oms_type=OmsType.HEDGING, account_type=AccountType.CASH, base_currency=None,
                     starting_balances=[Money(cash, USDT)])
    instrument = instrument  # noqa: PLW0127
    engine.add_instrument(instrument)
    engine.add_data(bars)
    engine.add_strategy(SmaCross())
    t0 = time.perf_counter()
    engine.run()
    seconds = time.perf_counter() - t0
    positions = engine.cache.positions_closed()
    if "-v" in sys.argv:
        print(len(engine.cache.orders()), len(engine.cache.positions()), [str(o.status) for o in engine.cache.orders()[:8]], file=sys.stderr)
    account = engine.portfolio.account(venue)
    final = float(account.balance_total(USDT).as_double())
    engine.dispose()
    _ = Decimal, fee
    return {"seconds": seconds, "bars": len(df), "trades": len(positions), "cash": final}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
