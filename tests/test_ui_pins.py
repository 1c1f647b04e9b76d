"""The pin bar over real HTTP: pin, group, label and pinned-only are patches of the figure, with no forward pass,
kept in the session, in the URL and in the exported report."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from browser_support import Server  # noqa: E402
from test_ui_fast import PROMPT, is_patch, traces_counted  # noqa: E402

from visit.links import curation_from_query, parse_query  # noqa: E402
from visit.ui import create_app, ids, pins  # noqa: E402
from visit.ui.client import DashClient, message_text  # noqa: E402


@pytest.fixture(scope="module")
def served(tiny_factory):
    app = create_app(model=tiny_factory("gpt2"), panels=("visit.ui.panels.details",))
    server = Server(app)
    yield server, app
    server.stop()


def pin_call(client, session, changed: str, **values) -> dict:
    dep = next(d for d in client.dependencies() if any(i["id"] == pins.GROUP for i in d["inputs"]))
    values = {f"{ids.SESSION}.data": session, **values}
    return client.call(dep["output"], changed, values)


def test_pin_group_label_without_a_forward_pass(served, monkeypatch):
    server, app = served
    client, session = DashClient(server.url), DashClient.new_session()
    client.trace(session, PROMPT)
    state = app.visit_sessions.get(session)
    heads = [n for n, a in state.analysis.graph.nodes(data=True) if a["kind"] == "head"][:2]
    calls = traces_counted(monkeypatch)
    for i, node in enumerate(heads):
        out = pin_call(client, session, f"{ids.PIN_CLICK}.data", **{f"{ids.PIN_CLICK}.data": {"node": node, "t": i}})
        assert is_patch(out[f"{ids.GRAPH}.figure"])
    assert state.curation.pins == tuple(heads) and all(state.analysis.graph.nodes[h]["pinned"] for h in heads)
    out = pin_call(client, session, f"{pins.GROUP}.n_clicks", **{f"{pins.GROUP}.n_clicks": 1,
                                                                  f"{pins.GROUP_NAME}.value": "two <heads>"})
    assert is_patch(out[f"{ids.GRAPH}.figure"]) and "G1" in state.analysis.graph
    assert not any(h in state.analysis.graph for h in heads)
    state.curation = pins.groups.select(state.curation, "G1")
    pin_call(client, session, f"{pins.LABEL}.n_clicks", **{f"{pins.LABEL}.n_clicks": 1,
                                                          f"{pins.LABEL_TEXT}.value": "pair"})
    assert state.analysis.graph.nodes["G1"]["user_label"] == "pair"
    out = pin_call(client, session, f"{pins.ONLY}.value", **{f"{pins.ONLY}.value": ["on"]})
    assert set(state.analysis.graph) == {"G1"} and out[f"{ids.VIEW_VERSION}.data"]
    assert calls == []  # no forward pass for any of it
    out = pin_call(client, session, f"{pins.GROUP}.n_clicks", **{f"{pins.GROUP}.n_clicks": 2})
    assert "two nodes" in out[f"{pins.NOTE}.children"]  # one clear line, nothing changed
    # the URL holds it; the report carries it
    search = client.call(f"{ids.URL}.search", f"{ids.VIEW_VERSION}.data",
                         {f"{ids.SESSION}.data": session, f"{ids.VIEW_VERSION}.data": 1})[f"{ids.URL}.search"]
    assert curation_from_query(parse_query(search)) == state.curation
    page = client.export(session)[f"{ids.DOWNLOAD}.data"]["content"]
    assert "two &lt;heads&gt;" in page and "grp=G1" in page
    assert f"<a class='view-link' href='{server.url}?" in page  # the view is a link to this app
    # a new trace of the same prompt keeps the curation (sticky in the session)
    client.trace(session, PROMPT, clicks=2)
    assert "G1" in app.visit_sessions.analysis(session).graph


def test_clearing_pins_drops_a_selected_group_and_a_load_without_a_click_says_nothing(served):
    server, app = served
    client, session = DashClient(server.url), DashClient.new_session()
    client.trace(session, PROMPT)
    state = app.visit_sessions.get(session)
    heads = [n for n, a in state.analysis.graph.nodes(data=True) if a["kind"] == "head"][:2]
    for i, node in enumerate(heads):
        pin_call(client, session, f"{ids.PIN_CLICK}.data", **{f"{ids.PIN_CLICK}.data": {"node": node, "t": i}})
    pin_call(client, session, f"{pins.GROUP}.n_clicks", **{f"{pins.GROUP}.n_clicks": 1})
    state.curation = pins.groups.select(state.curation, "G1")
    pin_call(client, session, f"{pins.CLEAR}.n_clicks", **{f"{pins.CLEAR}.n_clicks": 1})
    assert state.curation.selected is None and not state.curation.groups and "G1" not in state.analysis.graph
    search = client.call(f"{ids.URL}.search", f"{ids.VIEW_VERSION}.data",
                         {f"{ids.SESSION}.data": session, f"{ids.VIEW_VERSION}.data": 2})[f"{ids.URL}.search"]
    assert "sel=" not in search
    # a plain node stays selected through Clear
    state.curation = pins.groups.select(state.curation, heads[0])
    pin_call(client, session, f"{pins.CLEAR}.n_clicks", **{f"{pins.CLEAR}.n_clicks": 2})
    assert state.curation.selected == heads[0]
    # the pin-click store's first value as a page loads is no click: no "'' is not a node id"
    out = pin_call(client, session, f"{ids.PIN_CLICK}.data", **{f"{ids.PIN_CLICK}.data": None})
    assert not out.get(f"{pins.NOTE}.children")


def test_switching_models_drops_the_old_models_marks_and_graph(served, tiny_factory):
    """Node ids of one model mean nothing in another: a switch used to keep them and refuse every trace."""
    server, app = served
    other = tiny_factory("llama")  # more layers than the gpt2 one? either way, another model's ids
    app.visit_registry._models["other-tiny"] = other  # noqa: SLF001 - a second model the box can name
    client, session = DashClient(server.url), DashClient.new_session()
    client.trace(session, PROMPT)
    state = app.visit_sessions.get(session)
    node = f"L{state.analysis.vm.dims.n_layers - 1}.N{state.analysis.vm.dims.d_mlp - 1}"
    state.marks = {"include": (node,)}
    state.curation = pins.groups.toggle_pin(state.curation, node)
    out = client.load_model(session, "other-tiny", prompt=PROMPT)
    assert "cleared" in message_text(out) and "cannot include" not in message_text(out)
    assert state.marks == {} and state.curation.is_empty() and state.analysis.vm is other
