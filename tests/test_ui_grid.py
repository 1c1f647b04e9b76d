"""The shared data grid (visit/ui/grid.py): columns, JSON rows, clicks mapped back to rows, text-only cells."""

import json

import numpy as np
import plotly
import pytest

from hostile import hostile_strings
from visit.ui.grid import ROW_KEY, clicked_row, column, data_grid, first_clicked


def test_columns_and_grid_options():
    text, number = column("token", "top token"), column("score", "Δ log p", "+.4f", minWidth=90)
    assert text["filter"] == "agTextColumnFilter" and "valueFormatter" not in text
    assert number["filter"] == "agNumberColumnFilter" and number["minWidth"] == 90
    assert "d3.format('+.4f')" in number["valueFormatter"]["function"]
    prob = column("prob", fmt="prob", bar=True)
    assert "d3.format('.2%')" in prob["valueFormatter"]["function"] and "linear-gradient" in prob["cellStyle"]["function"]
    for bad in ("');alert(1);('", ".4f)", "x"):
        with pytest.raises(ValueError):
            column("score", fmt=bad)
    rows = [{"token": f"t{i}", "score": float(i)} for i in range(25)]
    grid = data_grid("g", rows, [text, number], page_size=10, clickable=True)
    assert grid.dashGridOptions["pagination"] and grid.dashGridOptions["paginationPageSize"] == 10
    assert grid.defaultColDef["sortable"] and grid.defaultColDef["filter"] and "visit-grid-clickable" in grid.className
    assert not data_grid(None, rows[:3], [text]).dashGridOptions["pagination"]  # short tables: no pager
    # never HTML: no cell renderers, code stays off
    assert not getattr(grid, "dangerously_allow_code", False)
    assert all("cellRenderer" not in c for c in grid.columnDefs)


def test_rows_are_json_and_clicks_find_their_row_after_sorting():
    rows = [{"node": "L1.N2", "score": np.float32(0.5), "n": np.int64(3)}, {"node": "L0.H1", "score": float("nan")}]
    data = data_grid("g", rows, [column("node")]).rowData
    assert json.loads(json.dumps(data, cls=plotly.utils.PlotlyJSONEncoder))[0]["score"] == 0.5
    assert type(data[0]["n"]) is int and data[1]["score"] is None and [r[ROW_KEY] for r in data] == ["0", "1"]
    # the grid names rows by their own id, whatever order they are shown in
    assert clicked_row({"rowId": "1", "colId": "score", "rowIndex": 0}, data)["node"] == "L0.H1"
    assert clicked_row({"rowId": "7"}, data) is None and clicked_row(None, data) is None
    assert clicked_row({"rowId": "1"}, data[:1] + [{"node": "x", ROW_KEY: "9"}]) is None  # rows changed since
    later = {"rowId": "0", "timestamp": 2}
    assert first_clicked([None, later], [data, data])["node"] == "L1.N2" and first_clicked([], []) is None


def test_hostile_cells_stay_text():
    strings = hostile_strings()
    grid = data_grid("g", [{"token": s} for s in strings], [column("token", strings[0])])
    assert [r["token"] for r in grid.rowData] == strings  # raw strings: AG Grid writes them as textContent
    assert grid.columnDefs[0]["headerName"] == strings[0]


def test_the_app_serves_the_grid_itself(tiny_factory):
    """Offline: every script and stylesheet of the page comes from the app (no CDN), the grid's included."""
    import re

    from visit.ui import create_app

    client = create_app(model=tiny_factory("gpt2"), panels=["visit.ui.panels.attribution"]).server.test_client()
    links = re.findall(r'(?:src|href)="([^"]+)"', client.get("/").get_data(as_text=True))
    assert links and all(link.startswith("/") for link in links)
    grid_js = [link for link in links if "dash_ag_grid" in link]
    assert grid_js and client.get(grid_js[0]).status_code == 200
    assert client.get("/_dash-component-suites/dash_ag_grid/async-community.js").status_code == 200
