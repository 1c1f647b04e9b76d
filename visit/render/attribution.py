"""Plotly figures and HTML tables for attribution (library side: no Dash).

Every token string is ``html.escape``d (after making whitespace visible) before it enters a figure
or a table: Plotly renders an HTML subset in text and hovers.
"""

from __future__ import annotations

from html import escape

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from visit.ids import head_id, neuron_id, node_id, spine_id
from visit.tokens import display_token

ATTN_COLOR = "#1f77b4"
FFN_COLOR = "#d62728"


def tok(text: str) -> str:
    return escape(display_token(text), quote=False)


def layer_bars(layer_scores: dict, title: str = "Log-probability increase per layer") -> go.Figure:
    """Grouped bars: attention vs FFN, per layer. ``layer_scores``: ``{"attn": [L], "ffn": [L]}``."""
    attn = [float(x) for x in layer_scores["attn"]]
    ffn = [float(x) for x in layer_scores["ffn"]]
    layers = list(range(len(attn)))
    fig = go.Figure([
        go.Bar(x=layers, y=attn, name="attention", marker_color=ATTN_COLOR,
               customdata=[spine_id(l, "attn_out") for l in layers],
               hovertemplate="layer %{x} attention<br>Δ log p = %{y:.4f}<extra></extra>"),
        go.Bar(x=layers, y=ffn, name="FFN", marker_color=FFN_COLOR,
               customdata=[spine_id(l, "mlp_out") for l in layers],
               hovertemplate="layer %{x} FFN<br>Δ log p = %{y:.4f}<extra></extra>"),
    ])
    fig.update_layout(title=title, barmode="group", xaxis_title="layer", yaxis_title="Δ log p(target)",
                      height=320, margin=dict(l=50, r=20, t=50, b=40), legend=dict(orientation="h", y=1.12))
    return fig


def head_heatmap(head_scores, title: str = "Log-probability increase per head") -> go.Figure:
    """Layer x head heatmap of ``[n_layers, n_heads]`` scores, diverging around zero."""
    z = [[float(v) for v in row] for row in head_scores]
    n_layers, n_heads = len(z), len(z[0]) if z else 0
    ids = [[head_id(l, h) for h in range(n_heads)] for l in range(n_layers)]
    fig = go.Figure(go.Heatmap(z=z, x=list(range(n_heads)), y=list(range(n_layers)), customdata=ids,
                               colorscale="RdBu", zmid=0, colorbar=dict(title="Δ log p"),
                               hovertemplate="layer %{y} head %{x}<br>Δ log p = %{z:.4f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="head", yaxis_title="layer", height=max(300, 14 * n_layers + 120),
                      margin=dict(l=50, r=20, t=50, b=40))
    return fig


def contrast_figure(c: dict, target_token: str, competitor_token: str) -> go.Figure:
    """bs-values of the two tokens along the stream (top) and per-sub-block differences (bottom)."""
    t, k = tok(target_token), tok(competitor_token)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=False, vertical_spacing=0.18,
                        subplot_titles=("bs-value along the residual stream", f"bs({t}) − bs({k}) added by each sub-block"))
    x = list(range(len(c["labels"])))
    fig.add_trace(go.Scatter(x=x, y=c["target"], name=t, mode="lines+markers", text=c["labels"],
                             hovertemplate="%{text}<br>bs = %{y:.3f}<extra>" + t + "</extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=c["competitor"], name=k, mode="lines+markers", text=c["labels"],
                             hovertemplate="%{text}<br>bs = %{y:.3f}<extra>" + k + "</extra>"), row=1, col=1)
    colors = [ATTN_COLOR if "attn" in label else FFN_COLOR for label in c["block_labels"]]
    fig.add_trace(go.Bar(x=list(range(len(c["block_diff"]))), y=c["block_diff"], marker_color=colors,
                         text=c["block_labels"], showlegend=False,
                         hovertemplate="%{text}<br>Δ(bs difference) = %{y:.3f}<extra></extra>"), row=2, col=1)
    step = max(1, len(x) // 16)
    fig.update_xaxes(tickvals=x[::step], ticktext=c["labels"][::step], row=1, col=1)
    fig.update_xaxes(tickvals=list(range(0, len(c["block_labels"]), step)),
                     ticktext=c["block_labels"][::step], row=2, col=1)
    fig.update_layout(height=520, margin=dict(l=50, r=20, t=60, b=40),
                      title=f"{t} vs {k}: final logit difference {c['log_odds']:.3f}")
    return fig


def component_name(e: dict) -> str:
    if e["kind"] == "ffn_neuron":
        return neuron_id(e["layer"], e["index"])
    if e["kind"] in ("attn_neuron", "wo_neuron"):
        return node_id(e["layer"], "head_dim", e["head"], e["index"]) + (f" @{e['position']}" if "position" in e else "")
    if e["kind"] == "head":
        return head_id(e["layer"], e["head"])
    return f"L{e['layer']} " + ("attention" if e["kind"] == "attn_layer" else "FFN")


def ranked_table_html(entries: list[dict], tokens: list[str] | None = None, n_tokens: int = 8) -> str:
    """An HTML table of ranked components (name, score, source token, top tokens), escaped."""
    rows = []
    for n, e in enumerate(entries, start=1):
        source = ""
        if "position" in e and tokens is not None:
            source = f"{e['position']}: {tok(tokens[e['position']])}"
        top = ", ".join(tok(t) for t in e["top_tokens"][:n_tokens])
        rows.append(f"<tr><td>{n}</td><td>{escape(component_name(e))}</td><td>{e['score']:.4f}</td>"
                    f"<td>{source}</td><td>{top}</td></tr>")
    head = "<tr><th>#</th><th>component</th><th>Δ log p</th><th>source</th><th>top tokens</th></tr>"
    return f"<table class='attribution'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"
