"""A paper replay in its own process that SIGKILLs itself at a chosen point (driven by tests/test_crash.py).

usage: python crash_driver.py STORE MODE N
MODE: none | bar (die before bar N) | before_send (die as the N-th order is about to reach the venue)
      | after_accept (die right after the venue accepted the N-th order, before the engine records its answer)
"""
from __future__ import annotations

import os
import signal
import sys

from workbench.data import sample_ohlcv
from workbench.engine import DeploymentSpec, replay
from workbench.engine.deployment import DeploymentRuntime
from workbench.store import Store
from workbench.venues.paper import PaperExchange

SPEC = DeploymentSpec("sma_cross", ("ETH/USDT",), "1h", params={"fast": 5, "slow": 20},
                      risk={"daily_loss_limit": None, "drawdown_limit": None, "stop_loss": 0.02, "take_profit": 0.04})
BARS = 1200


def data():
    return {"ETH/USDT": sample_ohlcv("ETH/USDT", "1h", BARS)}


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(store_path: str, mode: str, n: int) -> None:
    counter = {"bars": 0, "orders": 0}
    if mode == "bar":
        real_on_bar = DeploymentRuntime.on_bar

        def on_bar(self, *a, **k):
            counter["bars"] += 1
            if counter["bars"] == n:
                die()
            return real_on_bar(self, *a, **k)

        DeploymentRuntime.on_bar = on_bar
    elif mode in ("before_send", "after_accept"):
        real_create = PaperExchange.create_order

        def create_order(self, *a, **k):
            counter["orders"] += 1
            if mode == "before_send" and counter["orders"] == n:
                die()
            out = real_create(self, *a, **k)
            if mode == "after_accept" and counter["orders"] == n:
                die()
            return out

        PaperExchange.create_order = create_order
    store = Store(store_path)
    existing = store.deployments()
    resume = existing[0]["id"] if existing else None
    res = replay(SPEC, data=data(), store=store, resume=resume)
    print("completed" if res.completed else "stopped", res.deployment_id, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
