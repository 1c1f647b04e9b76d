"""The page: a control bar on top, then the workspace: the graph (with the per-layer strip) and the tool in use,
side by side or one above the other (:mod:`visit.ui.workspace`)."""

from __future__ import annotations

from dash import dcc, html

from visit.ui import ids, pins, views, welcome
from visit.ui import queue as trace_queue
from visit.ui.state import new_session_id
from visit.ui.workspace import workspace

PROMPT_PLACEHOLDER = "Type a prompt, e.g. The capital of France is"
KNOB_LABELS = {
    "heads_per_layer": ("heads / layer", "all"),
    "memory_per_head": ("memory values / head", None),
    "wo_neurons": ("W_O neurons", None),
    "mlp_top": ("top MLP neurons", None),
    "mlp_bottom": ("bottom MLP neurons", None),
    "min_edge_score": ("min edge score", None),
}


def field(label: str, component, hint: str | None = None, class_name: str = "field") -> html.Label:
    children = [html.Span(label, className="field-label"), component]
    if hint:
        children.append(html.Span(hint, className="field-hint"))
    return html.Label(children, className=class_name)


def number(id_: str, value=None, placeholder: str | None = None, step=1, min_=None) -> dcc.Input:
    return dcc.Input(id=id_, type="number", value=value, placeholder=placeholder, step=step, min=min_,
                     debounce=True, className="num-input")


def knob_inputs(settings) -> list:
    out = []
    for name, component_id in ids.KNOBS.items():
        label, blank = KNOB_LABELS[name]
        value = getattr(settings, name, None)
        step = "any" if name == "min_edge_score" else 1
        out.append(field(label, number(component_id, value, placeholder=blank, step=step, min_=0)))
    out.append(field("prune by", dcc.RadioItems(
        id=ids.PRUNE_BY, options=[{"label": "activation", "value": "activation"},
                                  {"label": "attribution", "value": "attribution"},
                                  {"label": "circuit", "value": "circuit"}],
        value=getattr(settings, "prune_by", "activation"), inline=True, className="radio")))
    out.append(field("circuit share", dcc.Slider(
        id=ids.CIRCUIT_SHARE, min=0.1, max=1.0, step=0.05, value=getattr(settings, "circuit_share", 0.8),
        marks={0.5: "50%", 0.8: "80%", 1.0: "100%"}, tooltip={"placement": "bottom"}, className="share-slider"),
        hint="circuit mode: heads and neurons carrying this share of log p(target)'s increase"))
    out.append(dcc.Checklist(id=ids.SHOW_NORMS, options=[{"label": "edge widths from norms", "value": "on"}],
                             value=["on"] if getattr(settings, "show_norms", True) else [], className="check"))
    return out


def control_bar(model_label: str, settings) -> html.Div:
    main_row = html.Div([
        field("Prompt", dcc.Input(id=ids.PROMPT, type="text", value="", placeholder=PROMPT_PLACEHOLDER,
                                  debounce=False, autoFocus=True, maxLength=20000, className="prompt-input"),
              class_name="field field-prompt"),
        field("Target token", dcc.Input(id=ids.TARGET, type="text", value="", list=ids.TARGET_SUGGESTIONS,
                                        placeholder="top prediction", className="target-input")),
        html.Datalist(id=ids.TARGET_SUGGESTIONS, children=[]),
        field("Position", number(ids.POSITION, placeholder="last")),
        html.Div([
            html.Button("Trace", id=ids.TRACE, n_clicks=0, className="btn btn-primary", title="trace (Enter)"),
            html.Button("Export HTML", id=ids.EXPORT, n_clicks=0, className="btn", title="download a standalone report"),
        ], className="buttons"),
    ], className="control-row")
    options = html.Details([
        html.Summary("Model, layers and pruning"),
        html.Div([
            field("Model", html.Div([
                dcc.Input(id=ids.MODEL_INPUT, type="text", value="", placeholder="default (or a HF id / local dir)",
                          className="model-input"),
                html.Button("Load", id=ids.MODEL_LOAD, n_clicks=0, className="btn btn-small"),
            ], className="inline")),
            field("Layers", html.Div([number(ids.LAYER_START, placeholder="first"), html.Span("–"),
                                      number(ids.LAYER_END, placeholder="last")], className="inline"),
                  hint="inclusive"),
            *knob_inputs(settings),
            html.Button("Clear marks", id=ids.CLEAR_MARKS, n_clicks=0, className="btn btn-small",
                        title="forget nodes highlighted, forced in or flagged by panels"),
        ], className="options-grid"),
    ], className="options", open=False)
    return html.Div([main_row, options], className="control-bar")


def header(model_label: str) -> html.Header:
    return html.Header([
        html.Div([html.Span("visit", className="brand"),
                  html.Span("the forward pass as a flow graph", className="tagline")]),
        html.Div([welcome.legend(), html.Div(model_label, id=ids.MODEL_STATUS, className="model-status")],
                 className="header-right"),
    ], className="header")


def graph_area() -> html.Div:
    empty = views.empty_figure()
    return html.Div([
        html.Div(html.Div(className="progress-bar"), id=ids.PROGRESS, className="progress"),
        *trace_queue.components(),
        html.Div(id=ids.MESSAGE, className="messages"),
        html.Div([html.Div(id=ids.PROMPT_TOKENS, className="prompt-tokens"),
                  html.Div(id=ids.PREDICTIONS, className="predictions")], className="summary-row"),
        html.Div([
            dcc.Loading(dcc.Graph(id=ids.GRAPH, figure=empty, className="graph",
                                  config={"displaylogo": False, "scrollZoom": True, "responsive": True,
                                          "toImageButtonOptions": {"format": "svg", "filename": "visit-graph"}}),
                        id=ids.GRAPH_LOADING, type="default", delay_show=150, parent_className="graph-loading",
                        overlay_style={"visibility": "visible", "opacity": 0.5}),
            welcome.examples(),
        ], className="graph-box"),
        html.Div(id=ids.GRAPH_HINT, className="graph-hint"),
        pins.controls(),
        html.Div(id=ids.LAYER_STRIP, className="layer-strip"),
    ], className="graph-area")


def build_layout(model_label: str, settings, panels) -> html.Div:
    """The whole page; called per page load so each tab gets a fresh session id (the browser keeps
    its stored one on reload: dcc.Store prefers stored data)."""
    return html.Div([
        dcc.Store(id=ids.SESSION, storage_type="session", data=new_session_id()),
        dcc.Store(id=ids.ANALYSIS_VERSION, data=0),
        dcc.Store(id=ids.GRAPH_REQUEST, data=None),
        dcc.Location(id=ids.URL, refresh=False),
        dcc.Store(id=ids.URL_TRACE, data=None),
        dcc.Store(id=ids.VIEW_VERSION, data=0),
        dcc.Store(id=ids.PIN_CLICK, data=None),
        dcc.Download(id=ids.DOWNLOAD),
        header(model_label),
        control_bar(model_label, settings),
        html.Main(workspace(graph_area(), panels), className="main"),
    ], className="page")
