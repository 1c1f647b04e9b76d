"""Knowledge-neurons panel (seed 001 section 3.1): integrated gradients over every MLP neuron for the traced
prompt and target, refined over paraphrases the user types; lists the neurons with the tokens their output
weights promote, and puts a clicked one into the graph.

The work runs as the session's job (:mod:`visit.ui.panels.job_widget`): progress per batched pass, cancel.
The result is kept on the analysis (``analysis.extras[KNOWLEDGE_NEURONS.result_key]``) for the HTML report.
"""

from __future__ import annotations

from dash import ALL, Input, Output, State, ctx as dash_ctx, dcc, html, no_update

from visit import limits
from visit.errors import VisitError
from visit.features import KNOWLEDGE_NEURONS
from visit.localization.integrated_gradients import check_steps
from visit.localization.knowledge_neurons import knowledge_neurons
from visit.tokens import display_token
from visit.ui import ids
from visit.ui.grid import column, data_grid, first_clicked
from visit.ui.panels.job_widget import job_controls, register_job_callbacks
from visit.ui.state import request_graph_update

TITLE = "Knowledge neurons"
GROUP = "Localize"
DESCRIPTION = "The MLP neurons this fact depends on, by integrated gradients; suppress or enhance them."
WIDTH = 0.55
PREFIX = "kn"
KIND = "knowledge-neurons"
PARAPHRASES, STEPS, THRESHOLD, SHARE = f"{PREFIX}-paraphrases", f"{PREFIX}-steps", f"{PREFIX}-threshold", f"{PREFIX}-share"
SHOW_ALL, NOTE = f"{PREFIX}-show-all", f"{PREFIX}-note"
GRID_TYPE = f"{PREFIX}-grid"  # the neurons' grid is drawn by the job widget: a pattern-matching id
GRID = {"type": GRID_TYPE, "index": "refined"}
MAX_ROWS = 500  # neurons listed (the grid pages them)
HINT = ("Integrated gradients (Dai et al.) of the target's probability at the last token over every MLP "
        "neuron, m steps. Coarse set: attribution at least t x the maximum; with paraphrases (one per line), the "
        "refined set keeps neurons in the coarse sets of more than a share p of the prompts. Suppress (x0) and "
        "enhance (x2) show the change of the answer's probability on these prompts and on unrelated facts.")


def layout():
    controls = [
        dcc.Textarea(id=PARAPHRASES, placeholder="paraphrases of the fact, one per line (optional)",
                     style={"width": "100%", "height": "4em"}),
        html.Label("steps"), dcc.Input(id=STEPS, type="number", min=1, max=64, step=1, value=20,
                                       style={"width": "4em"}),
        html.Label("t"), dcc.Input(id=THRESHOLD, type="number", min=0, max=1, step=0.05, value=0.3,
                                   style={"width": "4.5em"}),
        html.Label("p"), dcc.Input(id=SHARE, type="number", min=0, max=1, step=0.05, value=0.5,
                                   style={"width": "4.5em"}),
    ]
    return html.Div([
        html.P(HINT, className="hint"),
        job_controls(PREFIX, "Find knowledge neurons", controls=controls),
        html.Button("Show all in the graph", id=SHOW_ALL, n_clicks=0, className="btn btn-small"),
        html.Div(id=NOTE, className="hint"),
    ], className="panel")


def _number(value, default, what: str) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise VisitError(f"{what} must be a number between 0 and 1") from None
    if not 0 <= number <= 1:
        raise VisitError(f"{what} must be between 0 and 1, not {number:g}")
    return number


def make_job(analysis, paraphrases_text, steps, threshold, share):
    """Check the panel's inputs (server-side caps) and return the job function."""
    if analysis is None:
        raise VisitError("trace a prompt first")
    steps = check_steps(20 if steps in (None, "") else steps, capped=True)
    threshold = _number(threshold, 0.3, "t (the coarse threshold)")
    share = _number(share, 0.5, "p (the refined share)")
    paraphrases = [line.strip() for line in str(paraphrases_text or "").splitlines() if line.strip()]
    limits.STUDY_PROMPTS.check(len(paraphrases) + 1, "prompts (the fact and its paraphrases)")
    vm = analysis.vm
    for text in paraphrases:
        limits.check_prompt(text, vm.tokenizer)
    prompt, target = analysis.trace.prompt, analysis.target

    def job(job_ctx):
        kn = knowledge_neurons(vm, prompt, target, paraphrases=paraphrases, steps=steps, threshold=threshold,
                               share=share, progress=job_ctx.progress)
        if analysis.trace.position != len(analysis.trace.tokens) - 1:
            kn.notes.append("knowledge neurons use the prompt's last token, not the traced position")
        analysis.extras[KNOWLEDGE_NEURONS.result_key] = kn
        return kn

    return job


def _effect_text(name: str, effect: dict) -> str:
    parts = []
    for side in ("related", "unrelated"):
        e = effect.get(side)
        if e:
            parts.append(f"{side} prompts {e['mean_before']:.4f} → {e['mean_after']:.4f} "
                         f"({e['mean_relative_change']:+.0%})")
    return f"{name}: " + "; ".join(parts)


TOKENS_NOTE = ("'Value vector promotes': the static projection of each neuron's output weights (as in Details), "
               "whatever it fired in this prompt; Attribution lists what the neuron's output in this pass "
               "(coefficient × value vector) raises, which differs when the coefficient is negative or small.")


def render(kn, finished: bool = True):
    """The result as Dash components (text children only: React escapes every token)."""
    if kn is None:
        return None
    rows = []
    for i, n in enumerate(kn.refined[:MAX_ROWS], start=1):
        toks = ", ".join(display_token(t) for t in kn.tokens.get(n.key, [])[:5])
        rows.append({"rank": i, "neuron": n.node, "score": n.score, "share": kn.shares.get(n.key, 1.0),
                     "promotes": toks})
    columns = [column("rank", "#", "d", maxWidth=60), column("neuron", minWidth=90), column("score", "attribution", ".4f"),
               column("share", "share", ".0%"), column("promotes", "value vector promotes", minWidth=140)]
    hist = kn.layer_histogram()
    layers = ", ".join(f"L{l}: {c}" for l, c in enumerate(hist) if c) or "none"
    summary = [html.P(f"target {display_token(kn.target.token)}; {len(kn.prompts)} prompt(s), coarse sets of "
                      f"{', '.join(str(len(c)) for c in kn.coarse)} neurons; {len(kn.refined)} refined "
                      f"(by layer: {layers})"),
               html.P(_effect_text("suppress ×0", kn.suppress)), html.P(_effect_text("enhance ×2", kn.enhance)),
               html.P(TOKENS_NOTE, className="hint")]
    c = kn.comparison
    if c:
        summary.append(html.P(f"{len(c['overlap'])} of them among the top {c['top']} FFN neurons by log-probability "
                              f"increase (Jaccard {c['jaccard']:.2f}; {c['in_top_100']} in its top 100)"))
    summary += [html.P(note, className="hint") for note in kn.notes]
    table = html.Div([html.P("Click a row to show the neuron in the graph.", className="hint"),
                      data_grid(GRID, rows, columns, clickable=True)])
    more = [html.P(f"… {len(kn.refined) - MAX_ROWS} more", className="hint")] if len(kn.refined) > MAX_ROWS else []
    return html.Div(summary + [table] + more)


def register_callbacks(app, ctx):
    register_job_callbacks(
        app, ctx, PREFIX, KIND,
        start=lambda c, session_id, values: make_job(c.analysis(session_id), *values),
        render=render,
        inputs=[State(PARAPHRASES, "value"), State(STEPS, "value"), State(THRESHOLD, "value"), State(SHARE, "value")],
        summary=lambda kn: f"{len(kn.refined)} knowledge neurons")

    @app.callback(Output(ids.GRAPH_REQUEST, "data", allow_duplicate=True), Output(NOTE, "children"),
                  Input({"type": GRID_TYPE, "index": ALL}, "cellClicked"), Input(SHOW_ALL, "n_clicks"),
                  State({"type": GRID_TYPE, "index": ALL}, "rowData"), State(ids.SESSION, "data"),
                  prevent_initial_call=True)
    def _show(clicks, _all, row_data, session_id):
        trigger = dash_ctx.triggered_id
        if trigger == SHOW_ALL:
            kn = ctx.jobs.result(session_id, KIND)
            if kn is None or not kn.refined:
                return no_update, "Find knowledge neurons first."
            cap = limits.GRAPH_MARKS.value() // 2
            nodes = tuple(n.node for n in kn.refined[:cap])
            note = f"showing {len(nodes)} of {len(kn.refined)}" if len(kn.refined) > cap else ""
            return request_graph_update(session_id, include=nodes, highlight=nodes), note
        row = first_clicked(clicks, row_data)
        if row is None or not row.get("neuron"):
            return no_update, no_update
        node = row["neuron"]
        return request_graph_update(session_id, include=(node,), highlight=(node,)), ""
