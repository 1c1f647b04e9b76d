"""The built-in "Details" panel: everything about the clicked (or chosen) graph node."""

from __future__ import annotations

import logging

from dash import Input, Output, State, dcc, html, no_update
from dash import ctx as dash_ctx

from visit.errors import VisitError
from visit.pipeline import node_details
from visit.ui import ids
from visit.ui.clicks import edge_from_click, node_id_from_click
from visit.ui.details_view import details_panel

TITLE = "Details"
GROUP = "Inspect"
DESCRIPTION = "Click a node or an edge in the graph: its top tokens, target rank, norm, entropy and neighbours."
WIDTH = 0.34
NODE = "details-node"
BODY = "details-body"
HINT = "Click a node in the graph (or pick one here) to see its top and bottom tokens, target rank, norm, entropy."

log = logging.getLogger(__name__)


def layout():
    return html.Div([
        dcc.Dropdown(id=NODE, options=[], value=None, placeholder="node…", clearable=True, className="details-pick"),
        html.Div(html.P(HINT, className="hint"), id=BODY),
    ], className="panel")


def register_callbacks(app, ctx):
    @app.callback(
        Output(BODY, "children"), Output(NODE, "options"), Output(NODE, "value"),
        Input(ids.GRAPH, "clickData"), Input(NODE, "value"), Input(ids.ANALYSIS_VERSION, "data"),
        State(ids.SESSION, "data"),
        prevent_initial_call=True,
    )
    def show_details(click_data, chosen, _version, session_id):
        analysis = ctx.analysis(session_id)
        if analysis is None:
            return html.P(HINT, className="hint"), [], None
        options = no_update
        if dash_ctx.triggered_id == ids.GRAPH:
            node = node_id_from_click(analysis, click_data)
            if node is None:
                edge = edge_from_click(analysis, click_data)
                return (render_edge(analysis, *edge), no_update, None) if edge else (no_update,) * 3
        else:
            node = chosen
            if dash_ctx.triggered_id == ids.ANALYSIS_VERSION:
                options = [{"label": n, "value": n} for n in analysis.graph.nodes]
                node = node or ctx.state(session_id).curation.selected  # a link's selected node (visit.ui.pins)
        if not node or node not in analysis.graph:
            return html.P(HINT, className="hint"), options, None
        return render_node(analysis, node), options, node


def render_edge(analysis, u: str, v: str):
    """An edge: its own attributes (coefficient, norm, role, ...) under ``u -> v``."""
    return details_panel(f"{u} → {v}", dict(analysis.graph.edges[u, v]))


def render_node(analysis, node_id: str):
    try:
        details = node_details(analysis, node_id)
    except VisitError as exc:
        return html.P(str(exc), className="message message-error")
    except Exception:  # noqa: BLE001 - the panel must survive a bad node
        log.exception("node_details failed for %s", node_id)
        return html.P(f"could not compute the details of {node_id}", className="message message-error")
    return details_panel(node_id, details)
