"""Alignment panel (VISIT Section 3, App. D): sim_k between heads, memory values and the outputs."""

from __future__ import annotations

import logging

from dash import Input, Output, State, dcc, html, no_update

from visit.analyses.alignment import attention_alignment
from visit.render import analyses as figures
from visit.ids import head_id
from visit.tokens import display_token
from visit.ui import ids
from visit.ui.panels.analysis_widgets import (figure_component, message, register_study_callbacks,
                                              sections_component, study_controls, table_component)

TITLE = "Alignment"
GROUP = "Analyses"
DESCRIPTION = "How much heads, memory values and outputs agree on their top tokens (sim_k)."
WIDTH = 0.5
PREFIX = "alignment"
TAB_VALUE = __name__.rsplit(".", 1)[-1]  # the app names each tab after its panel module
BODY, LAYER, LAYER_BODY = f"{PREFIX}-body", f"{PREFIX}-layer", f"{PREFIX}-layer-body"
K = 50
HINT = (f"sim_k (k={K}): the share of two vectors' top-k logit-lens tokens they have in common. Heads are "
        "projected through W_O; memory values are ranked by their attention weight.")

log = logging.getLogger(__name__)


def layout():
    return html.Div([
        html.P(HINT, className="hint"),
        dcc.Loading(html.Div(id=BODY)),
        dcc.Dropdown(id=LAYER, options=[], value=None, placeholder="a layer, for its heads ranked by norm…"),
        html.Div(id=LAYER_BODY),
        study_controls(PREFIX, "per-layer means, VISIT Figs. 2-5 and 18"),
    ], className="panel")


def alignment_of(analysis):
    tr = analysis.trace
    return tr.memo(("alignment", K), lambda: attention_alignment(tr, k=K))


def register_callbacks(app, ctx):
    @app.callback(
        Output(BODY, "children"), Output(LAYER, "options"), Output(LAYER, "value"),
        Input(ids.TABS, "value"), Input(ids.ANALYSIS_VERSION, "data"), State(LAYER, "value"),
        State(ids.SESSION, "data"), prevent_initial_call=True,
    )
    def _compute(tab, _version, layer, session_id):
        if tab != TAB_VALUE:  # only while the tab is open (memoised per trace)
            return no_update, no_update, no_update
        analysis = ctx.analysis(session_id)
        if analysis is None:
            return message("Trace a prompt first."), [], None
        try:
            res = alignment_of(analysis)
        except Exception as exc:  # noqa: BLE001
            log.exception("alignment failed")
            return message(f"could not compute the alignment: {exc}", error=True), [], None
        n_layers = res.head_norms.shape[0]
        options = [{"label": f"layer {l}", "value": l} for l in range(n_layers)]
        return (figure_component(figures.alignment_trace_figure(res)), options,
                layer if isinstance(layer, int) and layer < n_layers else n_layers - 1)

    @app.callback(Output(LAYER_BODY, "children"), Input(LAYER, "value"), State(ids.SESSION, "data"),
                  prevent_initial_call=True)
    def _layer(layer, session_id):
        analysis = ctx.analysis(session_id)
        if analysis is None or layer is None:
            return None
        return heads_table(analysis, alignment_of(analysis), int(layer))

    register_study_callbacks(app, PREFIX, ("alignment",), ctx,
                             lambda result: sections_component(figures.alignment_study_figures(
                                 result.results["alignment"])))


def heads_table(analysis, res, layer: int):
    """The layer's heads by descending norm, with their sim_k and their top memory value."""
    tokens = analysis.trace.tokens
    rows = []
    for rank, h in enumerate(res.norm_order[layer].tolist(), start=1):
        src = int(res.memory_order[layer, h, 0])
        rows.append([rank, head_id(layer, h), float(res.head_norms[layer, h]),
                     float(res.heads_vs["attn"][layer, h]), float(res.heads_vs["block"][layer, h]),
                     float(res.heads_vs["final"][layer, h]),
                     f"{src}: {display_token(tokens[src])}", float(res.memory_attention[layer, h, 0]),
                     float(res.memory_vs_head[layer, h, 0])])
    headers = ["norm rank", "head", "norm", "sim attn", "sim block", "sim final", "top memory value (source)",
               "attention", "sim with head"]
    return table_component(figures.Table(headers, rows, f"layer {layer}: heads ranked by norm"))
