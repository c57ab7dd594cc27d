"""Connection panel: per venue a status light (connected/connecting/disconnected/error), latency, last success, error,
and connect/disconnect buttons. It reads and calls the venues' own ``connection`` state and ``connect()``/``disconnect()``.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import ipywidgets as w

from ..errors import WorkbenchError
from .widgets import CONNECTION_COLORS, Message, Panel, button, dot, esc, header, styled, when


def venues_of(source: Any) -> list[Any]:
    """The venues of an Engine's deployments (one per venue id), or the given venue(s)."""
    if hasattr(source, "deployments") and hasattr(source, "recover"):
        seen: dict[str, Any] = {}
        for rt in source.deployments.values():
            seen.setdefault(rt.venue.id, rt.venue)
        return list(seen.values())
    if hasattr(source, "connection"):
        return [source]
    if isinstance(source, Iterable):
        return list(source)
    return []


class VenueRow:
    """One venue's line: status light and text, connect and disconnect."""

    def __init__(self, panel: ConnectionPanel, venue: Any, n: int) -> None:
        self.venue = venue
        self.status = styled(w.HTML(), "wb-conn-status")
        self.connect = button("Connect", "wb-conn-connect", "success", icon="plug")
        self.disconnect = button("Disconnect", "wb-conn-disconnect", "warning")
        self.connect.on_click(lambda _b: panel.act(self, "connect"))
        self.disconnect.on_click(lambda _b: panel.act(self, "disconnect"))
        self.widget = styled(w.HBox([self.status, self.connect, self.disconnect]), "wb-conn-row")
        self.widget.add_class(f"wb-conn-{n}")

    def update(self) -> None:
        st = getattr(self.venue, "connection", None)
        status = getattr(st, "status", "disconnected")
        live = " LIVE" if getattr(self.venue, "live", False) else ""
        latency = f"{st.latency_ms:.0f} ms" if st is not None and st.latency_ms is not None else "—"
        err = f" <span style='color:#d62728'>{esc(st.error)}</span>" if st is not None and st.error else ""
        value = (f"{dot(CONNECTION_COLORS.get(status, '#7f7f7f'), status)} <b>{esc(self.venue.id)}</b>{esc(live)} "
                 f"<span class='wb-conn-state-{esc(status)}'>{esc(status)}</span> · latency {latency} · "
                 f"last ok {when(getattr(st, 'last_ok', None))}{err}")
        if value != self.status.value:
            self.status.value = value
        self.connect.disabled = status in ("connected", "connecting")
        self.disconnect.disabled = status == "disconnected"


class ConnectionPanel(Panel):
    def __init__(self, source: Any) -> None:
        self.source = source
        self.rows: dict[str, VenueRow] = {}
        self.message = Message("wb-conn-message")
        self.box = w.VBox([])
        self.refresh_button = button("Refresh", "wb-conn-refresh", icon="refresh")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.widget = styled(w.VBox([header("Connections"), self.box, self.refresh_button, self.message.widget]), "wb-conn-panel")
        self.refresh()

    def refresh(self) -> None:
        venues = venues_of(self.source)
        for v in venues:
            if v.id not in self.rows:
                self.rows[v.id] = VenueRow(self, v, len(self.rows))
            self.rows[v.id].update()
        children = [self.rows[v.id].widget for v in venues]
        if list(self.box.children) != children:
            self.box.children = children or [w.HTML("<i>no venues: deploy in this kernel or pass venues</i>")]

    def act(self, row: VenueRow, what: str) -> None:
        try:
            if what == "connect":
                row.venue.connect()
            else:
                row.venue.disconnect()
            self.message.show(f"{row.venue.id}: {row.venue.connection.status}", "ok" if row.venue.connection.status != "error" else "error")
        except WorkbenchError as exc:
            self.message.show(f"{row.venue.id}: {exc}", "error")
        self.refresh()


def connection_panel(source: Any) -> ConnectionPanel:
    """Status and connect/disconnect for an Engine's venues, one venue, or a list of venues."""
    return ConnectionPanel(source)
