"""Small Dash views of an analysis: prediction chips, the per-layer strip, the prompt's tokens.

Token strings go into Dash text children, which React escapes: ``<img ...>`` shows literally.
"""

from __future__ import annotations

from dash import html

from visit.tokens import display_token
from visit.ui import ids


def rank_class(rank: int | None) -> str:
    """A CSS class for a target rank (1 best), the same bins as the legend of the strip."""
    if rank is None:
        return "rank-none"
    for limit, name in ((1, "rank-1"), (10, "rank-10"), (100, "rank-100"), (1000, "rank-1000")):
        if rank <= limit:
            return name
    return "rank-far"


def percent(p: float) -> str:
    return f"{100 * p:.1f}%" if p >= 0.001 else f"{100 * p:.2g}%"


def prediction_chips(predictions: list[dict], target_id: int | None) -> list:
    chips = []
    for i, pred in enumerate(predictions):
        selected = " chip-selected" if pred["id"] == target_id else ""
        chips.append(html.Button(
            [html.Span(display_token(pred["token"]), className="chip-token"),
             html.Span(percent(pred["prob"]), className="chip-prob")],
            id={"type": ids.PREDICTION_CHIP, "index": i}, className="chip" + selected, n_clicks=0,
            title="use as target",
        ))
    return chips


def target_options(predictions: list[dict]) -> list:
    return [html.Option(value=pred["token"], label=f"{display_token(pred['token'])}  {percent(pred['prob'])}")
            for pred in predictions]


def layer_strip(rows: list[dict], target_token: str) -> html.Div:
    """Per layer: the logit lens's top token and the target's rank after attention and after the MLP."""
    if not rows:
        return html.Div()
    header = [html.Th(str(r["layer"])) for r in rows]
    body, heads = [], [html.Tr(html.Th("layer"))]
    for part, label in (("attn", "after attn"), ("mlp", "after MLP")):
        heads.append(html.Tr(html.Th(label, className="strip-rowhead")))
        cells = []
        for r in rows:
            cell = r[part]
            tip = (f"layer {r['layer']} {label}: top {display_token(cell['top_token'])} ({percent(cell['top_prob'])}); "
                   f"target {display_token(target_token)} rank {cell['target_rank']}, {percent(cell['target_prob'])}")
            cells.append(html.Td(
                [html.Div(display_token(cell["top_token"]), className="strip-token"),
                 html.Div(f"#{cell['target_rank']}", className="strip-rank")],
                className="strip-cell " + rank_class(cell["target_rank"]), title=tip))
        body.append(html.Tr(cells))
    legend = html.Div(
        [html.Span("target rank: ", className="legend-label")]
        + [html.Span(text, className=f"legend-swatch {cls}") for cls, text in
           (("rank-1", "1"), ("rank-10", "2-10"), ("rank-100", "11-100"), ("rank-1000", "101-1000"),
            ("rank-far", ">1000"))],
        className="strip-legend")
    return html.Div([
        html.Div([html.Span("Logit lens per layer", className="section-title"),
                  html.Span(f" target {display_token(target_token)}", className="strip-target"), legend],
                 className="strip-head"),
        html.Div([  # the row heads stay put beside the scrolled cells (never drawn over them)
            html.Table(html.Tbody(heads), className="strip-table strip-heads"),
            html.Div(html.Table([html.Thead(html.Tr(header)), html.Tbody(body)], className="strip-table"),
                     className="strip-scroll"),
        ], className="strip-body"),
    ])


def prompt_tokens(tokens: list[str], position: int) -> list:
    return [html.Span([html.Sub(str(i), className="tok-index"), display_token(t)],
                      id={"type": ids.PROMPT_TOKEN, "index": i}, n_clicks=0,
                      className="tok" + (" tok-position" if i == position else ""),
                      title=f"position {i}: click to trace here")
            for i, t in enumerate(tokens)]


def edited_note(overlay) -> str | None:
    """What the graph says when it was traced on a session's edited weights (None for the weights at rest)."""
    if not overlay:
        return None
    labels = [e.label() for e in overlay.edits]
    return (f"Edited weights: this graph is traced on your {len(labels)} edit{'s' if len(labels) != 1 else ''} "
            f"({'; '.join(labels)}). Editing → 'show the graph before the edits' traces the model as loaded.")


def empty_figure() -> dict:
    """The graph box before anything is traced (or after a model switch cleared the old model's graph); the
    welcome overlay (:mod:`visit.ui.welcome`) says what to do."""
    return {"data": [], "layout": {"xaxis": {"visible": False}, "yaxis": {"visible": False},
                                   "plot_bgcolor": "white", "paper_bgcolor": "white",
                                   "margin": {"l": 10, "r": 10, "t": 10, "b": 10}}}


def message(kind: str, text: str) -> html.Div:
    return html.Div(text, className=f"message message-{kind}", role="alert" if kind == "error" else "status")


def messages(errors: list[str] = (), notes: list[str] = ()) -> list:
    return [message("error", e) for e in errors] + [message("note", n) for n in notes]
