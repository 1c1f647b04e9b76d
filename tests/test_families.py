"""Families added for issue 11 (Gemma 1/2/3 ...): exact decompositions on tiny random configs, their extra hook
points (sandwich norms, soft-capped logits), resumed passes over sliding-window layers, and the adapters'
registry. The families of ``FAMILIES`` get all of this through the ``tiny_model`` fixture's tests."""

import pytest
import torch

from conftest import MORE_FAMILIES
from test_exactness import PROMPT, assert_close, check_decompositions
from visit.errors import VisitError
from visit.hooks import add, known_names, run, zero
from visit.hooks.resume import Join, record, resume
from visit.lens import LogitLens
from visit.models.adapters import ADAPTERS, adapter_for, supported_model_types
from visit.tracer import trace


@pytest.fixture(scope="module", params=MORE_FAMILIES)
def family_model(request, tiny_factory):
    return tiny_factory(request.param)


def _ids(vm):
    return torch.tensor([vm.tokenizer(PROMPT).input_ids])


def test_decompositions_are_exact(family_model):
    check_decompositions(family_model, PROMPT)
    check_decompositions(family_model, PROMPT, position=3)


def test_every_hook_point_reads_and_post_norms_join_the_residual(family_model):
    vm = family_model
    names = known_names(vm.dims.n_layers, vm.adapter)
    logits, rec = run(vm, _ids(vm), read=names)
    assert all(rec[n].shape[0] == 1 for n in names)
    torch.testing.assert_close(rec["logits"], logits)  # after any soft-capping: what the model returns
    for layer in range(vm.dims.n_layers):
        p = f"blocks.{layer}"
        mid = rec[f"{p}.hook_resid_pre"] + rec[f"{p}.hook_attn_out"]
        torch.testing.assert_close(rec[f"{p}.hook_resid_post"], mid + rec[f"{p}.hook_mlp_out"])
        if vm.adapter.ln1_post:
            torch.testing.assert_close(rec[f"{p}.hook_attn_out"], rec[f"{p}.ln1_post.hook_out"])
            torch.testing.assert_close(rec[f"{p}.hook_mlp_out"], rec[f"{p}.ln2_post.hook_out"])


def test_zeroed_head_and_frozen_post_norm_scale(family_model):
    """With a head zeroed, the attention output is the other heads' z / post-norm scale @ effective W_O."""
    vm, layer, head = family_model, 1, 2
    p = f"blocks.{layer}"
    tr = trace(vm, PROMPT, interventions=[zero(f"{p}.attn.hook_z", index=(head,))])
    z = tr[f"{p}.attn.hook_z"]
    assert bool((z[:, head] == 0).all())
    expected = torch.einsum("phd,hdm->pm", z / tr.post_scale(layer, "attn").unsqueeze(-1), vm.weights.W_O(layer))
    assert_close(tr[f"{p}.hook_attn_out"], expected + vm.weights.b_O(layer))


def test_post_norm_points_are_refused_without_post_norms(tiny_factory):
    vm = tiny_factory("llama")
    with pytest.raises(VisitError, match="no norm after"):
        run(vm, _ids(vm), read=["blocks.0.ln1_post.hook_in"])


def test_soft_capped_lens_and_logits(tiny_factory):
    vm = tiny_factory("gemma2")
    cap = vm.weights.logit_softcap
    tr = trace(vm, PROMPT)
    assert cap is not None and float(tr["logits"].abs().max()) < cap  # the cap bends the tiny model's logits
    lens = LogitLens.for_trace(tr)
    raw = lens.normed(tr["ln_final.hook_in"][-1:], "renorm") @ vm.weights.W_U
    assert float((raw.abs().max() - tr["logits"].abs().max())) > 0.01  # uncapped logits differ ...
    assert_close(lens.logits(tr["ln_final.hook_in"][-1:])[0], tr["logits"][-1])  # ... the lens caps them


@pytest.mark.parametrize("family", ["gemma2", "gemma3"])  # soft-capped logits; per-layer masks and rotary
def test_resumed_rows_over_sliding_windows_equal_full_passes(tiny_factory, family):
    vm = tiny_factory(family)
    ids = _ids(vm)[0]
    names = [f"blocks.{l}.hook_resid_pre" for l in range(vm.dims.n_layers)]
    t = len(ids) - 3  # beyond the 4-token window of the sliding layers
    with torch.no_grad():
        rec = record(vm, ids, rows=1, read=names)
        delta = torch.randn(vm.dims.d_model, generator=torch.Generator().manual_seed(0))
        hidden = rec.read[names[1]][0, t:].clone()
        hidden[0] += delta
        logits, _ = resume(vm, rec, t, [Join(1, hidden, source=0)])
        full, _ = run(vm, ids[None], write=[add(names[1], delta, positions=t)])
    torch.testing.assert_close(logits[0], full[0, -1], atol=1e-4, rtol=0)


def test_registry_maps_every_model_type_once():
    types = [t for a in ADAPTERS for t in a.model_types]
    assert len(types) == len(set(types)) and sorted(types) == supported_model_types()
    assert {"gemma", "gemma2", "gemma3_text", "qwen3", "gptj", "phi3", "olmo2", "olmo3", "mixtral", "qwen2_moe",
            "qwen3_moe"} <= set(types)
    with pytest.raises(VisitError, match="supported model types: .*gemma"):
        adapter_for("mamba")


def test_unsupported_architecture_from_a_directory_is_one_line_naming_the_supported(tmp_path):
    """A decoder visit has no adapter for (OLMoE, a mixture of experts) loads to one line, no traceback."""
    from transformers import OlmoeConfig

    from visit.models import load_model

    OlmoeConfig(vocab_size=64, hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                num_experts=2, num_experts_per_tok=1).save_pretrained(tmp_path)
    with pytest.raises(VisitError) as info:
        load_model(str(tmp_path))
    message = str(info.value)
    assert "'olmoe' is not supported" in message and "\n" not in message
    assert all(t in message for t in supported_model_types())


def test_attribution_scores_the_contributions_through_the_post_norm(tiny_factory):
    """Neuron and memory-value scores are the log-prob increases of the exact contributions (post-norm frozen)."""
    from visit.attribution.fast import ffn_neuron_scores
    from visit.attribution.logprob import (FrozenLens, attn_neuron_coefficients, attn_neuron_logprob_increase_brute,
                                           ffn_neuron_logprob_increase_brute, increase_of_vectors)

    vm = tiny_factory("gemma3")
    tr = trace(vm, PROMPT)
    target = int(tr["logits"][tr.position].argmax())
    lens, layer, d = FrozenLens.for_trace(tr), 1, vm.dims
    ffn = ffn_neuron_logprob_increase_brute(tr, target)
    direct = increase_of_vectors(lens, tr.resid(layer, "mid"), tr.neuron_contributions(layer, range(d.d_mlp)), target)
    assert_close(ffn[layer], direct)
    fast = ffn_neuron_scores(tr, target, k=10)
    top = ffn.reshape(-1).topk(10).indices
    assert_close(fast.scores.reshape(-1)[top], ffn.reshape(-1)[top])
    coeff = attn_neuron_coefficients(tr, layer).reshape(-1, d.n_heads, d.d_head)  # [src, H, dh]
    memory = torch.einsum("shj,hjm->hsm", coeff, vm.weights.W_O(layer))  # summed over each head's dims
    assert_close(memory, tr.memory_values(layer))  # == alpha v W_O / scale, exact parts of the head (above)
    attn = attn_neuron_logprob_increase_brute(tr, target)[layer]  # [H, dh, src]
    vec = coeff[2, 1, 3] * vm.weights.W_O(layer)[1, 3]
    assert_close(attn[1, 3, 2], increase_of_vectors(lens, tr.resid(layer, "pre"), vec[None], target)[0])


@pytest.mark.slow
def test_gemma3_270m_decomposes_exactly_and_knows_tokyo(gemma_model):
    tr = check_decompositions(gemma_model, "The capital of Japan is")
    top = int(tr["logits"][tr.position].argmax())
    assert gemma_model.tokenizer.decode([top]) == " Tokyo"
    assert gemma_model.adapter.ln1_post and gemma_model.dims.d_vocab == 262144


@pytest.mark.slow
def test_gemma3_270m_from_the_cli(gemma_model, monkeypatch, tmp_path, capsys):
    """``--model gemma3-270m`` in the CLI: trace and graph (the session's model stands in for the load)."""
    import json

    import visit.models
    from visit.cli import main

    asked = []
    monkeypatch.setattr(visit.models, "load_model", lambda name, **kw: asked.append(name) or gemma_model)
    out = tmp_path / "trace.json"
    assert main(["trace", "The capital of Japan is", "--model", "gemma3-270m", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["top"][0]["token"] == " Tokyo"
    graph = tmp_path / "graph.json"
    assert main(["graph", "The capital of Japan is", "--model", "gemma3-270m", "--layers", "15-17",
                 "--json", str(graph)]) == 0
    assert asked == ["gemma3-270m", "gemma3-270m"] and json.loads(graph.read_text())["nodes"]


def test_value_slice_and_gate_keys_follow_the_layout(family_model):
    """z = pattern-weighted values (the v slice of fused qkv), and the gate pre-activation = ln2_out @ W_in[0]
    (the gate half of a fused [gate | up])."""
    vm = family_model
    tr = trace(vm, PROMPT)
    _, rec = run(vm, _ids(vm), read=["blocks.1.mlp.hook_pre"])
    v = tr["blocks.1.attn.hook_v"][:, tr.kv_head_of]
    assert_close(torch.einsum("hds,shk->dhk", tr["blocks.1.attn.hook_pattern"], v), tr["blocks.1.attn.hook_z"])
    bias = getattr(vm.weights.block_module(1, vm.adapter.mlp_in[0]), "bias", None)  # GPT-J's fc_in
    pre = tr["blocks.1.ln2.hook_out"] @ vm.weights.W_in(1, 0) + (0 if bias is None else bias)
    assert_close(pre, rec["blocks.1.mlp.hook_pre"][0].float())


@pytest.mark.parametrize("family", ["olmo2", "olmo3", "mixtral", "qwen2_moe"])  # no pre-norms, sliding windows
# (OLMo 3), routing recomputed per row (MoE)
def test_resumed_rows_equal_full_passes_on_new_families(tiny_factory, family):
    vm = tiny_factory(family)
    ids = _ids(vm)[0]
    names = [f"blocks.{l}.hook_resid_pre" for l in range(vm.dims.n_layers)]
    t = 4
    gen = torch.Generator().manual_seed(0)
    deltas = [torch.randn(vm.dims.d_model, generator=gen) for _ in names]
    with torch.no_grad():
        rec = record(vm, ids, rows=1, read=names)
        joins = []
        for layer, name in enumerate(names):
            hidden = rec.read[name][0, t:].clone()
            hidden[0] += deltas[layer]
            joins.append(Join(layer, hidden, source=0))
        logits, _ = resume(vm, rec, t, joins)
        for layer, name in enumerate(names):
            full, _ = run(vm, ids[None], write=[add(name, deltas[layer], positions=t)])
            torch.testing.assert_close(logits[layer], full[0, -1], atol=1e-4, rtol=0)


def test_no_pre_norm_points_are_the_branch_inputs(tiny_factory):
    """OLMo 2: ln1/ln2 are the identity (scale 1), their hook points the attention's / MLP's input."""
    vm = tiny_factory("olmo2")
    tr = trace(vm, PROMPT)
    for layer in range(vm.dims.n_layers):
        p = f"blocks.{layer}"
        assert torch.equal(tr[f"{p}.ln1.hook_out"], tr[f"{p}.hook_resid_pre"])
        assert torch.equal(tr[f"{p}.ln2.hook_out"], tr[f"{p}.hook_resid_mid"])
        assert bool((tr[f"{p}.ln1.hook_scale"] == 1).all())


@pytest.mark.parametrize("family", ["olmo2", "mixtral"])
def test_causal_trace_and_integrated_gradients_on_new_families(tiny_factory, family):
    """The resumed batched paths (causal-trace grid, integrated gradients) equal one full pass per variant."""
    from test_causal_trace import SUBJECT, _noise
    from test_causal_trace import PROMPT as FACT
    from visit.localization.causal_trace import causal_trace, naive_cell
    from visit.localization.integrated_gradients import integrated_gradients

    vm = tiny_factory(family)
    ct = causal_trace(vm, FACT, SUBJECT, samples=2, noise=1.0, window=2)
    eps = _noise(vm, ct)
    for kind, t, layer in (("mlp", ct.subject_range[1] - 1, 1), ("hidden", ct.subject_range[0], 0),
                           ("attn", len(ct.tokens) - 1, 2)):
        ref = naive_cell(vm, FACT, ct.subject_range, eps, kind, t, layer, 2, ct.target.id)
        assert ct.kinds[kind][t, layer] == pytest.approx(ref, rel=1e-4, abs=1e-9), (kind, t, layer)
    tid = int(trace(vm, PROMPT)["logits"][-1].argmax())
    fast = integrated_gradients(vm, PROMPT, tid, steps=3)
    slow = integrated_gradients(vm, PROMPT, tid, steps=3, method="full")
    scale = float(slow.abs().max())
    assert scale > 0 and torch.allclose(fast, slow, rtol=1e-4, atol=1e-5 * scale)
