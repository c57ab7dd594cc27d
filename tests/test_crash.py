"""Crash and restart: SIGKILL the engine process at random points; nothing is lost or duplicated.

Each trial kills a paper replay (its own process, a real SQLite file) at seeded random points, at the
worst moments too (just before an order reaches the venue; just after the venue accepted it but
before the engine recorded the answer), restarts it until it completes, and compares it with an
uninterrupted run on the same bars. Default tier: a few trials; `make test-slow` runs SLOW_TRIALS (20).
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from workbench.store import Store

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import crash_driver  # noqa: E402

COLS = ["symbol", "side", "amount", "entry_price", "entry_at", "exit_price", "exit_at", "pnl", "exit_reason"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from workbench.engine import replay

    res = replay(crash_driver.SPEC, data=crash_driver.data(), store=str(tmp_path_factory.mktemp("ref") / "ref.sqlite"))
    assert len(res.trades) >= 10
    return res


def run_child(store: Path, mode: str, n: int) -> int:
    proc = subprocess.run([sys.executable, str(HERE / "crash_driver.py"), str(store), mode, str(n)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONHASHSEED": "0"})
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"driver failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.returncode


def trial(tmp_path: Path, seed: int, reference) -> dict:
    rng = random.Random(seed)
    store_path = tmp_path / f"trial{seed}.sqlite"
    kills = []
    n_orders = len(reference.store.orders())
    for _ in range(3):
        mode = rng.choice(["bar", "before_send", "after_accept"])
        n = rng.randint(50, crash_driver.BARS - 50) if mode == "bar" else rng.randint(1, max(2, n_orders // 2))
        kills.append((mode, n))
    for mode, n in kills:
        run_child(store_path, mode, n)
    for _ in range(3):  # restart until the replay completes
        if run_child(store_path, "none", 0) == 0:
            break
    store = Store(store_path)
    dep = store.deployments()[0]
    got = store.trades(dep["id"])[COLS].reset_index(drop=True)
    want = reference.trades[COLS].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12)

    orders = store.frame("orders", deployment_id=dep["id"])
    venue = store.load_venue_state(f"paper:{dep['id']}")
    venue_cids = [o.get("clientOrderId") for o in venue["orders"].values()] if isinstance(venue["orders"], dict) else [o.get("clientOrderId") for o in venue["orders"]]
    dupes = [c for c, k in Counter(venue_cids).items() if k > 1]
    assert dupes == [], f"duplicated orders at the venue: {dupes}"
    missing = set(venue_cids) - set(orders["client_order_id"])
    assert missing == set(), f"orders at the venue the store does not know: {missing}"
    assert not orders["status"].isin(["pending"]).any(), "no order left in limbo"
    positions = store.frame("positions", deployment_id=dep["id"])
    closed = positions[positions["status"] == "closed"]
    assert len(closed) == len(got), "every closed position has exactly one trade"
    return {"kills": kills, "trades": len(got)}


@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_restart_loses_and_duplicates_nothing(tmp_path, reference, seed):
    trial(tmp_path, seed, reference)


@pytest.mark.slow
def test_sigkill_restart_many_trials(tmp_path, reference):
    trials = int(os.environ.get("SLOW_TRIALS", "20"))
    results = [trial(tmp_path, 100 + k, reference) for k in range(trials)]
    assert len(results) == trials
