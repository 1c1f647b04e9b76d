"""The Verify tool's figure: predicted (attribution) against actual change of log p(target), one point a check."""

from __future__ import annotations

from html import escape

import plotly.graph_objects as go


def calibration_figure(points: list[dict]) -> go.Figure:
    """``points``: ``{"label", "mode", "predicted", "actual"}`` dicts; the diagonal y = x is where attribution
    tells the truth."""
    xs = [p["predicted"] for p in points]
    ys = [p["actual"] for p in points]
    lo, hi = min(xs + ys + [-0.1]), max(xs + ys + [0.1])
    fig = go.Figure([
        go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(color="#bbb", dash="dot"), hoverinfo="skip",
                   showlegend=False),
        go.Scatter(x=xs, y=ys, mode="markers", marker=dict(size=8, color="#316ec8"), showlegend=False,
                   customdata=[[escape(p["label"]), p["mode"]] for p in points],
                   hovertemplate="%{customdata[0]} (%{customdata[1]})<br>predicted %{x:.3f}<br>actual %{y:.3f}"
                                 "<extra></extra>"),
    ])
    fig.update_layout(title=dict(text="Calibration: predicted vs actual Δ log p", font=dict(size=12), x=0.02),
                      margin=dict(l=40, r=10, t=30, b=36), height=320, plot_bgcolor="white",
                      xaxis=dict(title=dict(text="predicted (attribution)", font=dict(size=11)), zeroline=True,
                                 gridcolor="#eee"),
                      yaxis=dict(title=dict(text="actual (forward pass)", font=dict(size=11)), zeroline=True,
                                 gridcolor="#eee"))
    return fig
