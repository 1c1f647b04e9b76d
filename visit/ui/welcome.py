"""The first minute: example prompts on the empty graph (from the shipped facts, :mod:`visit.prompts`) that trace on
a click, and the "how to read this graph" legend one click away in the header."""

from __future__ import annotations

import functools

from dash import ALL, ClientsideFunction, Input, Output, State, html

from visit.prompts import default_prompt_file, load_prompt_file
from visit.render.figure import EDGE_COLORS, RANK_COLORSCALE
from visit.ui import ids

EXAMPLE = "visit-example"  # pattern-matching id type of an example prompt's button: {"type": EXAMPLE, "index": i}
EXAMPLES = "visit-examples"
N_EXAMPLES = 6


@functools.lru_cache(maxsize=1)
def example_prompts(n: int = N_EXAMPLES) -> tuple[str, ...]:
    """The first shipped fact of each relation, ``n`` at most (``"The capital of France is"``, ...)."""
    seen, out = set(), []
    for case in load_prompt_file(default_prompt_file()):
        if case.relation not in seen:
            seen.add(case.relation)
            out.append(case.prompt)
    return tuple(out[:n])


def examples() -> html.Div:
    """Over the empty graph (hidden from the first graph on: ``.examples`` in assets/workspace.css)."""
    buttons = [html.Button(prompt, id={"type": EXAMPLE, "index": i}, n_clicks=0, className="example-button")
               for i, prompt in enumerate(example_prompts())]
    return html.Div([
        html.P("Type a prompt above and press Enter, or try one of these facts:", className="examples-title"),
        html.Div(buttons, className="examples-list"),
        html.P("The graph shows how the model's forward pass builds its prediction, layer by layer. "
               "\"How to read this graph\" (top right) explains the marks.", className="examples-note"),
    ], id=EXAMPLES, className="examples")


def _swatch(color: str) -> html.Span:
    return html.Span(className="legend-swatch-box", style={"background": color})


def _gradient() -> str:
    return "linear-gradient(90deg, " + ", ".join(f"{c} {p * 100:.0f}%" for p, c in RANK_COLORSCALE) + ")"


LEGEND_ROWS = (  # (the shape drawn by assets/workspace.css, name, what it is)
    ("circle", "residual stream", "the running sum each block reads and adds to (before, after attention, after MLP)"),
    ("square", "layer norm", "ln1 before attention, ln2 before the MLP"),
    ("pentagon", "attention head", "with its query (triangle right), key (triangle left) and the memory values "
                                   "(diamonds) it reads most"),
    ("star", "block output", "what attention or the MLP adds to the residual stream"),
    ("dot", "MLP neuron", "the layer's most (or least) activated neurons; W_O neurons feed the attention output"),
    ("octagon", "group", "nodes you grouped (Ctrl-click to pin, then group them)"),
)


def legend() -> html.Details:
    """A short key to the graph: node shapes, colours, edges and labels."""
    edges = [html.Li([_swatch(EDGE_COLORS[k]), html.Span(text)]) for k, text in (
        ("positive", "a positive coefficient (attention weight, neuron activation); wider = larger"),
        ("negative", "a negative coefficient"),
        ("summation", "a vector added into a sum (a head into its layer's attention output, an output into the "
                      "residual stream); wider = larger norm"),
        ("structural", "a step with no weight of its own: a norm, a projection to query, key and value"))]
    edges.append(html.Li([_swatch("rgba(60,60,60,0.55)"), html.Span("the residual stream from layer to layer; "
                                                                     "darker = lower entropy of its prediction")]))
    shapes = [html.Li([html.Span(className=f"legend-shape legend-shape-{shape}"),
                       html.Span([html.B(name), " " + text])]) for shape, name, text in LEGEND_ROWS]
    return html.Details([
        html.Summary("How to read this graph", className="legend-summary"),
        html.Div(className="legend-backdrop"),
        html.Div([
            html.Button("×", className="legend-close", title="close (Esc)"),
            html.H3("Nodes: the forward pass at the chosen position"),
            html.P("Layers run left to right (the last layers first: drag to pan, scroll to zoom, double-click to see "
                   "all). Hover a node for its top tokens; click it to open it in Details."),
            html.Ul(shapes, className="legend-list"),
            html.H3("Colour: how close the node is to the prediction"),
            html.Div([html.Span("rank 1", className="legend-end"),
                      html.Span(className="legend-gradient", style={"background": _gradient()}),
                      html.Span("far", className="legend-end")], className="legend-scale"),
            html.P("Each node's vector is read through the logit lens (the final norm and unembedding): its colour is "
                   "the rank of the target token there; grey where it cannot be read."),
            html.H3("Edges"),
            html.Ul(edges, className="legend-list"),
            html.H3("Labels"),
            html.P("The text over a node is its top token in the logit lens (labels that would overlap are hidden, "
                   "hover shows them); a label you set replaces it. Purple rings: highlighted by a tool; orange "
                   "squares: pinned (Ctrl-click)."),
        ], className="legend-body"),
    ], className="legend", id="visit-legend")


def register(app) -> None:
    """A click on an example puts it in the prompt box and traces it (in the browser: ``assets/workspace.js``)."""
    app.clientside_callback(
        ClientsideFunction("visit_workspace", "example"),
        Output(ids.PROMPT, "value", allow_duplicate=True), Output(ids.TARGET, "value", allow_duplicate=True),
        Output(ids.TRACE, "n_clicks", allow_duplicate=True),
        Input({"type": EXAMPLE, "index": ALL}, "n_clicks"), State({"type": EXAMPLE, "index": ALL}, "children"),
        State(ids.TRACE, "n_clicks"), prevent_initial_call=True)
