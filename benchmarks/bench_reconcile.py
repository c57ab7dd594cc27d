"""Reconciliation speed: diff N of our fills against N venue trades (with a few injected differences).

    python -m benchmarks.bench_reconcile [--sizes 10000,100000,1000000]

Prints a table and writes it into benchmarks/RESULTS.md under "Reconciliation".
"""
from __future__ import annotations

import argparse
import platform
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.sync import Ledger, Tolerances, VenueReport, diff

SYMBOLS = [f"C{i}/USDT:USDT" for i in range(20)]
INJECT = 10  # of each: missing fills, phantom fills, amount mismatches


def frames(n: int, seed: int = 0) -> tuple[Ledger, VenueReport, Tolerances]:
    rng = np.random.default_rng(seed)
    ids = np.char.add("t", np.arange(n).astype(str))
    oids = np.char.add("o", np.arange(n).astype(str))
    sym = np.array(SYMBOLS)[rng.integers(0, len(SYMBOLS), n)]
    side = np.where(rng.random(n) < 0.5, "buy", "sell")
    amount = rng.integers(1, 1000, n) * 0.001
    price = rng.integers(10_000, 90_000, n) * 0.01
    fee = amount * price * 0.001
    at = 1.7e9 + np.arange(n) * 1.0
    ours = pd.DataFrame({"deployment_id": "d1", "venue_trade_id": ids, "venue_order_id": oids, "client_order_id": np.char.add("c", oids),
                         "symbol": sym, "side": side, "amount": amount, "price": price, "fee": fee, "fee_currency": "USDT", "at": at, "external": False})
    venue = pd.DataFrame({"trade_id": ids, "order_id": oids, "client_order_id": np.char.add("c", oids), "symbol": sym, "side": side,
                          "amount": amount, "price": price, "fee": fee, "fee_currency": "USDT", "at": at, "manual": False})
    k = INJECT
    venue = venue.iloc[k:].copy()                      # k phantom fills (we have, venue lacks)
    ours = ours.iloc[: n - k].copy()                   # k missing fills (venue has, we lack)
    venue.iloc[:k, venue.columns.get_loc("amount")] += 0.002  # k amount mismatches
    tol = Tolerances(steps={s: (0.001, 0.01) for s in SYMBOLS})
    return Ledger.of(fills=ours), VenueReport.of(trades=venue), tol


def run(sizes: list[int], repeat: int = 3) -> pd.DataFrame:
    rows = []
    for n in sizes:
        ledger, venue, tol = frames(n)
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            found = diff(ledger, venue, tol)
            best = min(best, time.perf_counter() - t0)
        kinds = pd.Series([d.kind for d in found]).value_counts().to_dict()
        assert kinds == {"missing_fill": INJECT, "phantom_fill": INJECT, "fill_mismatch": INJECT}, kinds
        rows.append({"fills": n, "seconds": round(best, 3), "fills_per_s": int(n / best), "differences": len(found)})
    return pd.DataFrame(rows)


def write_results(table: pd.DataFrame, path: Path = Path(__file__).with_name("RESULTS.md")) -> None:
    body = (
        "## Reconciliation\n\n"
        f"`python -m benchmarks.bench_reconcile` on {platform.machine()} / Python {platform.python_version()} "
        f"(pandas {pd.__version__}), best of 3. Our fills vs the venue's trades, {INJECT} each of missing, phantom and "
        "mismatched fills injected; every one found, nothing else.\n\n" + _markdown(table) + "\n"
    )
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if re.search(r"^## Reconciliation$", text, flags=re.M):
        text = re.sub(r"^## Reconciliation\n.*?(?=^## |\Z)", body + "\n", text, flags=re.M | re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.write_text(text.rstrip("\n") + "\n")


def _markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---:|" * len(table.columns)]
    lines += ["| " + " | ".join(f"{v:,}" if isinstance(v, (int, np.integer)) else str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    table = run([int(x) for x in args.sizes.split(",")])
    print(table.to_string(index=False))
    if not args.no_write:
        write_results(table)


if __name__ == "__main__":
    main()
