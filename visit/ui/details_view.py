"""Render ``visit.pipeline.node_details(...)`` (a plain dict) as Dash components.

The dict's shape belongs to the pipeline, so this renders it generically: scalars as a key/value
table (the headline ones first), lists of token rows (``{"token", "prob", ...}``) as token tables,
other lists of dicts as tables (grids: :mod:`visit.ui.grid`), nested dicts as sub-sections. Strings are Dash
text children or grid cells (both shown as text, never markup); tokens get their whitespace made visible.
"""

from __future__ import annotations

from dash import html

from visit.tokens import display_token
from visit.ui import grid

HEADLINE = ("id", "label", "kind", "location", "layer", "head", "neuron", "source_token", "source_position",
            "attention", "coefficient", "activation", "target_token", "target_prob", "target_rank", "norm",
            "entropy")
TOKEN_KEYS = ("token", "source_token", "top_token", "target_token", "label", "in_label")
HIDDEN = ("x", "y", "projected")  # layout and bookkeeping, not facts about the vector
MAX_ROWS = 40
BAR_KEYS = ("prob", "weight", "attention")


def fmt(key: str, value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if "prob" in key:
            return f"{100 * value:.2f}%" if value >= 1e-4 else f"{value:.2e}"
        return f"{value:.4g}"
    if isinstance(value, str) and key in TOKEN_KEYS:
        return display_token(value)
    return str(value)


def title_of(key: str) -> str:
    return key.replace("_", " ")


def _is_scalar(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _table(rows: list[dict]):
    """A list of row dicts as a grid (:mod:`visit.ui.grid`): numbers sort as numbers, probabilities and
    weights get a bar behind the number, tokens show their whitespace."""
    columns: list[str] = []
    for row in rows:
        for key, value in row.items():
            if key not in columns and _is_scalar(value):
                columns.append(key)
    rows = rows[:MAX_ROWS]
    defs = []
    for c in columns:
        values = [row.get(c) for row in rows if row.get(c) is not None]
        if not values or not all(_is_number(v) for v in values):
            defs.append(grid.column(c, title_of(c)))
        elif all(isinstance(v, int) for v in values):
            defs.append(grid.column(c, title_of(c), "d"))
        else:
            defs.append(grid.column(c, title_of(c), "prob" if "prob" in c else ".4~g", bar=c in BAR_KEYS))
    cells = [{c: (v if v is None or _is_number(v) else fmt(c, v)) for c, v in ((c, row.get(c)) for c in columns)}
             for row in rows]
    return grid.data_grid(None, cells, defs, class_name="details-table")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _scalars(items: list[tuple[str, object]]) -> html.Table:
    return html.Table(html.Tbody([
        html.Tr([html.Th(title_of(k)), html.Td(fmt(k, v), className="tok-cell" if k in TOKEN_KEYS else None)])
        for k, v in items
    ]), className="details-kv")


def render(details: dict, depth: int = 0) -> list:
    """Components for one details dict (recursing into nested dicts)."""
    if not isinstance(details, dict):
        return [html.Pre(str(details))]
    # None and False fields are the ones that do not apply to this kind of node
    scalars = [(k, v) for k, v in details.items()
               if _is_scalar(v) and v is not None and v is not False and k not in HIDDEN]
    scalars.sort(key=lambda kv: HEADLINE.index(kv[0]) if kv[0] in HEADLINE else len(HEADLINE))
    out = [_scalars(scalars)] if scalars else []
    heading = html.H4 if depth == 0 else html.H5
    for key, value in details.items():
        if _is_scalar(value):
            continue
        if isinstance(value, dict):
            out.append(html.Section([heading(title_of(key))] + render(value, depth + 1), className="details-sub"))
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
            out.append(html.Section([heading(f"{title_of(key)} ({len(value)})"), _table(list(value))],
                                    className="details-sub"))
        elif isinstance(value, (list, tuple)):
            shown = ", ".join(fmt(key, v) for v in list(value)[:MAX_ROWS])
            out.append(html.Section([heading(title_of(key)), html.Div(shown, className="details-list")],
                                    className="details-sub"))
    return out


def details_panel(node_id: str, details: dict) -> html.Div:
    return html.Div([html.H3(node_id, className="details-title")] + render(details), className="details")
