"""A live-like engine process on the Bybit emulator that SIGKILLs itself at a chosen point (driven by
tests/test_crash_emulator.py).

usage: python emulator_crash_driver.py STORE URL ADMIN_TOKEN START_MS MODE N

The emulator lives in the test process and outlives every kill. This process is the production path:
an Engine with a real SQLite store, a 'bybit' demo account pointed at the emulator, ccxt.bybit through
CcxtVenue, reconciliation (workbench.sync) attached to recovery. Bars move deterministically: the
process reads the bars that closed after its cursor from the venue (GET kline), hands each to the engine
and flushes the cursor; only when it has processed every closed bar does it move the exchange one bar on
(POST /admin/advance). So whatever the kill, the exchange is never more than one bar ahead of what the
store says was processed, every order is sent at the price of the bar it was decided on, and a restart
resumes on the same market as an uninterrupted run. The run is complete when bar BARS has been processed.

MODE: none | bar (die before processing bar index N) | before_send (die as the N-th order of this
process is about to reach the venue) | after_accept (die right after the venue accepted the N-th order,
before the engine records its answer) | after_seen (die right after the N-th order status reply, before
the engine books what it says, e.g. a stop that fired).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import urllib.request

import ccxt

from workbench.engine import Engine
from workbench.engine.clock import ManualClock
from workbench.store import Store
from workbench.sync import SyncService
from workbench.venues.ccxt_venue import RetryPolicy
from workbench.venues.live import emulator_account, venue_factory

SYMBOL = "BTC/USDT:USDT"
TIMEFRAME = "1h"
STEP_MS = 3_600_000
#: bars the run trades after deployment (the exchange advances this many times)
BARS = int(os.environ.get("CRASH_BARS", "160"))
RISK = {"size_mode": "fixed_quote", "size_quote": 200, "leverage": 10, "max_leverage": 10, "stop_loss": 0.004,
        "take_profit": 0.008, "daily_loss_limit": None, "drawdown_limit": None, "cooldown_seconds": None,
        "max_open_positions": None}
SPEC = {"strategy": "sma_cross", "symbols": [SYMBOL], "timeframe": TIMEFRAME, "params": {"fast": 5, "slow": 20},
        "venue": "ccxt", "account": "bybit-emulator", "direction": "both", "risk": RISK, "name": "crash-trial"}
MODES = ("none", "bar", "before_send", "after_accept", "after_seen")


class Accounts:
    def __init__(self, account):
        self.account = account

    def get(self, name):
        return self.account


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def admin(url: str, token: str, action: str, payload: dict | None = None) -> dict:
    req = urllib.request.Request(f"{url}/admin/{action}", data=json.dumps(payload or {}).encode(), method="POST",
                                 headers={"X-Admin-Token": token})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())["result"]


def arm(mode: str, n: int) -> dict[str, int]:
    """Patch ccxt.bybit so this process dies at the chosen point; returns the counters."""
    counter = {"orders": 0, "seen": 0}
    if mode in ("before_send", "after_accept"):
        real = ccxt.bybit.create_order

        def create_order(self, *a, **k):
            counter["orders"] += 1
            if mode == "before_send" and counter["orders"] == n:
                die()
            out = real(self, *a, **k)
            if mode == "after_accept" and counter["orders"] == n:
                die()
            return out

        ccxt.bybit.create_order = create_order
    elif mode == "after_seen":
        for name in ("fetch_order", "fetch_open_orders", "fetch_canceled_and_closed_orders"):
            real_fetch = getattr(ccxt.bybit, name)

            def fetch(self, *a, _real=real_fetch, **k):
                out = _real(self, *a, **k)
                counter["seen"] += 1
                if counter["seen"] == n:
                    die()
                return out

            setattr(ccxt.bybit, name, fetch)
    return counter


def main(store_path: str, url: str, token: str, start_ms: int, mode: str, n: int) -> str:
    if mode not in MODES:
        raise SystemExit(f"mode must be one of {MODES}")
    store = Store(store_path)
    clock = ManualClock(start_ms / 1000.0)
    accounts = Accounts(emulator_account(url, timeout=3.0, rate_limit_ms=1))
    fast = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01)
    engine = Engine(store, clock=clock, venue_factory=venue_factory(store, accounts, retry=fast, sleep=lambda s: None,
                                                                      markets_ttl=None))
    SyncService(store, engine, clock=clock, rules=True).attach(engine)
    existing = store.deployments()
    if existing:
        recovered = engine.recover()
        rt = engine.get(existing[0]["id"]) if recovered else None
        if rt is None or rt.status != "active":
            row = store.deployment(existing[0]["id"])
            raise SystemExit(f"deployment not trading after recovery: {row['status']} {row['status_reason']}")
        engine.warm_up(rt.id, now_ms=rt.cursor[SYMBOL] + STEP_MS)  # history up to the bar already processed
    else:
        rt = engine.deploy(SPEC)
        engine.warm_up(rt.id, now_ms=start_ms)
        rt.flush()
    last = start_ms + (BARS - 1) * STEP_MS  # open time of the final bar to process
    arm(mode, n)
    now_ms = admin(url, token, "state")["now"]
    while rt.cursor[SYMBOL] < last:
        if rt.cursor[SYMBOL] + STEP_MS >= now_ms:  # every closed bar processed: the market moves one bar
            now_ms = admin(url, token, "advance", {"bars": 1})["now"]
        rows = rt.venue.fetch_ohlcv(SYMBOL, TIMEFRAME, since=rt.cursor[SYMBOL] + 1, limit=200)
        for ts, o, h, lo, c, v in (r for r in rows if rt.cursor[SYMBOL] < r[0] and r[0] + STEP_MS <= now_ms):
            if mode == "bar" and (int(ts) - (start_ms - STEP_MS)) // STEP_MS == n:
                die()
            clock.set((ts + STEP_MS) / 1000.0)
            engine.on_bar(SYMBOL, int(ts), o, h, lo, c, v)
            rt.flush()
        if rt.status != "active":
            raise SystemExit(f"deployment left trading: {rt.status} ({store.deployment(rt.id)['status_reason']})")
    return "completed"


if __name__ == "__main__":
    print(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6])), flush=True)
