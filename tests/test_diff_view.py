"""The difference view's grid (visit.ui.diff_view): every row has a value in the measure it is ranked by."""

from __future__ import annotations

import pytest

from visit.graph.diff import diff_graphs
from visit.pipeline import analyze
from visit.ui.diff_view import diff_view, grid_order


@pytest.fixture(scope="module")
def diff(tiny_factory):
    vm = tiny_factory("llama")
    return diff_graphs(analyze(vm, "The capital of France is"), analyze(vm, "The capital of Spain is"))


def grid_rows(view) -> list[dict]:
    found = []

    def walk(c):
        if getattr(c, "rowData", None) is not None:
            found.append(c.rowData)
        children = getattr(c, "children", None)
        for child in children if isinstance(children, (list, tuple)) else [children]:
            if hasattr(child, "to_plotly_json"):
                walk(child)
    walk(view)
    return found[0]


def test_components_come_first_by_their_attribution_and_every_row_has_a_value(diff):
    rows = grid_rows(diff_view(diff))
    kinds_with_attribution = [r for r in rows if r["attribution"] is not None]
    assert kinds_with_attribution and rows[0]["attribution"] is not None  # used to be a residual, blank
    first_blank = next(i for i, r in enumerate(rows) if r["attribution"] is None)
    assert all(r["attribution"] is None for r in rows[first_blank:])  # components first, then the rest
    magnitudes = [abs(r["attribution"]) for r in rows[:first_blank]]
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert all(r["log_prob"] is not None or r["attribution"] is not None for r in rows)
    for r in rows:  # the grid's numbers are the diff's
        assert r["log_prob"] == diff["nodes"][r["node"]]["delta"]["log_prob"]
    assert [r["node"] for r in rows] == grid_order(diff)[:len(rows)]
