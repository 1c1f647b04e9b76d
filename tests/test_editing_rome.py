"""ROME on tiny models of both weight layouts: the rank-one update's defining equation, key statistics, batches,
dtypes; and on the real default model (slow): an edit changes the fact and leaves a neighbour alone."""

import pytest
import torch

from visit.editing import EditRequest, EditStack
from visit.editing.rome import RomeConfig, _build_rows, context_prefixes, rome_edit
from visit.editing.stats import key_stats
from visit.hooks import run
from visit.hooks.batch import aligned, prefix_kv, suffix_pass

REQ = EditRequest("The capital of {} is", "France", "Rome and Milan", old="Paris")
SMALL = RomeConfig(prefixes=((5, 2), (10, 2)), steps=6, stats_tokens=600)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache directory, and short sampled rows (fewer sequential steps on tiny models)."""
    from visit.editing import stats

    monkeypatch.setenv("VISIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(stats, "ROW_TOKENS", 24)
    return tmp_path


CORPUS = ("The capital of France is Paris. Rome is in Italy, and the Eiffel Tower is in Paris. "
          "Danielle Darrieux was an actress; her mother tongue was French. ") * 40


@pytest.fixture(scope="module")
def small_stats(tiny_factory, tmp_path_factory):
    """Layer 1's key statistics of each tiny family from a small text corpus (fast; not cached on disk)."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return {f: key_stats(tiny_factory(f), 1, corpus=str(path), tokens=500, use_cache=False)
            for f in ("gpt2", "llama")}


@pytest.fixture(scope="module")
def edits(tiny_factory, small_stats):
    """``edits(family, key)`` -> ``(vm, ROME edit of REQ at layer 1)``, computed once per module (tests only read
    them; applying one restores the weights)."""
    made = {}

    def get(family: str, key: str):
        if (family, key) not in made:
            vm = tiny_factory(family)
            made[family, key] = vm, rome_edit(vm, REQ, layer=1, config=SMALL, key=key, stats=small_stats[family])
        return made[family, key]

    return get


def mlp_out(vm, layer, key):
    return vm.weights.block_module(layer, vm.adapter.mlp_out)(key.view(1, -1).to(vm.model.dtype))[0].float()


@pytest.mark.parametrize("family", ["gpt2", "llama"])  # Conv1D [in, out] and Linear [out, in]
@pytest.mark.parametrize("key", ["averaged", "original"])
def test_rank_one_update_maps_the_key_to_the_value(edits, family, key):
    vm, edit = edits(family, key)
    (name, delta), = edit.deltas.items()
    assert name.endswith(vm.adapter.mlp_out + ".weight") and ".1." in name
    assert delta.dtype == torch.float32 and delta.shape == dict(vm.model.named_parameters())[name].shape
    sv = torch.linalg.svdvals(delta.double())
    assert sv[1] < 1e-5 * sv[0]  # rank one
    k, v = edit.tensors["key"], edit.tensors["value"]
    before = mlp_out(vm, 1, k)
    with EditStack([edit]).applied(vm):
        after = mlp_out(vm, 1, k)
    torch.testing.assert_close(after, v, atol=1e-4 * float(v.abs().max()), rtol=1e-4)
    assert not torch.allclose(before, v)


def test_the_two_key_variants_differ_only_in_the_key_of_the_update(edits):
    (_, a), (_, b) = edits("gpt2", "averaged"), edits("gpt2", "original")  # two copies of one model
    assert a.info["loss"] == b.info["loss"]  # same value optimisation
    assert not torch.equal(a.tensors["key"], b.tensors["key"])


@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_aligned_batch_rows_compute_what_they_compute_alone(tiny_factory, family):
    from visit.hooks.batch import unembed

    vm = tiny_factory(family)
    rows = _build_rows(vm, REQ, context_prefixes(vm, ((5, 2), (10, 1))))
    batch = rows.batch
    kv, _ = prefix_kv(vm, batch, rows.context_end)
    kv, _ = prefix_kv(vm, batch, rows.t, start=rows.context_end, past=kv)
    logits, rec = suffix_pass(vm, batch, rows.t, kv, read=["ln_final.hook_out"], keep=1)
    torch.testing.assert_close(unembed(vm, rec["ln_final.hook_out"][:, -1]), logits[:, -1], atol=1e-5, rtol=1e-5)
    n = batch.width - rows.t
    for i in range(batch.ids.shape[0]):
        alone = batch.ids[i][batch.mask[i].bool()]
        _, ref = run(vm, alone[None], read=["ln_final.hook_out"])
        torch.testing.assert_close(rec["ln_final.hook_out"][i][batch.mask[i, rows.t:].bool()],
                                   ref["ln_final.hook_out"][0, -int(batch.mask[i, rows.t:].sum()):] if
                                   batch.mask[i, rows.t:].any() else ref["ln_final.hook_out"][0, :0],
                                   atol=1e-5, rtol=1e-5)
    assert n >= 2


@pytest.mark.parametrize("family", ["gpt2", "llama", "gpt_neox"])
def test_passes_from_the_edit_layer_equal_full_passes(tiny_factory, family):
    """ROME's optimisation passes start at block layer + 1 from the recorded residual plus delta: the same final
    states as a full pass with delta added to the MLP output by a hook-layer write."""
    from visit.hooks import add
    from visit.hooks.resume import captured_calls, run_blocks

    vm = tiny_factory(family)
    rows = _build_rows(vm, REQ, context_prefixes(vm, ((5, 2), (10, 1))))
    B, t, layer = rows.batch.ids.shape[0], rows.t, 1
    positions = [c - t for c in rows.subject_cols]
    kv, _ = prefix_kv(vm, rows.batch, t)
    delta = torch.randn(vm.dims.d_model, generator=torch.Generator().manual_seed(0))
    resid = f"blocks.{layer}.hook_resid_post"
    with captured_calls(vm) as calls:
        _, rec = suffix_pass(vm, rows.batch, t, kv, read=[resid])
    at = torch.zeros(rec[resid].shape[:2] + (1,))
    at[torch.arange(B), torch.tensor(positions)] = 1
    final, _ = run_blocks(vm, layer + 1, rec[resid] + at * delta, calls, kv)
    write = [add(f"blocks.{layer}.hook_mlp_out", delta, rows=list(range(B)), positions=positions, paired=True)]
    _, ref = suffix_pass(vm, rows.batch, t, kv, read=["ln_final.hook_out"], write=write)
    torch.testing.assert_close(final, ref["ln_final.hook_out"], atol=1e-5, rtol=1e-5)


def test_sliding_windows_shorter_than_the_batch_are_refused(tiny_factory, cache):
    from visit.errors import VisitError

    vm = tiny_factory("gemma2")  # a 4-token sliding window: padding would change what rows see
    with pytest.raises(VisitError, match="sliding attention window"):
        rome_edit(vm, REQ, layer=1, config=SMALL)


def test_aligned_parts_line_up():
    batch, ends = aligned([[[1, 2], [3]], [[], [4, 5, 6]]])
    assert ends == [2, 5]
    assert batch.ids.tolist() == [[1, 2, 0, 0, 3], [0, 0, 4, 5, 6]]
    assert batch.positions.tolist() == [[0, 1, 1, 1, 2], [0, 0, 0, 1, 2]]


def test_key_statistics_are_cached_and_user_corpora_work(tiny_factory, cache, tmp_path):
    vm = tiny_factory("gpt2")
    first = key_stats(vm, 1, tokens=130)
    again = key_stats(vm, 1, tokens=130)
    assert first.n_tokens == 138 and again.cached  # whole sampled rows of 23 keys
    assert torch.equal(first.C, again.C)  # the cache gives back what was computed
    assert torch.allclose(first.C, first.C.T) and first.C.dtype == torch.float32
    other_layer = key_stats(vm, 2, tokens=130)  # reuses the sampled corpus, computes layer 2's keys
    assert not torch.equal(other_layer.C, first.C)
    text = tmp_path / "corpus.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 100, encoding="utf-8")
    user = key_stats(vm, 1, corpus=str(text), tokens=200)
    assert user.n_tokens == 200 and "corpus.txt" in user.corpus
    jsonl = tmp_path / "corpus.jsonl"
    jsonl.write_text('{"text": "one two three"}\n{"oops": 1}\n', encoding="utf-8")
    from visit.errors import VisitError

    with pytest.raises(VisitError, match="text"):
        key_stats(vm, 1, corpus=str(jsonl), tokens=200)


def test_sampled_statistics_equal_a_pass_over_the_cached_corpus(tiny_factory, cache):
    vm = tiny_factory("llama")
    sampled = key_stats(vm, 1, tokens=200)  # keys read while sampling
    (cache / "editing").rename(cache / "moved")
    import shutil
    corpus = next((cache / "moved").rglob("sampled-corpus-*.pt"))
    target = next((cache / "moved").glob("*")).name
    (cache / "editing" / target).mkdir(parents=True)
    shutil.copy(corpus, cache / "editing" / target / corpus.name)
    recomputed = key_stats(vm, 1, tokens=200)  # batched passes over the cached token ids
    assert not recomputed.cached and recomputed.n_tokens == sampled.n_tokens
    assert float((recomputed.C - sampled.C).norm() / sampled.C.norm()) < 1e-5  # cached decode vs full pass


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models_edit_in_fp32(tiny_factory, small_stats, dtype):
    vm = tiny_factory("llama")
    vm.model.to(dtype)
    try:
        edit = rome_edit(vm, REQ, layer=1, config=SMALL, stats=small_stats["llama"])
        (delta,) = edit.deltas.values()
        assert delta.dtype == torch.float32 and torch.isfinite(delta).all()
        before = {n: p.clone() for n, p in vm.model.named_parameters()}
        stack = EditStack()
        stack.push(vm, edit)
        with stack.applied(vm):
            pass
        assert all(torch.equal(before[n], p) for n, p in vm.model.named_parameters())
    finally:
        vm.model.to(torch.float32)


@pytest.mark.slow
def test_rome_changes_a_known_fact_and_keeps_a_neighbour(default_model):
    from visit.editing.counterfact import object_logprob

    vm = default_model
    req = EditRequest("The capital of {} is", "France", "Rome", old="Paris")
    stats = key_stats(vm, 3, tokens=2048)  # a small C (cached after the first run) is enough for this check
    neighbour = "The Eiffel Tower is located in the city of"
    before = {p: (object_logprob(vm, p, "Rome"), object_logprob(vm, p, "Paris")) for p in (req.prompt, neighbour)}
    stack = EditStack()
    stack.edit(vm, req, "rome", layer=3, stats=stats)
    with stack.applied(vm):
        after = {p: (object_logprob(vm, p, "Rome"), object_logprob(vm, p, "Paris")) for p in (req.prompt, neighbour)}
    assert before[req.prompt][0] < before[req.prompt][1]
    assert after[req.prompt][0] > after[req.prompt][1]
    assert after[neighbour][1] > after[neighbour][0]
