"""Applying corrections: the only place reconciliation writes, always audited.

A correction changes the store and, when the deployment runs in this
process, its runtime's in-memory ledger, so the engine never trades against
a position that no longer exists. Closing a position cancels its protective
orders at the venue first (a spot stop would otherwise sell coins that are
not ours any more).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..engine.ledger import PROTECTIVE, OpenPosition
from ..errors import VenueError, WorkbenchError
from ..store import Store
from . import learning, records
from .frames import UNSETTLED
from .model import ApplyRules, Correction, Difference

if TYPE_CHECKING:
    from ..engine.deployment import DeploymentRuntime


def apply_corrections(
    store: Store, venue_id: str, diffs: list[Difference], rules: ApplyRules, venue: Any = None,
    runtimes: Mapping[str, DeploymentRuntime] | None = None, actor: str = "sync", now: float | None = None,
    bars: learning.BarsProvider | None = None,
) -> dict[int, str]:
    """Apply the corrections `rules` allow, in a safe order (fills, orders, positions); index -> result."""
    order = {"missing_fill": 0, "fill_mismatch": 1, "order_status_mismatch": 2}
    results: dict[int, str] = {}
    for i in sorted(range(len(diffs)), key=lambda k: order.get(diffs[k].kind, 3)):
        d = diffs[i]
        if not rules.wants(d):
            continue
        corr = d.correction
        if d.kind == "unknown_position":
            action = "adopt_position" if rules.unknown_position_action == "adopt" else "ignore_position"
            corr = Correction(action, corr.params)
        try:
            results[i] = apply_one(store, venue_id, corr, venue, runtimes or {}, actor, now, bars)
        except (WorkbenchError, KeyError, ValueError, TypeError) as exc:
            results[i] = f"failed: {exc}"
        store.audit(actor, f"sync:{corr.action}", d.deployment_id, {"kind": d.kind, "key": d.key, "params": dict(corr.params), "result": results[i]})
    return results


def apply_one(store: Store, venue_id: str, corr: Correction, venue: Any, runtimes: Mapping[str, Any], actor: str,
              now: float | None, bars: learning.BarsProvider | None) -> str:
    p = dict(corr.params)
    if corr.action == "record_fill":
        f = p["fill"]
        ok = store.insert_fill({
            "deployment_id": p.get("deployment_id"), "venue": venue_id, "venue_trade_id": str(f["trade_id"]),
            "venue_order_id": f.get("order_id"), "client_order_id": f.get("client_order_id"), "symbol": f["symbol"],
            "side": f["side"], "amount": float(f["amount"]), "price": float(f["price"]), "fee": float(f.get("fee") or 0.0),
            "fee_currency": f.get("fee_currency"), "at": float(f["at"]) if f.get("at") is not None else (now or 0.0),
            "external": bool(p.get("external", True)),
        })
        return "recorded" if ok else "already recorded"
    if corr.action == "update_fill":
        n = records.update_fill(store, venue_id, p["venue_trade_id"], amount=p["amount"], price=p["price"], fee=p["fee"] or 0.0,
                                fee_currency=p["fee_currency"])
        return "updated" if n else "fill not found"
    if corr.action == "mark_order":
        extra = {"filled": p["filled"]} if p.get("filled") is not None else {}
        store.update_order(p["client_order_id"], status=p["status"], at=now, **extra)
        return f"marked {p['status']}"
    if corr.action == "close_position":
        return _close(store, p, venue, runtimes, now, bars)
    if corr.action == "resize_position":
        return _resize(store, p, venue, runtimes, now, bars)
    if corr.action == "adopt_position":
        return _adopt(store, p, venue, runtimes, now)
    if corr.action == "ignore_position":
        signed = float(p["amount"]) * (1 if p["side"] == "long" else -1)
        records.add_ignored(store, venue_id, p["symbol"], signed, f"ignored by {actor}")
        return "ignored"
    return "needs review"


def _exit_price(p: Mapping[str, Any], venue: Any) -> float:
    price = p.get("exit_price")
    if price:
        return float(price)
    if venue is None:
        raise VenueError(f"No exit price for {p['symbol']}: the venue's trade history does not show the close; pass a venue to read its ticker.")
    t = venue.fetch_ticker(p["symbol"])
    return float(t.get("last") or t.get("close"))


def _quote_fee(p: Mapping[str, Any], symbol: str, fee_key: str = "exit_fee") -> float:
    """The exit fee when it is in the quote/settle currency; a fee in another coin (BNB) is not mixed into P&L."""
    cur = (p.get("fee_currency") or "").upper()
    quote = symbol.split("/")[1].split(":")[-1].upper() if "/" in symbol else ""
    settle = symbol.split(":")[1].upper() if ":" in symbol else quote
    fee = float(p.get(fee_key) or 0.0)
    return fee if (not cur or cur in (quote, settle)) and math.isfinite(fee) else 0.0


def _cancel_protection(store: Store, position_id: int, venue: Any, now: float | None) -> list[str]:
    done = []
    for o in store.orders(statuses=UNSETTLED):
        if o["position_id"] != position_id or o["purpose"] not in PROTECTIVE:
            continue
        status = "cancelled"
        if venue is not None:
            try:
                found = venue.fetch_order(o["symbol"], order_id=o["venue_order_id"], client_order_id=o["client_order_id"])
                if found and found.get("status") == "open":
                    venue.cancel_order(found.get("id") or o["venue_order_id"], o["symbol"])
                elif found and found.get("status") == "closed":
                    status = "filled"
            except VenueError:
                pass  # reduce-only orders die with the position; recorded as cancelled
        store.update_order(o["client_order_id"], status=status, at=now)
        done.append(o["client_order_id"])
    return done


def _close(store: Store, p: Mapping[str, Any], venue: Any, runtimes: Mapping[str, Any], now: float | None,
           bars: learning.BarsProvider | None) -> str:
    pos = records.position(store, int(p["position_id"]))
    if pos is None or pos["status"] != "open":
        return "already closed"
    price = _exit_price(p, venue)
    at = float(p.get("exit_at") or now or pos["entry_at"])
    fee = _quote_fee(p, pos["symbol"])
    cancelled = _cancel_protection(store, pos["id"], venue, now)
    trade = _book(store, pos, pos["amount"], price, fee, at, runtimes.get(pos["deployment_id"]))
    learning.record_intervention(store, pos, trade, bars)
    return f"closed manual at {price:g}" + (f"; cancelled {', '.join(cancelled)}" if cancelled else "")


def _book(store: Store, pos: Mapping[str, Any], amount: float, price: float, exit_fee: float, at: float, rt: Any) -> dict[str, Any]:
    """Close (part of) a position as 'manual' in the runtime ledger (if running here) and the store."""
    part = amount / pos["amount"] if pos["amount"] else 1.0
    entry_fee = float(pos["entry_fee"] or 0.0) * part
    live = rt.ledger.positions.get(pos["symbol"]) if rt is not None else None
    if live is not None and live.id == pos["id"]:
        rest = pos["amount"] - amount
        live.amount, live.entry_fee = amount, entry_fee
        _, pnl = rt.ledger.close(pos["symbol"], price, exit_fee)
        if rest > 0:
            rt.ledger.positions[pos["symbol"]] = OpenPosition(
                live.id, live.symbol, live.side, rest, live.entry_price, live.entry_at, float(pos["entry_fee"] or 0.0) - entry_fee,
                live.margin, live.confidence, live.sl_price, live.tp_price, live.sl_cid, live.tp_cid, live.sl_order_id, live.tp_order_id)
    else:
        gross = (1.0 if pos["side"] == "long" else -1.0) * (price - pos["entry_price"]) * amount
        pnl = gross - entry_fee - exit_fee
    trade = {"deployment_id": pos["deployment_id"], "symbol": pos["symbol"], "side": pos["side"], "amount": amount,
             "entry_price": pos["entry_price"], "entry_at": pos["entry_at"], "exit_price": price, "exit_at": at,
             "fees": entry_fee + exit_fee, "pnl": pnl, "pnl_pct": pnl / (pos["entry_price"] * amount), "exit_reason": "manual"}
    store.close_position(pos["id"], trade)
    if rt is not None:
        rt.emit("trade", trade)
    return trade


def _resize(store: Store, p: Mapping[str, Any], venue: Any, runtimes: Mapping[str, Any], now: float | None,
            bars: learning.BarsProvider | None = None) -> str:
    """A partial manual close: book the closed part as a manual trade, with its learning record; the rest stays open as a new position."""
    pos = records.position(store, int(p["position_id"]))
    if pos is None or pos["status"] != "open":
        return "already closed"
    closed = float(pos["amount"]) - float(p["amount"])
    if closed <= 0:
        return "needs review: the venue holds more than we do"
    price = _exit_price(p, venue)
    at = float(p.get("exit_at") or now or pos["entry_at"])
    rt = runtimes.get(pos["deployment_id"])
    rest_fee = float(pos["entry_fee"] or 0.0) * (1 - closed / pos["amount"])
    trade = _book(store, pos, closed, price, _quote_fee(p, pos["symbol"]), at, rt)
    store.update_position(pos["id"], entry_fee=float(pos["entry_fee"] or 0.0) - rest_fee)  # the closed row holds the closed part
    learning.record_intervention(store, pos, trade, bars)  # the closed part beside the strategy's own exit of it
    new_id = store.open_position({k: pos[k] for k in ("deployment_id", "symbol", "side", "entry_price", "entry_at", "confidence",
                                                      "sl_price", "tp_price", "leverage")} | {"amount": float(p["amount"]), "entry_fee": rest_fee})
    for o in store.orders(pos["deployment_id"], statuses=UNSETTLED):
        if o["position_id"] == pos["id"]:
            store.update_order(o["client_order_id"], position_id=new_id)
    if rt is not None and pos["symbol"] in rt.ledger.positions:
        rt.ledger.positions[pos["symbol"]].id = new_id
    return f"closed {closed:g} manual at {price:g} (pnl {trade['pnl']:.4f}); {p['amount']:g} left as position {new_id}"


def _adopt(store: Store, p: Mapping[str, Any], venue: Any, runtimes: Mapping[str, Any], now: float | None) -> str:
    dep_id = p.get("deployment_id")
    if not dep_id:
        raise WorkbenchError(f"No single deployment trades {p['symbol']}: adopt it into one by hand, or ignore it.")
    price = float(p.get("entry_price") or _exit_price({"symbol": p["symbol"]}, venue))
    at = float(now or 0.0)
    rt = runtimes.get(dep_id)
    pos_id = store.open_position({"deployment_id": dep_id, "symbol": p["symbol"], "side": p["side"], "amount": float(p["amount"]),
                                  "entry_price": price, "entry_at": at, "entry_fee": 0.0, "confidence": None, "leverage": 1.0})
    if rt is not None and p["symbol"] not in rt.ledger.positions:
        margin = bool(rt.rules[p["symbol"]].contract) or p["side"] == "short"
        rt.ledger.open(OpenPosition(pos_id, p["symbol"], p["side"], float(p["amount"]), price, at, 0.0, margin))
        rt.marks.setdefault(p["symbol"], price)
    return f"adopted as position {pos_id} of {dep_id}"
