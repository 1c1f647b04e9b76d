"""Log-probability increase: telescoping, agreement with direct computation, fast == brute force."""

import pytest
import torch

from visit.attribution.fast import attn_neuron_scores, ffn_neuron_scores
from visit.attribution.logprob import (
    FrozenLens,
    attn_neuron_logprob_increase_brute,
    embedding_and_final_logprob,
    ffn_neuron_logprob_increase_brute,
    head_logprob_increase,
    layer_logprob_increase,
)
from visit.tracer import trace

PROMPT = "The capital of France is Paris, and the capital of Italy is"
TARGET = 1234  # any token: random models have no favourite


def direct_increase(tr, base, vector, target):
    """log p(w | base + v) - log p(w | base) with the frozen lens, written out from the lens module."""
    from visit.lens import LogitLens

    lens = LogitLens.for_trace(tr)
    lp = lens.logits(torch.stack([base + vector, base]), "frozen").log_softmax(-1)[:, target]
    return float(lp[0] - lp[1])


def test_layer_scores_telescope(tiny_model):
    tr = trace(tiny_model, PROMPT)
    layers = layer_logprob_increase(tr, TARGET)
    emb, final = embedding_and_final_logprob(tr, TARGET)
    total = float(layers["attn"].sum() + layers["ffn"].sum())
    assert abs(total - (final - emb)) <= 1e-4 * max(1.0, abs(final - emb))
    # the frozen lens on the final residual is the model itself
    model_lp = float(tr["logits"][tr.position].log_softmax(-1)[TARGET])
    assert abs(final - model_lp) < 1e-4


def test_layer_and_head_scores_match_direct_computation(tiny_model):
    tr = trace(tiny_model, PROMPT, position=5)
    layers = layer_logprob_increase(tr, TARGET)
    heads = head_logprob_increase(tr, TARGET)
    for layer in range(tr.n_layers):
        pre, mid = tr.resid(layer, "pre"), tr.resid(layer, "mid")
        attn_out = tr[f"blocks.{layer}.hook_attn_out"][tr.position]
        mlp_out = tr[f"blocks.{layer}.hook_mlp_out"][tr.position]
        assert layers["attn"][layer] == pytest.approx(direct_increase(tr, pre, attn_out, TARGET), abs=2e-5)
        assert layers["ffn"][layer] == pytest.approx(direct_increase(tr, mid, mlp_out, TARGET), abs=2e-5)
        for h in range(tiny_model.dims.n_heads):
            head = tr[f"blocks.{layer}.attn.hook_result"][h]
            assert heads[layer, h] == pytest.approx(direct_increase(tr, pre, head, TARGET), abs=2e-5)


def test_brute_force_neurons_match_direct_computation(tiny_factory):
    vm = tiny_factory("gpt2", seed=3)
    tr = trace(vm, PROMPT)
    ffn = ffn_neuron_logprob_increase_brute(tr, TARGET)
    attn = attn_neuron_logprob_increase_brute(tr, TARGET, per_source=True)
    summed = attn_neuron_logprob_increase_brute(tr, TARGET, per_source=False)
    layer = 1
    for i in (0, 17, 95):
        v = tr.neuron_contributions(layer, [i])[0]
        assert ffn[layer, i] == pytest.approx(direct_increase(tr, tr.resid(layer, "mid"), v, TARGET), abs=2e-5)
    h, j = 2, 7
    mem = tr.memory_values(layer, heads=[h])[0]  # [src, d_model]: alpha * v @ W_O over the whole head
    W_O = vm.weights.W_O(layer)[h, j]
    coeff = tr[f"blocks.{layer}.attn.hook_pattern"][h, tr.position, :tr.position + 1] * \
        tr[f"blocks.{layer}.attn.hook_v"][:tr.position + 1, tr.kv_head_of[h], j]
    for s in (0, 4, tr.position):
        expected = direct_increase(tr, tr.resid(layer, "pre"), coeff[s] * W_O, TARGET)
        assert attn[layer, h, j, s] == pytest.approx(expected, abs=2e-5)
    # attention neurons summed over sources are the W_O neurons z * W_O[h, j]
    wo = tr.wo_neuron_contributions(layer, [h * vm.dims.d_head + j])[0]
    assert summed[layer, h, j] == pytest.approx(direct_increase(tr, tr.resid(layer, "pre"), wo, TARGET), abs=2e-5)
    assert mem.shape[0] == tr.position + 1


def assert_same_top(fast_scores, brute_scores, k, largest=True):
    vf, idx = fast_scores.reshape(-1).topk(k, largest=largest)
    vb, _ = brute_scores.reshape(-1).topk(k, largest=largest)
    # the same sorted scores (so the same order up to exact ties) ...
    torch.testing.assert_close(vf, vb, atol=1e-5, rtol=0)
    # ... and every reported neuron really has the score reported for it
    torch.testing.assert_close(brute_scores.reshape(-1)[idx], vf, atol=1e-5, rtol=0)


def test_fast_ffn_scores_equal_brute_force(tiny_model):
    tr = trace(tiny_model, PROMPT)
    target = TARGET
    brute = ffn_neuron_logprob_increase_brute(tr, target)
    fast = ffn_neuron_scores(tr, target, k=40, k_bottom=20)
    assert fast.scores.shape == brute.shape
    assert_same_top(fast.scores, brute, 40)
    assert_same_top(fast.scores, brute, 20, largest=False)
    torch.testing.assert_close(fast.scores[fast.exact], brute[fast.exact], atol=1e-5, rtol=0)
    assert fast.n_candidates < brute.numel()


def test_fast_attention_neuron_scores_equal_brute_force(tiny_model):
    tr = trace(tiny_model, PROMPT, position=6)
    for per_source in (True, False):
        brute = attn_neuron_logprob_increase_brute(tr, TARGET, per_source=per_source)
        fast = attn_neuron_scores(tr, TARGET, per_source=per_source, k=60, k_bottom=10)
        assert fast.scores.shape == brute.shape
        assert_same_top(fast.scores, brute, 60)
        assert_same_top(fast.scores, brute, 10, largest=False)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gpt_neox"])  # RMSNorm and LayerNorm (centring)
def test_bounds_hold_for_every_neuron(tiny_factory, arch):
    from visit.attribution.fast import fast_scores, ffn_groups

    vm = tiny_factory(arch, seed=1)
    tr = trace(vm, PROMPT)
    brute = ffn_neuron_logprob_increase_brute(tr, TARGET)
    res = fast_scores(FrozenLens.for_trace(tr), ffn_groups(tr), TARGET, k=10)
    # fp32 brute force carries ~1e-6 of rounding; the bounds themselves are exact maths
    assert bool((res.upper[:, 0] >= brute - 1e-5).all())
    assert bool((res.lower[:, 0] <= brute + 1e-5).all())


def test_contract_functions_shapes(tiny_model):
    from visit.attribution import ffn_neuron_logprob_increase, head_logprob_increase as heads

    tr = trace(tiny_model, PROMPT)
    d = tiny_model.dims
    assert heads(tr, TARGET).shape == (d.n_layers, d.n_heads)
    assert ffn_neuron_logprob_increase(tr, TARGET).shape == (d.n_layers, d.d_mlp)


def test_per_layer_top_and_bottom_are_exact(tiny_factory):
    vm = tiny_factory("mistral", seed=2)
    tr = trace(vm, PROMPT)
    brute = ffn_neuron_logprob_increase_brute(tr, TARGET)
    fast = ffn_neuron_scores(tr, TARGET, k=5, per_layer=7, bottom_per_layer=4)
    for layer in range(vm.dims.n_layers):
        assert_same_top(fast.scores[layer], brute[layer], 7)
        assert_same_top(fast.scores[layer], brute[layer], 4, largest=False)


def test_cached_model_constants_follow_the_model(tiny_factory):
    """Per-model caches (packed W_U, neuron norms) must not leak into a fresh model of the same shape."""
    first = tiny_factory("gpt2", seed=4)
    ffn_neuron_scores(trace(first, PROMPT), TARGET, k=30)
    del first
    second = tiny_factory("gpt2", seed=5)
    tr = trace(second, PROMPT)
    assert_same_top(ffn_neuron_scores(tr, TARGET, k=30).scores, ffn_neuron_logprob_increase_brute(tr, TARGET), 30)


def test_soft_capped_logits_are_scored_exactly(tiny_factory):
    """Gemma 2 soft-caps its logits (the tiny config's cap, 0.3, bends them hard): every score is a difference of
    the capped model's log-probabilities, the layers still telescope to the model's own log p, and the fast
    method (which then scores every neuron exactly) agrees with brute force."""
    vm = tiny_factory("gemma2")
    assert vm.weights.logit_softcap
    tr = trace(vm, PROMPT, position=6)
    emb, final = embedding_and_final_logprob(tr, TARGET)
    assert final == pytest.approx(float(tr["logits"][tr.position].log_softmax(-1)[TARGET]), abs=1e-4)
    layers = layer_logprob_increase(tr, TARGET)
    assert float(layers["attn"].sum() + layers["ffn"].sum()) == pytest.approx(final - emb, abs=1e-4)
    heads = head_logprob_increase(tr, TARGET)
    layer = 1
    pre = tr.resid(layer, "pre")
    for h in range(vm.dims.n_heads):
        head = tr[f"blocks.{layer}.attn.hook_result"][h]
        assert heads[layer, h] == pytest.approx(direct_increase(tr, pre, head, TARGET), abs=2e-5)
    brute = ffn_neuron_logprob_increase_brute(tr, TARGET)
    for i in (0, 5, 31):
        v = tr.neuron_contributions(layer, [i])[0]
        assert brute[layer, i] == pytest.approx(direct_increase(tr, tr.resid(layer, "mid"), v, TARGET), abs=2e-5)
    fast = ffn_neuron_scores(tr, TARGET, k=40, k_bottom=20)
    assert_same_top(fast.scores, brute, 40)
    assert_same_top(fast.scores, brute, 20, largest=False)
    attn_brute = attn_neuron_logprob_increase_brute(tr, TARGET, per_source=False)
    attn_fast = attn_neuron_scores(tr, TARGET, per_source=False, k=30)
    assert_same_top(attn_fast.scores, attn_brute, 30)
