"""The difference view of two analyses (:func:`visit.graph.diff.diff_graphs`) as Dash components: both sides
side by side (prompt, target, p(target) at the last drawn residual) and the most changed nodes as a table.

Shared by the Compare panel (two prompts, targets or positions) and a before/after view of a model edit.
Text goes into Dash children (React escapes it).
"""

from __future__ import annotations

from dash import html

from visit.tokens import display_token


def _num(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def side(title: str, info: dict, final: dict | None) -> html.Div:
    prob = final["target_prob"] if final else None
    rank = final["target_rank"] if final else None
    return html.Div([
        html.Div(title, className="diff-side-title"),
        html.Div(info["prompt"], className="diff-prompt"),
        html.Div(f"position {info['position']} → target {display_token(info['target'])}", className="diff-target"),
        html.Div(f"p(target) {_num(None if prob is None else 100 * prob, '.2f')}%, rank {_num(rank, 'd')}",
                 className="diff-prob"),
    ], className="diff-side")


def diff_view(diff: dict, labels: tuple[str, str] = ("before", "after"), rows: int = 10) -> html.Div:
    """Side-by-side summary and a table of the ``rows`` most changed nodes (changes: after - before)."""
    final = diff.get("final") or {}
    head = html.Div([side(labels[0], diff["before"], final.get("before")),
                     side(labels[1], diff["after"], final.get("after"))], className="diff-sides")
    table_rows = [html.Tr([html.Th("node"), html.Th("Δ rank"), html.Th("Δ p"), html.Th("Δ attribution")])]
    for n in diff["top_changed"][:rows]:
        d = diff["nodes"][n]["delta"]
        table_rows.append(html.Tr([
            html.Td(n, className="diff-node"), html.Td(_num(d["target_rank"], "+d")),
            html.Td(_num(None if d["target_prob"] is None else 100 * d["target_prob"], "+.2f") + "%"),
            html.Td(_num(d["attribution"], "+.3f")),
        ]))
    note = (f"{len(diff['only_before'])} nodes only {labels[0]}, {len(diff['only_after'])} only {labels[1]} "
            f"(pruning kept different components); the most changed are marked in the graph.")
    return html.Div([head, html.Table(table_rows, className="diff-table"), html.P(note, className="hint")],
                    className="diff-view")
