"""Learning records (seed 004): each manual intervention beside what the strategy would have done.

When a position is closed by hand, a record keeps the entry, the manual exit
and its P&L. The counterfactual is the strategy's own exit on the bars that
followed the manual close: its protective stop or take profit
(:func:`workbench.fills.stop_exit`, stop loss first) or its exit signal (the
engine's rule: a long exits on an exit signal or a short entry), filled as
the engine would (:func:`workbench.fills.market_fill_price`, taker fee). Until
the data holds such an exit the record is ``pending``; later syncs resolve it.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..errors import WorkbenchError
from ..fills import Costs, market_fill_price, stop_exit
from ..store import Store
from ..strategies import get_strategy
from ..timeframes import timeframe_seconds
from . import records

#: bars(symbol, timeframe, since_ms) -> OHLCV DataFrame (UTC index of bar open times)
BarsProvider = Callable[[str, str, int], pd.DataFrame]
COLUMNS = ["id", "position_id", "deployment_id", "symbol", "strategy", "params", "timeframe", "side", "amount", "confidence",
           "entry_price", "entry_at", "exit_price", "exit_at", "duration_s", "pnl", "sl_price", "tp_price",
           "cf_status", "cf_reason", "cf_exit_price", "cf_exit_at", "cf_pnl", "cf_note", "created_at", "updated_at"]


def counterfactual_exit(
    bars: pd.DataFrame, signals: Any, side: str, entry_price: float, amount: float, entry_fee: float, after: float,
    sl_price: float | None, tp_price: float | None, costs: Costs, direction: str = "long",
) -> dict[str, Any] | None:
    """The strategy's own exit on the first bar opening after `after` (seconds), or None if the bars hold none yet.

    `signals` are the strategy's :class:`~workbench.strategies.Signals` over `bars`.
    """
    ts = bars.index.as_unit("ms").asi8 / 1000.0
    start = int(np.searchsorted(ts, after, side="right"))
    if start >= len(bars):
        return None
    long_ok, short_ok = direction in ("long", "both"), direction in ("short", "both")
    e, x = np.asarray(signals.entries), np.asarray(signals.exits)
    se, sx = np.asarray(signals.short_entries), np.asarray(signals.short_exits)
    if side == "long":
        out = (x & ~e) | ((se & ~sx) if short_ok else False)
    else:
        out = (sx & ~se) | ((e & ~x) if long_ok else False)
    hits = np.flatnonzero(out[start:])
    last = start + int(hits[0]) if len(hits) else len(bars) - 1
    sl = float("nan") if sl_price is None else float(sl_price)
    tp = float("nan") if tp_price is None else float(tp_price)
    o, h, lo, c = (bars[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close"))
    exit_side = "sell" if side == "long" else "buy"
    for i in range(start, last + 1):
        hit = stop_exit(side, sl, tp, o[i], h[i], lo[i]) if (sl == sl or tp == tp) else None
        if hit is not None:
            return _result(side, entry_price, amount, entry_fee, market_fill_price(exit_side, hit[0], costs.slippage), ts[i], hit[1], costs)
        if i == last and len(hits):
            return _result(side, entry_price, amount, entry_fee, market_fill_price(exit_side, c[i], costs.slippage), ts[i], "signal", costs)
    return None


def _result(side: str, entry: float, amount: float, entry_fee: float, price: float, at: float, reason: str, costs: Costs) -> dict[str, Any]:
    sign = 1.0 if side == "long" else -1.0
    fee = abs(price * amount) * costs.taker_fee
    return {"cf_exit_price": float(price), "cf_exit_at": float(at), "cf_reason": reason,
            "cf_pnl": float(sign * (price - entry) * amount - entry_fee - fee)}


def record_intervention(store: Store, position: Mapping[str, Any], trade: Mapping[str, Any], bars: BarsProvider | None = None) -> int | None:
    """Store the learning record of a position closed by hand (once per position); try its counterfactual."""
    dep = store.deployment(position["deployment_id"]) or {}
    rid = records.add_learning_record(store, {
        "position_id": int(position["id"]), "deployment_id": position["deployment_id"], "symbol": position["symbol"],
        "strategy": dep.get("strategy"), "params": dep.get("params") or {}, "timeframe": dep.get("timeframe"),
        "side": position["side"], "amount": float(trade["amount"]), "confidence": position.get("confidence"),
        "entry_price": float(position["entry_price"]), "entry_at": float(position["entry_at"]),
        "exit_price": float(trade["exit_price"]), "exit_at": float(trade["exit_at"]),
        "duration_s": float(trade["exit_at"]) - float(position["entry_at"]), "pnl": float(trade["pnl"]),
        "sl_price": position.get("sl_price"), "tp_price": position.get("tp_price"), "cf_status": "pending",
    })
    if rid is not None and bars is not None:
        resolve(store, bars, ids=[rid])
    return rid


def resolve(store: Store, bars: BarsProvider, ids: list[int] | None = None) -> int:
    """Compute the counterfactual of pending records whose data now holds the strategy's exit; returns how many."""
    done = 0
    for rec in records.learning_rows(store, status="pending"):
        if ids is not None and rec["id"] not in ids:
            continue
        try:
            cf = _counterfactual(store, rec, bars)
        except (WorkbenchError, KeyError, ValueError) as exc:
            records.update_learning_record(store, rec["id"], cf_note=f"not computed yet: {exc}")
            continue
        if cf is not None:
            records.update_learning_record(store, rec["id"], cf_status="resolved", **cf)
            done += 1
    return done


def _counterfactual(store: Store, rec: Mapping[str, Any], bars: BarsProvider) -> dict[str, Any] | None:
    dep = store.deployment(rec["deployment_id"]) or {}
    config = dep.get("config") or {}
    strategy = get_strategy(rec["strategy"] or config.get("strategy"))
    params = rec["params"] or {}
    tf = rec["timeframe"] or dep.get("timeframe") or "1h"
    step_ms = timeframe_seconds(tf) * 1000
    since = int(rec["entry_at"] * 1000) - strategy.warmup(params) * step_ms
    df = bars(rec["symbol"], tf, since)
    if df is None or not len(df):
        return None
    costs = config.get("costs") or {}
    costs = costs if isinstance(costs, Costs) else Costs(**{k: v for k, v in dict(costs).items() if k in ("taker_fee", "maker_fee", "slippage")})
    pos = records.position(store, rec["position_id"]) or {}
    entry_fee = float(pos.get("entry_fee") or 0.0) * (rec["amount"] / pos["amount"] if pos.get("amount") else 1.0)
    sig = strategy.signals(df, params)
    return counterfactual_exit(df, sig, rec["side"], rec["entry_price"], rec["amount"], entry_fee, rec["exit_at"],
                               rec["sl_price"], rec["tp_price"], costs, config.get("direction", "long"))


def venue_bars(venue: Any, limit: int = 1000) -> BarsProvider:
    """A BarsProvider reading a venue's OHLCV."""

    def get(symbol: str, timeframe: str, since_ms: int) -> pd.DataFrame:
        rows = venue.fetch_ohlcv(symbol, timeframe, since=since_ms, limit=limit)
        df = pd.DataFrame(rows, columns=["ts", "open", "high", "low", "close", "volume"])
        df.index = pd.to_datetime(df.pop("ts").astype("int64"), unit="ms", utc=True)
        return df

    return get


def learning_records(store: Store) -> pd.DataFrame:
    """Every learning record as a DataFrame, with `helped` (manual P&L minus the strategy's own, once known)."""
    df = pd.DataFrame(records.learning_rows(store), columns=COLUMNS)
    df["helped"] = df["pnl"] - df["cf_pnl"]
    return df


def learning_summary(store: Store) -> dict[str, Any]:
    """Count of interventions, their P&L, and the P&L the system would have made on the resolved ones."""
    df = learning_records(store)
    res = df[df["cf_status"] == "resolved"]

    def total(s: pd.Series) -> float:
        v = float(s.sum()) if len(s) else 0.0
        return v if math.isfinite(v) else 0.0

    return {
        "interventions": int(len(df)), "resolved": int(len(res)), "pending": int((df["cf_status"] == "pending").sum()),
        "manual_pnl": total(df["pnl"]), "manual_pnl_resolved": total(res["pnl"]), "system_pnl_resolved": total(res["cf_pnl"]),
        "benefit": total(res["pnl"] - res["cf_pnl"]), "helped": int((res["pnl"] > res["cf_pnl"]).sum()),
        "hurt": int((res["pnl"] < res["cf_pnl"]).sum()),
    }
