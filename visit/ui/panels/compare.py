"""The "Compare" panel: the current analysis against another prompt, target or position, as one difference
view aligned by node id (:mod:`visit.graph.diff`, :mod:`visit.ui.diff_view`: both sides' summaries, the difference
graph and the changed nodes as a grid) and the compared graph itself, beside the main one; the most changed nodes
are highlighted in the main graph. The comparison covers the last layers the page opens on (or the whole layer range
when it is that short): set a layer range to compare others."""

from __future__ import annotations

import logging
from dataclasses import replace

from dash import Input, Output, State, dcc, html, no_update

from visit.errors import VisitError
from visit.features import COMPARE
from visit.graph.diff import diff_graphs
from visit.pipeline import redraw
from visit.ui import ids
from visit.ui.charts import PANEL_GRAPH_CONFIG
from visit.ui.controls import check_prompt_length, parse_int, parse_prompt, parse_target
from visit.ui.diff_view import diff_view, register_row_clicks
from visit.ui.state import request_graph_update

TITLE = "Compare"
GROUP = "Compare"
DESCRIPTION = "Trace another prompt, target or position and see which nodes changed, side by side."
WIDTH = 0.6
LABELS = ("this trace", "compared")
PROMPT = "compare-prompt"
TARGET = "compare-target"
POSITION = "compare-position"
RUN = "compare-run"
RESULT = "compare-result"
HINT = "Compare with another prompt (blank: the same), target (blank: the same) or position (blank: the same)."

log = logging.getLogger(__name__)


def layout():
    return html.Div([
        html.P(HINT, className="hint"),
        dcc.Input(id=PROMPT, type="text", placeholder="other prompt", className="prompt-input", maxLength=20000),
        dcc.Input(id=TARGET, type="text", placeholder="other target", className="target-input"),
        dcc.Input(id=POSITION, type="number", placeholder="position", className="num-input"),
        html.Button("Compare", id=RUN, n_clicks=0, className="btn btn-small"),
        dcc.Loading(html.Div(id=RESULT), type="dot"),
    ], className="panel")


def compare(vm, current, prompt: str | None, target: str | None, position: int | None, analyze, layers: int = 4):
    """``(before, after, diff)``: the current analysis re-drawn on its last ``layers`` layers and the other
    one with the same settings (a new forward pass), and their :func:`~visit.graph.diff.diff_graphs`."""
    full = current.settings.layers(vm.dims.n_layers)
    settings = replace(current.settings, layer_start=full[-min(layers, len(full))], layer_end=full[-1],
                       highlight=())
    before = redraw(current, settings)
    same_prompt = not prompt or prompt == current.prompt
    target_id = None if target else current.target.id  # blank: exactly the same target token
    after = analyze(vm, prompt or current.prompt, target or None,
                    current.trace.position if position is None and same_prompt else position, settings,
                    target_id=target_id)
    return before, after, diff_graphs(before, after)


def register_callbacks(app, ctx):
    register_row_clicks(app, LABELS)  # a changed node's row puts it into the graph

    @app.callback(Output(RESULT, "children"), Output(ids.GRAPH_REQUEST, "data", allow_duplicate=True),
                  Input(RUN, "n_clicks"), State(PROMPT, "value"), State(TARGET, "value"), State(POSITION, "value"),
                  State(ids.SESSION, "data"), prevent_initial_call=True)
    def run_compare(n_clicks, prompt, target, position, session_id):
        if not n_clicks:
            return no_update, no_update
        current = ctx.analysis(session_id)
        if current is None:
            return html.P("trace a prompt first", className="message message-error"), no_update
        try:
            vm = ctx.model(session_id)
            if prompt:  # the same checks and caps as the prompt box
                prompt = parse_prompt(prompt)
                check_prompt_length(vm.tokenizer, prompt)
            _, other, diff = compare(vm, current, prompt, parse_target(target), parse_int(position, "the position"),
                                     ctx.analyze)
        except VisitError as exc:
            return html.P(str(exc), className="message message-error"), no_update
        except Exception as exc:  # noqa: BLE001 - the panel keeps serving
            log.exception("compare failed")
            return html.P(f"compare failed: {type(exc).__name__}", className="message message-error"), no_update
        current.extras[COMPARE.result_key] = diff  # the report's Compare section
        marks = tuple(diff["top_changed"])  # the difference marked in the graph (a one-trace patch)
        compared = html.Details([html.Summary("the compared graph (beside the main one)"),
                                 dcc.Graph(figure=other.figure, config=PANEL_GRAPH_CONFIG, className="compare-graph")],
                                open=True)
        return (html.Div([diff_view(diff, LABELS), compared]),
                request_graph_update(session_id, highlight=marks))
