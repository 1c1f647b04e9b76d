"""visit.graph.diff and visit.graph.attribution: the before/after view's data, aligned by node id."""

from __future__ import annotations

import json
import math

import pytest
import torch

from visit.attribution import head_logprob_increase
from visit.graph import GraphSettings
from visit.graph.attribution import node_attribution
from visit.graph.diff import diff_graphs
from visit.hooks import zero
from visit.pipeline import analyze

PROMPT = "The capital of France is the city of"


@pytest.fixture(scope="module")
def tiny(tiny_factory):
    return tiny_factory("llama")


@pytest.fixture(scope="module")
def before(tiny):
    return analyze(tiny, PROMPT)


def test_node_attribution_equals_the_head_scores(before):
    scores = head_logprob_increase(before.trace, before.target.id)
    attr = node_attribution(before)
    heads = [n for n, a in before.graph.nodes(data=True) if a["kind"] == "head"]
    assert heads
    for n in heads:
        a = before.graph.nodes[n]
        assert attr[n] == pytest.approx(float(scores[a["layer"], a["head"]]), abs=1e-5)
    assert attr["L0.resid_pre"] is None and attr["L0.ln1"] is None


def test_diff_with_itself_changes_nothing(before):
    d = diff_graphs(before, before)
    assert d["top_changed"] == [] and d["only_before"] == [] and d["only_after"] == []
    for node in d["nodes"].values():
        assert node["present"] == "both" and node["change"] == 0
        assert all(v in (None, 0) for v in node["delta"].values())
    json.dumps(d)  # plain data


def test_diff_of_a_zeroed_head_marks_what_changed(tiny, before):
    layer, head = 1, 2
    after = analyze(tiny, PROMPT, target_id=before.target.id,
                    settings=GraphSettings(include=(f"L{layer}.H{head}",)),
                    interventions=[zero(f"blocks.{layer}.attn.hook_z", index=(head,))])
    d = diff_graphs(before, after)
    nodes = d["nodes"]
    # layer 0 runs before the write: its own lens is identical (attribution moves a little: the frozen final
    # norm's scale is the changed final residual's)
    for n, node in nodes.items():
        if node["layer"] == 0 and node["present"] == "both" and node["before"]["log_prob"] is not None:
            assert node["delta"]["log_prob"] == pytest.approx(0, abs=1e-6), n
            assert node["delta"]["target_rank"] == 0, n
    # the zeroed head adds nothing after: its attribution falls to 0
    h = nodes[f"L{layer}.H{head}"]
    assert h["after"]["attribution"] == pytest.approx(0, abs=1e-6)
    assert h["delta"]["attribution"] == pytest.approx(-h["before"]["attribution"], abs=1e-6)
    # the final residual's target log-probability moves by what an independent forward pass says
    final = d["final"]
    assert final["id"] == f"L{tiny.dims.n_layers - 1}.resid_post"
    lp_b = before.trace["logits"][before.trace.position].float().log_softmax(-1)[before.target.id]
    lp_a = after.trace["logits"][after.trace.position].float().log_softmax(-1)[before.target.id]
    assert final["delta"]["log_prob"] == pytest.approx(float(lp_a - lp_b), abs=1e-4)
    # top changed: sorted, marked, only nodes present in both
    top = d["top_changed"]
    assert top and all(nodes[n]["top_changed"] for n in top)
    changes = [nodes[n]["change"] for n in top]
    assert changes == sorted(changes, reverse=True)
    assert not any(nodes[n]["top_changed"] for n in nodes if n not in top)
    assert d["same_target"] and d["before"]["prompt"] == PROMPT
    json.dumps(d)


def test_two_prompts_align_by_id_and_keep_their_own_targets(tiny, before):
    other = analyze(tiny, "The capital of Italy is")
    d = diff_graphs(before, other)
    assert d["after"]["prompt"] == "The capital of Italy is"
    assert set(d["nodes"]) == set(before.graph) | set(other.graph)
    for n in d["only_before"]:
        assert d["nodes"][n]["after"] is None and not d["nodes"][n]["top_changed"]
    for n in d["only_after"]:
        assert d["nodes"][n]["before"] is None
    p = d["nodes"]["L0.resid_post"]
    assert p["before"]["target_prob"] == before.graph.nodes["L0.resid_post"]["target_prob"]
    assert math.isclose(p["before"]["log_prob"], math.log(p["before"]["target_prob"]))
