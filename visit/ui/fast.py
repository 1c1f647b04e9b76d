"""The app's fast paths: what is drawn first, what changes without a forward pass, and what is sent.

- A new prompt is traced once and drawn as a *first view*: only the last few layers
  of its range (:data:`FIRST_VIEW_LAYERS`; :func:`visit.pipeline.analyze` with ``first_view``), which is what the page opens on anyway.
  :func:`register_completion` then adds the other layers from the same trace and patches the figure's
  traces in (``dash.Patch``), keeping the user's zoom.
- A change that needs no new forward pass (pruning knobs, layer range, included/flagged nodes, prune mode)
  re-draws from the session's trace (:func:`visit.pipeline.redraw`; node lens rows are cached per trace),
  again first on the last layers, and sends only the figure's traces; the completion follows as above.
- A highlight changes one trace (the figure's last, :func:`visit.render.figure.highlight_trace`).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from dash import Input, Output, Patch, State, no_update

from visit.curation import curate
from visit.graph.groups import drawn_pins, mark_pins, same_but_pins
from visit.models.overlay import current, version_under
from visit.pipeline import complete, redraw as pipeline_redraw
from visit.render.figure import highlight_trace, label_trace, node_traces, pinned_trace
from visit.ui import ids
from visit.ui.view import INITIAL_LAYERS

log = logging.getLogger(__name__)
FIRST_VIEW_LAYERS = INITIAL_LAYERS  # layers drawn first (the view the page opens on); read at call time


def can_redraw(state, vm, request) -> bool:
    """True when ``request`` differs from the session's analysis only in graph settings: same model (and
    weights version), prompt, position and target, so the kept trace serves it."""
    a, old = state.analysis, state.request
    if a is None or old is None or a.vm is not vm:
        return False
    if a.trace.overlay != current() or a.trace.weights_version != version_under(vm):
        return False  # other weights than the trace's (the session's edits changed, or a weight did): trace again
    return (request.prompt, request.position, request.target_text, request.target_id) == \
        (old.prompt, old.position, old.target_text, old.target_id)


def first_view(analyze, vm, request):
    """A new analysis drawn first on its last layers (``analyze`` may be an injected stand-in without
    ``first_view``: then the whole graph)."""
    try:
        return analyze(vm, request.prompt, request.target_text, request.position, request.settings,
                       target_id=request.target_id, first_view=FIRST_VIEW_LAYERS)
    except TypeError as exc:
        if "first_view" not in str(exc):
            raise
        return analyze(vm, request.prompt, request.target_text, request.position, request.settings,
                       target_id=request.target_id)


def redraw(analysis, settings):
    """The same trace with other settings, drawn first on the last layers again (the completion follows):
    re-drawing 30 layers costs several times what the 4 the page opens on do."""
    return pipeline_redraw(analysis, settings, first_view=FIRST_VIEW_LAYERS)


def curated(analysis, curation):
    """``analysis`` drawn with the session's pins, groups and labels (:func:`visit.curation.curate`: no forward
    pass); ``analysis`` itself when it already is."""
    current = getattr(analysis, "curation", None)
    if curation is None or current == curation or (current is None and curation.is_empty()):
        return analysis

    return curate(analysis, curation)


def patch_pins(analysis, curation) -> Patch | None:
    """A pin toggled (nothing else of the curation changed): mark the pins on the drawn graph and return the
    one-trace patch of the pin rings (the figure's last but one trace), like a highlight; None when the change
    needs the whole figure (:func:`curated`)."""
    current = getattr(analysis, "curation", None)
    if current is None or not same_but_pins(current, curation) or len(analysis.figure.data) < 2:
        return None
    if analysis.figure.data[-2].name != "pinned":
        return None
    mark_pins(analysis.graph, drawn_pins(curation))
    analysis.curation = curation
    analysis.graph.graph["curation"] = curation.as_dict()
    return _patch_marks(analysis, len(analysis.figure.data) - 2, pinned_trace)


def patch_labels(analysis, curation) -> Patch | None:
    """Only labels changed (of nodes already drawn, not groups): set them on the drawn graph and return the patch of
    the node traces (their hovers show the label) and the label trace; the edges, the most of the figure, are not
    re-drawn. None when the change needs :func:`curated`."""
    current = getattr(analysis, "curation", None)
    if current is None or analysis.uncurated is None:  # labels go on a curated copy, never on the built graph
        return None
    if (current.pins, current.groups, current.pinned_only) != (curation.pins, curation.groups, curation.pinned_only):
        return None
    old, new = current.label_map, curation.label_map
    changed = {n for n in old.keys() | new.keys() if old.get(n) != new.get(n)}
    g = analysis.graph
    if not changed or any(n not in g or g.nodes[n]["kind"] == "group" for n in changed):
        return None
    data = analysis.figure.data
    positions = _positions(g)
    before = {n: g.nodes[n].get("user_label") for n in changed}
    for n in changed:
        if new.get(n):
            g.nodes[n]["user_label"] = new[n]
        else:
            g.nodes[n].pop("user_label", None)
    nodes = node_traces(g, positions, analysis.target.token)
    first = len(data) - 3 - len(nodes)  # edges, node traces, labels, pins, highlight (visit.render.figure)
    if first < 0 or [t.name for t in data[first:first + len(nodes)]] != [t.name for t in nodes] \
            or data[-3].name != "top token":  # not the layout this patch knows: re-draw instead
        for n, text in before.items():
            if text:
                g.nodes[n]["user_label"] = text
            else:
                g.nodes[n].pop("user_label", None)
        return None
    patched = Patch()
    for index, trace in zip(range(first, first + len(nodes)), nodes):
        data[index].update(trace.to_plotly_json())
        patched["data"][index] = trace.to_plotly_json()
    labels = label_trace(g, positions)
    data[-3].update(labels.to_plotly_json())
    patched["data"][len(data) - 3] = labels.to_plotly_json()
    analysis.curation = curation
    g.graph["curation"] = curation.as_dict()
    return patched


def patch_data(figure: dict) -> Patch:
    """Send only a figure's traces: the layout (zoom, ranges, legend state) stays as the browser has it."""
    patched = Patch()
    patched["data"] = figure["data"]
    return patched


def patch_highlight(state, highlight) -> Patch:
    """Set the session's highlighted nodes and return the one-trace patch that draws them."""
    analysis = state.analysis
    wanted = set(highlight)
    for n, a in analysis.graph.nodes(data=True):
        a["highlighted"] = n in wanted

    analysis.settings = replace(analysis.settings, highlight=tuple(highlight))
    return _patch_marks(analysis, len(analysis.figure.data) - 1, highlight_trace)


def _positions(g) -> dict:
    return {n: (a.get("x", 0.0), a.get("y", 0.0)) for n, a in g.nodes(data=True)}


def _patch_marks(analysis, index: int, make_trace) -> Patch:
    """Re-draw one marks trace (highlight rings, pin rings) of the figure and return its one-trace patch."""
    trace = make_trace(analysis.graph, _positions(analysis.graph))
    analysis.figure.data[index].update(x=trace.x, y=trace.y, showlegend=trace.showlegend)
    patched = Patch()
    patched["data"][index] = trace.to_plotly_json()
    return patched


def register_completion(app, sessions) -> None:
    """After a first view is drawn, add the rest of the graph from the same trace and patch it in."""

    @app.callback(Output(ids.GRAPH, "figure", allow_duplicate=True), Input(ids.ANALYSIS_VERSION, "data"),
                  State(ids.SESSION, "data"), prevent_initial_call=True)
    def complete_view(version, session_id):
        state = sessions.get(session_id)
        first = state.analysis
        if first is None or not first.partial:
            return no_update

        try:
            whole = complete(first)  # outside the session lock: a new trace need not wait for this
        except Exception:  # noqa: BLE001 - the first view stays; the log says why
            log.exception("completing the graph failed")
            return no_update
        with state.lock:
            now = state.analysis
            if now is not first and (now is None or now.trace is not first.trace or now.settings != first.settings
                                     or now.drawn_layers != first.drawn_layers):
                return no_update  # a newer analysis arrived meanwhile (not just the first view re-curated)
            whole = curated(whole, now.curation)  # pins, groups or labels changed while it was completed
            whole.extras = first.extras
            state.analysis = whole
        return patch_data(whole.figure.to_dict())
