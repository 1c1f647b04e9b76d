"""The hook layer: reads equal the model's own values, writes change exactly what they say, weight changes and
hooks undo themselves (also on exceptions), resumed passes equal full passes, caches follow the weights."""

import pytest
import torch

from visit.errors import VisitError
from visit.hooks import Intervention, add, hooked, known_names, replace, run, scale, weights_changed, zero
from visit.hooks.resume import Join, record, resume
from visit.tracer import trace

PROMPT = "The capital of France is Paris, and the capital of Italy is"


def _ids(vm):
    return torch.tensor([vm.tokenizer(PROMPT).input_ids])


def _params(vm):
    return {n: p.detach().clone() for n, p in vm.model.named_parameters()}


def _same_params(vm, saved):
    return all(torch.equal(p, saved[n]) for n, p in vm.model.named_parameters())


def test_every_hook_point_reads_a_batch_first_value(tiny_model):
    names = [n for n in known_names(tiny_model.dims.n_layers)]
    logits, rec = run(tiny_model, _ids(tiny_model), read=names)
    T = _ids(tiny_model).shape[1]
    for name in names:
        value = rec[name]
        assert value.shape[0] == 1, name
        if not name.endswith("hook_pattern"):
            assert value.shape[1] == T, name
    torch.testing.assert_close(rec["logits"], logits)
    # the block's output is the next block's input
    torch.testing.assert_close(rec["blocks.0.hook_resid_post"], rec["blocks.1.hook_resid_pre"])


def test_zeroing_one_heads_z_leaves_the_other_heads_plus_bias(tiny_model):
    """On every family: attention output = sum over the other heads of z_h W_O^h + b_O."""
    vm, layer, head = tiny_model, 1, 2
    p = f"blocks.{layer}"
    _, rec = run(vm, _ids(vm), read=[f"{p}.attn.hook_z", f"{p}.hook_attn_out"],
                 write=[zero(f"{p}.attn.hook_z", index=(head,))])
    z = rec[f"{p}.attn.hook_z"][0]  # [pos, H, dh], as the output projection read it
    assert bool((z[:, head] == 0).all()) and bool((z[:, head - 1] != 0).any())
    expected = torch.einsum("phd,hdm->pm", z, vm.weights.W_O(layer)) + vm.weights.b_O(layer)
    torch.testing.assert_close(rec[f"{p}.hook_attn_out"][0], expected, atol=1e-5, rtol=0)


def test_q_k_v_writes_touch_only_their_slice(tiny_model):
    """Fused and separate q/k/v layouts: zeroing v leaves q and k as they were."""
    vm = tiny_model
    names = [f"blocks.0.attn.hook_{x}" for x in "qkv"]
    _, clean = run(vm, _ids(vm), read=names)
    _, rec = run(vm, _ids(vm), read=names, write=[zero("blocks.0.attn.hook_v", positions=[1, 2])])
    torch.testing.assert_close(rec[names[0]], clean[names[0]], atol=0, rtol=0)
    torch.testing.assert_close(rec[names[1]], clean[names[1]], atol=0, rtol=0)
    assert bool((rec[names[2]][0, 1:3] == 0).all())
    torch.testing.assert_close(rec[names[2]][0, 3:], clean[names[2]][0, 3:], atol=0, rtol=0)


def test_ops_rows_positions_and_pairs(tiny_factory):
    vm = tiny_factory("llama", seed=1)
    ids = _ids(vm).expand(3, -1)
    name = "blocks.1.mlp.hook_post"
    _, clean = run(vm, ids, read=[name])
    base = clean[name]
    v = torch.arange(4.0)
    writes = {
        "replace": replace(name, v, rows=[1], positions=[2], index=([0, 1, 2, 3],)),
        "add": add(name, 1.5, rows=[0, 2], positions=[0, 4]),
        "scale": scale(name, 2.0, positions=3),
        "pairs": replace(name, 7.0, rows=[0, 2], positions=[5, 6], paired=True),
    }
    for op, iv in writes.items():
        _, rec = run(vm, ids, read=[name], write=[iv])
        got, want = rec[name], base.clone()
        if op == "replace":
            want[1, 2, :4] = v
        elif op == "add":
            for r in (0, 2):
                for p in (0, 4):
                    want[r, p] += 1.5
        elif op == "scale":
            want[:, 3] *= 2
        else:
            want[0, 5], want[2, 6] = 7.0, 7.0
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0, msg=op)


def test_hooks_are_removed_after_an_exception(tiny_factory):
    vm = tiny_factory("gpt2", seed=3)
    clean = vm.model(input_ids=_ids(vm), use_cache=False).logits
    boom = Intervention("blocks.1.hook_mlp_out", "fn", lambda x: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        run(vm, _ids(vm), write=[boom])
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in vm.model.modules())
    torch.testing.assert_close(vm.model(input_ids=_ids(vm), use_cache=False).logits, clean, atol=0, rtol=0)


def test_unknown_and_read_only_points_are_clear_errors(tiny_factory):
    vm = tiny_factory("llama")
    with pytest.raises(VisitError, match="unknown hook point"):
        run(vm, _ids(vm), read=["blocks.0.hook_nothing"])
    with pytest.raises(VisitError, match="out of range"):
        run(vm, _ids(vm), read=["blocks.99.hook_resid_pre"])
    with pytest.raises(VisitError, match="cannot be written"):
        run(vm, _ids(vm), write=[zero("blocks.0.attn.hook_pattern")])
    with pytest.raises(VisitError, match="hook_attn_out"):
        run(vm, _ids(vm), write=[zero("blocks.0.hook_resid_mid")])


def test_gradients_flow_through_a_replace(tiny_factory):
    vm = tiny_factory("qwen2", seed=2)
    name = "blocks.2.mlp.hook_post"
    _, rec = run(vm, _ids(vm), read=[name])
    act = rec[name][0, -1].clone().requires_grad_(True)
    logits, _ = run(vm, _ids(vm), write=[replace(name, act, positions=-1 % _ids(vm).shape[1])], grad=True)
    logits[0, -1, 5].backward()
    W_U = vm.weights.W_U
    # the last layer's neuron i moves the logit by (its W_out row, through the final norm) -- nonzero gradient
    assert act.grad is not None and act.grad.abs().sum() > 0 and W_U.grad is None


def test_weights_changed_restores_bit_exactly_also_on_exception(tiny_factory):
    vm = tiny_factory("gpt2", seed=6)
    saved = _params(vm)
    name = "transformer.h.1.mlp.c_proj.weight"
    delta = torch.randn_like(saved[name]) * 1e-3
    with pytest.raises(RuntimeError):
        with weights_changed(vm, {name: delta}):
            assert not torch.equal(dict(vm.model.named_parameters())[name], saved[name])
            raise RuntimeError("mid-edit failure")
    assert _same_params(vm, saved)
    # an exception inside a forward pass under an edit: weights and hooks both restored
    boom = Intervention("blocks.0.hook_mlp_out", "fn", lambda x: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        with weights_changed(vm, [{name: delta}, {name: -2 * delta}]):
            run(vm, _ids(vm), write=[boom])
    assert _same_params(vm, saved)
    with pytest.raises(VisitError, match="no parameter"):
        with weights_changed(vm, {"nope.weight": delta}):
            pass


def test_caches_follow_weight_edits(tiny_factory):
    """A cached attribution equals a fresh computation after a weight is edited in place."""
    from visit.attribution.fast import ffn_neuron_scores
    from visit.attribution.logprob import ffn_neuron_logprob_increase_brute

    vm = tiny_factory("llama", seed=7)
    target = 1234
    tr = trace(vm, PROMPT)
    ffn_neuron_scores(tr, target, k=20)  # fills the per-model norms and packed-W_U caches
    version = vm.weights.version
    with vm.lock, torch.no_grad():
        vm.weights.block_module(2, vm.adapter.mlp_out).weight.mul_(3.0)  # permanent in-place edits, announced
        vm.model.get_output_embeddings().weight.add_(0.01)
        vm.weights.written()
    assert vm.weights.version != version
    tr2 = trace(vm, PROMPT)
    after = ffn_neuron_scores(tr2, target, k=20)
    brute = ffn_neuron_logprob_increase_brute(tr2, target)
    top = brute.reshape(-1).topk(20).indices
    assert set(after.scores.reshape(-1).topk(20).indices.tolist()) == set(top.tolist())
    torch.testing.assert_close(after.scores.reshape(-1)[top], brute.reshape(-1)[top], atol=1e-5, rtol=0)


def test_resumed_rows_equal_full_passes(tiny_model):
    """Rows joining at every block over a suffix equal full passes with the same change written in."""
    vm = tiny_model
    ids = _ids(vm)[0]
    L = vm.dims.n_layers
    names = [f"blocks.{l}.hook_resid_pre" for l in range(L)] + ["ln_final.hook_in"]
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        rec = record(vm, ids, rows=2, read=names, write=[add("hook_embed", 0.3, rows=[1], positions=[1, 2])])
        for t in (0, 4, len(ids) - 1):
            joins, deltas = [], []
            for layer, name in enumerate(names):
                delta = torch.randn(vm.dims.d_model, generator=gen)
                hidden = rec.read[name][1, t:].clone()
                hidden[0] += delta
                joins.append(Join(layer, hidden, source=1))
                deltas.append(delta)
            logits, _ = resume(vm, rec, t, joins)
            for layer, name in enumerate(names):
                full, _ = run(vm, ids[None], write=[add("hook_embed", 0.3, positions=[1, 2]),
                                                    add(name, deltas[layer], positions=t)])
                torch.testing.assert_close(logits[layer], full[0, -1], atol=1e-4, rtol=0)


def test_trace_and_analyze_accept_interventions(tiny_factory):
    from visit.pipeline import analyze

    vm = tiny_factory("gpt_neox", seed=2)
    iv = [zero("blocks.1.hook_mlp_out", positions=[3, 4])]
    tr = trace(vm, PROMPT, interventions=iv)
    assert bool((tr["blocks.1.hook_mlp_out"][3:5] == 0).all()) and tr.interventions == tuple(iv)
    full, _ = run(vm, _ids(vm), write=iv)
    torch.testing.assert_close(tr["logits"], full[0], atol=1e-5, rtol=0)
    a = analyze(vm, PROMPT, interventions=iv)
    assert a.trace.interventions == tuple(iv) and a.top_predictions[0]["id"] == int(full[0, -1].argmax())
