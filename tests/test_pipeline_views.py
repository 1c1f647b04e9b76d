"""First views and re-draws: the app's fast paths draw the same graph as a full analyze(), without a new pass."""

from __future__ import annotations

import pytest

import visit.pipeline as pipeline
from visit.graph import GraphSettings
from visit.pipeline import analyze, complete, redraw

PROMPT = "The capital of France is the city of"


@pytest.fixture(scope="module")
def vm(tiny_factory):
    return tiny_factory("gpt2")


def _nodes(analysis):
    return {n: (a["x"], a["y"], a["target_rank"], a["label"]) for n, a in analysis.graph.nodes(data=True)}


def test_first_view_draws_the_last_layers_where_the_whole_graph_has_them(vm):
    full = analyze(vm, PROMPT)
    first = analyze(vm, PROMPT, first_view=1)
    assert first.partial and not full.partial
    assert {a["layer"] for _, a in first.graph.nodes(data=True)} == {vm.dims.n_layers - 1}
    whole = _nodes(full)
    for n, values in _nodes(first).items():
        assert whole[n] == values, n
    done = complete(first)
    assert not done.partial and _nodes(done) == whole and done.trace is first.trace
    assert complete(done) is done


def test_redraw_needs_no_forward_pass(vm, monkeypatch):
    base = analyze(vm, PROMPT)
    monkeypatch.setattr(pipeline, "run_trace", lambda *a, **k: pytest.fail("redraw traced again"))
    again = redraw(base, GraphSettings(mlp_top=1, mlp_bottom=0, highlight=("L0.H1",), layer_start=1))
    assert again.trace is base.trace and again.target == base.target
    assert {a["layer"] for _, a in again.graph.nodes(data=True)} == {1, 2}
    assert again.graph.nodes["L1.resid_post"]["target_rank"] == base.graph.nodes["L1.resid_post"]["target_rank"]
    assert sum(a["kind"] == "neuron" for _, a in again.graph.nodes(data=True)) == 2
    assert "trace" in again.timings and again.timings["graph"] >= 0


def test_graph_json_and_export_complete_a_first_view(vm):
    first = analyze(vm, PROMPT, first_view=1)
    layers = {n["layer"] for n in pipeline.graph_json(first)["nodes"]}
    assert layers == set(range(vm.dims.n_layers))
