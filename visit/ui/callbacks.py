"""The app's own callbacks: trace (and re-draw on panel requests), load a model, export."""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import replace

import flask
from dash import ALL, Input, Output, State, ctx, dcc, no_update

from visit import limits, pipeline
from visit.batching import TraceBatcher
from visit.errors import VisitError
from visit.graph.groups import EMPTY
from visit.pipeline import export_html
from visit.ui import fast, ids, model_fit, notice, url_state, views
from visit.ui import queue as trace_queue
from visit.ui.controls import make_request, parse_int
from visit.ui.model_registry import describe
from visit.ui.state import MARK_FIELDS, REQUEST_FIELDS, decode_graph_request
from visit.ui.view import INITIAL_LAYERS, apply_ranges, initial_ranges

log = logging.getLogger(__name__)

OUTPUTS = dict(
    figure=Output(ids.GRAPH, "figure"),
    message=Output(ids.MESSAGE, "children"),
    predictions=Output(ids.PREDICTIONS, "children"),
    suggestions=Output(ids.TARGET_SUGGESTIONS, "children"),
    strip=Output(ids.LAYER_STRIP, "children"),
    tokens=Output(ids.PROMPT_TOKENS, "children"),
    version=Output(ids.ANALYSIS_VERSION, "data"),
    hint=Output(ids.GRAPH_HINT, "children"),
    target=Output(ids.TARGET, "value"),
    position=Output(ids.POSITION, "value"),
    model_status=Output(ids.MODEL_STATUS, "children"),
    layer_start=Output(ids.LAYER_START, "value"),
    layer_end=Output(ids.LAYER_END, "value"),
    knobs={name: Output(cid, "value") for name, cid in ids.KNOBS.items()},
)
TRIGGERS = dict(
    trace=Input(ids.TRACE, "n_clicks"),
    prompt_enter=Input(ids.PROMPT, "n_submit"),
    target_enter=Input(ids.TARGET, "n_submit"),
    position_enter=Input(ids.POSITION, "n_submit"),
    layer_start_enter=Input(ids.LAYER_START, "n_submit"),  # Enter in a layer box re-draws (blank: all layers)
    layer_end_enter=Input(ids.LAYER_END, "n_submit"),
    chips=Input({"type": ids.PREDICTION_CHIP, "index": ALL}, "n_clicks"),
    tokens=Input({"type": ids.PROMPT_TOKEN, "index": ALL}, "n_clicks"),
    graph_request=Input(ids.GRAPH_REQUEST, "data"),
    clear_marks=Input(ids.CLEAR_MARKS, "n_clicks"),
    model_load=Input(ids.MODEL_LOAD, "n_clicks"),
    model_enter=Input(ids.MODEL_INPUT, "n_submit"),
    prune_by=Input(ids.PRUNE_BY, "value"),  # a click apart: the pruning mode re-draws at once (no new pass)
    circuit_share=Input(ids.CIRCUIT_SHARE, "value"),
    url=Input(ids.URL_TRACE, "data"),  # a link's view (visit.ui.url_state)
)
CONTROLS = dict(
    session_id=State(ids.SESSION, "data"),
    prompt=State(ids.PROMPT, "value"),
    target=State(ids.TARGET, "value"),
    position=State(ids.POSITION, "value"),
    layer_start=State(ids.LAYER_START, "value"),
    layer_end=State(ids.LAYER_END, "value"),
    knobs={name: State(cid, "value") for name, cid in ids.KNOBS.items()},
    show_norms=State(ids.SHOW_NORMS, "value"),
    model_name=State(ids.MODEL_INPUT, "value"),
    relayout=State(ids.GRAPH, "relayoutData"),
)


HINT_AFTER_ZOOM_JS = """
function(relayout, hint) {
    if (!relayout || !relayout['xaxis.autorange'] || !hint) { return window.dash_clientside.no_update; }
    return 'All drawn layers are shown: drag to pan, scroll to zoom.';
}
"""


def unchanged() -> dict:
    return {key: ({k: no_update for k in value} if isinstance(value, dict) else no_update)
            for key, value in OUTPUTS.items()}


def register(app, registry, sessions, analyze):
    """``analyze`` is :func:`visit.pipeline.analyze` (injected so the wiring stays testable)."""
    queue = app.visit_queue = trace_queue.TraceQueue()  # traces take turns; the page shows its place
    trace_queue.register(app, queue)
    app.visit_batcher = None
    if analyze is pipeline.analyze:  # the real pipeline (tests inject stand-ins): sessions share forward passes
        analyze = batched(analyze, queue, app)
    app.visit_notice = notice.ServerNotice()  # what the server tells every page (shutting down)
    notice.register(app, app.visit_notice)
    model_fit.register(app, registry)  # the model box says whether a model fits before it is loaded

    @app.callback(output=OUTPUTS, inputs=dict(triggers=TRIGGERS, controls=CONTROLS), prevent_initial_call=True,
                  running=[(Output(ids.TRACE, "disabled"), True, False),
                           (Output(ids.TRACE, "children"), "Tracing…", "Trace"),
                           (Output(ids.PROGRESS, "className"), "progress progress-active", "progress"),
                           *trace_queue.running_outputs()])
    def on_trace(triggers, controls):
        trigger = ids.URL_TRACE if f"{ids.URL_TRACE}.data" in ctx.triggered_prop_ids else ctx.triggered_id
        if isinstance(trigger, dict) and (not ctx.triggered or not ctx.triggered[0]["value"]):
            return unchanged()  # new chips or tokens were drawn, nobody clicked one
        if trigger == ids.URL_TRACE and not triggers["url"]:
            return unchanged()  # the page loading with no view in its URL: nothing to trace, nothing to complain of
        state = sessions.get(controls["session_id"])
        with state.lock:  # a second Enter waits for the first trace instead of interleaving with it
            try:
                with queue.turn(controls["session_id"]):
                    return trace_for(trigger, triggers, controls, state)
            except VisitError as exc:  # the queue is full
                out = unchanged()
                out["message"] = views.messages(errors=[str(exc)])
                return out

    def trace_for(trigger, triggers, controls, state) -> dict:
        out, chip_id, target = unchanged(), None, None
        switch_notes: list[str] = []
        moved: dict = {}
        try:
            link = (triggers["url"] or {}) if trigger == ids.URL_TRACE else {}
            if trigger in (ids.MODEL_LOAD, ids.MODEL_INPUT) or link.get("model"):
                vm = registry.get(controls["model_name"])
                key = registry.key(controls["model_name"])
                if key != registry.key(state.model_name):
                    switched = forget_other_model(state)
                    if switched:
                        switch_notes.append(switched)
                state.model_name = key
                out["model_status"] = describe(vm)
                if not (controls["prompt"] or "").strip():
                    out["message"] = views.messages(notes=[*switch_notes, f"loaded {vm.name}"])
                    if state.analysis is None:
                        out["figure"] = views.empty_figure()
                    return out
            vm = registry.get(state.model_name)
            if trigger == ids.GRAPH_REQUEST:
                changes = decode_graph_request(triggers["graph_request"])
                if not changes or state.request is None:
                    return unchanged()
                moved = {k: changes.pop(k) for k in REQUEST_FIELDS if k in changes}
                request = replace(state.request, settings=replace(state.request.settings, **changes), **moved)
                limits.check_graph_settings(request.settings)  # panels' requests are capped too
                state.marks.update({k: v for k, v in changes.items() if k in MARK_FIELDS})
                if not moved and set(changes) == {"highlight"} and fast.can_redraw(state, vm, request):
                    state.request = request
                    out["figure"] = fast.patch_highlight(state, request.settings.highlight)
                    state.version += 1  # panels and the URL see the new marks
                    out["version"] = state.version
                    return out
            else:
                if trigger in (ids.PRUNE_BY, ids.CIRCUIT_SHARE) and state.request is None:
                    return unchanged()  # nothing traced yet: the mode applies to the next trace
                if trigger == ids.CLEAR_MARKS:
                    state.marks = {}
                    if state.request is None:
                        return unchanged()
                target, position = controls["target"], controls["position"]
                if isinstance(trigger, dict) and trigger.get("type") == ids.PROMPT_TOKEN:
                    position = out["position"] = trigger.get("index")
                elif isinstance(trigger, dict):  # a prediction chip
                    preds = state.analysis.top_predictions if state.analysis is not None else []
                    index = trigger.get("index", -1)
                    if not 0 <= index < len(preds):
                        return unchanged()
                    target = out["target"] = preds[index]["token"]
                    chip_id = preds[index]["id"]
                request = make_request(
                    vm, prompt=controls["prompt"], target=target, position=position,
                    layer_start=controls["layer_start"], layer_end=controls["layer_end"],
                    knobs={**controls["knobs"], "circuit_share": triggers["circuit_share"]},
                    prune_by=triggers["prune_by"], show_norms="on" in (controls["show_norms"] or []),
                    marks=state.marks)
                if link.get("tid") not in (None, ""):
                    chip_id = parse_int(link["tid"], "the target token id", minimum=0)
                    if chip_id >= vm.dims.d_vocab:
                        raise VisitError(f"the link's target token id {chip_id} is not in this model's vocabulary")
                if chip_id is not None:
                    request = replace(request, target_id=chip_id)
            if fast.can_redraw(state, vm, request):  # same pass, other graph settings: no forward pass
                analysis = fast.redraw(state.analysis, request.settings)
                redrawn = True
            else:
                analysis = fast.first_view(analyze, vm, request)
                redrawn = False
            analysis = fast.curated(analysis, state.curation)  # the session's pins, groups and labels
        except VisitError as exc:
            out["message"] = views.messages(errors=[str(exc)])
            return out
        except Exception as exc:  # noqa: BLE001 - show it, keep serving, keep the last graph
            log.exception("tracing failed")
            out["message"] = views.messages(errors=[f"internal error: {type(exc).__name__}: {exc}"])
            return out
        state.analysis, state.request = analysis, request
        state.version += 1
        out.update(present(analysis, vm, state.version, state.view, controls["relayout"]))
        if switch_notes:
            out["message"] = views.messages(notes=[*switch_notes, *(analysis.notes or [])])
        if redrawn and trigger in (ids.GRAPH_REQUEST, ids.PRUNE_BY, ids.CIRCUIT_SHARE):
            # the same pass, changed from the page that shows it: send only the graph's traces (dash.Patch) and
            # keep chips, strip and tokens (Enter or Trace send everything: the page may have been reloaded)
            out["figure"] = fast.patch_data(out["figure"])
            for key in ("predictions", "suggestions", "strip", "tokens", "model_status"):
                out[key] = no_update
        if trigger == ids.GRAPH_REQUEST and moved:  # a panel moved the graph: the boxes say where it is now
            if "position" in moved:
                out["position"] = analysis.trace.position
            if "target_id" in moved:
                out["target"] = analysis.target.token
        if out["target"] is no_update and request.target_text is None:
            out["target"] = ""
        return out

    fast.register_completion(app, sessions)
    # the hint says what is shown: a double-click (autorange) shows every drawn layer, so "the last 4" is over
    app.clientside_callback(HINT_AFTER_ZOOM_JS, Output(ids.GRAPH_HINT, "children", allow_duplicate=True),
                            Input(ids.GRAPH, "relayoutData"), State(ids.GRAPH_HINT, "children"),
                            prevent_initial_call=True)

    @app.callback(Output(ids.DOWNLOAD, "data"), Output(ids.MESSAGE, "children", allow_duplicate=True),
                  Input(ids.EXPORT, "n_clicks"), State(ids.SESSION, "data"), prevent_initial_call=True)
    def on_export(n_clicks, session_id):
        analysis = sessions.analysis(session_id)
        if not n_clicks:
            return no_update, no_update
        if analysis is None:
            return no_update, views.messages(errors=[sessions.notice(session_id)
                                                     or "nothing to export yet: trace a prompt first"])

        try:
            page = export_html(analysis, link=url_state.encode(sessions.get(session_id)) or None,
                               app_url=flask.request.host_url)
        except VisitError as exc:
            return no_update, views.messages(errors=[str(exc)])
        except Exception as exc:  # noqa: BLE001
            log.exception("export failed")
            return no_update, views.messages(errors=[f"export failed: {type(exc).__name__}: {exc}"])
        return dcc.send_string(page, report_filename(analysis.trace.prompt)), no_update


def forget_other_model(state) -> str:
    """A session switching models drops what named the old model's nodes (marks, pins, groups, labels) and the
    old model's graph: node ids like L27.N846 mean nothing, or something else, in another model. Returns a note
    for the user ("" when there was nothing to drop)."""
    had = bool(state.marks) or not state.curation.is_empty() or state.curation.selected is not None
    state.marks, state.curation = {}, EMPTY
    state.analysis, state.request = None, None
    return "the marks, pins, groups and labels of the previous model were cleared" if had else ""


def batched(analyze, queue, app):
    """``analyze`` whose forward pass is shared with the other sessions tracing meanwhile (visit.batching): the
    session gives its turn back while it waits for the pass, so the next ones are admitted and join it, and takes
    it again, before later arrivals, for the graph (built per session, in turns, as before)."""
    batcher = app.visit_batcher = TraceBatcher(max_rows=limits.BATCH.value)

    def tracer(vm, prompt, position=None, interventions=()):
        with queue.lent():
            return batcher.trace(vm, prompt, position, interventions)

    return functools.partial(analyze, tracer=tracer)


def present(analysis, vm, version: int, view=None, relayout=None) -> dict:
    """What the page shows of a fresh analysis (``view``: the session's ViewMemory)."""
    s = analysis.settings
    figure = analysis.figure.to_dict()  # a copy: the export keeps the pipeline's own layout
    layout = figure.setdefault("layout", {})
    layout.pop("height", None)  # fill the page's graph box instead
    layout["autosize"] = True
    layout["showlegend"] = False  # the page's "How to read this graph" explains the marks; the graph keeps the room
    key = f"{vm.name}|{s.layer_start}|{s.layer_end}"
    layout["uirevision"] = key
    ranges = view.update(key, relayout) if view is not None else {}
    # a first view (analysis.partial) holds just the last layers: open on all of it, so that the whole graph,
    # patched in when complete, arrives around the same view
    opening = {} if ranges else initial_ranges(analysis.graph, 0 if analysis.partial else INITIAL_LAYERS)
    apply_ranges(layout, ranges or opening)
    n_layers = len(s.layers(vm.dims.n_layers))
    hint = (f"Showing the last {INITIAL_LAYERS} of {n_layers} layers: drag to pan, scroll to zoom, "
            f"double-click to see them all." if opening else "")
    notes = list(analysis.notes or [])
    if analysis.target.note and analysis.target.note not in notes:
        notes.insert(0, analysis.target.note)
    edited = views.edited_note(analysis.trace.overlay)
    if edited:
        notes.insert(0, edited)
    return dict(
        figure=figure,
        message=views.messages(notes=notes),
        predictions=views.prediction_chips(analysis.top_predictions, analysis.target.id),
        suggestions=views.target_options(analysis.top_predictions),
        strip=views.layer_strip(analysis.layer_strip, analysis.target.token),
        tokens=views.prompt_tokens(analysis.trace.tokens, analysis.trace.position),
        version=version,
        hint=hint,
        model_status=describe(vm),
        layer_start=s.layer_start,
        layer_end=s.layer_end,
        knobs={name: getattr(s, name, None) for name in ids.KNOBS},
    )


def report_filename(prompt: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", prompt).strip("-")[:40] or "report"
    return f"visit-{slug}.html"
