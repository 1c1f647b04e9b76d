"""The app's fast paths over real HTTP: a first view, its completion patched in, changes without a forward pass."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from browser_support import Server  # noqa: E402

import visit.batching as batching  # noqa: E402
import visit.pipeline as pipeline  # noqa: E402
from visit.ui import create_app, fast, ids  # noqa: E402
from visit.ui.client import DashClient  # noqa: E402
from visit.ui.state import request_graph_update  # noqa: E402

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def served(tiny_factory):
    vm = tiny_factory("gpt2")
    app = create_app(model=vm, panels=("visit.ui.panels.details",))
    server = Server(app)
    yield server, app, vm
    server.stop()


def is_patch(value) -> bool:
    return isinstance(value, dict) and "__dash_patch_update" in value


def traces_counted(monkeypatch) -> list:
    """Forward passes from now on: the pipeline's own and the app's batched ones (visit.batching), 1 per pass."""
    calls, original, batched = [], pipeline.run_trace, batching.trace_batch

    def counting(*a, **k):
        calls.append(1)
        return original(*a, **k)

    def counting_batch(*a, **k):
        calls.append(1)
        return batched(*a, **k)

    monkeypatch.setattr(pipeline, "run_trace", counting)
    monkeypatch.setattr(batching, "trace_batch", counting_batch)
    return calls


def test_first_view_then_the_whole_graph_patched_in(served, monkeypatch):
    server, app, vm = served
    monkeypatch.setattr(fast, "FIRST_VIEW_LAYERS", 1)
    client, session = DashClient(server.url), DashClient.new_session()
    out = client.trace(session, PROMPT)
    first = app.visit_sessions.analysis(session)
    assert first.partial and {a["layer"] for _, a in first.graph.nodes(data=True)} == {vm.dims.n_layers - 1}
    assert not is_patch(out[f"{ids.GRAPH}.figure"])
    assert out[f"{ids.GRAPH}.figure"]["layout"]["xaxis"]["autorange"] is False  # the full graph lands around it
    dep = next(d for d in client.dependencies() if d["output"].startswith(f"{ids.GRAPH}.figure@"))
    done = client.call(dep["output"], f"{ids.ANALYSIS_VERSION}.data",
                       {f"{ids.ANALYSIS_VERSION}.data": out[f"{ids.ANALYSIS_VERSION}.data"],
                        f"{ids.SESSION}.data": session})
    whole = app.visit_sessions.analysis(session)
    assert not whole.partial and whole.trace is first.trace
    assert {a["layer"] for _, a in whole.graph.nodes(data=True)} == set(range(vm.dims.n_layers))
    assert is_patch(done[f"{ids.GRAPH}.figure"])


def test_changes_without_a_new_pass_are_patches(served, monkeypatch):
    server, app, vm = served
    client, session = DashClient(server.url), DashClient.new_session()
    client.trace(session, PROMPT)
    calls = traces_counted(monkeypatch)
    before = app.visit_sessions.analysis(session)
    values = {f"{ids.SESSION}.data": session, f"{ids.PROMPT}.value": PROMPT,
              f"{ids.GRAPH_REQUEST}.data": request_graph_update(session, highlight=("L1.H2",))}
    out = client.call(f"{ids.GRAPH}.figure", f"{ids.GRAPH_REQUEST}.data", values)
    patch = out[f"{ids.GRAPH}.figure"]
    assert is_patch(patch) and len(patch["operations"]) == 1  # one trace: the highlight rings
    assert out[f"{ids.ANALYSIS_VERSION}.data"] > 1  # panels see the new marks
    assert app.visit_sessions.analysis(session).graph.nodes["L1.H2"]["highlighted"]
    # a pruning knob typed in the controls, then Enter: the same pass re-drawn (the whole answer is sent: the
    # page may have been reloaded)
    out = client.trace(session, PROMPT, **{f"{ids.KNOBS['mlp_top']}.value": 1})
    assert not is_patch(out[f"{ids.GRAPH}.figure"]) and out[f"{ids.PREDICTIONS}.children"]
    after = app.visit_sessions.analysis(session)
    assert after.trace is before.trace and after.settings.mlp_top == 1
    assert calls == []
    client.trace(session, "The capital of Italy is")  # a new prompt needs a pass
    assert calls == [1]


def test_pruning_mode_is_a_click_apart(served, monkeypatch):
    server, app, vm = served
    client, session = DashClient(server.url), DashClient.new_session()
    client.trace(session, PROMPT)
    calls = traces_counted(monkeypatch)
    values = {f"{ids.SESSION}.data": session, f"{ids.PROMPT}.value": PROMPT, f"{ids.PRUNE_BY}.value": "circuit",
              f"{ids.CIRCUIT_SHARE}.value": 0.5, f"{ids.SHOW_NORMS}.value": ["on"]}
    out = client.call(f"{ids.GRAPH}.figure", f"{ids.PRUNE_BY}.value", values)
    assert is_patch(out[f"{ids.GRAPH}.figure"]) and calls == []
    analysis = app.visit_sessions.analysis(session)
    assert (analysis.settings.prune_by, analysis.settings.circuit_share) == ("circuit", 0.5)
    assert any(n.startswith("circuit:") for n in analysis.notes)
    assert all(a["role"] == "circuit" for _, a in analysis.graph.nodes(data=True) if a["kind"] == "neuron")
    fresh = DashClient.new_session()  # nothing traced yet: the radio alone does nothing
    assert client.call(f"{ids.GRAPH}.figure", f"{ids.PRUNE_BY}.value", {**values, f"{ids.SESSION}.data": fresh}) == {}


def test_a_label_alone_patches_the_node_traces_and_the_labels(tiny_factory):
    from visit.curation import curate
    from visit.graph import groups
    from visit.pipeline import analyze

    analysis = analyze(tiny_factory("gpt2"), PROMPT)
    heads = [n for n, a in analysis.graph.nodes(data=True) if a["kind"] == "head"][:3]
    c = groups.group_pins(groups.Curation(pins=tuple(heads[:2])), "pair")
    shown = curate(analysis, c)
    labelled = groups.set_label(c, heads[2], "<b>mine</b>")
    patch = fast.patch_labels(shown, labelled)
    assert patch is not None
    whole = curate(analysis, labelled)  # what re-drawing everything gives
    n = len(whole.figure.data)
    patched = {op["location"][1] for op in patch.to_plotly_json()["operations"]}
    assert n - 3 in patched and all(i >= n - 3 - 20 for i in patched) and len(patched) < n - 3
    assert list(shown.figure.data[n - 3].text) == list(whole.figure.data[n - 3].text)
    assert "&lt;b&gt;mine&lt;/b&gt;" in list(shown.figure.data[n - 3].text)  # escaped: SVG text
    assert shown.curation == labelled and shown.graph.nodes[heads[2]]["user_label"] == "<b>mine</b>"
    assert fast.patch_labels(shown, groups.set_label(labelled, "G1", "g")) is None  # a group's label: re-draw
    unlabelled = groups.set_label(labelled, heads[2], "")
    assert fast.patch_labels(shown, unlabelled) is not None and "user_label" not in shown.graph.nodes[heads[2]]
