"""Plotly figures for causal tracing: the token x layer heatmaps and the averaged curves (seed 001 Fig. 6).

Built from :class:`~visit.localization.causal_trace.CausalTrace` data only; token strings are shown with
visible whitespace and escaped for plotly's HTML-subset labels.
"""

from __future__ import annotations

from html import escape

import numpy as np
import plotly.graph_objects as go

from visit.tokens import display_token

TITLES = {"hidden": "hidden state (block output)", "mlp": "MLP output (window)", "attn": "attention output (window)"}
SCALES = {"hidden": "Purples", "mlp": "Greens", "attn": "Reds"}


def token_labels(trace) -> list[str]:
    """``"3 ␣Tower*"``: position, token, and a star on the subject's tokens (escaped)."""
    s0, s1 = trace.subject_range
    return [f"{i} {escape(display_token(t))}{'*' if s0 <= i < s1 else ''}" for i, t in enumerate(trace.tokens)]


def heatmap(trace, kind: str, height: int | None = None) -> go.Figure:
    """Restored probability per (token, layer); cells not yet computed are blank."""
    z = trace.kinds[kind]
    labels = token_labels(trace)
    L = z.shape[1]
    text = np.where(np.isnan(z), "", np.char.mod("%.3f", np.nan_to_num(z)))
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(L)), y=labels, colorscale=SCALES.get(kind, "Blues"), zmin=min(trace.p_corrupted, 0.0),
        zmax=max(trace.p_clean, float(np.nanmax(z)) if np.isfinite(z).any() else 0.0) or 1.0,
        customdata=text, hovertemplate="token %{y}<br>layer %{x}<br>p = %{customdata}<extra></extra>",
        colorbar=dict(title=dict(text="p", side="right"), thickness=10)))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(title_text="layer", dtick=max(1, L // 10))
    fig.update_layout(
        title=dict(text=f"{TITLES.get(kind, kind)}: p({escape(display_token(trace.target.token))})", font_size=13),
        margin=dict(l=10, r=10, t=40, b=35), height=height or 80 + 22 * len(labels))
    return fig


def average_curves(buckets: dict[str, dict[str, dict]], kind: str) -> go.Figure:
    """Mean indirect effect per layer with 95% bands for each position bucket (``buckets[kind][bucket]`` =
    ``{"mean": [L], "low": [L], "high": [L], "n": int}``)."""
    fig = go.Figure()
    for bucket, stats in buckets[kind].items():
        if not stats["n"]:
            continue
        x = list(range(len(stats["mean"])))
        fig.add_trace(go.Scatter(x=x + x[::-1], y=list(stats["high"]) + list(stats["low"])[::-1], fill="toself",
                                 line=dict(width=0), opacity=0.15, showlegend=False, hoverinfo="skip",
                                 legendgroup=bucket))
        fig.add_trace(go.Scatter(x=x, y=stats["mean"], mode="lines", name=f"{bucket} (n={stats['n']})",
                                 legendgroup=bucket))
    fig.update_layout(title=dict(text=f"average indirect effect: {TITLES.get(kind, kind)}", font_size=13),
                      xaxis_title="layer", yaxis_title="AIE", margin=dict(l=10, r=10, t=40, b=35), height=340,
                      legend=dict(font_size=10))
    return fig
