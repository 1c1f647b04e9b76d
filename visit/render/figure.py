"""The flow graph as a plotly figure: nodes as one ``Scattergl`` per kind coloured by the target's rank,
edges as a few line traces binned by score, labels (top tokens) as one SVG text trace.

``customdata`` of every node point is ``[node_id, hover_html]``, so a click maps to
:func:`visit.pipeline.node_details` through ``point["customdata"][0]``; edge midpoints carry
``["edge:U->V", hover_html]`` (not a node: skip ids starting with ``edge:``).
"""

from __future__ import annotations

import math
import networkx as nx
import numpy as np
import plotly.graph_objects as go

from visit.graph.nodes import DRAWN_KINDS
from visit.render.hover import edge_hover, esc, node_hover, node_label, tok

UIREVISION = "visit-graph"  # constant: zoom and pan survive updates
RANK_COLORSCALE = [[0.0, "#1a9641"], [0.15, "#a6d96a"], [0.35, "#ffffbf"], [0.6, "#fdae61"], [1.0, "#d7191c"]]
UNPROJECTED_COLOR = "#b0b0b0"
SYMBOLS = {"resid_pre": "circle", "resid_mid": "circle", "resid_post": "circle", "ln1": "square", "ln2": "square",
           "qkv": "hexagon", "query": "triangle-right", "key": "triangle-left", "memory": "diamond",
           "head": "pentagon", "concat": "hexagon", "wo_neuron": "circle", "attn_out": "hexagram",
           "neuron": "circle", "mlp_out": "hexagram", "group": "octagon"}
SIZES = {"resid_pre": 16, "resid_mid": 16, "resid_post": 16, "attn_out": 14, "mlp_out": 14, "concat": 12,
         "qkv": 12, "head": 13, "ln1": 11, "ln2": 11, "group": 22}
FLAG_SYMBOLS = ("star", "star-diamond", "star-square", "star-triangle-up", "x", "cross")
WIDTH_BINS = 4
EDGE_COLORS = {"positive": "rgba(49,110,200,0.55)", "negative": "rgba(215,48,39,0.55)",
               "summation": "rgba(230,150,40,0.6)", "structural": "rgba(170,170,170,0.6)"}
ENTROPY_GREYS = ("rgba(60,60,60,0.55)", "rgba(120,120,120,0.5)", "rgba(185,185,185,0.5)")  # low -> high entropy


def rank_color_value(rank: int | None) -> float | None:
    return None if rank is None else math.log10(max(rank, 1))


def graph_figure(g: nx.DiGraph, positions: dict, target_token: str, d_vocab: int, title: str = "") -> go.Figure:
    fig = go.Figure()
    for trace in edge_traces(g, positions):
        fig.add_trace(trace)
    for trace in node_traces(g, positions, target_token):
        fig.add_trace(trace)
    fig.add_trace(label_trace(g, positions))
    fig.add_trace(pinned_trace(g, positions))
    fig.add_trace(highlight_trace(g, positions))
    cmax = math.log10(max(d_vocab, 10))
    ticks = [v for v in range(0, int(cmax) + 1)]
    fig.update_layout(
        title=dict(text=title, x=0.01), uirevision=UIREVISION, hovermode="closest", dragmode="pan",
        plot_bgcolor="white", paper_bgcolor="white", margin=dict(l=10, r=10, t=50, b=10), height=720,
        xaxis=dict(visible=False), yaxis=dict(visible=False),
        legend=dict(orientation="h", y=-0.02, yanchor="top", font=dict(size=11)),
        coloraxis=dict(colorscale=RANK_COLORSCALE, cmin=0, cmax=cmax,
                       colorbar=dict(title=dict(text=f"rank of<br>'{tok(target_token)}'"), tickvals=ticks,
                                     ticktext=[_tick(10 ** t) for t in ticks], len=0.8)),
    )
    return fig


def _tick(value: int) -> str:
    return f"{value // 1000}k" if value >= 1000 else str(value)


def node_traces(g: nx.DiGraph, positions: dict, target_token: str) -> list[go.Scattergl]:
    by_kind: dict[str, list[str]] = {}
    flagged: dict[str, list[str]] = {}
    for n, a in g.nodes(data=True):
        (flagged.setdefault(str(a["flag"]), []) if a.get("flag") else by_kind.setdefault(a["kind"], [])).append(n)
    traces = [(_group_trace if k == "group" else _node_trace)(g, positions, by_kind[k], k, target_token, SYMBOLS[k],
                                                               SIZES.get(k, 10))
              for k in DRAWN_KINDS if k in by_kind]
    for i, (label, nodes) in enumerate(sorted(flagged.items())):
        traces.append(_node_trace(g, positions, nodes, f"flagged: {esc(label)}", target_token,
                                  FLAG_SYMBOLS[i % len(FLAG_SYMBOLS)], 15))
    return traces


def highlight_trace(g: nx.DiGraph, positions: dict) -> go.Scattergl:
    """Rings around the highlighted nodes: always the figure's LAST trace (possibly empty), so that the app
    changes a highlight by patching this one trace (``dash.Patch``) instead of sending the figure."""
    highlighted = [n for n, a in g.nodes(data=True) if a.get("highlighted")]
    return go.Scattergl(
        x=[positions[n][0] for n in highlighted], y=[positions[n][1] for n in highlighted], mode="markers",
        name="highlighted", hoverinfo="skip", showlegend=bool(highlighted),
        marker=dict(symbol="circle-open", size=26, color="#7b2cbf", line=dict(width=3)))


def pinned_trace(g: nx.DiGraph, positions: dict) -> go.Scattergl:
    """Square rings around the pinned nodes (:mod:`visit.graph.groups`; possibly empty), before the highlight."""
    pinned = [n for n, a in g.nodes(data=True) if a.get("pinned")]
    return go.Scattergl(
        x=[positions[n][0] for n in pinned], y=[positions[n][1] for n in pinned], mode="markers",
        name="pinned", hoverinfo="skip", showlegend=bool(pinned),
        marker=dict(symbol="square-open", size=24, color="#e07b00", line=dict(width=2)))


def _node_trace(g, positions, nodes, name, target_token, symbol, size) -> go.Scattergl:
    attrs = [g.nodes[n] for n in nodes]
    values = [rank_color_value(a["target_rank"]) for a in attrs]
    projected = all(v is not None for v in values)
    marker = dict(symbol=symbol, size=size, line=dict(width=0.5, color="#444"))
    if projected:
        marker.update(color=_array(values), coloraxis="coloraxis")
    else:
        marker.update(color=UNPROJECTED_COLOR)
    return go.Scattergl(
        x=_array([positions[n][0] for n in nodes]), y=_array([positions[n][1] for n in nodes]), mode="markers",
        name=name, marker=marker, customdata=_pairs(nodes, [node_hover(a, target_token) for a in attrs]),
        hovertemplate="%{customdata[1]}<extra></extra>")


def _group_trace(g, positions, nodes, name, target_token, symbol, size) -> go.Scatter:
    """Groups (:mod:`visit.graph.groups`): few, big, each with its label drawn above it. In SVG with their labels
    (the WebGL layer would cover a label drawn under a big marker); the page's label placement keeps them first."""
    gl = _node_trace(g, positions, nodes, name, target_token, symbol, size)
    return go.Scatter(x=gl.x, y=gl.y, mode="markers+text", name=name, marker=gl.marker.to_plotly_json(),
                      customdata=gl.customdata,
                      hovertemplate=gl.hovertemplate, text=[node_label(g.nodes[n], width=24) for n in nodes],
                      textposition="top center", textfont=dict(size=11, color="#8a4b00"))


def _array(values: list) -> np.ndarray:
    """numpy arrays pass plotly's validators without a per-element walk (thousands of points)."""
    return np.asarray(values, dtype=float)


def _pairs(first: list[str], second: list[str]) -> np.ndarray:
    """``[n, 2]`` object array: like :func:`_array`, it skips plotly's per-element validation walk."""
    out = np.empty((len(first), 2), dtype=object)
    out[:, 0], out[:, 1] = first, second
    return out


# which labels win where two would overlap (the page's assets/labels.js keeps them in this order)
LABEL_PRIORITY = {"resid_post": 0, "resid_mid": 1, "resid_pre": 2, "attn_out": 3, "mlp_out": 3, "head": 4,
                  "neuron": 5, "memory": 6, "wo_neuron": 7, "concat": 8, "ln1": 9, "ln2": 9}


def label_trace(g: nx.DiGraph, positions: dict) -> go.Scatter:
    """Top-token labels in SVG text (where plotly decodes the escaped entities back to literal text), in
    priority order: the page hides a label that would overlap one before it (assets/labels.js)."""
    nodes = sorted((n for n, a in g.nodes(data=True) if (a.get("label") is not None or a.get("user_label"))
                    and a["kind"] != "group"),  # a group's label is drawn with its marker (_group_trace)
                   key=lambda n: (-1 if g.nodes[n].get("user_label") or g.nodes[n]["kind"] == "group"
                                  else LABEL_PRIORITY.get(g.nodes[n]["kind"], 10), -g.nodes[n]["layer"]))
    return go.Scatter(
        x=_array([positions[n][0] for n in nodes]), y=_array([positions[n][1] for n in nodes]), mode="text",
        name="top token", text=np.array([node_label(g.nodes[n]) for n in nodes], dtype=object),
        textposition="top center", textfont=dict(size=9, color="#333"),
        customdata=np.array(nodes, dtype=object).reshape(-1, 1), hoverinfo="skip", showlegend=False)


def edge_traces(g: nx.DiGraph, positions: dict) -> list[go.Scattergl]:
    groups: dict[tuple[str, int], list[tuple[str, str]]] = {}
    max_score: dict[tuple, float] = {}
    for u, v, e in g.edges(data=True):
        key = (e["role"], g.nodes[u]["kind"])
        max_score[key] = max(max_score.get(key, 0.0), e["score"])
    entropies = [e["entropy"] for _, _, e in g.edges(data=True) if e.get("entropy") is not None]
    e_max = max(entropies, default=1.0) or 1.0
    for u, v, e in g.edges(data=True):
        role = e["role"]
        if role == "accumulation":
            ent = e.get("entropy")
            shade = 1 if ent is None else min(int(3 * ent / e_max), 2)
            groups.setdefault((f"accumulation:{shade}", 4), []).append((u, v))
            continue
        if role == "structural":
            groups.setdefault(("structural", 1), []).append((u, v))
            continue
        top = max_score[(role, g.nodes[u]["kind"])] or 1.0
        width_bin = max(1, math.ceil(WIDTH_BINS * e["score"] / top))
        colour = "summation" if role == "summation" else ("negative" if (e.get("coefficient") or 0) < 0 else "positive")
        groups.setdefault((colour, width_bin), []).append((u, v))
    traces, named = [], set()
    for (group, width), edges in sorted(groups.items()):
        xs, ys = [], []
        for u, v in edges:  # NaN separates the segments of one line trace
            xs += [positions[u][0], positions[v][0], None]
            ys += [positions[u][1], positions[v][1], None]
        if group.startswith("accumulation"):
            colour, name = ENTROPY_GREYS[int(group.split(":")[1])], "residual (darker = lower entropy)"
        else:
            colour, name = EDGE_COLORS[group], f"{group} edges"
        traces.append(go.Scattergl(x=_array(xs), y=_array(ys), mode="lines", line=dict(width=0.8 + 1.2 * width, color=colour),
                                   hoverinfo="skip", name=name, legendgroup=name, showlegend=name not in named))
        named.add(name)
    traces.append(_edge_hover_trace(g, positions))
    return traces


def _edge_hover_trace(g: nx.DiGraph, positions: dict) -> go.Scattergl:
    """Invisible points at the edges' midpoints carrying the edge hovers (coefficient, norm, rank change)."""
    xs, ys, data = [], [], []
    for u, v, e in g.edges(data=True):
        xs.append((positions[u][0] + positions[v][0]) / 2)
        ys.append((positions[u][1] + positions[v][1]) / 2)
        data.append([f"edge:{u}->{v}", edge_hover(g.nodes[u], g.nodes[v], e)])
    return go.Scattergl(x=_array(xs), y=_array(ys), mode="markers", name="edges", showlegend=False,
                        marker=dict(size=6, color="rgba(0,0,0,0.05)"),
                        customdata=_pairs([d[0] for d in data], [d[1] for d in data]),
                        hovertemplate="%{customdata[1]}<extra></extra>")
