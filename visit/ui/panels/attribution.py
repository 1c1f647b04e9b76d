"""Attribution panel: log-probability increase of the target per layer, head and neuron (Yu & Ananiadou).

Layer bars (attention vs FFN), a layer x head heatmap, a table of the top components with their
vocabulary projections, a method selector (the 003 Table 2 baselines for FFN neurons), and a
competitor-token box for the bs-value contrast chart. Clicking a head, a row of the table (a sortable,
filterable grid) or a layer bar highlights the component in the graph, forcing it in if pruning had removed it.
"""

from __future__ import annotations

from dash import ALL, Input, Output, State, dcc, html, no_update
from dash import ctx as dash_ctx

from visit.attribution.contrast import contrast
from visit.attribution.query import parse_neuron_spec, query_scores
from visit.attribution.query_attn import attn_query_scores
from visit.attribution.ranking import head_scores, layer_scores, ranked
from visit.errors import VisitError
from visit.render import attribution as figures
from visit.tokens import display_token, resolve_target
from visit.attribution.baselines import METHOD_LABELS, METHODS, REGISTRY
from visit.ids import NodeId, head_id, is_node_id, neuron_id, node_id
from visit.ui import ids
from visit.ui.charts import PANEL_GRAPH_CONFIG
from visit.ui.grid import column, data_grid, first_clicked, shown_key
from visit.ui.state import request_graph_update

TITLE = "Attribution"
GROUP = "Inspect"
DESCRIPTION = ("Which layers, heads and neurons raise or lower log p(target), exactly; click one to find it in "
               "the graph.")
WIDTH = 0.5
PREFIX = "attribution"
TAB_VALUE = __name__.rsplit(".", 1)[-1]  # the app names each tab after its panel module
KIND, METHOD, TOP = f"{PREFIX}-kind", f"{PREFIX}-method", f"{PREFIX}-top"
LAYERS, HEADS, TABLE, NOTE = f"{PREFIX}-layers", f"{PREFIX}-heads", f"{PREFIX}-table", f"{PREFIX}-note"
COMPETITOR, CONTRAST_BUTTON, CONTRAST = f"{PREFIX}-competitor", f"{PREFIX}-contrast-go", f"{PREFIX}-contrast"
CONTRAST_NOTE, PRUNE = f"{PREFIX}-contrast-note", f"{PREFIX}-prune"
QUERY, SUBKEY, QUERY_OUT = f"{PREFIX}-query", f"{PREFIX}-subkey", f"{PREFIX}-query-out"
GRID_TYPE = f"{PREFIX}-grid"  # the top-components grid is drawn by a callback: a pattern-matching id
GRID = {"type": GRID_TYPE, "index": "top"}
SHOWN = f"{PREFIX}-shown"  # what the charts and the grid show (visit.ui.grid.shown_key)
KIND_OPTIONS = [
    {"label": "FFN neurons", "value": "ffn"},
    {"label": "attention neurons (per source)", "value": "attn"},
    {"label": "attention neurons (summed over sources)", "value": "wo"},
    {"label": "heads", "value": "head"},
    {"label": "layers", "value": "layer"},
]
HINT = ("Δ log p(target) when a component's output is added to the residual it joins, with the final norm "
        "frozen at the real final scale, so scores add up. Exact (not estimates) for everything listed.")


def layout():
    return html.Div([
        html.P(HINT, className="hint"),
        html.Div([
            html.Label("components"), dcc.Dropdown(id=KIND, options=KIND_OPTIONS, value="ffn", clearable=False),
            html.Label("method"),
            dcc.Dropdown(id=METHOD, clearable=False, value="logp_increase",
                         options=[{"label": REGISTRY.title(m), "value": m} for m in METHODS]),
            html.Label("top"), dcc.Input(id=TOP, type="number", min=1, max=200, step=1, value=20, debounce=True),
            html.Button("Prune the graph by attribution", id=PRUNE, n_clicks=0),
        ], className="controls"),
        html.Div(id=NOTE, className="hint"),
        dcc.Loading(dcc.Graph(id=LAYERS, config=PANEL_GRAPH_CONFIG)),
        dcc.Loading(dcc.Graph(id=HEADS, config=PANEL_GRAPH_CONFIG)),
        dcc.Loading(html.Div(id=TABLE)), dcc.Store(id=SHOWN),
        html.Div([
            html.Label("competitor token"),
            dcc.Input(id=COMPETITOR, type="text", placeholder=' e.g. " London"', debounce=True),
            html.Button("Compare", id=CONTRAST_BUTTON, n_clicks=0),
        ], className="controls"),
        html.Div(id=CONTRAST_NOTE, className="hint"),
        dcc.Loading(dcc.Graph(id=CONTRAST, config=PANEL_GRAPH_CONFIG, style={"display": "none"})),
        html.Div([
            html.Label("what activates neuron"),
            dcc.Input(id=QUERY, type="text", placeholder="FFN L27.N846 or attention L20.H3.d17", debounce=True),
            dcc.RadioItems(id=SUBKEY, value="gate", inline=True,
                           options=[{"label": "gate subkey", "value": "gate"}, {"label": "up subkey", "value": "up"}]),
        ], className="controls"),
        dcc.Loading(html.Div(id=QUERY_OUT)),
    ], className="panel")


TOKENS_NOTE = ("'Raises in this pass': the tokens this component's output here (a neuron: its coefficient times its "
               "value vector, so a negative coefficient flips them) raises most through the frozen final norm. "
               "Knowledge neurons and Details show a neuron's value vector alone (its static projection), so the "
               "same neuron can list other tokens there.")


def _table(entries: list[dict], tokens: list[str]):
    """The top components as a grid (sorting, filtering, paging); clicking a row shows its node in the graph."""
    rows = []
    for n, e in enumerate(entries, start=1):
        source = f"{e['position']}: {display_token(tokens[e['position']])}" if "position" in e else ""
        top = ", ".join(display_token(t) for t in e["top_tokens"][:8])
        # AG Grid renders cell values as text (never HTML), so tokens need no escaping here
        rows.append({"rank": n, "component": figures.component_name(e), "score": e["score"], "source": source,
                     "top": top, "node": e["node"]})
    columns = [column("rank", "#", "d", maxWidth=60), column("component", minWidth=100), column("score", "Δ log p", ".4f"),
               column("source", hide=not any(r["source"] for r in rows)), column("top", "raises in this pass", minWidth=120)]
    return html.Div([html.P("Click a row to show the component in the graph. " + TOKENS_NOTE, className="hint"),
                     data_grid(GRID, rows, columns, clickable=True)])


def panel_content(analysis, kind: str, method: str, top: int):
    """(layer figure, head figure, table, note) for an analysis; raises VisitError on bad input."""
    tr, target = analysis.trace, analysis.target
    note = f"target {display_token(target.token)}"
    if kind != "ffn" and method != "logp_increase":
        note += f"; method '{METHOD_LABELS[method]}' applies to FFN neurons only, showing log prob increase"
        method = "logp_increase"
    elif method != "logp_increase":
        note += "; baselines project every neuron (a few seconds on a GPU, ~20 s or more on a CPU)"
    entries = ranked(tr, target.id, kind, method, int(top or 20))
    return (figures.layer_bars(layer_scores(tr, target.id)), figures.head_heatmap(head_scores(tr, target.id)),
            _table(entries, tr.tokens), note)


def register_callbacks(app, ctx):
    @app.callback(Output(LAYERS, "figure"), Output(HEADS, "figure"), Output(TABLE, "children"),
                  Output(NOTE, "children"), Output(SHOWN, "data"),
                  Input(ids.ANALYSIS_VERSION, "data"), Input(KIND, "value"), Input(METHOD, "value"),
                  Input(TOP, "value"), Input(ids.TABS, "value"), State(ids.SESSION, "data"), State(SHOWN, "data"))
    def _render(_version, kind, method, top, tab, session_id, shown):
        if tab != TAB_VALUE:  # compute only when the tab is open (results are memoised per trace)
            return (no_update,) * 5
        analysis = ctx.analysis(session_id)
        if analysis is None:
            return no_update, no_update, html.P("Trace a prompt first.", className="hint"), "", None
        top = max(1, min(int(top or 20), 200))
        key = shown_key(analysis.trace, analysis.target.id, kind, method, top)
        if key == shown:  # a graph re-draw of the same trace: the grid keeps the user's sorting and filter
            return (no_update,) * 5
        try:
            return (*panel_content(analysis, kind, method, top), key)
        except VisitError as exc:
            return no_update, no_update, html.P(str(exc), className="error"), "", None

    @app.callback(Output(CONTRAST, "figure"), Output(CONTRAST, "style"), Output(CONTRAST_NOTE, "children"),
                  Input(CONTRAST_BUTTON, "n_clicks"), Input(COMPETITOR, "value"), Input(ids.ANALYSIS_VERSION, "data"),
                  State(ids.SESSION, "data"), prevent_initial_call=True)
    def _contrast(_clicks, competitor, _version, session_id):
        analysis = ctx.analysis(session_id)
        if analysis is None or not competitor:
            return no_update, no_update, ""
        try:
            other = resolve_target(analysis.vm.tokenizer, competitor)
        except VisitError as exc:
            return no_update, {"display": "none"}, str(exc)
        c = contrast(analysis.trace, analysis.target.id, other.id)
        fig = figures.contrast_figure(c, analysis.target.token, other.token)
        return fig, {"display": "block"}, other.note or ""

    @app.callback(Output(ids.GRAPH_REQUEST, "data", allow_duplicate=True),
                  Input({"type": GRID_TYPE, "index": ALL}, "cellClicked"),
                  State({"type": GRID_TYPE, "index": ALL}, "rowData"), State(ids.SESSION, "data"),
                  prevent_initial_call=True)
    def _show(clicks, row_data, session_id):
        row = first_clicked(clicks, row_data)
        if row is None or not row.get("node"):
            return no_update
        node = row["node"]
        return request_graph_update(session_id, include=(node,), highlight=(node,))

    @app.callback(Output(ids.GRAPH_REQUEST, "data", allow_duplicate=True),
                  Input(HEADS, "clickData"), Input(LAYERS, "clickData"), State(ids.SESSION, "data"),
                  prevent_initial_call=True)
    def _click_chart(head_click, layer_click, session_id):
        click = head_click if dash_ctx.triggered_id == HEADS else layer_click
        node = node_from_click(click)
        if node is None:
            return no_update
        if NodeId.parse(node).kind == "head":
            return request_graph_update(session_id, include=(node,), highlight=(node,))
        return request_graph_update(session_id, highlight=(node,))

    @app.callback(Output(QUERY_OUT, "children"), Input(QUERY, "value"), Input(SUBKEY, "value"),
                  Input(ids.ANALYSIS_VERSION, "data"), State(ids.SESSION, "data"), prevent_initial_call=True)
    def _query(text, which, _version, session_id):
        analysis = ctx.analysis(session_id)
        if analysis is None or not text:
            return ""
        try:
            return query_view(analysis, text, which)
        except VisitError as exc:
            return html.P(str(exc), className="error")

    @app.callback(Output(ids.GRAPH_REQUEST, "data", allow_duplicate=True),
                  Input(PRUNE, "n_clicks"), State(ids.SESSION, "data"), prevent_initial_call=True)
    def _prune(_clicks, session_id):
        return request_graph_update(session_id, prune_by="attribution")


def parse_neuron(text: str) -> tuple[int, int]:
    """``"L27.N846"`` or ``"27.846"`` -> ``(27, 846)`` (FFN neurons only)."""
    spec = parse_neuron_spec(text)
    if spec[0] != "ffn":
        raise VisitError(f"type an FFN neuron as L27.N846, not '{text}'")
    return spec[1], spec[2]


SCORE = ("score", "+.4f")  # a number column of the query tables


def _small_table(title, header, rows):
    """A titled grid of plain strings (AG Grid renders them as text, so tokens need no escaping);
    ``(name, format)`` headers are number columns."""
    columns, fields = [], []
    for i, h in enumerate(header):
        name, fmt = h if isinstance(h, tuple) else (h, None)
        fields.append(f"c{i}")
        columns.append(column(f"c{i}", name, fmt))
    return html.Div([html.H5(title), data_grid(None, [dict(zip(fields, r)) for r in rows], columns, page_size=10)])


def query_view(analysis, text: str, which: str):
    """Tables of the query scores of one neuron: an FFN neuron (``L27.N846``: what raises its
    pre-activation) or an attention neuron (``L20.H3.d17``: what raises ``|z|``)."""
    spec = parse_neuron_spec(text)
    if spec[0] == "attn":
        return attn_query_view(analysis, *spec[1:])
    layer, neuron = spec[1:]
    q = query_scores(analysis.trace, layer, neuron, which=which, top=10)
    tokens = analysis.trace.tokens
    return html.Div([
        html.P(f"{neuron_id(layer, neuron)}: pre-activation {q['pre_activation']:.3f} ({which} subkey); inner products of "
               "each earlier vector with the norm-folded subkey, which add up to it.", className="hint"),
        _small_table("query layers", ["vector", SCORE],
                     [[e["part"] + ("" if e["part"] == "embedding" else f" L{e['layer']}"), e["score"]]
                      for e in q["layers"][:10]]),
        _small_table("query FFN neurons", ["neuron", SCORE],
                     [[neuron_id(e["layer"], e["index"]), e["score"]] for e in q["ffn_neurons"]]),
        _small_table("query attention subvalues", ["head", "source", SCORE],
                     [[head_id(e["layer"], e["head"]), f"{e['position']}: {display_token(tokens[e['position']])}",
                       e["score"]] for e in q["attn_subvalues"]]),
    ])


def attn_query_view(analysis, layer: int, head: int, dim: int):
    """Tables of what activates attention neuron ``(layer, head, dim)`` at the traced position."""
    q = attn_query_scores(analysis.trace, layer, head, dim, top=10)
    tokens = analysis.trace.tokens

    def src(s):
        return f"{s}: {display_token(tokens[s])}"

    return html.Div([
        html.P(f"{node_id(layer, 'head_dim', head, dim)} (kv head {q['kv_head']}): z = {q['z']:+.4f}. Inner products of each "
               "earlier vector at each source with the neuron's norm-folded value subkey, weighted by the head's "
               "attention to that source; scores are multiplied by sign(z), so positive raises |z|. Raw scores "
               f"plus the constant {q['constant']:+.4f} add up to z.", className="hint"),
        _small_table("query layers", ["vector", SCORE],
                     [[e["part"] + ("" if e["part"] == "embedding" else f" L{e['layer']}"), e["score"]]
                      for e in q["layers"][:10]]),
        _small_table("sources", ["source", SCORE], [[src(s), v] for s, v in enumerate(q["sources"])]),
        _small_table("query FFN neurons (summed over sources)", ["neuron", SCORE, "best source"],
                     [[neuron_id(e["layer"], e["index"]), e["score"], src(e["best_source"])]
                      for e in q["ffn_neurons"]]),
        _small_table("query heads (at the sources)", ["head", SCORE, "best source"],
                     [[head_id(e["layer"], e["head"]), e["score"], src(e["best_source"])]
                      for e in q["attn_heads"]]),
    ])


def node_from_click(click) -> str | None:
    """The graph node id a click on the layer bars or the head heatmap points at (from customdata)."""
    try:
        node = click["points"][0]["customdata"]
    except (TypeError, KeyError, IndexError):
        return None
    return node if isinstance(node, str) and is_node_id(node) else None

