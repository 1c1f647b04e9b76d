"""The "Verify" panel: knock out a node or a group in a real forward pass (:mod:`visit.graph.verify`) and see
the predicted change of log p(target) (its attribution) beside the actual one; every check of the session
goes into a calibration scatter (predicted x, actual y; on the diagonal, attribution tells the truth)."""

from __future__ import annotations

import logging

from dash import Input, Output, State, dcc, html, no_update
from dash import ctx as dash_ctx

from visit.errors import VisitError
from visit.features import VERIFY
from visit.graph.verify import VERIFIABLE, verify
from visit.render.verify import calibration_figure
from visit.ui import ids
from visit.ui.charts import PANEL_GRAPH_CONFIG
from visit.ui.clicks import node_id_from_click
from visit.ui.grid import column, data_grid

TITLE = "Verify"
GROUP = "Inspect"
DESCRIPTION = "Knock out the nodes you picked in a real forward pass: does the actual change match the attribution?"
WIDTH = 0.42
NODES = "verify-nodes"
MODE = "verify-mode"
RUN = "verify-run"
RESULT = "verify-result"
SCATTER = "verify-scatter"
HINT = ("Click a head, neuron or attention/MLP output (or pick several: a group), then Verify: it is knocked out "
        "in a real forward pass.")
MAX_POINTS = 200

log = logging.getLogger(__name__)


def layout():
    return html.Div([
        html.P(HINT, className="hint"),
        dcc.Dropdown(id=NODES, options=[], value=[], multi=True, placeholder="node(s)…", className="details-pick"),
        dcc.RadioItems(id=MODE, options=[{"label": "zero", "value": "zero"},
                                         {"label": "mean over the prompt set", "value": "mean"}],
                       value="zero", inline=True, className="radio"),
        html.Button("Verify", id=RUN, n_clicks=0, className="btn btn-small"),
        dcc.Loading(html.Div(id=RESULT), type="dot"),
        dcc.Graph(id=SCATTER, figure=calibration_figure([]), config=PANEL_GRAPH_CONFIG, style={"height": "320px"}),
    ], className="panel")


def _points(state) -> list[dict]:
    return state.__dict__.setdefault("verify_points", [])  # this session's checks (server-side, per session)


def register_callbacks(app, ctx):
    @app.callback(Output(NODES, "options"), Output(NODES, "value"),
                  Input(ids.ANALYSIS_VERSION, "data"), Input(ids.GRAPH, "clickData"), State(NODES, "value"),
                  State(ids.SESSION, "data"), prevent_initial_call=True)
    def pick(_version, click_data, chosen, session_id):
        analysis = ctx.analysis(session_id)
        if analysis is None:
            return [], []
        if dash_ctx.triggered_id == ids.GRAPH:
            node = node_id_from_click(analysis, click_data)
            if node is None or analysis.graph.nodes[node]["kind"] not in VERIFIABLE:
                return no_update, no_update
            return no_update, [node]
        options = [{"label": n, "value": n} for n, a in analysis.graph.nodes(data=True) if a["kind"] in VERIFIABLE]
        return options, [n for n in (chosen or []) if n in analysis.graph]

    @app.callback(Output(RESULT, "children"), Output(SCATTER, "figure"),
                  Input(RUN, "n_clicks"), State(NODES, "value"), State(MODE, "value"), State(ids.SESSION, "data"),
                  prevent_initial_call=True)
    def run_check(n_clicks, nodes, mode, session_id):
        analysis = ctx.analysis(session_id)
        if not n_clicks:
            return no_update, no_update
        if analysis is None:
            return html.P("trace a prompt first", className="message message-error"), no_update
        try:
            res = verify(analysis, nodes or [], mode or "zero")
        except VisitError as exc:
            return html.P(str(exc), className="message message-error"), no_update
        except Exception as exc:  # noqa: BLE001 - the panel keeps serving
            log.exception("verify failed")
            return html.P(f"verify failed: {type(exc).__name__}", className="message message-error"), no_update
        state = ctx.state(session_id)
        label = res["nodes"][0] if len(res["nodes"]) == 1 else f"group of {len(res['nodes'])}"
        points = _points(state)
        points.append({"label": label, "mode": res["mode"], "predicted": res["predicted"], "actual": res["actual"]})
        del points[:-MAX_POINTS]
        analysis.extras[VERIFY.result_key] = list(points)  # the report's Verify section
        return html.Div([render_result(res), checks_grid(points)]), calibration_figure(points)


def render_result(res: dict):
    what = ", ".join(res["nodes"])
    return html.Div([
        html.Div(f"{'zeroed' if res['mode'] == 'zero' else 'replaced by its prompt-set mean'}: {what}",
                 className="verify-what"),
        html.Table([
            html.Tr([html.Th("Δ log p(target)"), html.Th("predicted"), html.Th("actual")]),
            html.Tr([html.Td(""), html.Td(f"{res['predicted']:+.4f}", className="verify-predicted"),
                     html.Td(f"{res['actual']:+.4f}", className="verify-actual")]),
        ], className="verify-table"),
        html.Div(f"p(target) {100 * res['prob_before']:.2f}% → {100 * res['prob_after']:.2f}% in the real "
                 f"forward pass", className="verify-probs"),
    ])


def checks_grid(points: list[dict]):
    """The session's checks (newest first) as a grid: sort by the gap to find where attribution misleads."""
    rows = [{"n": n, "label": p["label"], "mode": p["mode"], "predicted": p["predicted"], "actual": p["actual"],
             "gap": p["actual"] - p["predicted"]} for n, p in reversed(list(enumerate(points, start=1)))]
    columns = [column("n", "#", "d", maxWidth=60), column("label", "node(s)", minWidth=90), column("mode"),
               column("predicted", fmt="+.4f"), column("actual", fmt="+.4f"),
               column("gap", "actual − predicted", "+.4f")]
    return html.Div([html.H5(f"This session's checks ({len(points)})"), data_grid(None, rows, columns, page_size=10)])
