"""Plotly figures shared by notebooks, panels and reports."""
from __future__ import annotations

import pandas as pd


def equity_figure(equity: pd.Series, title: str = "Equity", trades: pd.DataFrame | None = None):
    """Equity curve over drawdown (two stacked panels), with trade exits marked if given."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    equity = equity[~equity.index.duplicated(keep="last")]  # several symbols record the same bar
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.04)
    fig.add_trace(go.Scatter(x=equity.index, y=equity.values, name="equity", line={"width": 1.5}), row=1, col=1)
    if len(equity):
        dd = equity / equity.cummax() - 1.0
        fig.add_trace(go.Scatter(x=dd.index, y=dd.values, name="drawdown", fill="tozeroy", line={"width": 1, "color": "#d62728"}), row=2, col=1)
    if trades is not None and len(trades):
        exits = pd.to_datetime(trades["exit_at"], unit="s", utc=True)
        colors = ["#2ca02c" if p > 0 else "#d62728" for p in trades["pnl"]]
        marks = equity.reindex(exits, method="ffill") if len(equity) else trades["exit_price"]
        fig.add_trace(go.Scatter(x=exits, y=getattr(marks, "values", marks), mode="markers", name="exits",
                                 marker={"color": colors, "size": 6}, text=trades["exit_reason"]), row=1, col=1)
    fig.update_layout(title=title, height=480, margin={"l": 40, "r": 20, "t": 40, "b": 30}, showlegend=False)
    fig.update_yaxes(tickformat=".0%", row=2, col=1)
    return fig
