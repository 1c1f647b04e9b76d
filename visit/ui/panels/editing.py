"""Editing panel (seed 001 section 3.3; ROME, KN-E, CNE): change one fact, see what changed inside the forward pass.

Subject, template and objects are prefilled from the traced prompt; "Apply edit" runs the editor as the session's
job (ROME's key statistics are computed once per model and layer, with progress). When it finishes the panel
shows the old and new objects' probabilities before and after on the prompt and the prompts listed, and the
difference of the flow graphs before and after the edit (aligned by node id); the graph is re-traced on the
edited model with the most changed nodes marked. "Show the graph before the edits" toggles between the two.

Edits belong to this browser session only (:class:`visit.editing.stack.EditStack` on the session's state, swapped
in only for this session's own work: :mod:`visit.models.overlay`); revert any one or all.
Clicking a cell of the causal trace's heatmaps puts its layer (and the subject) here: "edit at this layer".
"""

from __future__ import annotations

from dash import ALL, Input, Output, State, ctx as dash_ctx, dcc, html, no_update

from visit.editing.before_after import analyses_before_after, before_after, make_request
from visit.editing.counterfact import METRICS, evaluate, load_records
from visit.editing.editors import EDITORS, editor
from visit.errors import VisitError
from visit.graph.diff import diff_graphs
from visit.generation.edits import continuations
from visit.generation.steer import differing
from visit.report.editing import compact_difference, percent
from visit.tokens import display_token
from visit.ui import ids
from visit.ui.controls import parse_int
from visit.ui.diff_view import diff_view, register_row_clicks
from visit.ui.grid import column, data_grid
from visit.ui.panels import causal_trace
from visit.ui.panels.job_widget import JobIds, job_controls, register_job_callbacks
from visit.ui.state import request_graph_update

TITLE = "Editing"
GROUP = "Edit"
DESCRIPTION = ("Rewrite facts in this session's weights (ROME, MEMIT, AlphaEdit, KN-E) and see before and after, "
               "inside and out.")
WIDTH = 0.6
PREFIX = "editing"
KIND = "edit"
TEMPLATE, SUBJECT, NEW, OLD = (f"{PREFIX}-{n}" for n in ("template", "subject", "new", "old"))
METHOD, LAYER, KEY, PROMPTS = (f"{PREFIX}-{n}" for n in ("method", "layer", "key", "prompts"))
MORE = f"{PREFIX}-more"  # more facts: one batch with the first (MEMIT, AlphaEdit) or one edit each
MAX_MORE = 50
LIST, REVERT, REVERT_ALL, SHOW_BEFORE, NOTE = (f"{PREFIX}-{n}" for n in ("list", "revert", "revert-all",
                                                                           "show-before", "note"))
EVAL_PREFIX, EVAL_KIND = f"{PREFIX}-eval", "edit-eval"
EVAL_LIMIT = f"{EVAL_PREFIX}-limit"
EVAL_HINT = ("CounterFact evaluation (seed 001 Table 3) of the method, layer and key chosen above on the shipped "
             "records: each record is edited, scored (efficacy, paraphrase, neighbourhood) and restored, on the "
             "model as loaded (this session's edits are not applied).")
MAX_PROMPT_CHARS = 4000
DIFF_LABELS = ("before the edit", "after the edit")
MAX_EVAL_RECORDS = 50
HINT = ("Rewrite one fact in this session's copy of the weights (nobody else sees it) and see what changed: the "
        "objects' probabilities before and after, and the nodes of the flow graph that changed most. Template: "
        "the prompt with {} for the subject (or the prompt itself, when it contains the subject).")
SPEAK_TOKENS = 8  # the continuation shown for each prompt, before and after the edit (greedy)
METHODS = {"rome": "ROME (rank-one, MLP at one layer)", "kn": "KN-E (knowledge neurons)",
           "cne": "CNE (causal neuron)", "memit": "MEMIT (many facts over a range of layers)",
           "alphaedit": "AlphaEdit (MEMIT in the null space of preserved keys)"}


def layout():
    inputs = [
        dcc.Input(id=TEMPLATE, type="text", placeholder="template, e.g. The capital of {} is", maxLength=500,
                  className="input-wide"),
        dcc.Input(id=SUBJECT, type="text", placeholder="subject", maxLength=200, className="input-small"),
        dcc.Input(id=OLD, type="text", placeholder="old object (blank: the graph's target)", maxLength=200,
                  className="input-small"),
        dcc.Input(id=NEW, type="text", placeholder="new object, e.g. Rome", maxLength=200, className="input-small"),
        dcc.RadioItems(id=METHOD, value="rome", inline=True,
                       options=[{"label": METHODS.get(m, m), "value": m} for m in sorted(EDITORS)]),
        dcc.Input(id=LAYER, type="number", min=0, step=1, placeholder="layer (blank: default)",
                  className="input-tiny"),
        dcc.RadioItems(id=KEY, value="averaged", inline=True,
                       options=[{"label": "ROME key: prefix-averaged (r-ROME)", "value": "averaged"},
                                {"label": "original", "value": "original"}]),
        dcc.Textarea(id=PROMPTS, placeholder="paraphrases and neighbours to compare, one per line", maxLength=4000,
                     className="input-wide", rows=3),
        dcc.Textarea(id=MORE, placeholder="more facts, one per line: template | subject | new [| old] "
                                          "(MEMIT/AlphaEdit: one batch edit; other methods: one edit each)",
                     maxLength=MAX_PROMPT_CHARS, className="input-wide", rows=2),
    ]
    return html.Div([
        html.P(HINT, className="hint"),
        html.Div(id=NOTE, className="hint"),
        job_controls(PREFIX, "Apply edit", controls=inputs),
        html.H4("This session's edits"),
        html.Div(id=LIST),
        html.Button("Revert all", id=REVERT_ALL, n_clicks=0),
        dcc.Checklist(id=SHOW_BEFORE, value=[], options=[{"label": "show the graph before the edits",
                                                          "value": "before"}]),
        html.H4("CounterFact evaluation"),
        html.P(EVAL_HINT, className="hint"),
        job_controls(EVAL_PREFIX, "Evaluate", controls=[
            dcc.Input(id=EVAL_LIMIT, type="number", value=3, min=1, max=MAX_EVAL_RECORDS, step=1,
                      className="input-tiny", placeholder="records")]),
    ], className="panel")


def _prompts(text: str | None) -> list[str]:
    text = text or ""
    if len(text) > MAX_PROMPT_CHARS:
        raise VisitError(f"the prompts to compare are too long ({len(text)} characters; at most {MAX_PROMPT_CHARS})")
    return [line.strip() for line in text.splitlines() if line.strip()]


def more_requests(text: str | None) -> list:
    """The "more facts" rows: ``template | subject | new [| old]`` per line (one clear message for a bad row)."""
    rows = _prompts(text)
    if len(rows) > MAX_MORE:
        raise VisitError(f"at most {MAX_MORE} more facts (got {len(rows)})")
    out = []
    for i, row in enumerate(rows, 1):
        parts = [p.strip() for p in row.split("|")]
        if len(parts) not in (3, 4) or not all(parts):
            raise VisitError(f"more facts, line {i}: write 'template | subject | new' or 'template | subject | new "
                             f"| old' (e.g. 'The capital of {{}} is | France | Rome | Paris')")
        try:
            out.append(make_request(*parts))
        except VisitError as exc:
            raise VisitError(f"more facts, line {i}: {exc}") from None
    return out


def start(ctx, session_id: str, values: tuple):
    """Check the inputs, return the job: edit, measure before/after, diff the graphs (VisitError: the message)."""
    template, subject, old, new, method, layer, key, prompts, more = values
    analysis = ctx.analysis(session_id)
    if analysis is None:
        raise VisitError("trace a prompt first: the edit is compared on its graph")
    vm = analysis.vm
    old = (old or "").strip() or analysis.target.token.strip() or None
    request = make_request((template or "").strip() or analysis.trace.prompt, (subject or "").strip(),
                           (new or "").strip(), old)
    fn = editor(method)  # an unknown method is an error now
    extra = more_requests(more)
    layer = parse_int(layer, "the layer", minimum=0)
    listed = _prompts(prompts)
    state = ctx.state(session_id)
    options = {"layer": layer}
    if method == "rome":
        options["key"] = key or "averaged"

    def job(jc):
        stack = state.edits
        before = stack.overlay()
        if extra and getattr(fn, "batched", False):
            edit = stack.edit(vm, [request] + extra, method, progress=jc.progress, **options)
        else:
            for req in extra:
                stack.edit(vm, req, method, progress=jc.progress, **options)
            edit = stack.edit(vm, request, method, progress=jc.progress, **options)
        after = stack.overlay()
        jc.progress(0, 3, "probabilities before and after")
        rows = before_after(vm, request, listed, before=before, after=after)
        jc.progress(1, 3, "what the model says before and after")
        spoken = continuations(vm, [r["prompt"] for r in rows], before, after, SPEAK_TOKENS)
        jc.progress(2, 3, "the graph before and after")
        graphs = analyses_before_after(vm, ctx.analyze, analysis, before, after)

        diff = diff_graphs(*graphs)
        edit.info.update(before_after=rows, difference=compact_difference(diff), difference_graph=diff)
        jc.progress(3, 3, "done")
        return {"edit": edit.to_json(), "label": edit.label(), "rows": rows, "diff": diff, "spoken": spoken}

    return job


def start_eval(ctx, session_id: str, values: tuple):
    """The CounterFact evaluation job on the shipped records (VisitError: the message)."""
    method, layer, key, limit = values
    editor(method)
    layer = parse_int(layer, "the layer", minimum=0)
    limit = parse_int(limit, "the number of records", blank=3)
    if not 1 <= limit <= MAX_EVAL_RECORDS:
        raise VisitError(f"evaluate between 1 and {MAX_EVAL_RECORDS} records")
    vm = ctx.model(session_id)
    records = load_records(None, limit)
    options = {"key": key or "averaged"} if method == "rome" else {}

    def job(jc):
        jc.progress(0, len(records), "preparing the editor")
        return evaluate(vm, records, method, layer, progress=jc.progress, **options).to_json()  # the model as loaded

    return job


def render_eval(result, finished: bool):
    rows = []
    for name, metrics, intervals in (("unedited", result["unedited"], result["unedited_intervals"]),
                                     (f"{result['method']} (layer {result['layer']})", result["metrics"],
                                      result["intervals"])):
        row = {"editor": name}
        for m in METRICS:
            row[m] = metrics.get(m)
            row[f"{m}_ci"] = intervals.get(m)
        rows.append(row)
    columns = [column("editor")] + [column(m, m, ".1f") for m in METRICS]
    return html.Div([
        html.P(f"{result['n']} records; metrics in percent (95% intervals in the JSON of `visit edit-eval`); "
               f"{result['seconds'].get('edit_per_record', 0):.1f} s per edit", className="hint"),
        data_grid(f"{EVAL_PREFIX}-table", rows, columns, page_size=5)])


def _objects_table(rows: list[dict]) -> html.Table:
    objects = list(rows[0]["before"]["objects"]) if rows else []
    head = html.Tr([html.Th("prompt")] + [html.Th(f"P({o})") for o in objects] + [html.Th("top token")])
    body = []
    for r in rows:
        cells = [html.Td(r["prompt"])]
        for o in objects:
            before, after = r["before"]["objects"][o], r["after"]["objects"][o]
            change = "change-up" if after > before else ("change-down" if after < before else "")
            cells.append(html.Td([html.Span(percent(before), className="num"), html.Span(" → ", className="arrow"),
                                  html.Span(percent(after), className=f"num {change}")], className="before-after"))
        cells.append(html.Td(f"{display_token(r['before']['top'][0]['token'])} → "
                             f"{display_token(r['after']['top'][0]['token'])}"))
        body.append(html.Tr(cells))
    return html.Table([head, *body], className="diff-table")


def _spoken_table(spoken: list[dict]) -> html.Table:
    """What the model says after each prompt, before and after the edit (tokens that changed marked)."""
    head = html.Tr([html.Th("prompt"), html.Th("continuation before"), html.Th("after")])
    body = []
    for r in spoken:
        before, after = r["before"], r["after"]
        changed = differing(before.ids, after.ids)
        body.append(html.Tr([html.Td(r["prompt"]), html.Td(before.text),
                             html.Td([html.Span(t.token, className="gen-diff" if c else None)
                                      for t, c in zip(after.tokens, changed)])]))
    return html.Table([head, *body], className="diff-table editing-spoken")


def render(result, finished: bool):
    return html.Div([html.P(result["label"], className="hint"), _objects_table(result["rows"]),
                     _spoken_table(result.get("spoken") or []), diff_view(result["diff"], DIFF_LABELS)])


def summary(result) -> str:
    return f"applied: {result['label']}"


def edit_list(state) -> html.Div:
    if not len(state.edits):
        return html.Div("no edits: the model as it was loaded", className="hint")
    return html.Div([html.Div([html.Span(e.label(), className="edit-label"),
                               html.Button("revert", id={"type": REVERT, "index": e.id}, n_clicks=0)],
                              className="edit-row") for e in state.edits])


def register_callbacks(app, ctx):
    widget_ids = JobIds(PREFIX)
    register_row_clicks(app, DIFF_LABELS)  # a changed node's row puts it into the graph
    register_job_callbacks(app, ctx, EVAL_PREFIX, EVAL_KIND, start_eval, render_eval,
                           inputs=[State(METHOD, "value"), State(LAYER, "value"), State(KEY, "value"),
                                   State(EVAL_LIMIT, "value")])
    register_job_callbacks(app, ctx, PREFIX, KIND, start, render, summary=summary,
                           inputs=[State(TEMPLATE, "value"), State(SUBJECT, "value"), State(OLD, "value"),
                                   State(NEW, "value"), State(METHOD, "value"), State(LAYER, "value"),
                                   State(KEY, "value"), State(PROMPTS, "value"), State(MORE, "value")])

    @app.callback(Output(LIST, "children"), Output(ids.GRAPH_REQUEST, "data", allow_duplicate=True),
                  Input(widget_ids.seen, "data"), Input({"type": REVERT, "index": ALL}, "n_clicks"),
                  Input(REVERT_ALL, "n_clicks"), Input(SHOW_BEFORE, "value"), Input(ids.ANALYSIS_VERSION, "data"),
                  State(ids.SESSION, "data"), prevent_initial_call=True)
    def _edits(seen, _reverts, _revert_all, show_before, _version, session_id):
        """The list of edits; after an edit, a revert or the before/after toggle, the graph is traced again on
        the session's weights (the changed nodes marked after an edit)."""
        state = ctx.state(session_id)
        trigger = dash_ctx.triggered_id
        request = no_update
        if trigger == widget_ids.seen:
            result = ctx.jobs.result(session_id, KIND)
            if not (isinstance(seen, list) and len(seen) == 2 and seen[1] == "done") or result is None:
                return edit_list(state), no_update
            request = request_graph_update(session_id, highlight=tuple(result["diff"]["top_changed"]))
        elif isinstance(trigger, dict) and trigger.get("type") == REVERT:
            if not dash_ctx.triggered or not dash_ctx.triggered[0]["value"]:
                return no_update, no_update  # the list was re-drawn, nobody clicked
            try:
                state.edits.revert(int(trigger["index"]))
            except VisitError:
                return edit_list(state), no_update
            request = request_graph_update(session_id, highlight=())
        elif trigger == REVERT_ALL:
            if not len(state.edits):
                return edit_list(state), no_update
            state.edits.clear()
            request = request_graph_update(session_id, highlight=())
        elif trigger == SHOW_BEFORE:
            wanted = "before" in (show_before or [])
            if wanted != state.show_unedited:
                state.show_unedited = wanted
                request = request_graph_update(session_id, highlight=())
        return edit_list(state), request if state.analysis is not None else no_update

    @app.callback(Output(TEMPLATE, "value"), Output(SUBJECT, "value"), Output(OLD, "placeholder"),
                  Input(ids.ANALYSIS_VERSION, "data"), State(TEMPLATE, "value"), State(SUBJECT, "value"),
                  State(ids.SESSION, "data"), prevent_initial_call=True)
    def _prefill(_version, template, subject, session_id):
        """Template and subject from the traced prompt (the subject when it is a shipped fact)."""
        analysis = ctx.analysis(session_id)
        if analysis is None:
            return no_update, no_update, no_update
        prompt = analysis.trace.prompt
        placeholder = f"old object (blank: {display_token(analysis.target.token).strip()})"
        if (template or "").strip():
            return no_update, no_update, placeholder
        typed = (subject or "").strip()
        subject = typed if typed and typed in prompt else causal_trace.shipped_subject(prompt)
        if subject and subject in prompt:
            return prompt.replace(subject, "{}", 1), subject, placeholder
        return prompt, no_update, placeholder

    @app.callback(Output(LAYER, "value"), Output(SUBJECT, "value", allow_duplicate=True),
                  Output(NOTE, "children"),
                  Input({"type": causal_trace.HEAT, "kind": ALL}, "clickData"), State(causal_trace.SUBJECT, "value"),
                  prevent_initial_call=True)
    def _edit_at_layer(_clicks, subject):
        """A causal-trace cell names the layer to edit at (ROME's choice: the MLP peak at the subject)."""
        if not dash_ctx.triggered or not dash_ctx.triggered[0]["value"]:
            return no_update, no_update, no_update
        point = (dash_ctx.triggered[0]["value"].get("points") or [None])[0]
        if not point:
            return no_update, no_update, no_update
        layer = int(point["x"])
        return (layer, (subject or "").strip() or no_update,
                f"Edit at layer {layer}: picked from the causal trace (apply the edit below).")
