"""Reconciliation as a pure function: (our ledger, the venue's report, tolerances) -> differences.

No I/O. Fills are matched with joins, not loops over pairs: first on the
venue's trade id; what is left is matched per order (the venue order id),
which also covers fills we recorded from an order report without the
venue's trade ids. Orders are matched on client order id, positions per
symbol (net, signed). Each :class:`~workbench.sync.model.Difference` carries
the rows that show it and a suggested :class:`~workbench.sync.model.Correction`.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .frames import UNSETTLED, Ledger, VenueReport
from .model import Correction, Difference, Tolerances

_STATUS = {"open": "open", "closed": "filled", "canceled": "cancelled", "cancelled": "cancelled",
           "expired": "cancelled", "rejected": "rejected", "filled": "filled"}


def diff(ledger: Ledger, venue: VenueReport, tolerances: Tolerances | None = None, since: float | None = None,
         slack: float = 60.0) -> list[Difference]:
    """Every difference between `ledger` and `venue`.

    With `since` (seconds) the venue's trades are taken as complete only from
    then on: our fills older than `since` are matched if the venue shows them
    but not reported missing from it; `slack` widens that edge for clocks.
    """
    tol = tolerances or Tolerances()
    out = _fills(ledger, venue, tol, since, slack)
    out += _orders(ledger, venue)
    out += _positions(ledger, venue, tol)
    return out


# -- tolerances -----------------------------------------------------------------
def _steps(symbols: pd.Series, tol: Tolerances, which: int) -> np.ndarray:
    codes, uniques = pd.factorize(symbols)
    table = np.array([_f((tol.steps.get(u) or (None, None))[which]) or np.nan for u in uniques] + [np.nan], dtype=float)
    return table[codes]  # code -1 (missing symbol) reads the trailing NaN


def _tol(symbols: pd.Series, values: Any, tol: Tolerances, which: int, units: float) -> np.ndarray:
    steps = _steps(symbols, tol, which)
    rel = np.abs(np.asarray(values, dtype=float)) * tol.relative + 1e-12
    return np.where(np.isfinite(steps), steps * units + 1e-12, rel)


def _fee_differs(a: Any, b: Any, tol: Tolerances) -> np.ndarray:
    x = np.nan_to_num(np.asarray(a, dtype=float))
    y = np.nan_to_num(np.asarray(b, dtype=float))
    return np.abs(x - y) > np.maximum(np.maximum(np.abs(x), np.abs(y)) * tol.fee_relative, tol.fee_abs)


def _cur(s: pd.Series) -> pd.Series:
    """Currency codes upper-cased, '' when missing (done on the few distinct values, then spread)."""
    codes, uniques = pd.factorize(s)
    table = np.array([str(u).upper() for u in uniques] + [""], dtype=object)
    return pd.Series(table[codes], index=s.index)


def _arrow(s: pd.Series) -> pa.Array:
    return pa.array(s.astype(object).where(s.notna(), None).astype("str"), type=pa.string()) if s.dtype == object else pa.array(s, type=pa.string())


# -- fills ------------------------------------------------------------------------
def _fills(ledger: Ledger, venue: VenueReport, tol: Tolerances, since: float | None, slack: float) -> list[Difference]:
    ours, ven = ledger.fills, venue.trades  # trade ids unique per side (the store's constraint; VenueReport.of)
    if since is not None:
        ours = ours[ours["at"].to_numpy() >= since - slack]
        ven = ven[ven["at"].to_numpy() >= since - slack]
    ours, ven = ours.reset_index(drop=True), ven.reset_index(drop=True)
    # join on the venue's trade id (arrow hash lookup: ~0.3 s per million)
    idx = pc.index_in(_arrow(ours["venue_trade_id"]), value_set=_arrow(ven["trade_id"])).to_numpy(zero_copy_only=False)
    matched = np.isfinite(idx)
    mo = np.flatnonzero(matched)
    mv = idx[matched].astype(np.int64)
    out = _fill_mismatches(ours, ven, mo, mv, tol)
    left_mask = ~matched
    right_mask = np.ones(len(ven), dtype=bool)
    right_mask[mv] = False
    if left_mask.any() or right_mask.any():
        out += _by_order(ledger, ours[left_mask], ven[right_mask], tol, since)
    return out


def _fill_mismatches(ours: pd.DataFrame, ven: pd.DataFrame, mo: np.ndarray, mv: np.ndarray, tol: Tolerances) -> list[Difference]:
    if not len(mo):
        return []
    sym = ours["symbol"].iloc[mo] if len(mo) < len(ours) else ours["symbol"]
    oa, va = ours["amount"].to_numpy()[mo], ven["amount"].to_numpy()[mv]
    op, vp = ours["price"].to_numpy()[mo], ven["price"].to_numpy()[mv]
    of, vf = ours["fee"].to_numpy()[mo], ven["fee"].to_numpy()[mv]
    amt_bad = np.abs(oa - va) > _tol(sym, oa, tol, 0, tol.amount_steps)
    px_bad = np.abs(op - vp) > _tol(sym, op, tol, 1, tol.price_ticks)
    ca = _cur(ours["fee_currency"]).to_numpy()[mo]
    cb = _cur(ven["fee_currency"]).to_numpy()[mv]
    nonzero = (np.nan_to_num(of) != 0) | (np.nan_to_num(vf) != 0)
    cur_bad = (ca != cb) & nonzero & (ca != "") & (cb != "")
    fee_bad = _fee_differs(of, vf, tol) & ~cur_bad
    bad = np.flatnonzero(amt_bad | px_bad | fee_bad | cur_bad)
    out = []
    for i in bad:
        ours_row = _clean(ours.iloc[mo[i]].to_dict())
        ven_row = _clean(ven.iloc[mv[i]].to_dict())
        fields = [n for n, flag in (("amount", amt_bad[i]), ("price", px_bad[i]), ("fee", fee_bad[i]), ("fee_currency", cur_bad[i])) if flag]
        tid = str(ours_row["venue_trade_id"])
        detail = "; ".join(f"{f} ours {ours_row[f]!r} vs venue {ven_row[f]!r}" for f in fields)
        corr = Correction("update_fill", {"venue_trade_id": tid, "amount": ven_row["amount"], "price": ven_row["price"],
                                          "fee": ven_row["fee"], "fee_currency": ven_row["fee_currency"], "fields": fields})
        out.append(Difference("fill_mismatch", ours_row["symbol"], tid, f"fill {tid}: {detail}",
                              {"ours": [ours_row], "venue": [ven_row], "fields": fields}, corr, _s(ours_row["deployment_id"])))
    return out


def _by_order(ledger: Ledger, left: pd.DataFrame, right: pd.DataFrame, tol: Tolerances, since: float | None) -> list[Difference]:
    """Fills left after the trade-id join, matched per venue order (sums and average prices)."""
    lk = left["venue_order_id"].astype(object).where(left["venue_order_id"].notna(), "cid:" + left["client_order_id"].astype(str))
    rk = right["order_id"].astype(object).where(right["order_id"].notna(), "cid:" + right["client_order_id"].astype(str))
    left, right = left.assign(okey=lk.astype(str)), right.assign(okey=rk.astype(str))
    agg = {"amount": "sum", "notional": "sum", "fee": "sum", "symbol": "first"}
    lg = left.assign(notional=left["amount"] * left["price"]).groupby("okey").agg(agg)
    rg = right.assign(notional=right["amount"] * right["price"]).groupby("okey").agg(agg)
    g = lg.join(rg, how="inner", lsuffix="", rsuffix="_v")
    out: list[Difference] = []
    if len(g):
        g = g.assign(price=g["notional"] / g["amount"], price_v=g["notional_v"] / g["amount_v"])
        lc = left.groupby("okey")["fee_currency"].agg(lambda s: ",".join(sorted({str(x).upper() for x in s if x})))
        rc = right.groupby("okey")["fee_currency"].agg(lambda s: ",".join(sorted({str(x).upper() for x in s if x})))
        cur_bad = (lc.reindex(g.index) != rc.reindex(g.index)).to_numpy() & (lc.reindex(g.index) != "").to_numpy() & (rc.reindex(g.index) != "").to_numpy()
        amt_bad = (g["amount"] - g["amount_v"]).abs().to_numpy() > _tol(g["symbol"], g["amount"], tol, 0, tol.amount_steps)
        px_bad = (g["price"] - g["price_v"]).abs().to_numpy() > _tol(g["symbol"], g["price"], tol, 1, tol.price_ticks)
        fee_bad = _fee_differs(g["fee"], g["fee_v"], tol) & ~cur_bad
        for i in np.flatnonzero(amt_bad | px_bad | fee_bad | cur_bad):
            key = g.index[i]
            fields = [n for n, flag in (("amount", amt_bad[i]), ("price", px_bad[i]), ("fee", fee_bad[i]), ("fee_currency", cur_bad[i])) if flag]
            ours_rows = _rows(left[left["okey"] == key].drop(columns="okey"))
            ven_rows = _rows(right[right["okey"] == key].drop(columns="okey"))
            detail = f"order {key}: " + "; ".join(f"{f} differs" for f in fields)
            dep = _s(ours_rows[0].get("deployment_id")) if ours_rows else None
            out.append(Difference("fill_mismatch", g["symbol"].iat[i], f"order:{key}", detail,
                                  {"ours": ours_rows, "venue": ven_rows, "fields": fields}, Correction("review", {"order": key}), dep))
    matched = set(g.index)
    lonely = left[~left["okey"].isin(matched)]
    if since is not None:
        lonely = lonely[lonely["at"] >= since]  # older ones are outside the venue's window: not judged
    for r in lonely.drop(columns="okey").to_dict("records"):
        out.append(Difference("phantom_fill", r["symbol"], str(r["venue_trade_id"]),
                              f"we recorded fill {r['venue_trade_id']} ({r['side']} {r['amount']} {r['symbol']} @ {r['price']}) that the venue does not report",
                              {"ours": [_clean(r)], "venue": []}, Correction("review", {"venue_trade_id": str(r["venue_trade_id"])}), _s(r["deployment_id"])))
    extra = right[~right["okey"].isin(matched)].drop(columns="okey")
    if since is not None:
        extra = extra[extra["at"] >= since]
    cid_dep = ledger.orders.dropna(subset=["client_order_id"]).drop_duplicates("client_order_id", keep="last").set_index("client_order_id")["deployment_id"]
    for r in extra.to_dict("records"):
        cid = r.get("client_order_id")
        ours = cid is not None and cid in cid_dep.index
        dep = _s(cid_dep.get(cid)) if ours else _s(ledger.symbols.get(r["symbol"]))
        what = "a fill of our order we did not record" if ours else ("a manual trade" if r.get("manual") else "an external trade")
        row = _clean(r)
        corr = Correction("record_fill", {"fill": row, "deployment_id": dep, "external": not ours})
        out.append(Difference("missing_fill", r["symbol"], str(r["trade_id"]),
                              f"venue trade {r['trade_id']} ({r['side']} {r['amount']} {r['symbol']} @ {r['price']}) is {what}",
                              {"ours": [], "venue": [row]}, corr, dep))
    return out


# -- orders -----------------------------------------------------------------------
def _orders(ledger: Ledger, venue: VenueReport) -> list[Difference]:
    ours = ledger.orders.dropna(subset=["client_order_id"])
    ven = venue.orders.copy()
    if not len(ours) and not len(ven):
        return []
    ven["vstatus"] = ven["status"].map(_STATUS).fillna("open")
    ven.loc[(ven["vstatus"] == "open") & (ven["filled"].astype(float) > 0), "vstatus"] = "partially_filled"
    ven = ven.dropna(subset=["client_order_id"]).drop_duplicates("client_order_id", keep="last")
    m = ours.merge(ven, on="client_order_id", how="left", suffixes=("", "_v"), indicator=True)
    unsettled = m["status"].isin(UNSETTLED)
    missing = unsettled & (m["_merge"] == "left_only")
    differs = (m["_merge"] == "both") & (m["status"] != m["vstatus"]) & (unsettled | m["vstatus"].isin(UNSETTLED))
    out = []
    for r in m[missing | differs].to_dict("records"):
        vstatus = r["vstatus"] if r["_merge"] == "both" else "unknown"
        ours_row = _clean({k: r[k] for k in ("client_order_id", "venue_order_id", "symbol", "side", "status", "amount", "filled", "purpose", "position_id")})
        ven_row = _clean({"order_id": r["order_id"], "client_order_id": r["client_order_id"], "status": r["status_v"], "filled": r["filled_v"]}) if vstatus != "unknown" else None
        if vstatus == "unknown":
            target = "rejected" if r["status"] == "pending" else "cancelled"
            corr = Correction("mark_order", {"client_order_id": r["client_order_id"], "status": target})
        elif vstatus in UNSETTLED and r["status"] not in UNSETTLED:
            corr = Correction("review", {"client_order_id": r["client_order_id"], "note": "the venue still works an order we consider settled: cancel it there"})
        else:
            corr = Correction("mark_order", {"client_order_id": r["client_order_id"], "status": vstatus, "filled": _f(r["filled_v"])})
        out.append(Difference("order_status_mismatch", r["symbol"], str(r["client_order_id"]),
                              f"order {r['client_order_id']} ({r['purpose']}): ours {r['status']}, venue {vstatus}",
                              {"ours": [ours_row], "venue": [ven_row] if ven_row else []}, corr, _s(r["deployment_id"])))
    return out


# -- positions --------------------------------------------------------------------
def _positions(ledger: Ledger, venue: VenueReport, tol: Tolerances) -> list[Difference]:
    pos = ledger.positions
    sign = np.where(pos["side"] == "long", 1.0, -1.0)
    ours = pos.assign(signed=sign * pos["amount"] - _base_fees(ledger)).groupby("symbol")["signed"].sum()
    vp = venue.positions
    vsign = np.where(vp["side"] == "short", -1.0, 1.0)
    theirs = vp.assign(signed=vsign * vp["amount"]).groupby("symbol")["signed"].sum()
    if len(ledger.ignored):
        theirs = theirs.sub(ledger.ignored.groupby("symbol")["amount"].sum(), fill_value=0.0)
    both = pd.concat([ours.rename("ours"), theirs.rename("venue")], axis=1).fillna(0.0)
    if not len(both):
        return []
    syms = pd.Series(both.index, index=both.index)
    tol_amt = _tol(syms, both[["ours", "venue"]].abs().max(axis=1), tol, 0, max(tol.amount_steps, 1.0))
    o_zero, v_zero = both["ours"].abs().to_numpy() <= tol_amt, both["venue"].abs().to_numpy() <= tol_amt
    differs = (both["ours"] - both["venue"]).abs().to_numpy() > tol_amt
    out: list[Difference] = []
    for i in np.flatnonzero(differs):
        sym, o, v = both.index[i], float(both["ours"].iat[i]), float(both["venue"].iat[i])
        rows = pos[pos["symbol"] == sym]
        vrows = _rows(vp[vp["symbol"] == sym])
        if not o_zero[i] and v_zero[i]:
            for r in rows.to_dict("records"):
                exit_ = _exit_trade(venue.trades, sym, r["side"], r["entry_at"])
                params = {"position_id": int(r["id"]), "deployment_id": _s(r["deployment_id"]), "symbol": sym, **exit_}
                out.append(Difference("position_closed_externally", sym, f"position:{int(r['id'])}",
                                      f"our {r['side']} {r['amount']} {sym} (position {int(r['id'])}) is not open on the venue: closed by hand"
                                      + (f" at {exit_['exit_price']}" if exit_.get("exit_price") else ""),
                                      {"ours": [_clean(r)], "venue": vrows, "exit_trade": exit_.get("trade")},
                                      Correction("close_position", params), _s(r["deployment_id"])))
        elif o_zero[i]:
            dep = _s(ledger.symbols.get(sym))
            side = "long" if v > 0 else "short"
            entry = next((x.get("entry_price") for x in vrows if x.get("entry_price")), None)
            params = {"symbol": sym, "side": side, "amount": abs(v), "entry_price": entry, "deployment_id": dep}
            corr = Correction("adopt_position" if dep else "ignore_position", params)
            out.append(Difference("unknown_position", sym, f"symbol:{sym}", f"the venue holds {side} {abs(v)} {sym} that no deployment knows",
                                  {"ours": [], "venue": vrows}, corr, dep))
        else:
            recs = rows.to_dict("records")
            corr = Correction("review", {"symbol": sym, "ours": o, "venue": v})
            if len(recs) == 1 and o * v > 0 and abs(v) < abs(o):
                r = recs[0]
                exit_ = _exit_trade(venue.trades, sym, r["side"], r["entry_at"])
                corr = Correction("resize_position", {"position_id": int(r["id"]), "deployment_id": _s(r["deployment_id"]), "symbol": sym,
                                                      "amount": abs(v), "closed": abs(o) - abs(v), **exit_})
            out.append(Difference("position_mismatch", sym, f"symbol:{sym}", f"{sym}: ours {o:+g}, venue {v:+g}",
                                  {"ours": [_clean(x) for x in recs], "venue": vrows}, corr, _s(recs[0]["deployment_id"]) if recs else None))
    return out


def _base_fees(ledger: Ledger) -> np.ndarray:
    """Per open spot position: entry fees the venue took in the base coin (it holds that much less)."""
    pos, fills, orders = ledger.positions, ledger.fills, ledger.orders
    out = np.zeros(len(pos))
    if not len(pos) or not len(fills):
        return out
    base = pos["symbol"].astype(str).str.split("/").str[0].str.upper()
    spot = ~pos["symbol"].astype(str).str.contains(":")
    entry = orders[orders["purpose"] == "entry"][["client_order_id", "position_id"]].dropna()
    f = fills.merge(entry, on="client_order_id", how="inner")
    f = f[_cur(f["fee_currency"]) == f["symbol"].astype(str).str.split("/").str[0].str.upper()]
    if not len(f):
        return out
    per_pos = f.groupby("position_id")["fee"].sum()
    fees = pos["id"].map(per_pos).fillna(0.0).to_numpy(dtype=float)
    return np.where(spot & (base != ""), fees, 0.0)


def _exit_trade(trades: pd.DataFrame, symbol: str, side: str, entry_at: float) -> dict[str, Any]:
    """The venue's latest trade that closed a `side` position in `symbol` after `entry_at`."""
    exit_side = "sell" if side == "long" else "buy"
    c = trades[(trades["symbol"] == symbol) & (trades["side"] == exit_side) & (trades["at"] >= (entry_at or 0) - 1e-6)]
    if not len(c):
        return {"exit_price": None, "exit_at": None, "exit_fee": 0.0, "fee_currency": None, "trade": None}
    r = c.sort_values("at").iloc[-1]
    return {"exit_price": float(r["price"]), "exit_at": float(r["at"]), "exit_fee": float(r["fee"] or 0.0),
            "fee_currency": _s(r["fee_currency"]), "trade": _clean(r.to_dict())}


# -- rows -------------------------------------------------------------------------
def _s(v: Any) -> str | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA else str(v)


def _f(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _clean(r: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in r.items():
        if isinstance(v, (np.floating, float)):
            v = float(v)
            out[k] = v if math.isfinite(v) else None
        elif isinstance(v, np.integer):
            out[k] = int(v)
        elif isinstance(v, np.bool_):
            out[k] = bool(v)
        elif v is None or v is pd.NA or v is pd.NaT:
            out[k] = None
        else:
            out[k] = v
    return out


def _rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [_clean(r) for r in df.to_dict("records")]


def differences_frame(diffs: list[Difference]) -> pd.DataFrame:
    """Differences as a DataFrame (one row each; evidence and correction as dicts)."""
    cols = ["kind", "symbol", "key", "deployment_id", "detail", "action", "correction", "evidence"]
    return pd.DataFrame([{**d.to_dict(), "action": d.correction.action if d.correction else None} for d in diffs], columns=cols)
