"""Orders panel: a manual order (validate, preview, confirm, live status) and the position manager (close).

Everything goes through :class:`workbench.orders.OrderDesk` (validation,
preview, placing, cancelling, closing, audit); :meth:`OrdersPanel.desk` is the
one place the panel depends on it. A venue is given, or taken from a
deployment that runs in this kernel's engine.
"""
from __future__ import annotations

from typing import Any

import ipywidgets as w

from ..errors import ConfigError, WorkbenchError
from .widgets import (
    Message,
    Panel,
    button,
    esc,
    header,
    money,
    num,
    set_options,
    show,
    split,
    styled,
    table,
    when,
)

ORDER_COLUMNS = ["created", "client id", "symbol", "side", "type", "amount", "price", "status", "filled", "avg price", "error"]
POSITION_COLUMNS = ["symbol", "side", "contracts", "entry", "mark", "unrealized", "leverage"]


class OrdersPanel(Panel):
    """Manual orders and positions on one venue (a deployment's, or one given)."""

    def __init__(self, engine_or_store: Any, venue: Any = None, deployment_id: str | None = None, limits: Any = None,
                 max_notional: float | None = None) -> None:
        self.engine, self.store = split(engine_or_store)
        self.venue = venue
        self.limits = limits
        self.max_notional = max_notional
        self.previewed: dict[str, Any] | None = None
        self._preview_key: tuple[Any, ...] | None = None
        self.last_order: dict[str, Any] | None = None
        self.message = Message("wb-orders-message")

        self.deployment = styled(w.Dropdown(options=self._deployment_options(), description="deployment"), "wb-orders-deployment")
        if deployment_id is not None:
            if deployment_id not in [o[1] for o in self.deployment.options]:
                self.deployment.options = [*self.deployment.options, (deployment_id, deployment_id)]
            self.deployment.value = deployment_id
        self.symbol = styled(w.Combobox(options=[], description="symbol", ensure_option=False), "wb-orders-symbol")
        self.side = styled(w.ToggleButtons(options=["buy", "sell"], value="buy", description="side"), "wb-orders-side")
        self.type = styled(w.ToggleButtons(options=["market", "limit"], value="market", description="type"), "wb-orders-type")
        self.amount = styled(w.FloatText(value=0.0, description="amount"), "wb-orders-amount")
        self.price = styled(w.FloatText(value=0.0, description="price", disabled=True), "wb-orders-price")
        self.preview_button = button("Preview", "wb-orders-preview", "info")
        self.confirm = button("Confirm order", "wb-orders-confirm", "success")
        self.confirm.disabled = True
        self.preview_box = styled(w.HTML(""), "wb-orders-preview-box")
        self.orders_html = styled(w.HTML(""), "wb-orders-table")
        self.open_orders = styled(w.Dropdown(options=[], description="open order"), "wb-orders-open")
        self.cancel = button("Cancel order", "wb-orders-cancel", "warning")
        self.refresh_button = button("Refresh", "wb-orders-refresh", icon="refresh")
        self.positions_html = styled(w.HTML(""), "wb-orders-positions")
        self.close_symbol = styled(w.Dropdown(options=[], description="position"), "wb-orders-close-symbol")
        self.close = button("Close position", "wb-orders-close", "danger")
        self.close_confirm = button("Yes, close it at market", "wb-orders-close-confirm", "danger")
        show(self.close_confirm, False)

        self.type.observe(lambda c: setattr(self.price, "disabled", c["new"] == "market"), names="value")
        for wid in (self.symbol, self.side, self.type, self.amount, self.price, self.deployment):
            wid.observe(lambda _c: self._invalidate(), names="value")
        self.deployment.observe(lambda _c: self.refresh(), names="value")
        self.preview_button.on_click(lambda _b: self.do_preview())
        self.confirm.on_click(lambda _b: self.do_place())
        self.cancel.on_click(lambda _b: self.do_cancel())
        self.refresh_button.on_click(lambda _b: self.refresh(ask_venue=True))
        self.close.on_click(lambda _b: show(self.close_confirm, bool(self.close_symbol.value)))
        self.close_confirm.on_click(lambda _b: self.do_close())

        self.widget = styled(w.VBox([
            header("Orders", "manual orders are audited and tagged 'manual'"),
            self.deployment, w.HBox([self.symbol, self.side]), w.HBox([self.type, self.amount, self.price]),
            w.HBox([self.preview_button, self.confirm]), self.preview_box, self.message.widget,
            w.HTML("<b>Manual orders</b>"), self.orders_html, w.HBox([self.open_orders, self.cancel, self.refresh_button]),
            w.HTML("<b>Positions</b>"), self.positions_html, w.HBox([self.close_symbol, self.close, self.close_confirm]),
        ]), "wb-orders-panel")
        self.refresh()

    # -- where orders go ---------------------------------------------------------------
    def _deployment_options(self) -> list[tuple[str, str | None]]:
        opts: list[tuple[str, str | None]] = [] if self.engine is not None and self.venue is None else [("(venue given)", None)]
        if self.engine is not None:
            opts += [(f"{rt.id} {','.join(rt.spec.symbols)} ({rt.spec.mode})", rt.id) for rt in self.engine.deployments.values()]
        return opts or [("(no deployment in this kernel)", None)]

    def _venue(self) -> Any:
        dep = self.deployment.value
        if dep and self.engine is not None and dep in self.engine.deployments:
            return self.engine.deployments[dep].venue
        if self.venue is not None:
            return self.venue
        raise ConfigError("No venue here: pass venue=... (e.g. from workbench.venues.live.account_venue) or deploy in this "
                          "kernel's engine and choose the deployment.")

    def desk(self) -> Any:
        """The OrderDesk for the chosen deployment's venue (the panel's only route to orders)."""
        from ..orders import OrderDesk

        dep = self.deployment.value
        limits = self.limits
        if limits is None and dep and self.engine is not None and dep in self.engine.deployments:
            limits = self.engine.deployments[dep].limits
        return OrderDesk(self.engine if self.engine is not None else self.store, self._venue(), deployment_id=dep,
                         limits=limits, max_notional=self.max_notional, actor="panel")

    # -- the order ---------------------------------------------------------------------
    def _order_args(self) -> dict[str, Any]:
        symbol = (self.symbol.value or "").strip()
        if not symbol:
            raise ConfigError("Choose a symbol, e.g. BTC/USDT.")
        return {"symbol": symbol, "side": self.side.value, "amount": float(self.amount.value), "type": self.type.value,
                "price": float(self.price.value) if self.type.value == "limit" else None}

    def _invalidate(self) -> None:
        self.previewed, self._preview_key = None, None
        self.confirm.disabled = True
        self.preview_box.value = ""

    def do_preview(self) -> dict[str, Any] | None:
        """Validate and preview; the confirm button is enabled only for the order previewed."""
        self._invalidate()
        try:
            args = self._order_args()
            preview = self.desk().preview(**args)
        except WorkbenchError as exc:
            self.message.show(str(exc), "error")
            return None
        self.previewed, self._preview_key = preview, tuple(args.values())
        self.confirm.disabled = False
        live = preview.get("live")
        rows = [("order", f"{preview['side']} {num(preview['amount'], 8)} {preview['symbol']} {preview['type']}"
                 + (f" at {num(preview['price'])}" if preview["price"] else "")),
                ("estimated price", num(preview["estimated_price"])), ("notional", num(preview["notional"], 2)),
                ("fee", f"{num(preview['fee'], 4)} ({preview['fee_rate']:.3%})"), ("margin", num(preview["margin"], 2)),
                ("position after", f"{preview['position_after']['side'] or 'flat'} {num(preview['position_after']['amount'], 8)}")]
        warn = ('<div style="background:#d62728;color:white;padding:4px;font-weight:600">LIVE account: real money</div>' if live else "")
        self.preview_box.value = warn + "<table>" + "".join(f"<tr><td><b>{esc(k)}</b></td><td>{esc(v)}</td></tr>" for k, v in rows) + "</table>"
        self.message.show("Check the preview, then confirm.", "info")
        return preview

    def do_place(self) -> dict[str, Any] | None:
        """Place the previewed order (confirm=True); the status table then follows it."""
        try:
            args = self._order_args()
            if self.previewed is None or tuple(args.values()) != self._preview_key:
                raise ConfigError("Preview the order first; the confirm button places exactly the order previewed.")
            row = self.desk().place(**args, confirm=True)
        except WorkbenchError as exc:
            self.message.show(str(exc), "error")
            self.refresh()
            return None
        self.last_order = row
        self._invalidate()
        self.message.show(f"Order {row.get('client_order_id')}: {row.get('status')}", "ok")
        self.refresh()
        return row

    def do_cancel(self) -> dict[str, Any] | None:
        cid = self.open_orders.value
        if not cid:
            self.message.show("No open order selected.", "error")
            return None
        try:
            row = self.desk().cancel(cid)
        except WorkbenchError as exc:
            self.message.show(str(exc), "error")
            return None
        self.message.show(f"Order {cid}: {row['status']}", "ok")
        self.refresh()
        return row

    def do_close(self) -> dict[str, Any] | None:
        """Close the chosen position at market (the engine books it when the deployment holds it)."""
        show(self.close_confirm, False)
        symbol = self.close_symbol.value
        if not symbol:
            self.message.show("No position selected.", "error")
            return None
        try:
            row = self.desk().close_position(symbol)
        except WorkbenchError as exc:
            self.message.show(str(exc), "error")
            return None
        self.message.show(f"{symbol}: {'closed' if row is not None else 'no position'}", "ok")
        self.refresh()
        return row

    def _spot_holdings(self, venue: Any, markets: dict[str, Any], known: set[str]) -> list[dict[str, Any]]:
        """Spot 'positions' (the base coin held) of the deployment's symbols, which fetch_positions does not report."""
        dep = self.deployment.value
        symbols = list(self.engine.deployments[dep].spec.symbols) if self.engine is not None and dep in self.engine.deployments else []
        spot = [s for s in symbols if s in markets and not markets[s].contract and s not in known]
        if not spot:
            return []
        total = venue.fetch_balance().get("total") or {}
        out = []
        for sym in spot:
            held = float(total.get(markets[sym].base) or 0.0)
            if held > 0:
                last = venue.fetch_ticker(sym).get("last")
                out.append({"symbol": sym, "side": "long", "contracts": held, "entryPrice": None, "markPrice": last,
                            "unrealizedPnl": None, "leverage": 1.0})
        return out

    # -- status ------------------------------------------------------------------------
    def refresh(self, ask_venue: bool = False) -> None:
        """Redraw the manual orders (asking the venue about unfinished ones if `ask_venue`) and positions."""
        try:
            desk = self.desk()
        except WorkbenchError as exc:
            self.message.show(str(exc), "warning")
            return
        try:
            if ask_venue:
                desk.refresh()
            orders = desk.orders()
            positions = desk.positions()
            markets = desk.venue.load_markets()
            positions += self._spot_holdings(desk.venue, markets, {p["symbol"] for p in positions})
        except WorkbenchError as exc:
            self.message.show(str(exc), "error")
            return
        if markets and list(self.symbol.options) != sorted(markets):
            self.symbol.options = sorted(markets)
        rows = [{"created": when(o["created_at"]), "client id": o["client_order_id"], "symbol": o["symbol"], "side": o["side"],
                 "type": o["type"], "amount": num(o["amount"], 8), "price": num(o["price"]), "status": o["status"],
                 "filled": num(o["filled"], 8), "avg price": num(o["avg_price"]), "error": o["error"] or ""} for o in reversed(orders)]
        self.orders_html.value = table(rows, ORDER_COLUMNS, "wb-orders-status-table", empty="no manual orders")
        set_options(self.open_orders, [(f"{o['client_order_id']} {o['side']} {o['symbol']}", o["client_order_id"])
                                    for o in orders if o["status"] not in ("filled", "cancelled", "rejected")])
        prow = [{"symbol": p["symbol"], "side": p["side"], "contracts": num(p["contracts"], 8), "entry": num(p["entryPrice"]),
                 "mark": num(p["markPrice"]), "unrealized": money(p["unrealizedPnl"]), "leverage": num(p["leverage"], 2)} for p in positions]
        self.positions_html.value = table(prow, POSITION_COLUMNS, "wb-orders-positions-table", raw=("unrealized",), empty="no open positions")
        symbols = [p["symbol"] for p in positions]
        if self.engine is not None and self.deployment.value in self.engine.deployments:
            symbols += [s for s in self.engine.deployments[self.deployment.value].ledger.positions if s not in symbols]
        set_options(self.close_symbol, symbols)


def orders_panel(engine_or_store: Any, venue: Any = None, deployment_id: str | None = None, **kwargs: Any) -> OrdersPanel:
    """The order panel and position manager for a deployment in this kernel's engine, or a given venue."""
    return OrdersPanel(engine_or_store, venue=venue, deployment_id=deployment_id, **kwargs)
