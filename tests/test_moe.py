"""Mixtures of experts (visit/models/moe.py): every expert's neurons are neurons of the layer, the router weight is
part of their coefficient, only the chosen experts' neurons contribute, and writes to them are what changing the
model's own expert weights does. (Exactness of the decompositions is in tests/test_families.py.)"""

import pytest
import torch

from test_exactness import PROMPT, assert_close
from visit.errors import VisitError
from visit.hooks import run, weights_changed, zero
from visit.models.moe import expert_of
from visit.tracer import trace

MOE_FAMILIES = ["mixtral", "qwen2_moe", "qwen3_moe"]


@pytest.fixture(scope="module", params=MOE_FAMILIES)
def moe_model(request, tiny_factory):
    return tiny_factory(request.param)


def _ids(vm):
    return torch.tensor([vm.tokenizer(PROMPT).input_ids])


def _experts(vm):
    c, moe = vm.model.config, vm.adapter.moe
    return int(getattr(c, moe.n_experts)), int(getattr(c, moe.d_expert))


def test_only_the_chosen_experts_neurons_have_coefficients(moe_model):
    vm = moe_model
    E, de = _experts(vm)
    tr = trace(vm, PROMPT)
    for layer in range(vm.dims.n_layers):
        p = f"blocks.{layer}"
        weights = tr[f"{p}.mlp.hook_expert_weights"]  # [pos, E]
        post = tr[f"{p}.mlp.hook_post"]  # [pos, d_mlp]
        routed = post[:, :E * de].reshape(-1, E, de)
        assert torch.equal((routed != 0).any(-1), weights != 0)  # nonzero exactly where the router chose
        k = vm.model.config.num_experts_per_tok
        assert bool(((weights != 0).sum(-1) == k).all()) and len(weights.argmax(-1).unique()) > 1
        # the router's own choice on the MLP's input
        _, top_w, top_i = vm.weights.block_module(layer, vm.adapter.moe.router)(tr[f"{p}.ln2.hook_out"])
        assert_close(weights.gather(1, top_i), top_w.float())
        if vm.adapter.moe.shared:  # Qwen2-MoE's shared expert: every position, sigmoid gate folded in
            assert bool((post[:, E * de:] != 0).all())
    assert expert_of(vm.weights, de + 3) == (1, 3)


def test_zeroed_expert_neurons_equal_a_zeroed_down_projection(moe_model):
    """Writing 0 to expert e's coefficients (hook layer) == the model with expert e's down projection zeroed."""
    vm, layer, expert = moe_model, 1, 2
    E, de = _experts(vm)
    neurons = list(range(expert * de, (expert + 1) * de))
    written, rec = run(vm, _ids(vm), read=[f"blocks.{layer}.mlp.hook_post", f"blocks.{layer}.hook_mlp_out"],
                       write=[zero(f"blocks.{layer}.mlp.hook_post", index=(neurons,))])
    assert bool((rec[f"blocks.{layer}.mlp.hook_post"][0][:, neurons] == 0).all())  # the read sees the write
    name = f"{vm.adapter.blocks}.{layer}.{vm.adapter.moe.experts}.down_proj"
    down = dict(vm.model.named_parameters())[name]
    delta = torch.zeros_like(down)
    delta[expert] = -down[expert]
    with weights_changed(vm, {name: delta}):
        edited, rec2 = run(vm, _ids(vm), read=[f"blocks.{layer}.hook_mlp_out"])
    assert_close(rec[f"blocks.{layer}.hook_mlp_out"], rec2[f"blocks.{layer}.hook_mlp_out"])
    assert_close(written, edited)
    clean, _ = run(vm, _ids(vm))
    assert float((clean - written).abs().max()) > 1e-4  # the expert mattered


def test_gradients_reach_written_coefficients(tiny_factory):
    """A replaced coefficient is a leaf of the output, as integrated gradients need (linear: grad = W_out row)."""
    from visit.hooks import replace

    vm, layer = tiny_factory("mixtral"), 1
    _, clean = run(vm, _ids(vm), read=[f"blocks.{layer}.mlp.hook_post"])
    leaf = clean[f"blocks.{layer}.mlp.hook_post"][0, -1].clone().requires_grad_(True)
    _, rec = run(vm, _ids(vm), read=[f"blocks.{layer}.hook_mlp_out"], grad=True,
                 write=[replace(f"blocks.{layer}.mlp.hook_post", leaf, positions=[-1 % _ids(vm).shape[1]])])
    direction = torch.randn(vm.dims.d_model, generator=torch.Generator().manual_seed(0))
    (rec[f"blocks.{layer}.hook_mlp_out"][0, -1] @ direction).backward()
    assert_close(leaf.grad, vm.weights.W_out(layer) @ direction)  # also for experts not chosen there


def test_moe_points_are_clear_about_what_they_are(tiny_factory):
    vm = tiny_factory("mixtral")
    with pytest.raises(VisitError, match="cannot be written"):
        run(vm, _ids(vm), write=[zero("blocks.0.mlp.hook_pre")])
    with pytest.raises(VisitError, match="cannot be written"):
        run(vm, _ids(vm), write=[zero("blocks.0.mlp.hook_expert_weights")])
    llama = tiny_factory("llama")
    with pytest.raises(VisitError, match="not a mixture of experts"):
        run(llama, _ids(llama), read=["blocks.0.mlp.hook_expert_weights"])


def test_layers_without_experts_are_refused_in_one_line(tokenizer):
    from transformers import AutoModelForCausalLM, Qwen2MoeConfig

    from visit.models import wrap_model

    config = Qwen2MoeConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                            num_attention_heads=2, num_key_value_heads=2, num_experts=2, num_experts_per_tok=1,
                            moe_intermediate_size=16, shared_expert_intermediate_size=16, mlp_only_layers=[1])
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    with pytest.raises(VisitError, match=r"layers \[1\] .* dense MLP") as info:
        wrap_model(model, tokenizer, "mixed")
    assert "\n" not in str(info.value)


def test_graph_shows_the_chosen_experts_neurons(tiny_factory):
    from visit.pipeline import analyze

    vm = tiny_factory("qwen2_moe")
    E, de = _experts(vm)
    a = analyze(vm, PROMPT)
    tr = a.trace
    neurons = [d for _, d in a.graph.nodes(data=True) if d["kind"] == "neuron"]
    assert neurons
    for d in neurons:
        expert, index = expert_of(vm.weights, d["neuron"])
        chosen = tr[f"blocks.{d['layer']}.mlp.hook_expert_weights"][tr.position]
        assert (d["expert"], d["expert_neuron"]) == (expert, index)
        if expert is None:
            assert "shared expert" in d["location"]
        else:  # a routed neuron in the graph: its expert was chosen, and the node says so
            assert float(chosen[expert]) > 0 and d["router_weight"] == pytest.approx(float(chosen[expert]))
            assert f"expert {expert} #{index}" in d["location"]
    assert any(d["expert"] is not None for d in neurons)


def test_editing_a_mixture_of_experts_is_one_clear_line(tiny_factory):
    from visit.editing import EditRequest, EditStack, compute_edit

    vm = tiny_factory("mixtral")
    request = EditRequest("The capital of {} is", "France", "Rome", old="Paris")
    for attempt in (lambda: compute_edit(vm, request, "kn"), lambda: EditStack().edit(vm, request, "rome")):
        with pytest.raises(VisitError, match="mixture of experts") as info:
            attempt()
        assert "\n" not in str(info.value)
