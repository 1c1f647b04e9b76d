"""Regularization-neurons panel (VISIT 5.3): neurons among their layer's most activated on most prompts.

Finding them needs a prompt set: the panel runs the regularization study on the shipped prompts in
the background, lists the neurons, and flags them in the graph with their own marker.
"""

from __future__ import annotations

from dash import Input, Output, State, dcc, html, no_update

from visit.analyses.regularization import FLAG_LABEL, strongest
from visit.render import analyses as figures
from visit.hooks.names import hook_name
from visit.ui import ids
from visit.ui.panels.analysis_widgets import (register_study_callbacks, sections_component, study_controls,
                                              study_kind, table_component)
from visit.ui.state import request_graph_update

TITLE = "Regularization neurons"
GROUP = "Analyses"
DESCRIPTION = "Neurons active on most prompts whatever they say; find them over the prompt set and flag them."
WIDTH = 0.45
PREFIX = "regularization"
FLAG, HERE, MIN_SHARE, PER_LAYER = f"{PREFIX}-flag", f"{PREFIX}-here", f"{PREFIX}-min-share", f"{PREFIX}-per-layer"
STUDIES = ("regularization",)
HINT = ("MLP neurons among their layer's 100 most activated (by |coefficient|) on more than half of the "
        "prompts the model answers correctly. Run the study, then flag the most consistent ones in the graph "
        "(a layer of a small model can have dozens that pass).")


def layout():
    return html.Div([
        html.P(HINT, className="hint"),
        study_controls(PREFIX, "regularization neurons", default_limit=30),
        html.Div([
            html.Button("Flag them in the graph", id=FLAG, n_clicks=0),
            html.Label("share of prompts at least"),
            dcc.Input(id=MIN_SHARE, type="number", min=0, max=1, step=0.05, value=0.9, style={"width": "5em"}),
            html.Label("at most per layer"),
            dcc.Input(id=PER_LAYER, type="number", min=1, max=100, step=1, value=3, style={"width": "4em"}),
        ], className="panel-controls"),
        html.Div(id=HERE),
    ], className="panel")


def register_callbacks(app, ctx):
    register_study_callbacks(app, PREFIX, STUDIES, ctx, render)

    @app.callback(
        Output(ids.GRAPH_REQUEST, "data", allow_duplicate=True), Output(HERE, "children", allow_duplicate=True),
        Input(FLAG, "n_clicks"), State(MIN_SHARE, "value"), State(PER_LAYER, "value"), State(ids.SESSION, "data"),
        prevent_initial_call=True,
    )
    def _flag(_clicks, min_share, per_layer, session_id):
        result = ctx.jobs.result(session_id, study_kind(PREFIX))  # this session's last finished study
        if result is None:
            return no_update, html.P("Run the study first.", className="hint")
        chosen = strongest(result.results["regularization"]["neurons"], float(min_share or 0.0),
                           int(per_layer) if per_layer else None)
        flagged = {(n["layer"], n["neuron"]): FLAG_LABEL for n in chosen}
        if not flagged:
            return no_update, html.P("No regularization neuron passes these limits.", className="hint")
        note = html.P(f"Flagged {len(flagged)} neurons; the graph shows those it keeps with their own marker.",
                      className="hint")
        return request_graph_update(session_id, flagged_neurons=flagged), note

    @app.callback(Output(HERE, "children", allow_duplicate=True), Input(ids.ANALYSIS_VERSION, "data"),
                  State(ids.SESSION, "data"), prevent_initial_call=True)
    def _here(_version, session_id):
        result, analysis = ctx.jobs.result(session_id, study_kind(PREFIX)), ctx.analysis(session_id)
        if result is None or analysis is None:
            return no_update
        return activity_here(analysis, result.results["regularization"])


def render(result):
    return sections_component(figures.regularization_study_figures(result.results["regularization"]))


def activity_here(analysis, res: dict):
    """How strongly each found neuron fires on the traced prompt (rank by |coefficient| in its layer)."""
    tr = analysis.trace
    rows = []
    for n in res["neurons"]:
        coeff = tr[hook_name(n['layer'], "mlp.hook_post")][tr.position]
        value = coeff[n["neuron"]]
        rows.append([n["node_id"], float(value), int((coeff.abs() > value.abs()).sum()) + 1, n["share"]])
    return table_component(figures.Table(["neuron", "coefficient here", "rank in its layer here",
                                          "share of study prompts"], rows, "On the traced prompt"))
