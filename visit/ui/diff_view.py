"""The difference view of two analyses (:func:`visit.graph.diff.diff_graphs`) as Dash components: both sides
side by side (prompt, target, p(target) at the last drawn residual) and the changed nodes as a grid
(:mod:`visit.ui.grid`), most changed first.

Shared by the Compare panel (two prompts, targets or positions) and a before/after view of a model edit.
Text goes into Dash children and grid cells (both render it as text).
"""

from __future__ import annotations

from dash import Input, Output, State, dcc, html, no_update

from visit.render.diff_figure import diff_figure
from visit.render.hover import optional_number
from visit.tokens import display_token
from visit.ui import ids
from visit.ui.charts import PANEL_GRAPH_CONFIG
from visit.ui.grid import clicked_row, column, data_grid
from visit.ui.state import request_graph_update


def side(title: str, info: dict, final: dict | None) -> html.Div:
    prob = final["target_prob"] if final else None
    rank = final["target_rank"] if final else None
    return html.Div([
        html.Div(title, className="diff-side-title"),
        html.Div(info["prompt"], className="diff-prompt"),
        html.Div(f"position {info['position']} → target {display_token(info['target'])}", className="diff-target"),
        html.Div(f"p(target) {optional_number(None if prob is None else 100 * prob, '.3g')}%, "
                 f"rank {optional_number(rank, 'd')}", className="diff-prob"),
    ], className="diff-side")


def diff_view(diff: dict, labels: tuple[str, str] = ("before", "after"), rows: int = 200,
              grid_id=None) -> html.Div:
    """Side-by-side summary, the difference graph (:func:`visit.render.diff_figure.diff_figure`) and a grid
    (sorting, filtering, paging) of the ``rows`` most changed nodes present on both sides, most changed first
    (changes: after - before). ``grid_id`` defaults to :func:`changed_grid_id` of ``labels``, so two difference
    views can share a page."""
    final = diff.get("final") or {}
    head = html.Div([side(labels[0], diff["before"], final.get("before")),
                     side(labels[1], diff["after"], final.get("after"))], className="diff-sides")
    changed = grid_order(diff)
    table_rows = []
    for n in changed[:rows]:
        d = diff["nodes"][n]
        delta = d["delta"]
        table_rows.append({"node": n, "kind": d["kind"], "rank": delta["target_rank"], "prob": delta["target_prob"],
                           "log_prob": delta["log_prob"], "attribution": delta["attribution"],
                           "marked": "yes" if d["top_changed"] else ""})
    toward, away = ({"change-up": "params.value > 0", "change-down": "params.value < 0"},
                    {"change-up": "params.value < 0", "change-down": "params.value > 0"})  # a lower rank is better
    columns = [column("node"), column("kind"), column("rank", "Δ rank", "+d", cellClassRules=away),
               column("prob", "Δ p", "+.2%", cellClassRules=toward),
               column("log_prob", "Δ log p (lens)", "+.3f", cellClassRules=toward),
               column("attribution", "Δ attribution", "+.3f", cellClassRules=toward),
               column("marked", "marked in the graph")]
    grid = data_grid(changed_grid_id(labels) if grid_id is None else grid_id,
                     table_rows, columns, page_size=10, class_name="diff-table")
    note = ("Components (heads, neurons, attention and MLP outputs) first, by their change of attribution (the "
            "log-probability increase of the target they add); then residuals and norms, which add nothing and "
            "so have no attribution, by the change of log p(target) through the logit lens. "
            f"{len(diff['only_before'])} nodes only {labels[0]}, {len(diff['only_after'])} only {labels[1]} "
            f"(pruning kept different components); the {len(diff['top_changed'])} most changed are marked in the "
            f"graph; {len(changed)} changed in all.")
    graph = dcc.Graph(figure=diff_figure(diff, labels), config=PANEL_GRAPH_CONFIG, className="diff-graph")
    return html.Div([head, graph, grid, html.P(note, className="hint")], className="diff-view")


def grid_order(diff: dict) -> list[str]:
    """The changed nodes present on both sides, as the grid lists them: components by |Δ attribution|, then the
    nodes that have none (residuals, norms) by |Δ log p|. One ranking of both would bury the components: a
    residual's lens log-probability moves by nats after an edit, a component's attribution by less."""
    nodes = diff["nodes"]
    changed = [n for n, d in nodes.items() if d["present"] == "both" and d["change"] > 0]
    components = [n for n in changed if nodes[n]["delta"]["attribution"] is not None]
    rest = [n for n in changed if nodes[n]["delta"]["attribution"] is None]
    return (sorted(components, key=lambda n: -abs(nodes[n]["delta"]["attribution"]))
            + sorted(rest, key=lambda n: -nodes[n]["change"]))


def changed_grid_id(labels: tuple[str, str]) -> dict:
    """The default id of the changed-nodes grid of :func:`diff_view` for ``labels``."""
    return {"type": "diff-grid", "index": "|".join(labels)}


def register_row_clicks(app, labels: tuple[str, str]) -> None:
    """A click on a row of the grid of ``diff_view(..., labels)`` puts that node into the graph, highlighted
    (a panel showing a difference view calls this once for its labels)."""
    @app.callback(Output(ids.GRAPH_REQUEST, "data", allow_duplicate=True),
                  Input(changed_grid_id(labels), "cellClicked"), State(changed_grid_id(labels), "rowData"),
                  State(ids.SESSION, "data"), prevent_initial_call=True)
    def _show(click, rows, session_id):
        row = clicked_row(click, rows)
        if row is None or not row.get("node"):
            return no_update
        return request_graph_update(session_id, include=(row["node"],), highlight=(row["node"],))
