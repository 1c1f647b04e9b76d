"""Sampling from the model: seeded, and seed groups sampled side by side draw what separate calls draw."""

import torch

from visit.editing.sampling import CORPUS_STARTS, sample, start_ids


def test_seed_groups_side_by_side_equal_separate_calls(tiny_factory):
    vm = tiny_factory("llama")
    starts = start_ids(vm.tokenizer, CORPUS_STARTS)
    rows = [starts[i % len(starts)] for i in range(5)]
    for top_k in (None, 5):
        together = sample(vm, rows, 6, seed=4, top_k=top_k, groups=[3, 2])
        apart = torch.cat([sample(vm, rows[:3], 6, seed=4, top_k=top_k), sample(vm, rows[3:], 6, seed=5, top_k=top_k)])
        assert torch.equal(together, apart)
        assert torch.equal(sample(vm, rows, 6, seed=4, top_k=top_k, groups=[3, 2]), together)  # seeded
        assert not torch.equal(sample(vm, rows, 6, seed=7, top_k=top_k, groups=[3, 2]), together)
