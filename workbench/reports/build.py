"""The daily report: equity, drawdown, per-deployment metrics, trades and reconciliation, into ``reports/<date>/``.

Everything is read from the store. Only whitelisted columns reach the
report, so account secrets and deployment configs never do. Figures are
written as HTML that loads one local ``plotly.min.js`` (no CDN) and as PNG
when kaleido can drive a local Chromium; when it cannot, the report says so
and carries on.
"""
from __future__ import annotations

import html
import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ..store import Store

log = logging.getLogger(__name__)

PLOTLY_JS = "plotly.min.js"
METRIC_COLUMNS = ["deployment", "name", "strategy", "symbols", "timeframe", "mode", "venue", "status", "trades",
                  "win_rate", "pnl", "fees", "total_return", "max_drawdown", "final_equity", "open_positions"]
TRADE_COLUMNS = ["deployment_id", "symbol", "side", "amount", "entry_at", "entry_price", "exit_at", "exit_price",
                 "fees", "pnl", "pnl_pct", "exit_reason"]


@dataclass
class Report:
    """A written report: its folder, files, tables and any notes (e.g. PNG export skipped)."""

    folder: Path
    index: Path
    files: list[Path]
    metrics: pd.DataFrame
    trades: pd.DataFrame
    reconciliation: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"<Report {self.index}: {len(self.metrics)} deployments, {len(self.trades)} trades, {len(self.files)} files>"


# -- tables ------------------------------------------------------------------------
def _ids(store: Store, deployments: Iterable[str] | None) -> list[str]:
    if deployments is not None:
        ids = list(deployments)
        known = {d["id"] for d in store.deployments()}
        missing = [i for i in ids if i not in known]
        if missing:
            from ..errors import unknown

            raise unknown("deployment", missing[0], known)
        return ids
    return [d["id"] for d in store.deployments()]


def equity_curve(store: Store, deployment_id: str) -> pd.Series:
    """A deployment's equity over time (UTC index)."""
    eq = store.equity(deployment_id)
    if not len(eq):
        return pd.Series(dtype=float, name="equity")
    s = pd.Series(eq["equity"].to_numpy(dtype=float), index=pd.to_datetime(eq["at"], unit="s", utc=True), name="equity")
    return s[~s.index.duplicated(keep="last")].sort_index()


def drawdown(equity: pd.Series) -> pd.Series:
    """Fractional drawdown from the running peak (0 at a new high, negative below it)."""
    return equity / equity.cummax() - 1.0 if len(equity) else equity


def deployment_metrics(store: Store, deployments: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per deployment: status, trades, win rate, P&L, fees, return, max drawdown, open positions."""
    from ..engine.replay import result_of

    rows = []
    for dep_id in _ids(store, deployments):
        d = store.deployment(dep_id) or {}
        s = result_of(dep_id, store).summary
        rows.append({
            "deployment": dep_id, "name": d.get("name"), "strategy": d.get("strategy"),
            "symbols": ", ".join(d.get("symbols") or []), "timeframe": d.get("timeframe"), "mode": d.get("mode"),
            "venue": d.get("venue"), "status": d.get("status"), "trades": s["trades"], "win_rate": s["win_rate"],
            "pnl": s["pnl"], "fees": s["fees"], "total_return": s["total_return"], "max_drawdown": s["max_drawdown"],
            "final_equity": s["final_equity"], "open_positions": len(store.positions(dep_id)),
        })
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def trade_list(store: Store, deployments: Iterable[str] | None = None) -> pd.DataFrame:
    """Closed trades, newest first, with UTC timestamps."""
    ids = set(_ids(store, deployments))
    df = store.trades()
    if not len(df):
        return pd.DataFrame(columns=TRADE_COLUMNS)
    df = df[df["deployment_id"].isin(ids)][TRADE_COLUMNS].copy()
    for col in ("entry_at", "exit_at"):
        df[col] = pd.to_datetime(df[col], unit="s", utc=True)
    return df.sort_values("exit_at", ascending=False).reset_index(drop=True)


def reconciliation_summary(store: Store) -> dict[str, Any] | None:
    """Reconciliation runs, differences by kind (found / applied) and manual-trade learning, or None without workbench.sync."""
    try:
        from ..sync import learning_summary, runs, stored_differences
    except ImportError:
        return None
    try:
        runs = runs(store)
        diffs = stored_differences(store)
        learning = learning_summary(store)
    except Exception as exc:  # an older store without the sync tables: report that, do not fail
        log.info("reconciliation summary unavailable: %s", exc)
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
    by_kind: dict[str, dict[str, int]] = {}
    for kind, grp in (diffs.groupby("kind") if len(diffs) else []):
        by_kind[str(kind)] = {"found": int(len(grp)), "applied": int(grp["applied"].astype(bool).sum())}
    last = runs.sort_values("at").iloc[-1] if len(runs) else None
    return {
        "available": True, "runs": int(len(runs)),
        "errors": int((runs["status"] != "ok").sum()) if len(runs) else 0,
        "last_run": _ts(last["at"]) if last is not None else None,
        "last_run_differences": int(last["differences"]) if last is not None else None,
        "differences": int(len(diffs)), "by_kind": by_kind,
        "unapplied": int((~diffs["applied"].astype(bool)).sum()) if len(diffs) else 0,
        "learning": learning,
    }


def _ts(at: float) -> str:
    return datetime.fromtimestamp(float(at), UTC).isoformat(timespec="seconds")


# -- figures -----------------------------------------------------------------------
def report_figures(store: Store, deployments: Iterable[str] | None = None) -> dict[str, Any]:
    """{file stem: plotly figure}: all equity curves as returns, then equity over drawdown per deployment."""
    import plotly.graph_objects as go

    from .figures import equity_figure

    ids = _ids(store, deployments)
    figs: dict[str, Any] = {}
    combined = go.Figure()
    trades = store.trades()
    for dep_id in ids:
        curve = equity_curve(store, dep_id)
        if len(curve):
            combined.add_trace(go.Scatter(x=curve.index, y=curve / curve.iloc[0] - 1.0, name=dep_id, mode="lines"))
        dep_trades = trades[trades["deployment_id"] == dep_id] if len(trades) else None
        fig = equity_figure(curve, title=f"Equity and drawdown: {dep_id}", trades=dep_trades)
        figs[f"equity_{dep_id}"] = fig.update_yaxes(tickformat=".2%", row=2, col=1)
    combined.update_layout(title="Return of every deployment", height=380, yaxis={"tickformat": ".1%"},
                           margin={"l": 40, "r": 20, "t": 40, "b": 30})
    return {"returns": combined, **figs}


def write_figures_html(figs: Mapping[str, Any], folder: Path) -> list[Path]:
    """Each figure as ``<stem>.html`` loading the folder's one local plotly.min.js."""
    out = []
    for stem, fig in figs.items():
        path = folder / f"{stem}.html"
        fig.write_html(str(path), include_plotlyjs="directory", full_html=True, config={"displaylogo": False})
        out.append(path)
    return out


def write_figures_png(figs: Mapping[str, Any], folder: Path) -> tuple[list[Path], str | None]:
    """PNG copies through kaleido (one Chromium for the batch); returns (files, note if skipped)."""
    if not figs:
        return [], None
    paths = [folder / f"{stem}.png" for stem in figs]
    try:
        import plotly.io as pio

        pio.write_images(list(figs.values()), paths, format="png", width=1000, height=520)
    except Exception as exc:  # no kaleido, no Chrome, sandbox trouble: the HTML figures stand
        note = (f"PNG export skipped ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                "install kaleido and Chromium (apt-get install chromium) to get PNG copies.")
        log.warning(note)
        return [p for p in paths if p.exists()], note
    return paths, None


# -- the report ----------------------------------------------------------------------
def build_report(
    store: Store | str | Path,
    reports_dir: str | Path = "reports",
    day: date | str | None = None,
    deployments: Iterable[str] | None = None,
    png: bool = True,
    title: str = "workbench report",
) -> Report:
    """Write ``<reports_dir>/<day>/``: index.html, figures (HTML + PNG), metrics.csv, trades.csv, summary.json."""
    if not isinstance(store, Store):
        store = Store(store)
    day = _day(day)
    folder = Path(reports_dir) / day
    folder.mkdir(parents=True, exist_ok=True)
    metrics = deployment_metrics(store, deployments)
    trades = trade_list(store, deployments)
    recon = reconciliation_summary(store)
    figs = report_figures(store, deployments)
    notes: list[str] = []
    if recon is None:
        notes.append("reconciliation: workbench.sync is not installed; no summary.")
    files = write_figures_html(figs, folder)
    files.append(folder / PLOTLY_JS)
    if png:
        pngs, note = write_figures_png(figs, folder)
        files += pngs
        if note:
            notes.append(note)
    metrics.to_csv(folder / "metrics.csv", index=False)
    trades.to_csv(folder / "trades.csv", index=False)
    summary = {"title": title, "day": day, "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
               "deployments": _records(metrics), "trades": int(len(trades)), "reconciliation": recon, "notes": notes}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    index = folder / "index.html"
    index.write_text(_index_html(title, day, metrics, trades, recon, figs, notes), encoding="utf-8")
    files += [folder / "metrics.csv", folder / "trades.csv", folder / "summary.json", index]
    return Report(folder, index, files, metrics, trades, recon, notes)


def _day(day: date | str | None) -> str:
    if day is None:
        return datetime.now(UTC).date().isoformat()
    if isinstance(day, date):
        return day.isoformat()
    try:
        return date.fromisoformat(str(day)).isoformat()
    except ValueError:
        from ..errors import ConfigError

        raise ConfigError(f"Report date {day!r} is not a date; use YYYY-MM-DD.") from None


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()} for r in df.to_dict("records")]


_CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;font-size:13px;margin:8px 0 24px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.note{color:#8a6d3b;background:#fcf8e3;padding:6px 10px;border-radius:4px}h2{margin-top:32px}"""
_PCT = ("win_rate", "total_return", "max_drawdown", "pnl_pct")


def _table(df: pd.DataFrame, limit: int | None = None) -> str:
    if not len(df):
        return "<p>None.</p>"
    shown = df.head(limit) if limit else df
    fmt = {c: (lambda v: "" if pd.isna(v) else f"{v:.2%}") for c in _PCT if c in shown}
    fmt.update({c: (lambda v: "" if pd.isna(v) else f"{v:,.2f}") for c in shown.select_dtypes("float").columns if c not in fmt})
    body = shown.to_html(index=False, border=0, formatters=fmt, escape=True, na_rep="")
    more = f"<p>{len(df) - limit} more in trades.csv.</p>" if limit and len(df) > limit else ""
    return body + more


def _index_html(title: str, day: str, metrics: pd.DataFrame, trades: pd.DataFrame, recon: dict[str, Any] | None,
                figs: Mapping[str, Any], notes: list[str]) -> str:
    esc = html.escape
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)} {esc(day)}</title>",
             f"<script src='{PLOTLY_JS}'></script><style>{_CSS}</style></head><body>",
             f"<h1>{esc(title)}</h1><p>{esc(day)} &middot; generated {esc(datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC'))}</p>"]
    parts += [f"<p class='note'>{esc(n)}</p>" for n in notes]
    parts += ["<h2>Deployments</h2>", _table(metrics)]
    for stem, fig in figs.items():
        parts.append(fig.to_html(include_plotlyjs=False, full_html=False, config={"displaylogo": False}))
        parts.append(f"<p><a href='{esc(stem)}.html'>{esc(stem)}.html</a></p>")
    parts += ["<h2>Trades</h2>", _table(trades, limit=200), "<h2>Reconciliation</h2>", _recon_html(recon)]
    parts.append("</body></html>")
    return "\n".join(parts)


def _recon_html(recon: dict[str, Any] | None) -> str:
    if recon is None:
        return "<p>workbench.sync is not installed.</p>"
    if not recon.get("available"):
        return f"<p>No reconciliation data: {html.escape(str(recon.get('reason')))}</p>"
    if not recon["runs"]:
        return "<p>No reconciliation runs yet.</p>"
    head = (f"<p>{recon['runs']} runs ({recon['errors']} with errors), last at {html.escape(str(recon['last_run']))} "
            f"with {recon['last_run_differences']} differences; {recon['differences']} differences in all, "
            f"{recon['unapplied']} not applied.</p>")
    kinds = pd.DataFrame([{"kind": k, **v} for k, v in recon["by_kind"].items()], columns=["kind", "found", "applied"])
    learn = pd.DataFrame([recon["learning"]]) if recon.get("learning") else pd.DataFrame()
    return head + _table(kinds) + "<h3>Manual interventions</h3>" + _table(learn)


__all__ = ["Report", "build_report", "deployment_metrics", "drawdown", "equity_curve", "reconciliation_summary",
           "report_figures", "trade_list", "write_figures_html", "write_figures_png"]
