"""Manual orders, positions and the account summary: what the order panel and position manager call.

Works the same on every venue (paper, ccxt, IB) because it talks to the
:class:`~workbench.venues.base.Venue` interface only.

    desk = OrderDesk(store, venue, deployment_id="a1b2c3d4", limits={"max_position_quote": 5000})
    desk.preview("BTC/USDT:USDT", "buy", 0.01)                 # cost, fee, margin, resulting position
    row = desk.place("BTC/USDT:USDT", "buy", 0.01, confirm=True)
    desk.refresh(); desk.cancel(row["client_order_id"]); desk.close_position("BTC/USDT:USDT")

Every action is audited in the store; orders go to its orders table with
purpose 'manual' and move pending -> open -> filled / partially_filled /
cancelled / rejected as the venue reports them (:meth:`OrderDesk.refresh`).
Manual orders on a deployment's venue are not in the deployment's ledger
(reconciliation lists them); to close a position the deployment holds, pass
an ``Engine`` so the close is booked as its trade (exit reason 'manual').
"""
from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, LiveTradingRefused, VenueError, unknown
from .risk import RiskLimits
from .venues.base import OrderRequest

if TYPE_CHECKING:
    from .engine import Engine
    from .store import Store
    from .venues.base import Venue

ORDER_TYPES = ("market", "limit")
SIDES = ("buy", "sell")
DONE = ("filled", "cancelled", "rejected")
_STATUS = {"open": "open", "closed": "filled", "canceled": "cancelled", "cancelled": "cancelled",
           "rejected": "rejected", "expired": "cancelled"}
DEFAULT_TAKER, DEFAULT_MAKER = 0.00055, 0.0002


@dataclass(frozen=True)
class CheckedOrder:
    """A manual order after validation: rounded amount and price, the reference price and notional."""

    symbol: str
    side: str
    type: str
    amount: float
    price: float | None
    ref_price: float
    notional: float
    reduce_only: bool
    contract: bool


class OrderDesk:
    """Manual orders and positions on one venue, every action audited in `store`.

    `engine_or_store` is a Store, or an Engine (its store; and closes of a
    deployment's own positions go through the engine so they are booked).
    `limits` (RiskLimits or a mapping of its fields) caps notional per symbol
    (``max_position_quote``) and leverage (``max_leverage`` of equity);
    `max_notional` caps a single order.
    """

    def __init__(
        self,
        engine_or_store: Engine | Store,
        venue: Venue,
        deployment_id: str | None = None,
        limits: RiskLimits | Mapping[str, Any] | None = None,
        *,
        max_notional: float | None = None,
        actor: str = "user",
        clock: Callable[[], float] = time.time,
    ) -> None:
        from .store import Store

        if isinstance(engine_or_store, Store):
            self.engine, self.store = None, engine_or_store
        elif hasattr(engine_or_store, "store") and isinstance(engine_or_store.store, Store):
            self.engine, self.store = engine_or_store, engine_or_store.store
        else:
            raise ConfigError(f"OrderDesk needs a Store or an Engine, got {type(engine_or_store).__name__}.")
        self.venue = venue
        self.deployment_id = deployment_id
        if limits is None:
            limits = RiskLimits(max_leverage=None, daily_loss_limit=None, drawdown_limit=None)
        self.limits = limits if isinstance(limits, RiskLimits) else RiskLimits.from_dict(dict(limits))
        if max_notional is not None and not (isinstance(max_notional, (int, float)) and max_notional > 0):
            raise ConfigError(f"max_notional must be a positive number of quote currency, got {max_notional!r}.")
        self.max_notional = max_notional
        self.actor = actor
        self.clock = clock

    def __repr__(self) -> str:
        return f"OrderDesk({getattr(self.venue, 'id', '?')!r}, deployment={self.deployment_id!r})"

    # -- validation -----------------------------------------------------------------
    def validate(self, symbol: str, side: str, amount: float, type: str = "market", price: float | None = None,
                 reduce_only: bool = False) -> CheckedOrder:
        """Check a manual order before anything is sent; ConfigError says what to change."""
        if side not in SIDES:
            raise ConfigError(f"side must be 'buy' or 'sell', got {side!r}.")
        if type not in ORDER_TYPES:
            raise unknown("order type", type, ORDER_TYPES)
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) or amount <= 0:
            raise ConfigError(f"amount must be a positive number, got {amount!r}.")
        if type == "limit":
            if price is None:
                raise ConfigError("A limit order needs a price: pass price=...")
            if isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price) or price <= 0:
                raise ConfigError(f"price must be a positive number, got {price!r}.")
        elif price is not None:
            raise ConfigError("A market order takes no price; use type='limit' to set one.")
        markets = self.venue.load_markets()
        if markets and symbol not in markets:
            raise unknown(f"symbol on {self.venue.id}", symbol, list(markets))
        rules = self.venue.market(symbol)
        rounded = rules.round_amount(float(amount))
        if rounded <= 0:
            raise ConfigError(f"{symbol}: amount {amount} rounds to 0 at the step {rules.amount_step}; use at least {rules.amount_step}.")
        px = rules.round_price(float(price)) if price is not None else None
        ref = px or self._last_price(symbol)
        rules.check(rounded, ref, reduce_only=reduce_only)
        notional = rounded * ref * (rules.contract_size or 1.0)
        if self.max_notional is not None and notional > self.max_notional * (1 + 1e-9):
            raise ConfigError(f"{symbol}: order value {notional:,.2f} {rules.quote} is above the desk's cap {self.max_notional:,.2f}; lower the amount.")
        if not reduce_only:
            self._check_caps(symbol, side, rounded, ref, rules)
        return CheckedOrder(symbol, side, type, rounded, px, ref, notional, bool(reduce_only), rules.contract)

    def _check_caps(self, symbol: str, side: str, amount: float, ref: float, rules: Any) -> None:
        pos = self._position(symbol)
        signed = (pos["contracts"] if pos and pos["side"] == "long" else -(pos["contracts"] if pos else 0.0)) if pos else 0.0
        after = signed + (amount if side == "buy" else -amount)
        after_notional = abs(after) * ref * (rules.contract_size or 1.0)
        cap = self.limits.max_position_quote
        if cap is not None and after_notional > cap * (1 + 1e-9):
            raise ConfigError(
                f"{symbol}: the position would be {after_notional:,.2f} {rules.quote}, above the risk cap "
                f"max_position_quote={cap:,.2f}; lower the amount or raise the cap."
            )
        if self.limits.max_leverage is not None:
            equity = self._equity(rules.quote)
            if equity and after_notional / equity > self.limits.max_leverage * (1 + 1e-9):
                raise ConfigError(
                    f"{symbol}: the position would be {after_notional / equity:.2f}x equity ({equity:,.2f} {rules.quote}), "
                    f"above max_leverage={self.limits.max_leverage:g}; lower the amount."
                )

    # -- preview -----------------------------------------------------------------------
    def preview(self, symbol: str, side: str, amount: float, type: str = "market", price: float | None = None,
                reduce_only: bool = False) -> dict[str, Any]:
        """What the order would do: estimated price, cost, fee, margin and the resulting position."""
        c = self.validate(symbol, side, amount, type, price, reduce_only)
        taker, maker = self._fee_rates(symbol)
        rate = taker if type == "market" or (price is not None and _marketable(side, price, c.ref_price)) else maker
        fee = c.notional * rate
        pos = self._position(symbol)
        leverage = float((pos or {}).get("leverage") or self._leverage(symbol) or 1.0) if c.contract else 1.0
        signed = 0.0
        entry = None
        if pos:
            signed = pos["contracts"] if pos["side"] == "long" else -pos["contracts"]
            entry = pos.get("entryPrice")
        delta = c.amount if side == "buy" else -c.amount
        if reduce_only and (signed == 0 or (signed > 0) == (delta > 0)):
            raise ConfigError(f"{symbol}: a reduce-only order needs an opposite position to reduce; there is {'none' if not signed else 'one on the same side'}.")
        if reduce_only:
            delta = max(-abs(signed), min(abs(signed), delta))
        after = signed + delta
        if signed == 0 or (signed > 0) == (delta > 0):  # opening or adding: weighted entry
            new_entry = ((abs(signed) * (entry or 0.0)) + abs(delta) * c.ref_price) / abs(after) if after else None
        else:
            new_entry = entry if after and (after > 0) == (signed > 0) else (c.ref_price if after else None)
        opening = max(0.0, abs(after) - abs(signed)) if (signed == 0 or (after > 0) == (signed > 0)) else abs(after)
        margin = opening * c.ref_price * self.venue.market(symbol).contract_size / leverage if c.contract else (c.notional if side == "buy" else 0.0)
        return {
            "symbol": symbol, "side": side, "type": type, "amount": c.amount, "price": c.price, "estimated_price": c.ref_price,
            "notional": c.notional, "estimated_cost": c.notional + fee if side == "buy" else c.notional - fee,
            "fee": fee, "fee_rate": rate, "margin": margin, "leverage": leverage, "reduce_only": c.reduce_only,
            "position_before": _pos_view(signed, entry),
            "position_after": _pos_view(after, new_entry),
            "live": bool(getattr(self.venue, "live", False)),
        }

    # -- placing and tracking --------------------------------------------------------------
    def place(self, symbol: str, side: str, amount: float, type: str = "market", price: float | None = None,
              reduce_only: bool = False, confirm: bool = False) -> dict[str, Any]:
        """Send a manual order after validation; `confirm=True` is required (the panel's confirm button).

        Returns the order's row from the store. A venue refusal is recorded
        (status 'rejected' with the reason) and raised.
        """
        c = self.validate(symbol, side, amount, type, price, reduce_only)
        if confirm is not True:
            raise ConfigError("Review the preview, then place the order with confirm=True.")
        cid = self._new_cid()
        self.store.insert_order({
            "deployment_id": self.deployment_id, "client_order_id": cid, "symbol": symbol, "side": side, "type": type,
            "amount": c.amount, "price": c.price, "trigger_price": None, "reduce_only": c.reduce_only,
            "purpose": "manual", "position_id": None, "status": "pending", "created_at": self.clock(),
        })
        self.store.audit(self.actor, "order_place", self.deployment_id, {"client_order_id": cid, "symbol": symbol, "side": side,
                                                                         "type": type, "amount": c.amount, "price": c.price,
                                                                         "reduce_only": c.reduce_only, "venue": self.venue.id})
        try:
            order = self.venue.create_order(OrderRequest(symbol, side, type, c.amount, cid, price=c.price, reduce_only=c.reduce_only))
        except LiveTradingRefused as exc:
            self._rejected(cid, str(exc))
            self.store.add_risk_event(self.deployment_id, "live_refused", str(exc), {"client_order_id": cid}, symbol=symbol, at=self.clock())
            raise
        except (VenueError, ConfigError) as exc:
            self._rejected(cid, str(exc))
            raise
        self._record(cid, order)
        if type == "market" and order.get("status") not in ("closed", "canceled", "cancelled", "rejected", "expired"):
            self._await(cid)  # exchanges acknowledge a market order before reporting its fill
        return self.store.order(cid) or {}

    def _await(self, cid: str, tries: int = 10, wait: float = 0.2) -> None:
        sleep = getattr(self.venue, "sleep", time.sleep)
        for _ in range(tries):
            try:
                row = self.refresh(cid)[0]
            except VenueError:
                row = self._row(cid)
            if row["status"] in DONE:
                return
            sleep(wait)

    def _new_cid(self) -> str:
        dep = (self.deployment_id or "desk")[:8]
        return f"wbm{dep}-{uuid.uuid4().hex[:20]}"[:36]

    def _rejected(self, cid: str, why: str) -> None:
        self.store.update_order(cid, status="rejected", at=self.clock(), error=why)
        self.store.audit(self.actor, "order_rejected", self.deployment_id, {"client_order_id": cid, "reason": why})

    def _record(self, cid: str, order: Mapping[str, Any]) -> None:
        status = _STATUS.get(str(order.get("status")), "open")
        filled = float(order.get("filled") or 0.0)
        if status == "open" and filled > 0:
            status = "partially_filled"
        if status == "cancelled" and filled > 0:
            status = "partially_filled" if filled < float(order.get("amount") or filled) else "filled"
        old = self.store.order(cid)
        self.store.update_order(cid, status=status, at=self.clock(), venue_order_id=str(order.get("id")) if order.get("id") else None,
                                filled=filled, avg_price=order.get("average"))
        if old is None or old["status"] != status:
            self.store.audit("venue", f"order:{status}", self.deployment_id, {"client_order_id": cid, "filled": filled})

    def refresh(self, client_order_id: str | None = None) -> list[dict[str, Any]]:
        """Ask the venue about unfinished manual orders (or one) and record what changed."""
        rows = [self._row(client_order_id)] if client_order_id else self.orders(open_only=True)
        for row in rows:
            if row["status"] in DONE:
                continue
            order = self.venue.fetch_order(row["symbol"], order_id=row["venue_order_id"], client_order_id=row["client_order_id"])
            if order is None:
                if row["status"] == "pending":
                    self._rejected(row["client_order_id"], "the venue does not know this order (never reached it)")
                continue
            self._record(row["client_order_id"], order)
        return [self._row(r["client_order_id"]) for r in rows]

    def cancel(self, client_order_id: str) -> dict[str, Any]:
        """Cancel a working manual order; the venue's answer is recorded."""
        row = self._row(client_order_id)
        if row["status"] in DONE:
            raise ConfigError(f"Order {client_order_id} is already {row['status']}; nothing to cancel.")
        self.store.audit(self.actor, "order_cancel", self.deployment_id, {"client_order_id": client_order_id})
        if not row["venue_order_id"]:
            self.refresh(client_order_id)
            row = self._row(client_order_id)
            if row["status"] in DONE:
                return row
        self.venue.cancel_order(row["venue_order_id"], row["symbol"])
        order = self.venue.fetch_order(row["symbol"], order_id=row["venue_order_id"], client_order_id=client_order_id)
        self._record(client_order_id, order or {"status": "canceled", "id": row["venue_order_id"], "filled": row["filled"]})
        return self._row(client_order_id)

    def orders(self, open_only: bool = False) -> list[dict[str, Any]]:
        """Manual orders of this desk (its deployment, or all manual orders of the venue's account)."""
        rows = [r for r in self.store.orders(self.deployment_id) if r["purpose"] == "manual"]
        if self.deployment_id is None:
            rows = [r for r in rows if r["deployment_id"] is None]
        return [r for r in rows if r["status"] not in DONE] if open_only else rows

    def _row(self, cid: str) -> dict[str, Any]:
        row = self.store.order(cid)
        if row is None or row["purpose"] != "manual":
            raise ConfigError(f"No manual order {cid!r}; see desk.orders() for the ones placed here.")
        return row

    # -- positions -------------------------------------------------------------------
    def positions(self) -> list[dict[str, Any]]:
        """Open positions at the venue, with side, size, entry, mark, unrealized P&L, leverage, liquidation price."""
        out = []
        for p in self.venue.fetch_positions():
            if not float(p.get("contracts") or 0.0):
                continue
            out.append({k: p.get(k) for k in ("symbol", "side", "contracts", "contractSize", "entryPrice", "markPrice", "notional",
                                                "unrealizedPnl", "leverage", "liquidationPrice", "marginMode", "initialMargin")})
        return out

    def close_position(self, symbol: str, confirm: bool = True) -> dict[str, Any] | None:
        """Close `symbol`'s whole position at market (reduce-only); None when there is none.

        A position the desk's deployment holds is closed by the engine (booked
        as a trade with exit reason 'manual'); any other by a manual order.
        """
        if self.engine is not None and self.deployment_id and self.deployment_id in self.engine.deployments:
            rt = self.engine.deployments[self.deployment_id]
            if symbol in rt.ledger.positions:
                ok = self.engine.close_position(self.deployment_id, symbol, actor=self.actor)
                if not ok:
                    raise VenueError(f"Closing {symbol} of deployment {self.deployment_id} failed; see its orders and audit.")
                rows = [r for r in self.store.orders(self.deployment_id) if r["symbol"] == symbol and r["purpose"] == "exit"]
                return rows[-1] if rows else {}
        pos = self._position(symbol)
        if pos is None:
            self.store.audit(self.actor, "close_position", self.deployment_id, {"symbol": symbol, "result": "no position"})
            return None
        self.store.audit(self.actor, "close_position", self.deployment_id, {"symbol": symbol, "side": pos["side"], "amount": pos["contracts"]})
        side = "sell" if pos["side"] == "long" else "buy"
        return self.place(symbol, side, float(pos["contracts"]), "market", reduce_only=True, confirm=confirm)

    # -- venue helpers -------------------------------------------------------------------
    def _position(self, symbol: str) -> dict[str, Any] | None:
        for p in self.venue.fetch_positions([symbol]):
            if p.get("symbol") == symbol and float(p.get("contracts") or 0.0):
                return p
        rules = self.venue.market(symbol)
        if not rules.contract and rules.base:  # spot: the position is the base coin held
            held = float((self.venue.fetch_balance().get("total") or {}).get(rules.base) or 0.0)
            if held > 0:
                return {"symbol": symbol, "side": "long", "contracts": held, "entryPrice": None, "leverage": 1.0}
        return None

    def _last_price(self, symbol: str) -> float:
        ticker = self.venue.fetch_ticker(symbol)
        last = ticker.get("last") or ticker.get("close")
        if not last:
            raise VenueError(f"{self.venue.id} has no price for {symbol} yet; try again when it trades.")
        return float(last)

    def _equity(self, quote: str) -> float | None:
        try:
            return account_summary(self.venue, quote)["total_equity"]
        except VenueError:
            return None

    def _leverage(self, symbol: str) -> float | None:
        ex = getattr(self.venue, "exchange", None)
        fetch = getattr(ex, "fetch_leverage", None)
        if fetch is None or not getattr(ex, "has", {}).get("fetchLeverage"):
            return self.limits.leverage
        try:
            lev = fetch(symbol)
            return float(lev.get("longLeverage") or lev.get("shortLeverage") or self.limits.leverage)
        except Exception:  # noqa: BLE001 - a preview estimate; fall back to the deployment's leverage
            return self.limits.leverage

    def _fee_rates(self, symbol: str) -> tuple[float, float]:
        market = (getattr(getattr(self.venue, "exchange", None), "markets", None) or {}).get(symbol) or {}
        taker = market.get("taker")
        maker = market.get("maker")
        return (float(taker) if taker is not None else DEFAULT_TAKER, float(maker) if maker is not None else DEFAULT_MAKER)


def account_summary(venue: Venue, quote: str = "USDT") -> dict[str, Any]:
    """Seed 003's account panel: balances, margin and positions in `quote`, from the venue's own reports.

    margin_ratio is maintenance margin / margin balance (liquidation near 1);
    margin_level its inverse; status 'ok' (< 0.5), 'warning' (< 0.8) or 'danger'.
    """
    bal = venue.fetch_balance()
    total = _f((bal.get("total") or {}).get(quote))
    free = _f((bal.get("free") or {}).get(quote))
    try:
        raw_positions = venue.fetch_positions()
    except VenueError:
        raise
    except Exception:  # noqa: BLE001 - a spot-only venue without positions
        raw_positions = []
    positions = [p for p in raw_positions if _f(p.get("contracts"))]
    upnl = sum(_f(p.get("unrealizedPnl")) for p in positions)
    value = sum(abs(_f(p.get("notional"))) or abs(_f(p.get("contracts")) * _f(p.get("contractSize") or 1) * _f(p.get("markPrice"))) for p in positions)
    initial = sum(_f(p.get("initialMargin") or p.get("collateral")) for p in positions)
    maint = sum(_f(p.get("maintenanceMargin")) for p in positions)
    info = bal.get("info") or {}
    margin_balance = total + upnl
    row = _bybit_account(info)
    if row:  # Bybit's unified account reports these itself
        total = _f(row.get("totalWalletBalance")) or total
        margin_balance = _f(row.get("totalMarginBalance")) or margin_balance
        free = _f(row.get("totalAvailableBalance")) or free
        upnl = _f(row.get("totalPerpUPL")) if row.get("totalPerpUPL") not in (None, "") else upnl
        maint = _f(row.get("totalMaintenanceMargin")) or maint
        initial = _f(row.get("totalInitialMargin")) or initial
    ratio = maint / margin_balance if margin_balance > 0 and maint else (0.0 if margin_balance > 0 else None)
    status = "no positions" if not positions else ("ok" if ratio is not None and ratio < 0.5 else "warning" if ratio is not None and ratio < 0.8 else "danger")
    return {
        "venue": venue.id, "live": bool(getattr(venue, "live", False)), "quote": quote,
        "total_balance": total, "available": free, "margin_balance": margin_balance, "total_equity": margin_balance,
        "unrealized_pnl": upnl, "initial_margin": initial, "maintenance_margin": maint,
        "leverage": value / margin_balance if margin_balance > 0 else None,
        "margin_ratio": ratio, "margin_level": (margin_balance / maint) if maint else None, "margin_status": status,
        "position_value": value, "open_positions": [
            {k: p.get(k) for k in ("symbol", "side", "contracts", "entryPrice", "markPrice", "notional", "unrealizedPnl",
                                   "leverage", "liquidationPrice")} for p in positions],
        "connection": getattr(getattr(venue, "connection", None), "status", None),
    }


def _bybit_account(info: Any) -> dict[str, Any] | None:
    try:
        row = info["result"]["list"][0]
    except (KeyError, IndexError, TypeError):
        return None
    return row if isinstance(row, dict) and "totalMarginBalance" in row else None


def _f(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return 0.0
    return v if math.isfinite(v) else 0.0


def _marketable(side: str, price: float, ref: float) -> bool:
    return price >= ref if side == "buy" else price <= ref


def _pos_view(signed: float, entry: float | None) -> dict[str, Any]:
    if not signed:
        return {"side": None, "amount": 0.0, "entry_price": None}
    return {"side": "long" if signed > 0 else "short", "amount": abs(signed), "entry_price": entry}
