"""Causal trace panel (ROME; seed 001 section 3.3): the token x layer heatmaps of the traced prompt.

The grid runs as a job (progress, cancel, heatmaps filling in batch by batch). Clicking a cell re-draws the
flow graph at that token with the layer's spine nodes highlighted. The finished trace is attached to the
session's analysis, so "Export HTML" includes it.
"""

from __future__ import annotations

from dash import ALL, Input, Output, State, ctx as dash_ctx, dcc, html, no_update

from visit import limits
from visit.errors import VisitError
from visit.features import CAUSAL_TRACE
from visit.ids import spine_id
from visit.localization.causal_trace import KINDS, causal_trace
from visit.localization.subject import find_subject
from visit.prompts import default_prompt_file, load_prompt_file
from visit.render import causal_trace as figures
from visit.tokens import display_token
from visit.ui import ids
from visit.ui.charts import PANEL_GRAPH_CONFIG
from visit.ui.panels.job_widget import job_controls, register_job_callbacks
from visit.ui.state import request_graph_update

TITLE = "Causal trace"
GROUP = "Localize"
DESCRIPTION = "Where is the fact stored? Corrupt the subject, restore one state at a time (ROME's causal trace)."
WIDTH = 0.55
PREFIX = "causal"
KIND = "causal-trace"
SUBJECT, TARGET, SAMPLES, KIND_PICK = f"{PREFIX}-subject", f"{PREFIX}-target", f"{PREFIX}-samples", f"{PREFIX}-kinds"
HEAT = f"{PREFIX}-heat"
HINT = ("Corrupt the subject's input embeddings with noise, then restore one clean state at a time: each cell is "
        "the target's probability with that token's state restored at that layer (hidden state), or its MLP / "
        "attention output over a window of 10 layers. Click a cell to see the graph at that token.")
SPINE = ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post")


def layout():
    controls = [
        dcc.Input(id=SUBJECT, type="text", placeholder="subject, as in the prompt", debounce=True,
                  maxLength=200, className="input-small"),
        dcc.Input(id=TARGET, type="text", placeholder="target (blank: the graph's)", maxLength=200,
                  className="input-small"),
        dcc.Input(id=SAMPLES, type="number", value=10, min=1, max=limits.SAMPLES.default, step=1,
                  className="input-tiny", placeholder="samples"),
        dcc.Checklist(id=KIND_PICK, value=list(KINDS), inline=True,
                      options=[{"label": k, "value": k} for k in KINDS]),
    ]
    return html.Div([html.P(HINT, className="hint"), job_controls(PREFIX, "Trace causally", controls=controls)],
                    className="panel")


def start(ctx, session_id: str, values: tuple):
    """Check the inputs and return the job (raises VisitError with the user's message)."""
    subject, target, samples, kinds = values
    analysis = ctx.analysis(session_id)
    if analysis is None:
        raise VisitError("trace a prompt first")
    if not (subject or "").strip():
        raise VisitError("type the subject as it appears in the prompt (e.g. 'Eiffel Tower')")
    samples = limits.SAMPLES.check(samples if samples not in (None, "") else 10, "noise samples")
    if samples < 1:
        raise VisitError("noise samples must be at least 1")
    kinds = [k for k in KINDS if k in (kinds or [])]
    if not kinds:
        raise VisitError("pick at least one kind of state to restore")
    target = (target or "").strip("\n") or analysis.target.id
    vm, prompt = analysis.vm, analysis.trace.prompt

    find_subject(vm.tokenizer, prompt, subject)  # a bad subject is an error now, not in the job

    def job(jc):
        ct = causal_trace(vm, prompt, subject, target, kinds, samples, progress=jc.progress, partial=jc.partial)
        analysis.extras[CAUSAL_TRACE.result_key] = ct  # for the HTML report
        return ct

    return job


def render(ct, finished: bool):
    s0, s1 = ct.subject_range
    text = (f"subject '{''.join(ct.tokens[s0:s1]).strip()}', target '{display_token(ct.target.token)}': "
            f"p(clean) = {ct.p_clean:.4f}, p(corrupted) = {ct.p_corrupted:.4f}"
            + ("" if finished else " (filling in…)"))
    graphs = [dcc.Graph(id={"type": HEAT, "kind": k}, figure=figures.heatmap(ct, k), config=PANEL_GRAPH_CONFIG)
              for k in ct.kinds]
    return html.Div([html.P(text, className="hint"), *graphs])


def summary(ct) -> str:
    return f"done: {sum(v.size for v in ct.kinds.values())} cells, {ct.samples} samples"


def cell_request(session_id: str, kind: str, point: dict, n_layers: int, target_id: int | None = None) -> dict:
    """The graph request for a clicked heatmap cell: that token, a few layers around it, its spine highlighted;
    the graph keeps explaining ``target_id`` (the traced target: what the causal trace measured)."""
    layer = int(point["x"])
    position = int(str(point["y"]).split(" ", 1)[0])
    highlight = tuple(spine_id(layer, s) for s in SPINE)
    kept = {} if target_id is None else {"target_id": int(target_id)}
    return request_graph_update(session_id, position=position, layer_start=max(0, layer - 2),
                                layer_end=min(n_layers - 1, layer + 2), highlight=highlight, **kept)


def register_callbacks(app, ctx):
    register_job_callbacks(app, ctx, PREFIX, KIND, start, render,
                           inputs=[State(SUBJECT, "value"), State(TARGET, "value"), State(SAMPLES, "value"),
                                   State(KIND_PICK, "value")], summary=summary)

    @app.callback(Output(ids.GRAPH_REQUEST, "data", allow_duplicate=True),
                  Input({"type": HEAT, "kind": ALL}, "clickData"), State(ids.SESSION, "data"),
                  prevent_initial_call=True)
    def _cell(clicks, session_id):
        trigger = dash_ctx.triggered_id
        if not isinstance(trigger, dict) or not dash_ctx.triggered or not dash_ctx.triggered[0]["value"]:
            return no_update
        analysis = ctx.analysis(session_id)
        point = (dash_ctx.triggered[0]["value"].get("points") or [None])[0]
        if analysis is None or not point:
            return no_update
        return cell_request(session_id, trigger["kind"], point, analysis.vm.dims.n_layers, analysis.target.id)

    @app.callback(Output(SUBJECT, "value"), Input(ids.ANALYSIS_VERSION, "data"), State(SUBJECT, "value"),
                  State(ids.SESSION, "data"), prevent_initial_call=True)
    def _suggest_subject(_version, subject, session_id):
        """Prefill the subject when the prompt is one of the shipped facts."""
        analysis = ctx.analysis(session_id)
        if analysis is None or (subject or "").strip() and subject in analysis.trace.prompt:
            return no_update
        return shipped_subject(analysis.trace.prompt) or no_update


def shipped_subject(prompt: str) -> str | None:
    for case in load_prompt_file(default_prompt_file()):
        if case.subject and case.prompt.strip() == prompt.strip():
            return case.subject
    return None
