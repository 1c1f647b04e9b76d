"""Edit stacks: applied in order from the originals, reverted bit-exactly in any order, isolated, and a broken
edit refused with the weights untouched; attribution after an edit equals brute force on the edited model."""

import itertools

import pytest
import torch

from visit.editing import Edit, EditRequest, EditStack
from visit.editing.edit import mlp_out_param
from visit.errors import VisitError
from visit.hooks import weights_changed

REQ = EditRequest("The capital of {} is", "France", "Rome", old="Paris")


def params(vm):
    return {n: p.detach().clone() for n, p in vm.model.named_parameters()}


def same(vm, saved):
    return all(torch.equal(saved[n], p) for n, p in vm.model.named_parameters())


def random_edit(vm, layer, seed):
    name = mlp_out_param(vm, layer)
    shape = dict(vm.model.named_parameters())[name].shape
    g = torch.Generator().manual_seed(seed)
    return Edit("test", REQ, layer, {name: torch.randn(shape, generator=g) * 0.01})


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_revert_one_in_any_order_is_bit_exact(tiny_factory, family):
    vm = tiny_factory(family)
    original = params(vm)
    edits = [random_edit(vm, layer, seed) for layer, seed in ((1, 0), (1, 1), (2, 2))]
    for order in itertools.permutations(range(3)):
        stack = EditStack()
        for e in edits:
            stack.push(vm, e)
        for removed, i in enumerate(order):
            stack.revert(edits[i].id)
            kept = [e for e in edits if e in stack.edits]
            with stack.applied(vm):
                now = params(vm)
            with weights_changed(vm, [e.deltas for e in kept]):  # the same edits applied fresh, in order
                assert same(vm, now)
        assert len(stack) == 0 and same(vm, original)
    with EditStack(edits).applied(vm):
        assert not same(vm, original)
    assert same(vm, original)


def test_weights_restored_after_an_exception_inside(tiny_factory):
    vm = tiny_factory("gpt2")
    original = params(vm)
    with pytest.raises(RuntimeError):
        with EditStack([random_edit(vm, 1, 0)]).applied(vm):
            raise RuntimeError("boom")
    assert same(vm, original)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_edits_are_refused_with_a_message(tiny_factory, bad):
    vm = tiny_factory("llama")
    original = params(vm)
    stack = EditStack([random_edit(vm, 1, 0)])
    edit = random_edit(vm, 2, 1)
    next(iter(edit.deltas.values()))[0, 0] = bad
    with pytest.raises(VisitError, match="non-finite"):
        stack.push(vm, edit)
    from visit.hooks import run

    _, rec = run(vm, torch.tensor([vm.tokenizer(REQ.prompt).input_ids]), read=["ln_final.hook_out"])
    W = vm.model.get_output_embeddings().weight
    delta = torch.zeros_like(W)
    delta[7] = 3e38 * rec["ln_final.hook_out"][0, -1].sign()  # finite delta, overflowing logit
    huge = Edit("test", REQ, None, {"lm_head.weight": delta})
    with pytest.raises(VisitError, match="NaN or inf"):
        stack.push(vm, huge)
    assert len(stack) == 1 and same(vm, original)


def test_sessions_do_not_see_each_others_edits(tiny_factory):
    from visit.tracer import trace

    vm = tiny_factory("gpt2")
    mine, yours = EditStack([random_edit(vm, 1, 0)]), EditStack()
    plain = trace(vm, REQ.prompt)
    with mine.applied(vm):
        edited = trace(vm, REQ.prompt)
    with yours.applied(vm):
        other = trace(vm, REQ.prompt)
    assert not torch.equal(edited["logits"], plain["logits"])
    assert torch.equal(other["logits"], plain["logits"])


def test_unknown_id_and_unknown_method(tiny_factory):
    vm = tiny_factory("gpt2")
    with pytest.raises(VisitError, match="no edit"):
        EditStack().revert(12345)
    with pytest.raises(VisitError, match="unknown editing method"):
        EditStack().edit(vm, REQ, "nope")


def test_attribution_after_an_edit_equals_brute_force_on_the_edited_model(tiny_factory):
    from visit.attribution import ffn_neuron_logprob_increase_brute, ffn_neuron_scores
    from visit.tracer import trace

    vm = tiny_factory("llama")
    target = 1234
    before = ffn_neuron_scores(trace(vm, REQ.prompt), target, k=30)  # warms the weight-derived caches
    edit = random_edit(vm, 1, 0)
    next(iter(edit.deltas.values())).mul_(50)
    with EditStack([edit]).applied(vm):
        tr = trace(vm, REQ.prompt)
        fast = ffn_neuron_scores(tr, target, k=30)
        brute = ffn_neuron_logprob_increase_brute(tr, target)
    torch.testing.assert_close(fast.scores[fast.exact], brute[fast.exact], atol=1e-5, rtol=0)
    top_fast = fast.scores.reshape(-1).topk(30).indices
    assert set(top_fast.tolist()) == set(brute.reshape(-1).topk(30).indices.tolist())
    assert not torch.allclose(before.scores[1], fast.scores[1])
