"""Pin, group and label nodes of the flow graph (the bar under the graph).

Ctrl/Cmd-click a node to pin it (``assets/pins.js`` notes the modifier keys of the last click; a clientside
callback turns a click with one held into ``ids.PIN_CLICK``), or click it and press "Pin". Pinned nodes can be
grouped into one named node (a supernode: :mod:`visit.graph.groups`), any node or group gets a label shown
instead of its lens label, and "pinned only" draws just the pins and the edges between them, in place.

Everything lives in the session's :class:`~visit.graph.groups.Curation` (``state.curation``, server-side):
each change applies it to the session's analysis (:func:`visit.ui.fast.curated`: no forward pass) and sends
only the figure's traces (``dash.Patch``); ``ids.VIEW_VERSION`` then changes so the URL follows
(:mod:`visit.ui.url_state`). The selected node (a plain click, or the Details panel's pick) is kept too.
"""

from __future__ import annotations

import logging
import time

from dash import Input, Output, State, dcc, html, no_update
from dash import ctx as dash_ctx

from visit.errors import VisitError
from visit.graph import groups
from visit.ui import fast, ids
from visit.ui.clicks import node_id_from_click

log = logging.getLogger(__name__)

LIST = "pins-list"
ONLY = "pins-only"
PIN = "pins-pin-selected"
GROUP = "pins-group"
GROUP_NAME = "pins-group-name"
UNGROUP = "pins-ungroup"
LABEL = "pins-label"
LABEL_TEXT = "pins-label-text"
CLEAR = "pins-clear"
NOTE = "pins-note"
HINT = "Ctrl/Cmd-click nodes to pin them; group the pins into one node; label the selected node."

# a click with Ctrl or Cmd held (assets/pins.js keeps the last click's keys) -> {"node", "t"}
PIN_CLICK_JS = """
function(click) {
    var keys = window.visitClickKeys || {};
    if (!click || !click.points || !click.points.length || !keys.pin || Date.now() - keys.t > 3000) {
        return window.dash_clientside.no_update;
    }
    var data = click.points[0].customdata;
    var node = Array.isArray(data) ? data[0] : data;
    if (typeof node !== 'string' || node.indexOf('edge:') === 0) { return window.dash_clientside.no_update; }
    return {node: node, t: keys.t};
}
"""


def controls() -> html.Div:
    """The bar under the graph."""
    small = "btn btn-small"
    return html.Div([
        html.Span("Pins", className="section-title"),
        html.Span(id=LIST, className="pins-list", children=html.Span(HINT, className="hint")),
        dcc.Checklist(id=ONLY, options=[{"label": "pinned only", "value": "on"}], value=[], inline=True,
                      className="check"),
        html.Button("Pin", id=PIN, n_clicks=0, className=small, title="pin or unpin the selected node"),
        dcc.Input(id=GROUP_NAME, type="text", placeholder="group name", maxLength=groups.MAX_TEXT,
                  className="pins-input", debounce=False),
        html.Button("Group pinned", id=GROUP, n_clicks=0, className=small,
                    title="draw the pinned nodes as one node"),
        html.Button("Ungroup", id=UNGROUP, n_clicks=0, className=small, title="dissolve the selected group"),
        dcc.Input(id=LABEL_TEXT, type="text", placeholder="label", maxLength=groups.MAX_TEXT, className="pins-input",
                  debounce=False),
        html.Button("Label", id=LABEL, n_clicks=0, className=small,
                    title="show this text on the selected node (blank: the lens label again)"),
        html.Button("Clear pins", id=CLEAR, n_clicks=0, className=small, title="forget pins, groups and labels"),
        html.Span(id=NOTE, className="pins-note", role="status"),
    ], className="pin-bar")


def pin_list(c: groups.Curation) -> list:
    """The pins (group names and labels as text: React escapes them)."""
    if not c.pins and not c.groups and not c.labels:
        return [html.Span(HINT, className="hint")]
    labels = c.label_map
    out = []
    for p in c.pins:
        g = c.group(p)
        text = f"{p} '{g.name}' ({len(g.members)})" if g else p
        if p in labels:
            text += f" = {labels[p]}"
        out.append(html.Span(text, className="pin-chip" + (" pin-group" if g else ""), title=p))
    for g in c.groups:
        if g.id not in c.pins:
            out.append(html.Span(f"{g.id} '{g.name}' ({len(g.members)})", className="pin-chip pin-group"))
    if c.selected:
        out.append(html.Span(f"selected: {c.selected}", className="pin-selected"))
    return out


def change(c: groups.Curation, trigger: str, *, node=None, selected=None, group_name=None, label=None,
           only=None) -> groups.Curation:
    """The curation after one control was used (pure: the callback's logic, testable without Dash)."""
    if trigger == ids.PIN_CLICK:
        return groups.toggle_pin(c, node)
    if trigger == PIN:
        if not selected:
            raise VisitError("click a node first, then Pin (or Ctrl/Cmd-click it)")
        return groups.toggle_pin(c, selected)
    if trigger == GROUP:
        return groups.group_pins(c, group_name or "")
    if trigger == UNGROUP:
        if not selected or c.group(selected) is None:
            raise VisitError("click a group's node first, then Ungroup")
        return groups.ungroup(c, selected)
    if trigger == LABEL:
        if not selected:
            raise VisitError("click a node first, then Label")
        return groups.set_label(c, selected, label or "")
    if trigger == ONLY:
        return groups.Curation(c.pins, c.groups, c.labels, c.selected, bool(only))
    if trigger == CLEAR:  # a selected group goes with the groups (Details and the URL would name a ghost)
        kept = c.selected if c.selected is not None and c.group(c.selected) is None else None
        return groups.Curation(selected=kept)
    return c


def register(app, sessions, details_node: str | None = None) -> None:
    """Wire the bar. ``details_node``: the Details panel's node picker id (when that panel is loaded): its
    value is the selected node (the panel shows the session's selected node when a link opens)."""
    app.clientside_callback(PIN_CLICK_JS, Output(ids.PIN_CLICK, "data"), Input(ids.GRAPH, "clickData"),
                            prevent_initial_call=True)

    @app.callback(
        Output(ids.GRAPH, "figure", allow_duplicate=True), Output(NOTE, "children"),
        Output(ids.VIEW_VERSION, "data", allow_duplicate=True),
        Input(ids.PIN_CLICK, "data"), Input(PIN, "n_clicks"), Input(GROUP, "n_clicks"), Input(UNGROUP, "n_clicks"),
        Input(LABEL, "n_clicks"), Input(ONLY, "value"), Input(CLEAR, "n_clicks"),
        State(GROUP_NAME, "value"), State(LABEL_TEXT, "value"), State(ids.SESSION, "data"),
        prevent_initial_call=True)
    def on_pin(pin_click, _pin, _group, _ungroup, _label, only, _clear, group_name, label, session_id):
        trigger = dash_ctx.triggered_id
        if trigger == ids.PIN_CLICK and not (pin_click or {}).get("node"):
            return no_update, no_update, no_update  # the store's first value as the page loads: nobody clicked
        state = sessions.get(session_id)
        with state.lock:  # not while a trace replaces the analysis
            old = state.curation
            try:
                new = change(old, trigger, node=(pin_click or {}).get("node"), selected=old.selected,
                             group_name=group_name, label=label, only="on" in (only or []))
            except VisitError as exc:
                return no_update, str(exc), no_update
            if new == old:
                return no_update, "", no_update
            state.curation = new
            figure = no_update
            if state.analysis is not None:
                figure = fast.patch_pins(state.analysis, new)  # a pin alone: one trace (the rings)
                if figure is None:  # labels alone: the node traces and the labels, not the edges
                    figure = fast.patch_labels(state.analysis, new)
                if figure is None:
                    try:
                        state.analysis = fast.curated(state.analysis, new)
                    except VisitError as exc:
                        return no_update, str(exc), no_update
                    figure = fast.patch_data(state.analysis.figure.to_dict())
        return figure, "", time.time_ns()

    @app.callback(Output(LIST, "children"), Output(ONLY, "value"), Input(ids.VIEW_VERSION, "data"),
                  Input(ids.ANALYSIS_VERSION, "data"), State(ONLY, "value"), State(ids.SESSION, "data"),
                  prevent_initial_call=True)
    def show(_view, _version, only, session_id):
        c = sessions.get(session_id).curation
        wanted = ["on"] if c.pinned_only else []
        return pin_list(c), (wanted if wanted != (only or []) else no_update)

    def select(session_id, node) -> object:
        state = sessions.get(session_id)
        if node == state.curation.selected:
            return no_update
        try:
            state.curation = groups.select(state.curation, node)
        except VisitError:
            return no_update
        return time.time_ns()

    @app.callback(Output(ids.VIEW_VERSION, "data", allow_duplicate=True), Input(ids.GRAPH, "clickData"),
                  State(ids.SESSION, "data"), prevent_initial_call=True)
    def on_click(click_data, session_id):
        node = node_id_from_click(sessions.analysis(session_id), click_data)
        return select(session_id, node) if node else no_update

    if details_node is None:
        return

    @app.callback(Output(ids.VIEW_VERSION, "data", allow_duplicate=True), Input(details_node, "value"),
                  State(ids.SESSION, "data"), prevent_initial_call=True)
    def on_pick(node, session_id):
        if not node:
            return no_update  # a new graph without the node clears the picker; the session keeps its selection
        return select(session_id, node)
