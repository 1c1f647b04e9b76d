"""The Attribution panel without a browser: content, clicks -> graph requests, registration."""

import pytest

from visit.pipeline import analyze
from visit.ui.panels import PANELS, load_panels
from visit.ui.panels import attribution as panel
from dash_helpers import grids, texts


@pytest.fixture(scope="module")
def analysis(tiny_factory):
    return analyze(tiny_factory("llama", seed=3), "The <b>capital</b> of France is", " Paris")


def test_panel_is_registered_and_builds_in_the_app(tiny_factory):
    from visit.ui import create_app

    assert "visit.ui.panels.attribution" in {p.__name__ for p in PANELS}
    assert load_panels(["visit.ui.panels.attribution"])[0].TITLE == "Attribution"
    app = create_app(model=tiny_factory("gpt2"), panels=["visit.ui.panels.attribution"])
    assert any(panel.TABLE in str(key) or panel.LAYERS in str(key) for key in app.callback_map)


@pytest.mark.parametrize("kind", ["ffn", "attn", "wo", "head", "layer"])
def test_panel_content_lists_components_that_the_graph_can_show(analysis, kind):
    from visit.graph import GraphSettings

    layers, heads, table, note = panel.panel_content(analysis, kind, "logp_increase", 6)
    assert len(layers.data) == 2 and len(heads.data[0].z) == analysis.trace.n_layers
    rows = grids(table)[0].rowData
    assert len(rows) == 6 and grids(table)[0].id == panel.GRID
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    nodes = [r["node"] for r in rows]
    assert len(nodes) == 6 and all(nodes)
    if kind != "layer":
        # forcing the listed components in gives a graph that contains them
        again = analyze(analysis.vm, analysis.prompt, " Paris", settings=GraphSettings(include=tuple(nodes[:3])))
        assert all(n in again.graph for n in nodes[:3])
    assert "Paris" in note


def test_method_selector_and_escaping(analysis):
    _, _, table, note = panel.panel_content(analysis, "head", "norm", 3)
    assert "FFN neurons only" in note
    _, _, table, _ = panel.panel_content(analysis, "ffn", "coef_inv_rank", 4)
    assert len(grids(table)[0].rowData) == 4


def test_chart_clicks_name_graph_nodes():
    click = {"points": [{"customdata": "L2.H1", "x": 1, "y": 2}]}
    assert panel.node_from_click(click) == "L2.H1"
    assert panel.node_from_click(None) is None
    assert panel.node_from_click({"points": [{"x": 1}]}) is None


def test_query_view(analysis):
    from visit.errors import VisitError

    view = panel.query_view(analysis, "L2.N5", "up")
    shown = texts(view)
    assert any("pre-activation" in t for t in shown) and "query FFN neurons" in shown
    neurons = grids(view)[1].rowData
    assert neurons and isinstance(neurons[0]["c1"], float) and neurons[0]["c0"].startswith("L")
    assert panel.parse_neuron("27.846") == (27, 846)
    with pytest.raises(VisitError):
        panel.parse_neuron("head 3")
