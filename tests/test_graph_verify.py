"""Verify: knock-outs through the hook layer, predicted (attribution) vs actual change of log p(target)."""

from __future__ import annotations

import pytest
import torch

from visit.errors import VisitError
from visit.graph.verify import prompt_set_means, verify
from visit.pipeline import analyze
from visit.tracer import encode_prompt

PROMPT = "The capital of France is the city of"


@pytest.fixture(scope="module")
def analysis(tiny_factory):
    return analyze(tiny_factory("llama"), PROMPT)


def test_zeroing_a_neuron_matches_an_independent_forward_pass(analysis, tiny_factory):
    vm, tr = analysis.vm, analysis.trace
    last = vm.dims.n_layers - 1  # in the last layer, zeroing the neuron everywhere = at the traced position
    node = next(n for n, a in analysis.graph.nodes(data=True) if a["kind"] == "neuron" and a["layer"] == last)
    res = verify(analysis, node, "zero")
    layer, i = analysis.graph.nodes[node]["layer"], analysis.graph.nodes[node]["neuron"]
    # reference, independent of the hook layer: the same pass with the neuron's down-projection column zeroed
    twin = tiny_factory("llama")  # the same weights (same seed), edited here so the served model stays intact
    down = twin.model.model.layers[layer].mlp.down_proj
    saved = down.weight[:, i].clone()
    try:
        with torch.no_grad():
            down.weight[:, i] = 0
            logits = twin.model(input_ids=encode_prompt(twin, PROMPT), use_cache=False).logits
    finally:
        with torch.no_grad():
            down.weight[:, i] = saved
    ref = float(logits[0, tr.position].float().log_softmax(-1)[analysis.target.id])
    assert tr.position == len(tr.input_ids) - 1  # the last token: later positions do not exist
    assert res["log_prob_after"] == pytest.approx(ref, abs=1e-5)
    assert res["actual"] == pytest.approx(ref - res["log_prob_before"], abs=1e-5)


def test_predicted_is_minus_the_attribution_and_groups_add(analysis):
    from visit.graph.attribution import node_attribution

    heads = [n for n, a in analysis.graph.nodes(data=True) if a["kind"] == "head"][:2]
    attr = node_attribution(analysis, heads)
    one = verify(analysis, heads[0])
    assert one["predicted"] == pytest.approx(-attr[heads[0]])
    group = verify(analysis, heads)
    assert group["predicted"] == pytest.approx(-attr[heads[0]] - attr[heads[1]])
    assert group["nodes"] == heads


def test_mean_replacement_uses_the_prompt_set_mean(analysis):
    vm = analysis.vm
    node = next(n for n, a in analysis.graph.nodes(data=True) if a["kind"] == "mlp_out")
    layer = analysis.graph.nodes[node]["layer"]
    name = f"blocks.{layer}.hook_mlp_out"
    mean = prompt_set_means(vm, [name], limit=3)[name]
    assert mean.shape == (vm.dims.d_model,)
    res = verify(analysis, node, "mean")
    assert res["mode"] == "mean" and res["actual"] != 0
    # the last layer's MLP output feeds the logits directly: first order is close to the real change
    if layer == vm.dims.n_layers - 1:
        assert res["predicted"] == pytest.approx(res["actual"], abs=0.5)


def test_bad_requests(analysis):
    with pytest.raises(VisitError, match="cannot verify"):
        verify(analysis, "L0.resid_post")
    with pytest.raises(VisitError, match="no node"):
        verify(analysis, "L0.H99")
    with pytest.raises(VisitError, match="mode"):
        verify(analysis, "L0.attn_out", "scramble")


def test_prompt_set_means_batched_equal_one_prompt_at_a_time(analysis):
    from visit.hooks import run
    from visit.prompts import default_prompt_file, load_prompt_file
    from visit.tracer import encode_prompt

    vm = analysis.vm
    names = ["blocks.1.hook_mlp_out", "blocks.0.attn.hook_z"]
    means = prompt_set_means(vm, names, limit=5)
    values = {n: [] for n in names}
    for case in load_prompt_file(default_prompt_file())[:5]:
        _, rec = run(vm, encode_prompt(vm, case.prompt), read=names)
        for n in names:
            values[n].append(rec[n][0, -1].float())
    for n in names:
        torch.testing.assert_close(means[n], torch.stack(values[n]).mean(0), atol=1e-5, rtol=1e-4)
