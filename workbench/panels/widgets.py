"""Styling helpers shared by the panels: colours, badges, HTML tables, messages, the engine/store split.

Nothing here trades; it only formats what the Python API returns.
"""
from __future__ import annotations

import html
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import ipywidgets as w

from ..errors import ConfigError, WorkbenchError

STATUS_COLORS = {"active": "#2ca02c", "paused": "#ff7f0e", "stopped": "#7f7f7f", "error": "#d62728"}
FRESHNESS_COLORS = {"fresh": "#2ca02c", "stale": "#ff7f0e", "expired": "#d62728", "given": "#1f77b4"}
MODE_COLORS = {"paper": "#1f77b4", "demo": "#1f77b4", "live": "#d62728"}
CONNECTION_COLORS = {"connected": "#2ca02c", "connecting": "#ff7f0e", "disconnected": "#7f7f7f", "error": "#d62728"}
POS, NEG = "#2ca02c", "#d62728"


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def badge(text: str, color: str, css: str = "") -> str:
    """A small coloured pill, e.g. the PAPER/LIVE badge."""
    cls = f' class="{esc(css)}"' if css else ""
    return (f'<span{cls} style="background:{color};color:white;border-radius:8px;padding:1px 8px;'
            f'font-size:11px;font-weight:600">{esc(text)}</span>')


def dot(color: str, title: str = "") -> str:
    return f'<span title="{esc(title)}" style="color:{color};font-size:16px">&#9679;</span>'


def mode_badge(mode: str) -> str:
    return badge(mode.upper(), MODE_COLORS.get(mode, "#7f7f7f"), f"wb-badge-{mode}")


def status_badge(status: str) -> str:
    return badge(status, STATUS_COLORS.get(status, "#7f7f7f"), f"wb-status-{status}")


def freshness_badge(freshness: str) -> str:
    return badge(freshness, FRESHNESS_COLORS.get(freshness, "#7f7f7f"), f"wb-fresh-{freshness}")


def money(value: Any, digits: int = 2) -> str:
    """'+12.34' in green or '-5.00' in red; '—' for missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    v = float(value)
    color = POS if v > 0 else NEG if v < 0 else "inherit"
    return f'<span style="color:{color}">{v:+,.{digits}f}</span>'


def pct(value: Any, digits: int = 2, signed: bool = True) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    v = float(value) * 100
    color = POS if v > 0 else NEG if v < 0 else "inherit"
    return f'<span style="color:{color}">{v:{"+" if signed else ""},.{digits}f}%</span>'


def num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{float(value):,.{digits}g}" if abs(float(value)) >= 1e6 else f"{float(value):,.{digits}f}".rstrip("0").rstrip(".")


def when(ts: float | None) -> str:
    """A Unix time as 'YYYY-mm-dd HH:MM:SS' UTC."""
    if ts is None or (isinstance(ts, float) and not math.isfinite(ts)):
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(ts)))


def duration(seconds: float | None) -> str:
    """'3d 4h', '2h 05m', '4m 10s'."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    s = max(0, int(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m:02d}m"
    return f"{m}m {s:02d}s"


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], css: str = "", raw: Iterable[str] = (),
          empty: str = "nothing to show") -> str:
    """An HTML table; values are escaped except the columns named in `raw` (already HTML)."""
    raw = set(raw)
    head = "".join(f'<th style="text-align:left;padding:2px 8px">{esc(c)}</th>' for c in columns)
    if not rows:
        return f'<div class="{esc(css)} wb-empty" style="color:#7f7f7f">{esc(empty)}</div>'
    body = []
    for r in rows:
        cells = "".join(
            f'<td style="padding:2px 8px">{r.get(c, "") if c in raw else esc(_plain(r.get(c, "")))}</td>' for c in columns
        )
        body.append(f"<tr>{cells}</tr>")
    return (f'<table class="{esc(css)}" style="border-collapse:collapse;font-size:12px">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _plain(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return "—" if not math.isfinite(v) else num(v, 6)
    return str(v)


def frame_table(df: Any, css: str = "", max_rows: int = 200, empty: str = "nothing to show") -> str:
    """A DataFrame as an escaped HTML table (the newest `max_rows` rows)."""
    if df is None or len(df) == 0:
        return table([], [], css, empty=empty)
    df = df.tail(max_rows)
    return table(df.to_dict("records"), [str(c) for c in df.columns], css)


class Message:
    """A one-line status area: info, success, warning or error, with a stable CSS class."""

    COLORS = {"info": "#1f77b4", "ok": "#2ca02c", "warning": "#ff7f0e", "error": "#d62728"}

    def __init__(self, css: str) -> None:
        self.widget = w.HTML("")
        self.widget.add_class(css)
        self.kind = "info"
        self.text = ""

    def show(self, text: str, kind: str = "info") -> None:
        self.kind, self.text = kind, text
        self.widget.value = f'<div class="wb-msg-{kind}" style="color:{self.COLORS[kind]}">{esc(text)}</div>' if text else ""

    def clear(self) -> None:
        self.show("")


def attempt(message: Message, fn: Callable[[], Any], ok: str | None = None) -> Any:
    """Run `fn`; a WorkbenchError (bad input, venue refusal) becomes an error message instead of a traceback."""
    try:
        result = fn()
    except WorkbenchError as exc:
        message.show(str(exc), "error")
        return None
    if ok:
        message.show(ok, "ok")
    return result


def button(description: str, css: str, style: str = "", tooltip: str = "", icon: str = "") -> w.Button:
    b = w.Button(description=description, button_style=style, tooltip=tooltip or description, icon=icon)
    b.add_class(css)
    return b


def styled(widget: w.Widget, css: str) -> w.Widget:
    widget.add_class(css)
    return widget


def show(widget: w.Widget, visible: bool) -> None:
    widget.layout.display = None if visible else "none"


def split(engine_or_store: Any) -> tuple[Any, Any]:
    """(engine or None, store) from an Engine, a Store, or a store path/URL."""
    from ..store import Store

    if isinstance(engine_or_store, Store):
        return None, engine_or_store
    if hasattr(engine_or_store, "deployments") and isinstance(getattr(engine_or_store, "store", None), Store):
        return engine_or_store, engine_or_store.store
    if isinstance(engine_or_store, str) or hasattr(engine_or_store, "__fspath__"):
        return None, Store(engine_or_store)
    raise ConfigError(f"A panel needs an Engine, a Store or a store path, got {type(engine_or_store).__name__}.")


class Panel:
    """Base of every panel: `.widget` is the ipywidgets tree; the panel itself displays as that widget."""

    widget: w.Widget

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def header(title: str, subtitle: str = "") -> w.HTML:
    sub = f' <span style="color:#7f7f7f;font-size:12px">{esc(subtitle)}</span>' if subtitle else ""
    return w.HTML(f'<h3 style="margin:4px 0">{esc(title)}{sub}</h3>')


def set_options(dropdown: w.Dropdown, options: Sequence[Any]) -> None:
    """Replace a dropdown's options, keeping its value when still offered, else choosing the first."""
    options = list(options)
    if list(dropdown.options) == options:
        return
    keep = dropdown.value
    dropdown.options = options
    values = [o[1] if isinstance(o, tuple) else o for o in options]
    if values:
        dropdown.value = keep if keep in values else values[0]
