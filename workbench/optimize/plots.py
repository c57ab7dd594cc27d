"""Plotly figures of optimizer results: parameter heatmaps and walk-forward equity."""
from __future__ import annotations

import numpy as np
import pandas as pd


def heatmap_figure(rows: pd.DataFrame, x: str, y: str, metric: str, min_trades: int, title: str):
    """`metric` over a grid of `x` (columns) by `y` (rows); cells under `min_trades` are greyed out."""
    import plotly.graph_objects as go

    z = rows.pivot_table(index=y, columns=x, values=metric, aggfunc="first")
    trades = rows.pivot_table(index=y, columns=x, values="trades", aggfunc="first").reindex_like(z)
    shown = z.where(trades >= min_trades)
    text = np.where(trades.to_numpy() >= min_trades, "", "too few trades")
    fig = go.Figure(go.Heatmap(
        z=shown.to_numpy(), x=[str(v) for v in z.columns], y=[str(v) for v in z.index],
        customdata=trades.to_numpy(), text=text, colorscale="RdYlGn", colorbar={"title": metric},
        hovertemplate=f"{x}=%{{x}}<br>{y}=%{{y}}<br>{metric}=%{{z:.4g}}<br>trades=%{{customdata}}<br>%{{text}}<extra></extra>",
    ))
    if shown.isna().to_numpy().any():
        fig.add_trace(go.Heatmap(
            z=np.where(shown.isna() & z.notna(), 0.0, np.nan), x=[str(v) for v in z.columns], y=[str(v) for v in z.index],
            colorscale=[[0, "#dddddd"], [1, "#dddddd"]], showscale=False, hoverinfo="skip",
        ))
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, height=460, margin={"l": 50, "r": 20, "t": 50, "b": 40})
    return fig


def walk_forward_figure(equity: pd.Series, folds: pd.DataFrame, title: str):
    """Stitched out-of-sample equity and drawdown, with each test window shaded."""
    from ..reports.figures import equity_figure

    fig = equity_figure(equity, title=title)
    for k, fold in folds.iterrows():
        fig.add_vrect(x0=fold["test_start"], x1=fold["test_end"], fillcolor="#1f77b4" if k % 2 else "#ff7f0e",
                      opacity=0.06, line_width=0, row=1, col=1)
    return fig
