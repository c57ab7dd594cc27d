"""Money and positions of the paper exchange: funds checks, reservations, fills, P&L.

A mixin of :class:`workbench.venues.paper.PaperExchange`; it owns how a fill
moves balances and positions. Spot: cash moves at the fill (fees in quote).
Swaps: the settle balance moves only by realized P&L and fees; margin of
positions and reservations of open orders count as ``used``.
"""
from __future__ import annotations

import math
from typing import Any

import ccxt

from ..fills import fee, floor_to_step

_EPS = 1e-12


def step_floor(amount: float, step: float | None) -> float:
    """`amount` floored to `step`, immune to binary noise (3.0 on step 0.001 stays 3.0)."""
    if not step:
        return amount
    return floor_to_step(amount + step * 1e-9, step)


class PaperAccounts:
    """Balances, reservations and positions (mixin; the exchange provides markets and orders)."""

    markets: dict[str, dict[str, Any]]
    costs: Any
    maintenance_margin_rate: float
    _cash: dict[str, float]
    _orders: dict[str, dict[str, Any]]
    _open: dict[str, list[str]]
    _positions: dict[str, dict[str, Any]]
    _leverage: dict[str, float]
    _last: dict[str, list[float]]
    _trades: list[dict[str, Any]]
    _ids: dict[str, int]

    # -- prices and amounts -------------------------------------------------------
    def _last_price(self, symbol: str, required: bool = False) -> float | None:
        last = self._last.get(symbol)
        if last is None:
            if required:
                raise ccxt.OrderNotFillable(f"paper has no price for {symbol} yet: feed a bar first "
                                            "(feed_bar, feed_tick or load_history).")
            return None
        return last[4]

    def _check_amount(self, symbol: str, amount: Any) -> float:
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) or amount <= 0:
            raise ccxt.InvalidOrder(f"paper order amount must be a positive number, got {amount!r}.")
        step = self.markets[symbol]["precision"]["amount"]
        out = step_floor(float(amount), step)
        if out <= 0:
            raise ccxt.InvalidOrder(f"{symbol} amount {amount} is below the amount step {step}; increase it.")
        return out

    def _check_limits(self, market: dict[str, Any], amount: float, price: float | None, reduce_only: bool) -> None:
        lim = market["limits"]
        min_amount = lim["amount"]["min"]
        if min_amount and amount < min_amount * (1 - 1e-9):
            raise ccxt.InvalidOrder(f"{market['symbol']} amount {amount} is below the minimum {min_amount}; increase it.")
        min_cost = lim["cost"]["min"]
        if min_cost and price and not reduce_only:
            cost = amount * price * (market["contractSize"] or 1.0)
            if cost < min_cost * (1 - 1e-9):
                raise ccxt.InvalidOrder(f"{market['symbol']} order value {cost:.6g} {market['quote']} is below the "
                                        f"minimum {min_cost}; increase the amount.")

    # -- balances -----------------------------------------------------------------
    def _used(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for ids in self._open.values():
            for oid in ids:
                o = self._orders[oid]
                if o["reserved"]:
                    used[o["reserveCurrency"]] = used.get(o["reserveCurrency"], 0.0) + o["reserved"]
        for sym, pos in self._positions.items():
            ccy = self.markets[sym]["settle"]
            used[ccy] = used.get(ccy, 0.0) + pos["margin"]
        return used

    def _free(self, code: str) -> float:
        return self._cash.get(code, 0.0) - self._used().get(code, 0.0)

    def _reserve_currency(self, symbol: str, side: str) -> str:
        m = self.markets[symbol]
        if m["contract"]:
            return m["settle"]
        return m["quote"] if side == "buy" else m["base"]

    def _reserve(self, symbol: str, side: str, amount: float, price: float) -> float:
        """What a resting limit order locks; InsufficientFunds if it is not free."""
        m = self.markets[symbol]
        if m["contract"]:
            need = amount * price * m["contractSize"] * (1 / self._lev(symbol) + self.costs.maker_fee)
        elif side == "buy":
            need = amount * price * (1 + self.costs.maker_fee)
        else:
            need = amount
        ccy = self._reserve_currency(symbol, side)
        free = self._free(ccy)
        if need > free * (1 + 1e-9) + _EPS:
            raise ccxt.InsufficientFunds(f"paper: {side} {amount} {symbol} at {price} needs {need:.8g} {ccy}, "
                                         f"only {max(free, 0):.8g} {ccy} is free.")
        return need

    def _lev(self, symbol: str) -> float:
        return self._leverage.get(symbol, 1.0)

    # -- positions ----------------------------------------------------------------
    def _position_qty(self, symbol: str) -> float:
        """Signed size: swap contracts, or spot base holdings."""
        m = self.markets[symbol]
        if m["contract"]:
            pos = self._positions.get(symbol)
            return pos["contracts"] if pos else 0.0
        return self._cash.get(m["base"], 0.0)

    def _position_side(self, symbol: str) -> str | None:
        qty = self._position_qty(symbol)
        if not self.markets[symbol]["contract"]:
            qty = step_floor(qty, self.markets[symbol]["precision"]["amount"])
        return "long" if qty > _EPS else "short" if qty < -_EPS else None

    def _reducible(self, symbol: str, side: str, amount: float, reduce_only: bool, raise_if_none: bool) -> float:
        if not reduce_only:
            return amount
        m = self.markets[symbol]
        if m["contract"]:
            qty = self._position_qty(symbol)
        else:  # spot: only the base not locked by other orders can be sold
            qty = step_floor(max(self._free(m["base"]), 0.0), m["precision"]["amount"])
        can = qty if side == "sell" and qty > 0 else -qty if side == "buy" and qty < 0 else 0.0
        if can <= _EPS:
            if raise_if_none:
                raise ccxt.InvalidOrder(f"paper: reduce-only {side} on {symbol} has no position to reduce.")
            return 0.0
        return min(amount, can)

    def _liquidation_price(self, symbol: str, pos: dict[str, Any]) -> float:
        """Isolated: the price where margin minus loss equals the maintenance margin."""
        cs = self.markets[symbol]["contractSize"]
        q = abs(pos["contracts"])
        mm = pos["entryPrice"] * q * cs * self.maintenance_margin_rate
        move = (pos["margin"] - mm) / (q * cs)
        return pos["entryPrice"] - move if pos["contracts"] > 0 else pos["entryPrice"] + move

    def _check_funds(self, symbol: str, side: str, amount: float, price: float, rate: float, reduce_only: bool) -> None:
        """InsufficientFunds unless a taker fill of `amount` at `price` can be paid."""
        m = self.markets[symbol]
        if m["contract"]:
            reducing = self._reducible(symbol, side, amount, True, False)
            opening = amount - reducing
            if opening <= _EPS or reduce_only:
                return
            pos = self._positions.get(symbol)
            released = pnl = 0.0
            if pos and reducing:
                q = abs(pos["contracts"])
                released = pos["margin"] * reducing / q
                pnl = (price - pos["entryPrice"]) * reducing * m["contractSize"] * (1 if pos["contracts"] > 0 else -1)
            need = opening * price * m["contractSize"] / self._lev(symbol) + fee(amount * price * m["contractSize"], rate)
            avail = self._free(m["settle"]) + released + pnl
            ccy = m["settle"]
        elif side == "buy":
            need, avail, ccy = amount * price + fee(amount * price, rate), self._free(m["quote"]), m["quote"]
        else:
            need, avail, ccy = amount, self._free(m["base"]), m["base"]
        if need > avail * (1 + 1e-9) + _EPS:
            raise ccxt.InsufficientFunds(f"paper: {side} {amount} {symbol} at ~{price:.8g} needs {need:.8g} {ccy}, "
                                         f"only {max(avail, 0):.8g} {ccy} is free.")

    # -- fills ----------------------------------------------------------------------
    def _execute(self, order: dict[str, Any], price: float, ts: int | None, taker: bool, amount: float | None = None) -> float:
        """Fill (part of) `order` at `price`; returns the filled amount (0 if it could not fill)."""
        symbol, side = order["symbol"], order["side"]
        remaining = round(order["amount"] - order["filled"], 12)
        qty = min(amount if amount is not None else remaining, remaining)
        if order["reduceOnly"]:
            qty = self._reducible(symbol, side, qty, True, False)
            if qty <= 0:
                self._cancel(order, "nothing to reduce")
                return 0.0
        rate = self.costs.taker_fee if taker else self.costs.maker_fee
        if order["kind"] in ("trigger", "protect") and not order["reduceOnly"]:
            try:
                self._check_funds(symbol, side, qty, price, rate, False)
            except ccxt.InsufficientFunds as exc:
                self._cancel(order, str(exc))
                return 0.0
        if order["reserved"]:
            order["reserved"] = max(order["reserved"] * (1 - qty / remaining), 0.0)
        m = self.markets[symbol]
        f = fee(qty * price * (m["contractSize"] or 1.0), rate)
        pnl = self._apply_swap(symbol, side, qty, price, f, ts) if m["contract"] else self._apply_spot(m, side, qty, price, f)
        self._ids["trade"] += 1
        trade = {
            "id": str(self._ids["trade"]), "order": order["id"], "clientOrderId": order["clientOrderId"],
            "timestamp": ts, "symbol": symbol, "type": order["type"], "side": side,
            "takerOrMaker": "taker" if taker else "maker", "price": price, "amount": qty,
            "cost": qty * price * (m["contractSize"] or 1.0), "fee": f, "feeCurrency": order["feeCurrency"], "feeRate": rate,
            "info": {"realizedPnl": pnl, **{k: v for k, v in order["info"].items() if k in ("manual", "reason", "liquidation")}},
        }
        self._trades.append(trade)
        order["trades"].append(trade["id"])
        order["filled"] = round(order["filled"] + qty, 12)
        order["cost"] += trade["cost"]
        order["fee"] += f
        order["lastTradeTimestamp"] = order["lastUpdateTimestamp"] = ts
        if order["filled"] >= order["amount"] * (1 - 1e-9):
            order["filled"] = order["amount"]
            self._close_order(order, "closed")
        self._changed(order)
        self._after_fill(order)
        return qty

    def _apply_spot(self, m: dict[str, Any], side: str, qty: float, price: float, f: float) -> float:
        base, quote = m["base"], m["quote"]
        if side == "buy":
            self._cash[quote] = self._cash.get(quote, 0.0) - qty * price - f
            self._cash[base] = self._cash.get(base, 0.0) + qty
        else:
            left = self._cash.get(base, 0.0) - qty
            self._cash[base] = 0.0 if abs(left) < _EPS * max(1.0, qty) else left
            self._cash[quote] = self._cash.get(quote, 0.0) + qty * price - f
        return 0.0

    def _apply_swap(self, symbol: str, side: str, qty: float, price: float, f: float, ts: int | None) -> float:
        m = self.markets[symbol]
        cs, lev, settle = m["contractSize"], self._lev(symbol), m["settle"]
        signed = qty if side == "buy" else -qty
        pos = self._positions.get(symbol)
        pnl = 0.0
        if pos is not None and pos["contracts"] * signed < 0:
            cur = pos["contracts"]
            close = min(qty, abs(cur))
            pnl = (price - pos["entryPrice"]) * close * cs * (1 if cur > 0 else -1)
            pos["margin"] -= pos["margin"] * close / abs(cur)
            left = round(cur + (close if cur < 0 else -close), 12)
            signed -= close if signed > 0 else -close
            if abs(left) <= _EPS:
                self._positions.pop(symbol)
                pos = None
            else:
                pos["contracts"] = left
        if abs(signed) > _EPS:
            if pos is None:
                pos = {"contracts": 0.0, "entryPrice": price, "margin": 0.0, "leverage": lev, "timestamp": ts}
                self._positions[symbol] = pos
            q0, q1 = abs(pos["contracts"]), abs(pos["contracts"]) + abs(signed)
            pos["entryPrice"] = (pos["entryPrice"] * q0 + price * abs(signed)) / q1
            pos["contracts"] = round(pos["contracts"] + signed, 12)
            pos["margin"] += abs(signed) * price * cs / lev
            pos["leverage"] = lev
        if pos is not None:
            pos["lastUpdateTimestamp"] = ts
        self._cash[settle] = self._cash.get(settle, 0.0) + pnl - f
        return pnl

    def _after_fill(self, filled: dict[str, Any]) -> None:
        """OCO: cancel the reduce-only orders that can no longer reduce the position.

        Their ids go in the filling order's ``info['canceledOrders']``, so
        whoever placed it learns their fate from its answer, without asking.
        """
        symbol = filled["symbol"]
        side = self._position_side(symbol)
        gone = []
        for oid in list(self._open.get(symbol, ())):
            o = self._orders[oid]
            if oid == filled["id"] or not o["reduceOnly"]:
                continue
            if side is None or (side == "long" and o["side"] == "buy") or (side == "short" and o["side"] == "sell"):
                self._cancel(o, "position closed" if side is None else "position reversed")
                gone.append(oid)
        if gone:
            filled["info"]["canceledOrders"] = filled["info"].get("canceledOrders", []) + gone

    def equity(self, quote: str = "USDT") -> float:
        """Account value in `quote`: balances marked at last prices plus unrealized swap P&L.

        Currencies without a price to `quote` (no 'X/quote' market fed) are left out.
        """
        total = 0.0
        for code, amount in self._cash.items():
            if code == quote:
                total += amount
            elif amount:
                px = self._last_price(f"{code}/{quote}") if f"{code}/{quote}" in self.markets else None
                total += amount * px if px else 0.0
        for sym, pos in self._positions.items():
            total += self._unrealized(sym, pos)
        return total

    def _unrealized(self, symbol: str, pos: dict[str, Any]) -> float:
        mark = self._last_price(symbol) or pos["entryPrice"]
        return (mark - pos["entryPrice"]) * pos["contracts"] * self.markets[symbol]["contractSize"]
