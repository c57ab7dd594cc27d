"""Both sides of a reconciliation as DataFrames: our ledger (from the store) and the venue's report (ccxt structures).

The frames have fixed columns (``*_COLS``) so :func:`workbench.sync.diff.diff`
is a pure function of them. Times are seconds since the epoch (floats), as in
the store; ccxt's milliseconds are converted here.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select

from ..store import Store
from ..store import schema as t

FILL_COLS = ["deployment_id", "venue_trade_id", "venue_order_id", "client_order_id", "symbol", "side",
             "amount", "price", "fee", "fee_currency", "at", "external"]
ORDER_COLS = ["deployment_id", "client_order_id", "venue_order_id", "symbol", "side", "status", "amount",
              "filled", "purpose", "position_id"]
POSITION_COLS = ["id", "deployment_id", "symbol", "side", "amount", "entry_price", "entry_at", "entry_fee",
                 "sl_price", "tp_price", "confidence"]
TRADE_COLS = ["trade_id", "order_id", "client_order_id", "symbol", "side", "amount", "price", "fee",
              "fee_currency", "at", "manual"]
VORDER_COLS = ["order_id", "client_order_id", "symbol", "side", "status", "amount", "filled"]
VPOS_COLS = ["symbol", "side", "amount", "entry_price", "at", "source"]
BALANCE_COLS = ["currency", "total", "free", "used"]
UNSETTLED = ("pending", "open", "partially_filled")


def _frame(rows: Iterable[Mapping[str, Any]] | pd.DataFrame | None, cols: list[str]) -> pd.DataFrame:
    df = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows or []))
    for c in cols:
        if c not in df.columns:
            df[c] = None
    return df[cols].reset_index(drop=True)


@dataclass
class Ledger:
    """Our side: fills, orders and open positions of some deployments on one venue.

    ``symbols`` maps a symbol to the deployment trading it (None when several
    do), to attribute external trades. ``ignored`` holds venue holdings the
    user declared not ours (symbol, signed amount).
    """

    fills: pd.DataFrame
    orders: pd.DataFrame
    positions: pd.DataFrame
    symbols: Mapping[str, str | None] = field(default_factory=dict)
    ignored: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["symbol", "amount"]))

    @classmethod
    def of(cls, fills: Any = None, orders: Any = None, positions: Any = None, symbols: Mapping[str, str | None] | None = None,
           ignored: Any = None) -> Ledger:
        """A ledger from rows (dicts) or frames; missing columns become None."""
        f = _frame(fills, FILL_COLS)
        for c in ("amount", "price", "fee", "at"):
            f[c] = pd.to_numeric(f[c], errors="coerce").astype(float)
        p = _frame(positions, POSITION_COLS)
        for c in ("amount", "entry_price", "entry_at", "entry_fee"):
            p[c] = pd.to_numeric(p[c], errors="coerce").astype(float)
        ign = _frame(ignored, ["symbol", "amount"])
        ign["amount"] = pd.to_numeric(ign["amount"], errors="coerce").astype(float)
        return cls(f, _frame(orders, ORDER_COLS), p, dict(symbols or {}), ign)


@dataclass
class VenueReport:
    """The venue's side: its trades (my trades), the orders it reported, its positions and balances."""

    trades: pd.DataFrame
    orders: pd.DataFrame
    positions: pd.DataFrame
    balances: pd.DataFrame
    fetched_at: float | None = None

    @classmethod
    def of(cls, trades: Any = None, orders: Any = None, positions: Any = None, balances: Any = None,
           fetched_at: float | None = None) -> VenueReport:
        tr = _frame(trades, TRADE_COLS)
        for c in ("amount", "price", "fee", "at"):
            tr[c] = pd.to_numeric(tr[c], errors="coerce").astype(float)
        tr["manual"] = tr["manual"].fillna(False).astype(bool)
        tr = tr.drop_duplicates("trade_id", keep="last").reset_index(drop=True)  # overlapping pages
        pos = _frame(positions, VPOS_COLS)
        pos["amount"] = pd.to_numeric(pos["amount"], errors="coerce").astype(float)
        return cls(tr, _frame(orders, VORDER_COLS), pos, _frame(balances, BALANCE_COLS), fetched_at)

    @classmethod
    def from_ccxt(cls, trades: Iterable[Mapping[str, Any]] = (), orders: Iterable[Mapping[str, Any]] = (),
                  positions: Iterable[Mapping[str, Any]] = (), balance: Mapping[str, Any] | None = None,
                  markets: Mapping[str, Any] | None = None, spot_symbols: Iterable[str] = (),
                  fetched_at: float | None = None) -> VenueReport:
        """From ccxt unified structures. Spot holdings (base balances) of `spot_symbols` count as positions."""
        balances = balances_frame(balance or {})
        pos = [position_row(p) for p in positions if float(p.get("contracts") or 0.0)]
        held = dict(zip(balances["currency"], balances["total"], strict=True))
        for sym in spot_symbols:
            base = _base_of(sym, markets)
            amount = float(held.get(base) or 0.0)
            if amount:
                pos.append({"symbol": sym, "side": "long", "amount": amount, "entry_price": None, "at": None, "source": "balance"})
        return cls.of([trade_row(x) for x in trades], [order_row(o) for o in orders], pos, balances, fetched_at)


def _base_of(symbol: str, markets: Mapping[str, Any] | None) -> str:
    m = (markets or {}).get(symbol)
    base = getattr(m, "base", None) if m is not None and not isinstance(m, Mapping) else (m or {}).get("base")
    return str(base or symbol.split("/")[0])


def client_id_of(x: Mapping[str, Any]) -> str | None:
    """The client order id of a ccxt trade or order (unified field, else the exchange's own in info)."""
    info = x.get("info") or {}
    cid = x.get("clientOrderId") or info.get("clientOrderId") or info.get("orderLinkId") or info.get("clOrdId") or info.get("newClientOrderId")
    return str(cid) if cid else None


def trade_row(x: Mapping[str, Any]) -> dict[str, Any]:
    fee = x.get("fee") or {}
    fees = x.get("fees") or []
    cost, cur = fee.get("cost"), fee.get("currency")
    if cost is None and fees:
        cost = sum(float(f.get("cost") or 0.0) for f in fees)
        cur = fees[0].get("currency")
    info = x.get("info") or {}
    ts = x.get("timestamp")
    return {"trade_id": str(x.get("id")), "order_id": str(x["order"]) if x.get("order") is not None else None,
            "client_order_id": client_id_of(x), "symbol": x.get("symbol"), "side": x.get("side"),
            "amount": float(x.get("amount") or 0.0), "price": float(x.get("price") or 0.0),
            "fee": float(cost or 0.0), "fee_currency": cur, "at": ts / 1000.0 if ts is not None else np.nan,
            "manual": bool(info.get("manual", False))}


def order_row(o: Mapping[str, Any]) -> dict[str, Any]:
    return {"order_id": str(o.get("id")) if o.get("id") is not None else None, "client_order_id": client_id_of(o),
            "symbol": o.get("symbol"), "side": o.get("side"), "status": o.get("status"),
            "amount": float(o.get("amount") or 0.0), "filled": float(o.get("filled") or 0.0)}


def position_row(p: Mapping[str, Any]) -> dict[str, Any]:
    contracts = float(p.get("contracts") or 0.0)
    side = p.get("side") or ("long" if contracts > 0 else "short")
    ts = p.get("timestamp")
    return {"symbol": p.get("symbol"), "side": side, "amount": abs(contracts), "entry_price": p.get("entryPrice"),
            "at": ts / 1000.0 if ts is not None else None, "source": "position"}


def balances_frame(balance: Mapping[str, Any]) -> pd.DataFrame:
    rows = []
    for cur, v in (balance.get("total") or {}).items():
        rows.append({"currency": cur, "total": float(v or 0.0), "free": float((balance.get("free") or {}).get(cur) or 0.0),
                     "used": float((balance.get("used") or {}).get(cur) or 0.0)})
    return _frame(rows, BALANCE_COLS)


def ledger_from_store(store: Store, venue_id: str, deployment_ids: Iterable[str], symbols: Mapping[str, str | None] | None = None,
                      since: float | None = None, ignored: Any = None) -> Ledger:
    """Our ledger for `deployment_ids` on `venue_id`: fills recorded on that venue (since `since`), their orders, open positions.

    `ignored` holdings default to those recorded for the venue (ignore_position corrections).
    """
    from ..store import sync_schema as ss

    dep_ids = list(deployment_ids)
    if ignored is None:
        ignored = store.frame(ss.sync_ignored.name, venue_id=venue_id)
    stmt = select(*(t.fills.c[c] for c in FILL_COLS)).where(t.fills.c.venue == venue_id)
    if since is not None:
        stmt = stmt.where(t.fills.c.at >= since)
    ostmt = select(*(t.orders.c[c] for c in ORDER_COLS)).where(t.orders.c.deployment_id.in_(dep_ids))
    pstmt = select(*(t.positions.c[c] for c in POSITION_COLS)).where(t.positions.c.deployment_id.in_(dep_ids), t.positions.c.status == "open")
    with store.tx() as conn:
        fills = pd.read_sql_query(stmt, conn)
        orders = pd.read_sql_query(ostmt, conn)
        positions = pd.read_sql_query(pstmt, conn)
    return Ledger.of(fills, orders, positions, symbols, ignored)
