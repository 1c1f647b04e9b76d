"""Callbacks run bound to their browser session's weights without the panel binding anything: a real request
through Dash's dispatcher reaches the callback with the session's overlay current; panels never name the
weights' machinery."""

import ast
import json
from pathlib import Path

from dash import Dash, Input, Output, State, dcc, html

from visit.models.overlay import NONE, Overlay, bind_session, current
from visit.ui import ids
from visit.ui.session_callbacks import bind_callbacks

PANELS = Path(__file__).resolve().parents[1] / "visit" / "ui" / "panels"


def request(app, session):
    body = {"output": "out.children", "outputs": {"id": "out", "property": "children"},
            "inputs": [{"id": "go", "property": "n_clicks", "value": 1}],
            "state": [{"id": ids.SESSION, "property": "data", "value": session}], "changedPropIds": ["go.n_clicks"]}
    response = app.server.test_client().post("/_dash-update-component", json=body)
    assert response.status_code == 200, response.data
    return json.loads(response.data)["response"]["out"]["children"]


def test_a_registered_callback_runs_on_its_sessions_weights():
    weights = {"a": Overlay(("edits", 1), ({"w": None},)), "b": NONE}
    app = Dash(__name__)
    app.layout = html.Div([dcc.Store(id=ids.SESSION), html.Button(id="go"), html.Div(id="out")])
    bind_callbacks(app, lambda session: bind_session(weights.get(session)))

    @app.callback(Output("out", "children"), Input("go", "n_clicks"), State(ids.SESSION, "data"))
    def show(_clicks, session):
        return f"{session}: {current().key}"

    assert request(app, "a") == "a: ('edits', 1)"
    assert request(app, "b") == "b: ()"
    assert request(app, None) == "None: ()"
    assert current() is NONE  # nothing leaks out of the request


def test_no_panel_names_the_weights_machinery():
    """Panels get their session's weights from the callback registration and the job runner, never by hand."""
    named = []
    for path in sorted(p for p in PANELS.glob("*.py") if p.name != "context.py"):  # context defines using()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "visit.models.overlay":
                named.append(f"{path.name}: imports visit.models.overlay")
            if isinstance(node, ast.Attribute) and node.attr in ("using", "weights_for"):
                named.append(f"{path.name}:{node.lineno}: .{node.attr}")
    assert named == []
