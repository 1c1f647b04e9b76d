"""The difference graph: one flow graph whose nodes are coloured by how much they changed between two analyses.

Built from :func:`visit.graph.diff.diff_graphs`' plain data alone (data, then graph, then view): nodes sit where
the "before" graph drew them (ids align the two graphs), with the kind's symbol; colour is the change of the
node's attribution (its log-probability increase of the target), or of log p(target) through its lens where a
node has no attribution, on a diverging scale centred on 0 (blue: more support for the target after, red: less);
the most changed nodes get a dark ring; nodes kept by only one graph's pruning are hollow grey. Used by the
Compare tab and the Editing panel (before/after an edit).
"""

from __future__ import annotations

import plotly.graph_objects as go

from visit.render.figure import SYMBOLS, UIREVISION
from visit.render.hover import esc, optional_number

DIFF_COLORSCALE = [[0.0, "#b2182b"], [0.25, "#ef8a62"], [0.5, "#f7f7f7"], [0.75, "#67a9cf"], [1.0, "#2166ac"]]


def signed_change(node: dict) -> float | None:
    """after - before of the node's attribution, else of its lens log p(target); None when neither is known."""
    delta = node["delta"]
    for f in ("attribution", "log_prob"):
        if delta.get(f) is not None:
            return float(delta[f])
    return None


def _hover(node: dict, labels: tuple[str, str]) -> str:
    rows = [f"<b>{esc(node['id'])}</b> ({esc(node['kind'])}, layer {node['layer']})"]
    for side, name in zip(("before", "after"), labels):
        v = node[side]
        if v is None:
            rows.append(f"{esc(name)}: not in this graph")
        else:
            p = None if v["target_prob"] is None else 100 * v["target_prob"]
            rows.append(f"{esc(name)}: rank {optional_number(v['target_rank'], 'd')}, "
                        f"p {optional_number(p, '.3g')}%, attribution {optional_number(v['attribution'], '+.4f')}")
    d = node["delta"]
    rows.append(f"Δ rank {optional_number(d['target_rank'], '+d')}, "
                f"Δ attribution {optional_number(d['attribution'], '+.4f')}, "
                f"Δ log p {optional_number(d['log_prob'], '+.4f')}")
    return "<br>".join(rows)


def diff_figure(diff: dict, labels: tuple[str, str] = ("before", "after"), height: int = 420) -> go.Figure:
    """The difference graph of ``diff`` (:func:`visit.graph.diff.diff_graphs`)."""
    nodes = {n: d for n, d in diff["nodes"].items() if d.get("x") is not None and d.get("y") is not None}
    fig = go.Figure()
    ex, ey = [], []
    for u, v in diff.get("edges", []):
        if u in nodes and v in nodes:
            ex += [nodes[u]["x"], nodes[v]["x"], None]
            ey += [nodes[u]["y"], nodes[v]["y"], None]
    fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines", line={"color": "rgba(170,170,170,0.45)", "width": 1},
                             hoverinfo="skip", showlegend=False))
    both = [d for d in nodes.values() if d["present"] == "both"]
    changes = [signed_change(d) for d in both]
    bound = max((abs(c) for c in changes if c is not None), default=0.0) or 1.0
    for kind in dict.fromkeys(d["kind"] for d in both):
        members = [(d, c) for d, c in zip(both, changes) if d["kind"] == kind]
        fig.add_trace(go.Scatter(
            x=[d["x"] for d, _ in members], y=[d["y"] for d, _ in members], mode="markers", name=kind,
            marker={"symbol": SYMBOLS.get(kind, "circle"), "size": [9 + 13 * abs(c or 0) / bound for _, c in members],
                    "color": [0.0 if c is None else c for _, c in members], "colorscale": DIFF_COLORSCALE,
                    "cmin": -bound, "cmax": bound, "showscale": kind == both[0]["kind"],
                    "colorbar": {"title": {"text": "Δ", "side": "right"}, "thickness": 10},
                    "line": {"color": ["#222" if d["top_changed"] else "rgba(0,0,0,0.25)" for d, _ in members],
                             "width": [2.5 if d["top_changed"] else 0.5 for d, _ in members]}},
            customdata=[[d["id"], _hover(d, labels)] for d, _ in members],
            hovertemplate="%{customdata[1]}<extra></extra>", showlegend=False))
    lonely = [d for d in nodes.values() if d["present"] != "both"]
    if lonely:
        fig.add_trace(go.Scatter(
            x=[d["x"] for d in lonely], y=[d["y"] for d in lonely], mode="markers", name="in one graph only",
            marker={"symbol": "circle-open", "size": 9, "color": "#999"},
            customdata=[[d["id"], _hover(d, labels)] for d in lonely], hovertemplate="%{customdata[1]}<extra></extra>"))
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10}, uirevision=UIREVISION + "-diff",
                      title={"text": f"difference: {esc(labels[1])} − {esc(labels[0])}", "font": {"size": 13}},
                      xaxis={"visible": False}, yaxis={"visible": False}, plot_bgcolor="white",
                      legend={"orientation": "h", "y": -0.02})
    return fig
