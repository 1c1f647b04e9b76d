"""Data tables as AG Grid (``dash-ag-grid``): sorting, filtering and paging on, numbers formatted, cells as text.

Every panel that lists data rows (top components, knowledge neurons, changed nodes, study tables) builds its
table here, so they look and behave alike::

    from visit.ui.grid import column, data_grid, clicked_row

    grid = data_grid({"type": "my-grid", "index": 0},
                     [{"node": "L5.N12", "score": 0.123, "tokens": "␣Paris, ␣Rome"}, ...],
                     [column("node"), column("score", "Δ log p", ".4f"), column("tokens", "top tokens")])
    # in a callback: Input(grid id, "cellClicked"), State(grid id, "rowData")
    row = clicked_row(cell_clicked, row_data)        # the clicked row's dict (any column), or None

Safety: AG Grid's default cell renderer writes a value as text (``textContent``), so tokens and prompts show
literally; this module never sets a cell renderer, HTML templates or ``dangerously_allow_code``. Numbers
stay numbers in ``rowData`` (they sort and filter as numbers) and are formatted in the browser by a d3
format (Python's ``format`` mini-language: ``".4f"``, ``"+.3f"``, ``".1%"``, ``"d"``), checked here.

Offline: the grid's JavaScript ships inside the ``dash_ag_grid`` Python package and the app serves it
(``serve_locally=True``); the theme is AG Grid's Theming API (CSS injected by that JavaScript), so no
stylesheet comes from a CDN. The HTML report keeps plain HTML tables (:class:`visit.render.analyses.Table`).
"""

from __future__ import annotations

import math
import numbers
import re
import uuid

import dash_ag_grid as dag


PAGE_SIZE = 20  # rows per page; shorter tables show no pager
ROW_KEY = "_row"  # each row's own id (its index in the rows given), so a click finds its row after sorting
_FORMAT = re.compile(r"^[+\- ]?,?(\.\d{1,2})?~?[dfegprs%]$")
_BAR = ("params.value >= 0 && params.value <= 1 ? {background: 'linear-gradient(90deg, #d6e4fb ' + "
        "100 * params.value + '%, transparent ' + 100 * params.value + '%)'} : null")


def column(field: str, header: str | None = None, fmt: str | None = None, bar: bool = False, **options) -> dict:
    """One column definition: ``fmt`` makes it a number column (number filter, right-aligned, formatted by
    d3: ``".4f"``, ``"+.3f"``, ``".1%"``, ``"d"``, ``".4~g"`` (``~`` trims zeros), or ``"prob"``: a percentage
    with 2 decimals, tiny values as ``2.50e-5``); without it the column is text (text filter). ``bar`` draws
    a bar behind values in [0, 1] (probabilities, weights). ``options`` are further AG Grid column options
    (``minWidth``, ``flex``, ``hide`` ...)."""
    col = {"field": field, "headerName": field if header is None else header}
    if fmt is None:
        col.update(filter="agTextColumnFilter", cellClass="grid-text", tooltipField=field)  # tooltips: text too
    else:
        if fmt == "prob":
            shown = "params.value >= 1e-4 ? d3.format('.2%')(params.value) : d3.format('.2e')(params.value)"
        elif _FORMAT.match(fmt):
            shown = f"d3.format('{fmt}')(params.value)"
        else:
            raise ValueError(f"not a number format: {fmt!r}")
        col.update(filter="agNumberColumnFilter", type="rightAligned",
                   valueFormatter={"function": f"params.value == null ? '' : {shown}"})
    if bar:
        col["cellStyle"] = {"function": _BAR}
    col.update(options)
    return col


def _value(value):
    """A cell value as JSON: numbers stay numbers (non-finite -> empty), strings as they are, else text."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Integral):  # numpy's too
        return int(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None


def grid_rows(rows: list[dict]) -> list[dict]:
    """Rows as the grid keeps them: JSON values and each row's index under :data:`ROW_KEY`."""
    return [{**{k: _value(v) for k, v in row.items()}, ROW_KEY: str(i)} for i, row in enumerate(rows)]


def data_grid(grid_id, rows: list[dict], columns: list[dict], page_size: int = PAGE_SIZE,
              clickable: bool = False, class_name: str = "") -> dag.AgGrid:
    """An AG Grid of ``rows`` (dicts; keys not in ``columns`` ride along unseen, e.g. a node id to act on)
    with sorting (click a header), a filter box under every header and paging beyond ``page_size`` rows; it
    grows to its rows' height. ``grid_id`` may be a string or a pattern-matching dict (grids drawn by
    callbacks); ``None`` gives a grid no callback reads. ``clickable`` shows a pointer over rows (the panel
    reads ``cellClicked``)."""
    paged = len(rows) > page_size
    classes = " ".join(c for c in ("visit-grid", "visit-grid-clickable" if clickable else "", class_name) if c)
    kwargs = {} if grid_id is None else {"id": grid_id}
    return dag.AgGrid(
        rowData=grid_rows(rows),
        columnDefs=columns,
        defaultColDef={"sortable": True, "filter": True, "floatingFilter": True, "suppressHeaderFilterButton": True,
                       "resizable": True, "flex": 1, "minWidth": 64, "wrapHeaderText": True, "autoHeaderHeight": True},
        getRowId=f"params.data.{ROW_KEY}",
        dashGridOptions={"domLayout": "autoHeight", "rowHeight": 26, "pagination": paged,
                         "paginationPageSize": page_size, "paginationPageSizeSelector": False,
                         "enableCellTextSelection": True, "animateRows": False, "suppressFieldDotNotation": True},
        className=classes,
        style={"height": None, "width": "100%"},
        **kwargs,
    )


def clicked_row(cell_clicked: dict | None, row_data: list[dict] | None) -> dict | None:
    """The row (its dict as given to :func:`data_grid`) of a grid's ``cellClicked`` event, whatever the
    sorting, filtering or page; ``None`` when there is no click or the rows changed since."""
    if not cell_clicked or not row_data:
        return None
    row_id = cell_clicked.get("rowId")
    try:
        row = row_data[int(row_id)]
    except (TypeError, ValueError, IndexError):
        return None
    return row if row.get(ROW_KEY) == str(row_id) else None


def first_clicked(clicks: list, row_data: list) -> dict | None:
    """:func:`clicked_row` for a pattern-matching ``ALL`` input (lists of events and row lists): the row of
    the most recent click."""
    events = [(c, r) for c, r in zip(clicks or [], row_data or []) if c]
    if not events:
        return None
    cell, rows = max(events, key=lambda e: e[0].get("timestamp") or 0)
    return clicked_row(cell, rows)


def shown_key(trace, *parts) -> str:
    """A key for what a panel's grid shows: the same for the same trace (and weights) and ``parts``, new for
    a new trace. A callback that re-runs on every graph re-draw (``ids.ANALYSIS_VERSION``) keeps this key
    in a ``dcc.Store`` and skips re-drawing an unchanged grid, so the user's sorting, filter and page stay."""
    token = trace.memo(("ui-grid-token",), lambda: uuid.uuid4().hex)
    return "|".join([token, *map(str, parts)])


__all__ = ["PAGE_SIZE", "ROW_KEY", "clicked_row", "column", "data_grid", "first_clicked", "grid_rows", "shown_key"]
