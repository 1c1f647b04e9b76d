"""AlphaEdit: its updates leave the preserved keys' span untouched (random matrices and real edits of tiny models),
earlier edits' keys are preserved in a sequence, and sequential edits of every method stack and revert in any
order bit-exactly."""

import itertools
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from visit.editing import EditRequest, EditStack
from visit.editing.alphaedit import AlphaConfig, alphaedit_edit, alphaedit_solve, null_space, preserved_keys
from visit.editing.stats import KeyStats
from visit.hooks import weights_changed

sys.path.insert(0, str(Path(__file__).parent))
from test_editing_memit import corpus_stats, params, same  # noqa: E402

REQS = [EditRequest("The capital of {} is", "France", "Rome and Milan", old="Paris"),
        EditRequest("{} plays the sport of", "Messi", "tennis", old="football")]
SMALL = AlphaConfig(prefixes=((5, 2),), steps=4, threshold=0.5)
CORPUS = ("The capital of France is Paris. Rome is in Italy, and the Eiffel Tower is in Paris. "
          "Messi plays football; Danielle Darrieux spoke French. ") * 40


@pytest.fixture(scope="module")
def stats(tiny_factory, tmp_path_factory):
    return corpus_stats(tiny_factory, tmp_path_factory, CORPUS)


def preserved_span(stats: KeyStats, threshold: float) -> torch.Tensor:
    """C's eigenvectors with eigenvalues at or above the threshold: the span of the keys AlphaEdit preserves."""
    values, vectors = torch.linalg.eigh(stats.C.double())
    return vectors[:, values >= threshold * values.median()]


def test_the_update_is_orthogonal_to_the_preserved_span_on_random_matrices():
    g = torch.Generator().manual_seed(0)
    d_in, d_out = 32, 12
    Q, _ = torch.linalg.qr(torch.randn(d_in, d_in, generator=g, dtype=torch.float64))
    values = torch.cat([torch.linspace(1, 5, 20), torch.full((12,), 1e-4)]).double()
    C = (Q * values) @ Q.T
    st = KeyStats(C.float(), 0, 1000, "random", "test")
    P = null_space(st, 0.01).double()  # the median eigenvalue is ~2: below 0.02 are the 12 small ones
    assert round(float(P.trace())) == 12
    torch.testing.assert_close(P @ P, P, atol=1e-6, rtol=0)  # a projection
    K, R = torch.randn(3, d_in, generator=g), torch.randn(3, d_out, generator=g)
    Kp = torch.randn(4, d_in, generator=g).double()
    D = alphaedit_solve(K, R, P.float(), Kp.T @ Kp).double()
    U1 = Q[:, :20]  # the preserved span
    assert D.abs().max() > 1e-3
    assert (U1.T @ D).abs().max() < 1e-6 * D.abs().max()  # k0 @ Delta = 0 for every preserved key k0


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_an_edit_leaves_the_preserved_keys_outputs_unchanged(tiny_factory, stats, family):
    vm = tiny_factory(family)
    edit = alphaedit_edit(vm, REQS, layers=(0, 1), config=SMALL, stats=stats[family])
    assert edit.info["null_space_dims"][0] > 0
    from visit.models.weights import as_in_out

    for lay in (0, 1):
        U1 = preserved_span(stats[family][lay], SMALL.threshold).float()
        module = vm.weights.block_module(lay, vm.adapter.mlp_out)
        W0 = as_in_out(module, vm.adapter.weight_layout).detach().float().clone()
        with EditStack([edit]).applied(vm):
            D = as_in_out(module, vm.adapter.weight_layout).detach().float() - W0
        assert D.abs().max() > 0
        # the preserved keys' outputs move by k0 @ Delta: zero up to float rounding of the weights
        assert (U1.T @ D).abs().max() <= 1e-5 * max(1.0, float(W0.abs().max()))


def test_sequential_edits_preserve_the_earlier_keys(tiny_factory, stats):
    vm = tiny_factory("llama")
    stack = EditStack()
    config = replace(SMALL, alpha=1e-4)  # tiny keys: a small alpha, so that the keys' terms dominate
    first = stack.edit(vm, REQS[0], "alphaedit", layers=(0, 1), config=config, stats=stats["llama"])
    second = stack.edit(vm, REQS[1], "alphaedit", layers=(0, 1), config=config, stats=stats["llama"])
    assert first.info["preserved_edits"] == 0 and second.info["preserved_edits"] == 1
    K = first.tensors["keys"][1].double()
    torch.testing.assert_close(preserved_keys([first], 1, K.shape[1], K.device), K.T @ K)
    assert preserved_keys([], 1, K.shape[1], K.device) is None
    # without the first edit's keys the second update is another one
    alone = alphaedit_edit(vm, REQS[1], layers=(0, 1), config=config, stats=stats["llama"])
    name = next(iter(second.deltas))
    a, b = alone.deltas[name].double(), second.deltas[name].double()
    assert (a - b).norm() > 1e-4 * a.norm()


def test_sequential_edits_of_every_method_stack_and_revert_in_any_order_bit_exactly(tiny_factory, stats):
    from visit.editing.rome import RomeConfig

    vm = tiny_factory("gpt2")
    original = params(vm)
    stack = EditStack()
    stack.edit(vm, REQS[0], "rome", layer=1, config=RomeConfig(prefixes=((5, 2),), steps=3),
               stats=stats["gpt2"][1])
    stack.edit(vm, REQS, "memit", layers=(0, 1), config=SMALL, stats=stats["gpt2"])
    stack.edit(vm, REQS[1], "alphaedit", layers=(0, 1), config=SMALL, stats=stats["gpt2"])
    edits = list(stack.edits)
    assert edits[2].info["preserved_edits"] == 2 and same(vm, original)
    for order in itertools.permutations(range(3)):
        s = EditStack(list(edits))
        for i in order:
            s.revert(edits[i].id)
            kept = [e for e in edits if e in s.edits]
            with s.applied(vm):
                now = params(vm)
            with weights_changed(vm, [e.deltas for e in kept]):  # the kept edits applied fresh, in order
                assert same(vm, now)
        assert same(vm, original)
