"""The web app's pieces without a browser: controls, session state, model registry, clicks, views."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from visit.errors import VisitError
from visit.graph.settings import GraphSettings
from visit.tokens import display_token
from visit.ui import ids
from visit.ui.clicks import node_id_from_click
from visit.ui.controls import build_settings, parse_layer_range, parse_prompt, parse_target
from visit.ui.details_view import details_panel
from visit.ui.model_registry import ModelRegistry
from visit.ui.panels import PANELS, load_panels
from visit.ui.state import SessionStore, decode_graph_request, request_graph_update
from visit.ui.views import layer_strip, prediction_chips, prompt_tokens
from dash_helpers import grids, texts


# ---- controls -------------------------------------------------------------------------------------------

def test_layer_range_validation():
    assert parse_layer_range(None, None, 30) == (None, None)
    assert parse_layer_range(20, 29, 30) == (20, 29)
    assert parse_layer_range(-3, None, 30) == (27, None)
    with pytest.raises(VisitError, match="out of range"):
        parse_layer_range(0, 30, 30)
    with pytest.raises(VisitError, match="empty"):
        parse_layer_range(5, 2, 30)
    with pytest.raises(VisitError, match="whole number"):
        parse_layer_range("x", None, 30)


def test_prompt_and_target_parsing():
    with pytest.raises(VisitError, match="empty"):
        parse_prompt("   ")
    with pytest.raises(VisitError, match="characters"):
        parse_prompt("a" * 50_000)
    assert parse_target("") is None and parse_target(None) is None
    assert parse_target(" Paris") == " Paris"  # the leading space is part of the token


def test_build_settings_applies_knobs_and_marks():
    marks = {"highlight": ("L1.H0",), "flagged_neurons": {(1, 2): "x"}}
    s = build_settings(GraphSettings(), layer_start=1, layer_end=2,
                       knobs={"heads_per_layer": None, "memory_per_head": 2, "wo_neurons": "",
                              "mlp_top": 4, "mlp_bottom": 0, "min_edge_score": 0.5},
                       prune_by="attribution", show_norms=False, marks=marks)
    assert (s.layer_start, s.layer_end, s.heads_per_layer, s.memory_per_head) == (1, 2, None, 2)
    assert s.wo_neurons == GraphSettings().wo_neurons  # blank keeps the default
    assert (s.mlp_top, s.mlp_bottom, s.min_edge_score, s.prune_by, s.show_norms) == (4, 0, 0.5, "attribution", False)
    assert s.highlight == ("L1.H0",) and s.flagged_neurons == {(1, 2): "x"}
    with pytest.raises(VisitError, match="at least 0"):
        build_settings(GraphSettings(), knobs={"mlp_top": -1})
    with pytest.raises(VisitError, match="prune by"):
        build_settings(GraphSettings(), prune_by="magic")


# ---- session state and graph requests ---------------------------------------------------------------------

def test_session_store_is_a_bounded_lru():
    store = SessionStore(max_sessions=2)
    store.get("a").analysis = "A"
    store.get("b").analysis = "B"
    store.get("a")  # a is now the most recent
    store.get("c")
    assert "a" in store and "c" in store and "b" not in store
    assert store.analysis("a") == "A" and store.analysis("b") is None and store.analysis(None) is None
    assert store.get(None).analysis is None and len(store) == 2  # no id: a throwaway state


def test_session_store_threads():
    store = SessionStore(max_sessions=8)

    def work(i):
        for j in range(200):
            store.get(f"s{(i * 7 + j) % 20}").version += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(store) == 8


def test_graph_request_round_trip():
    import json

    payload = request_graph_update("sid", highlight=("L3.H2",), include=["L3.N7"],
                                   flagged_neurons={(5, 17): "regularization"}, layer_start=2)
    payload = json.loads(json.dumps(payload))  # what the browser sends back
    changes = decode_graph_request(payload)
    assert changes == {"highlight": ("L3.H2",), "include": ("L3.N7",),
                       "flagged_neurons": {(5, 17): "regularization"}, "layer_start": 2}
    assert request_graph_update(highlight=())["nonce"] != request_graph_update(highlight=())["nonce"]
    with pytest.raises(ValueError, match="unknown"):
        request_graph_update("sid", colour="red")
    assert decode_graph_request(None) == {}


# ---- model registry -------------------------------------------------------------------------------------

class FakeModel:
    def __init__(self, name):
        self.name = name


def test_model_registry_failure_keeps_models_and_evicts_non_default():
    calls = []

    def loader(name):
        calls.append(name)
        if name.startswith("bad"):
            raise VisitError(f"cannot load model '{name}'")
        if name == "buggy":
            raise RuntimeError("boom")
        return FakeModel(name)

    default = FakeModel("tiny")
    reg = ModelRegistry(loader=loader, preloaded=default, max_models=2)
    assert reg.get(None) is default and reg.get("  ") is default and reg.get("default") is default
    with pytest.raises(VisitError, match="bad/id"):
        reg.get("bad/id")
    with pytest.raises(VisitError, match="RuntimeError: boom"):
        reg.get("buggy")
    assert reg.loaded() == ["default"]
    a = reg.get("a")
    assert reg.get("a") is a and calls.count("a") == 1  # loaded once
    reg.get("b")
    assert reg.loaded() == ["default", "b"]  # the default is never evicted


# ---- clicks and views -----------------------------------------------------------------------------------

class FakeTrace:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class FakeAnalysis:
    def __init__(self):
        import networkx as nx
        import plotly.graph_objects as go

        self.graph = nx.DiGraph()
        self.graph.add_nodes_from(["L0.H1", "L0.N3"])
        self.figure = go.Figure([go.Scatter(x=[0], y=[0], customdata=[["x", "L0.H1"]]),
                                 go.Scatter(x=[1], y=[0], ids=["L0.N3"])])


def test_node_id_from_click_reads_point_or_figure():
    a = FakeAnalysis()
    assert node_id_from_click(a, {"points": [{"curveNumber": 0, "pointNumber": 0,
                                              "customdata": ["x", "L0.H1"]}]}) == "L0.H1"
    assert node_id_from_click(a, {"points": [{"curveNumber": 1, "pointNumber": 0}]}) == "L0.N3"
    assert node_id_from_click(a, {"points": [{"curveNumber": 1, "pointNumber": 0, "id": "L0.N3"}]}) == "L0.N3"
    assert node_id_from_click(a, {"points": [{"curveNumber": 0, "pointNumber": 5}]}) is None
    assert node_id_from_click(a, None) is None and node_id_from_click(None, {"points": [{}]}) is None


def test_edge_from_click():
    from visit.ui.clicks import edge_from_click

    a = FakeAnalysis()
    a.graph.add_edge("L0.H1", "L0.N3")
    point = {"curveNumber": 0, "pointNumber": 0}
    assert edge_from_click(a, {"points": [{**point, "customdata": ["edge:L0.H1->L0.N3", "hover"]}]}) == ("L0.H1", "L0.N3")
    assert edge_from_click(a, {"points": [{**point, "customdata": ["edge:L0.N3->L0.H1", "hover"]}]}) is None
    assert edge_from_click(a, {"points": [{**point, "customdata": ["L0.H1", "hover"]}]}) is None
    assert node_id_from_click(a, {"points": [{**point, "customdata": ["edge:L0.H1->L0.N3", "x"]}]}) is None


HOSTILE = "<img src=x onerror=alert(1)>"
SHOWN = display_token(HOSTILE)  # whitespace made visible, markup kept as text


def test_views_keep_hostile_tokens_as_text():
    chips = prediction_chips([{"token": HOSTILE, "id": 5, "prob": 0.5}], target_id=5)
    assert SHOWN in texts(chips[0]) and "chip-selected" in chips[0].className
    rows = [{"layer": 0, "attn": {"top_token": HOSTILE, "top_prob": 0.2, "target_prob": 0.1, "target_rank": 3},
             "mlp": {"top_token": " b", "top_prob": 0.3, "target_prob": 0.2, "target_rank": 1}}]
    strip = layer_strip(rows, " b")
    assert SHOWN in texts(strip) and "␣b" in texts(strip)
    tokens = prompt_tokens(["<b>", " x"], position=1)
    assert "<b>" in texts(tokens[0]) and "tok-position" in tokens[1].className
    panel = details_panel("L0.H1", {"kind": "head", "norm": 1.25, "target_rank": 4, "target_prob": 0.5,
                                    "top": [{"token": HOSTILE, "prob": 0.25}],
                                    "attention": [{"source_token": "<b>", "position": 0, "weight": 0.7}]})
    shown = texts(panel)
    assert "1.25" in shown and "50.00%" in shown
    top, attention = (g.rowData for g in grids(panel))  # lists of rows: grids, cells as text
    assert top[0]["token"] == SHOWN and top[0]["prob"] == 0.25 and attention[0]["source_token"] == "<b>"


# ---- the app and its panels -----------------------------------------------------------------------------

def test_panel_registry_modules_follow_the_interface():
    panels = load_panels()
    assert panels == list(PANELS)
    assert panels[0].TITLE == "Details"
    with pytest.raises(TypeError, match="lacks"):
        load_panels(("visit.ui.ids",))


def test_create_app_wires_controls_to_callbacks(tiny_factory):
    from visit.ui import create_app

    app = create_app(model=tiny_factory("llama"))
    layout = app.layout()
    found = set()

    def walk(c):
        if getattr(c, "id", None) is not None:
            found.add(c.id if isinstance(c.id, str) else str(c.id))
        children = getattr(c, "children", None)
        for child in children if isinstance(children, (list, tuple)) else [children]:
            if hasattr(child, "to_plotly_json"):
                walk(child)

    walk(layout)
    for cid in (ids.SESSION, ids.GRAPH, ids.PROMPT, ids.TARGET, ids.TRACE, ids.EXPORT, ids.DOWNLOAD,
                ids.GRAPH_REQUEST, ids.ANALYSIS_VERSION, *ids.KNOBS.values()):
        assert cid in found, cid
    assert layout.children[0].storage_type == "session"
    assert app.layout().children[0].data != layout.children[0].data  # a fresh session id per page load
    outputs = " ".join(app.callback_map)
    assert f"{ids.GRAPH}.figure" in outputs and f"{ids.DOWNLOAD}.data" in outputs


def test_view_memory_keeps_the_users_ranges_for_the_same_graph():
    from visit.ui.view import ViewMemory, apply_ranges, ranges_from_relayout

    assert ranges_from_relayout({"autosize": True}) is None
    assert ranges_from_relayout({"xaxis.autorange": True, "yaxis.autorange": True}) == {}
    assert ranges_from_relayout({"xaxis.range[0]": 1, "xaxis.range[1]": 2}) == {"xaxis": [1, 2]}
    view = ViewMemory()
    assert view.update("m|None|None", None) == {}
    pan = {"xaxis.range[0]": 1, "xaxis.range[1]": 5, "yaxis.range[0]": -1, "yaxis.range[1]": 1}
    assert view.update("m|None|None", pan) == {"xaxis": [1, 5], "yaxis": [-1, 1]}
    assert view.update("m|None|None", pan) == {"xaxis": [1, 5], "yaxis": [-1, 1]}  # same event, same view
    assert view.update("m|2|3", pan) == {}  # another layer range: the full view
    assert view.update("m|2|3", pan) == {}  # the old event does not come back
    assert view.update("m|2|3", {"xaxis.range[0]": 0, "xaxis.range[1]": 1}) == {"xaxis": [0, 1]}
    assert view.update("m|2|3", {"xaxis.autorange": True}) == {}
    layout = {"xaxis": {"visible": False}}
    apply_ranges(layout, {"xaxis": [0, 1]})
    assert layout["xaxis"] == {"visible": False, "range": [0, 1], "autorange": False}


def test_details_hide_fields_that_do_not_apply():
    panel = details_panel("L0.resid_post", {"kind": "resid_post", "layer": 0, "head": None, "highlighted": False,
                                            "x": 12.0, "label": " Paris", "norm": 3.0})
    shown = texts(panel)
    assert "layer" in shown and "0" in shown and "␣Paris" in shown
    assert "head" not in shown and "highlighted" not in shown and "x" not in shown


def load_app_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "app.py"
    spec = importlib.util.spec_from_file_location("visit_app_main", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_app_options_and_environment(monkeypatch):
    app_main = load_app_module()
    args = app_main.parse_args([])
    assert (args.host, args.port, args.model) == ("127.0.0.1", 8050, "default")
    monkeypatch.setenv("VISIT_HOST", "0.0.0.0")
    monkeypatch.setenv("VISIT_PORT", "9000")
    args = app_main.parse_args(["--model", "some/dir"])
    assert (args.host, args.port, args.model) == ("0.0.0.0", 9000, "some/dir")
    assert app_main.parse_args(["--port", "8123"]).port == 8123


def test_app_exits_2_on_a_bad_model():
    """The model loads in gunicorn's worker (visit/serving/gunicorn.py): its one-line error and exit status 2
    still reach the user, and the server stops instead of retrying."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "app.py"), "--port", str(port), "--model", "/no/such/model/dir"],
                          cwd=root, env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(root)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error: cannot load model '/no/such/model/dir'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_python_app_py_serves_the_page():
    """The README's command: ``python app.py`` serves the page on the given port (real default model)."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, page = time.time() + 180, None
        while time.time() < deadline and proc.poll() is None:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert page is not None, proc.stdout.read() if proc.poll() is not None else "no answer"
        assert "<title>visit</title>" in page
        layout = urllib.request.urlopen(f"http://127.0.0.1:{port}/_dash-layout", timeout=10).read().decode()
        assert ids.PROMPT in layout and "SmolLM2" in layout
    finally:
        proc.terminate()
        proc.wait(timeout=30)
