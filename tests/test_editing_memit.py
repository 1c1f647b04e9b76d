"""MEMIT: the closed form of its update (on random matrices and on the edits it computes on tiny models of both
weight layouts), the target it reaches, batches, and the weights left untouched when it fails halfway."""

import pytest
import torch

from visit.editing import EditRequest, EditStack
from visit.editing import memit as memit_module
from visit.editing.memit import MemitConfig, memit_edit, memit_solve, resolve_layers
from visit.editing.stats import key_stats
from visit.errors import VisitError
from visit.hooks import run

REQS = [EditRequest("The capital of {} is", "France", "Rome and Milan", old="Paris"),
        EditRequest("{} plays the sport of", "Messi", "tennis", old="football"),
        EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English", old="French")]
BARE = MemitConfig(prefixes=(), steps=4)  # the bare prompt only: the key is the bare prompt's own
SMALL = MemitConfig(prefixes=((5, 2),), steps=4)
CORPUS = ("The capital of France is Paris. Rome is in Italy, and the Eiffel Tower is in Paris. "
          "Danielle Darrieux was an actress; her mother tongue was French. Messi plays football. ") * 40


def corpus_stats(tiny_factory, tmp_path_factory, corpus: str) -> dict:
    """Key statistics of layers 0-1 of each tiny family from a small text corpus (not cached on disk)."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(corpus, encoding="utf-8")
    return {f: {lay: key_stats(tiny_factory(f), lay, corpus=str(path), tokens=600, use_cache=False)
                for lay in (0, 1)} for f in ("gpt2", "llama")}


@pytest.fixture(scope="module")
def stats(tiny_factory, tmp_path_factory):
    return corpus_stats(tiny_factory, tmp_path_factory, CORPUS)


def params(vm):
    return {n: p.detach().clone() for n, p in vm.model.named_parameters()}


def same(vm, saved):
    return all(torch.equal(saved[n], p) for n, p in vm.model.named_parameters())


def mlp_out(vm, layer, keys):
    """The MLP output projection of ``layer`` on keys ``[n, d_mlp]`` (the model as it is now)."""
    module = vm.weights.block_module(layer, vm.adapter.mlp_out)
    return module(keys.to(vm.model.dtype)).float()


def test_closed_form_solves_the_regularised_least_squares():
    g = torch.Generator().manual_seed(0)
    d_in, d_out, n = 24, 10, 5
    A = torch.randn(d_in, 3 * d_in, generator=g)
    C = A @ A.T / (3 * d_in)
    K, R = torch.randn(n, d_in, generator=g), torch.randn(n, d_out, generator=g)
    for weight in (0.5, 30.0):
        D = memit_solve(K, R, C, weight).double()
        grad = (weight * C.double() + K.double().T @ K.double()) @ D - K.double().T @ R.double()
        assert grad.abs().max() < 1e-4  # the normal equations of ||K D - R||^2 + weight tr(D^T C D)
    # fewer keys than dimensions and a vanishing weight: every key gets exactly its residual
    torch.testing.assert_close(K @ memit_solve(K, R, C, 1e-9), R, atol=1e-4, rtol=1e-4)
    # one key: Sherman-Morrison gives ROME's direction u = C^-1 k, scaled by 1 / (weight + k . u)
    k, r = K[:1], R[:1]
    u = torch.linalg.solve(C.double(), k.double().T)
    expected = (u @ r.double()) / (3.0 + float(k.double() @ u))
    torch.testing.assert_close(memit_solve(k, r, C, 3.0).double(), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "llama"])  # Conv1D [in, out] and Linear [out, in]
def test_one_record_equals_its_closed_form(tiny_factory, stats, family):
    """W' K = V: each layer's new weights give the edit's keys their old output plus the layer's residual, as the
    closed form over the batch's keys says (mom2 weight as configured, and vanishing: exact)."""
    vm = tiny_factory(family)
    for weight in (MemitConfig().mom2_weight, 1e-6):
        edit = memit_edit(vm, REQS[0], layers=(0, 1), config=SMALL, stats=stats[family], mom2_weight=weight)
        assert sorted(edit.info["layers"]) == [0, 1] and len(edit.deltas) == 2
        for lay in (0, 1):
            K, R = edit.tensors["keys"][lay], edit.tensors["residuals"][lay]
            before = mlp_out(vm, lay, K)
            with EditStack([edit]).applied(vm):
                after = mlp_out(vm, lay, K)
            closed = K.double() @ memit_solve(K, R, stats[family][lay].C, weight).double()
            torch.testing.assert_close((after - before).double(), closed, atol=1e-4, rtol=1e-3)
            if weight < 1:  # W' K = V in least squares with nothing pulling back: exact
                torch.testing.assert_close(after, before + R, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_a_batch_reaches_every_target_at_the_last_layer(tiny_factory, stats, family):
    """With the bare prompt as the only context and a vanishing mom2 weight, the edited model's residual after
    the range's last layer, at each subject's last token, is the optimised target z."""
    vm = tiny_factory(family)
    edit = memit_edit(vm, REQS, layers=(0, 1), config=BARE, stats=stats[family], mom2_weight=1e-7)
    assert edit.all_requests == tuple(REQS) and "(+2 more facts)" in edit.label()
    z = edit.tensors["targets"]
    from visit.editing.memit import _build_facts, _keys_and_outputs

    facts = _build_facts(vm, REQS, [])
    with EditStack([edit]).applied(vm):
        _, h = _keys_and_outputs(vm, facts, 0, 1)
    _, h0 = _keys_and_outputs(vm, facts, 0, 1)
    assert not torch.allclose(h0, z, atol=1e-3)
    torch.testing.assert_close(h, z, atol=2e-3 * float(z.abs().max()), rtol=1e-3)


def test_layers_resolve_and_bad_input_is_one_message(tiny_factory):
    vm = tiny_factory("gpt2")
    assert resolve_layers(vm, layers="0-2") == (0, 1, 2)
    assert resolve_layers(vm, layers="2,0") == (0, 2)
    assert resolve_layers(vm, layer=1) == (1,)
    with pytest.raises(VisitError, match="out of range"):
        resolve_layers(vm, layers=(0, 9))
    with pytest.raises(VisitError, match="range like"):
        resolve_layers(vm, layers="a-b")
    with pytest.raises(VisitError, match="no requests"):
        memit_edit(vm, [], layers=(0,))


def test_an_exception_in_the_middle_of_the_layers_leaves_the_weights_bit_identical(tiny_factory, stats,
                                                                                     monkeypatch):
    vm = tiny_factory("llama")
    original = params(vm)
    real, calls = memit_module.memit_solve, []

    def fail_on_second_layer(*args):
        calls.append(1)
        if len(calls) == 2:  # the first layer's update is applied while the second layer's keys are read
            raise RuntimeError("boom")
        return real(*args)

    monkeypatch.setattr(memit_module, "memit_solve", fail_on_second_layer)
    with pytest.raises(RuntimeError, match="boom"):
        EditStack().edit(vm, REQS, "memit", layers=(0, 1), config=SMALL, stats=stats["llama"])
    assert len(calls) == 2 and same(vm, original)
