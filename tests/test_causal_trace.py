"""Causal tracing: the batched grid equals the reference's one-pass-per-cell computation on every family, the
exact cells, the subject finder on both tokenizer styles, bad input, the CLI, the prompt-set averages."""

import json

import numpy as np
import pytest
import torch

from visit.cli import main
from visit.errors import VisitError
from visit.localization.causal_study import BUCKETS, bucket_of, causal_study
from visit.localization.causal_trace import causal_trace, naive_cell, window_of
from visit.localization.subject import find_subject
from visit.prompts import PromptCase

PROMPT = "The Eiffel Tower is located in the city of"
SUBJECT = "Eiffel Tower"


def _noise(vm, ct):
    """The noise causal_trace drew (same seed, same shape)."""
    gen = torch.Generator().manual_seed(0)
    s0, s1 = ct.subject_range
    return torch.randn(ct.samples, s1 - s0, vm.dims.d_model, generator=gen) * ct.noise


def _weights(vm):
    return {n: p.detach().clone() for n, p in vm.model.named_parameters()}


def test_batched_grid_equals_one_pass_per_cell(tiny_model):
    vm = tiny_model
    saved = _weights(vm)
    ct = causal_trace(vm, PROMPT, SUBJECT, samples=3, noise=1.0, window=2)
    eps = _noise(vm, ct)
    rng = np.random.default_rng(0)
    T, L = len(ct.tokens), vm.dims.n_layers
    cells = [(k, t, l) for k in ("hidden", "mlp", "attn") for t in range(T) for l in range(L)]
    for i in rng.choice(len(cells), size=12, replace=False):
        kind, t, l = cells[i]
        ref = naive_cell(vm, PROMPT, ct.subject_range, eps, kind, t, l, 2, ct.target.id)
        assert ct.kinds[kind][t, l] == pytest.approx(ref, rel=1e-4, abs=1e-9), (kind, t, l)
    assert all(torch.equal(p, saved[n]) for n, p in vm.model.named_parameters())


def test_exact_cells(tiny_factory):
    vm = tiny_factory("llama", seed=3)
    ct = causal_trace(vm, PROMPT, SUBJECT, samples=4, noise=2.0, window=3)
    s0, _ = ct.subject_range
    assert ct.p_clean != pytest.approx(ct.p_corrupted, rel=1e-3)
    # the last layer's hidden state at the last token: the clean probability
    assert ct.kinds["hidden"][-1, -1] == pytest.approx(ct.p_clean, rel=1e-5)
    # tokens before the subject: identical in clean and corrupted runs, so restoring changes nothing ...
    for kind in ct.kinds:
        assert (ct.kinds[kind][:s0] == ct.p_corrupted).all()
    # ... which is what a real pass computes, too
    eps = _noise(vm, ct)
    for kind in ("hidden", "mlp"):
        ref = naive_cell(vm, PROMPT, ct.subject_range, eps, kind, 0, 1, 3, ct.target.id)
        assert ref == pytest.approx(ct.p_corrupted, rel=1e-5)
    assert ct.total_effect == pytest.approx(ct.p_clean - ct.p_corrupted)
    assert np.isfinite(ct.kinds["attn"]).all() and ct.complete


def test_partial_results_and_progress(tiny_factory):
    vm = tiny_factory("gpt2")
    seen, filled = [], []
    causal_trace(vm, PROMPT, SUBJECT, kinds=("hidden",), samples=2, noise=1.0,
                 progress=lambda d, t, note: seen.append((d, t)),
                 partial=lambda r: filled.append(int(np.isfinite(r.kinds["hidden"]).sum())))
    assert seen[-1][0] == seen[-1][1] and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert filled == sorted(filled) and filled[0] < filled[-1] == 10 * vm.dims.n_layers  # 10 tokens


def test_window_matches_rome():
    assert list(window_of(0, 10, 30)) == list(range(0, 5))
    assert list(window_of(12, 10, 30)) == list(range(7, 17))
    assert list(window_of(29, 10, 30)) == list(range(24, 30))
    assert list(window_of(4, 1, 30)) == [4]


def test_subject_finder_on_bpe_and_sentencepiece(tokenizer):
    s, e = find_subject(tokenizer, PROMPT, SUBJECT)
    ids = tokenizer(PROMPT).input_ids
    assert "".join(tokenizer.decode([i]) for i in ids[s:e]).strip() == SUBJECT
    sp = _sentencepiece_tokenizer()
    s, e = find_subject(sp, PROMPT, SUBJECT)
    assert sp.convert_ids_to_tokens(sp(PROMPT).input_ids[s:e]) == ["▁Eiffel", "▁Tower"]
    assert find_subject(sp, PROMPT, "city") == (8, 9)  # after the <s> the tokenizer prepends
    with pytest.raises(VisitError, match="does not occur"):
        find_subject(sp, PROMPT, "Louvre")
    with pytest.raises(VisitError, match="empty"):
        find_subject(tokenizer, PROMPT, "  ")


def _sentencepiece_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<s>"])
    tok.train_from_iterator([PROMPT + " Paris", "The capital of France is Paris"] * 5, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", unk_token="<unk>")


@pytest.mark.parametrize("kwargs,message", [
    (dict(subject="Louvre"), "does not occur"),
    (dict(subject=""), "empty"),
    (dict(subject=SUBJECT, target=" Eiffel Tower"), "one token"),
    (dict(subject=SUBJECT, samples=5000), "samples"),
    (dict(subject=SUBJECT, kinds=("neurons",)), "unknown kind"),
    (dict(subject=SUBJECT, window=0), "window"),
])
def test_bad_input_is_one_clear_error(tiny_factory, kwargs, message):
    vm = tiny_factory("gpt2")
    saved = _weights(vm)
    with pytest.raises(VisitError, match=message):
        causal_trace(vm, PROMPT, **kwargs)
    assert all(torch.equal(p, saved[n]) for n, p in vm.model.named_parameters())


def test_position_buckets():
    # tokens: 0 The | 1 E 2 iffel 3 Tower | 4 is 5 located ... 9 of
    got = [bucket_of(p, (1, 4), 10) for p in range(10)]
    assert got == ["before subject", "first subject token", "middle subject tokens", "last subject token",
                   "first subsequent token", "further tokens", "further tokens", "further tokens",
                   "further tokens", "last token"]
    assert set(got) - {"before subject"} == set(BUCKETS)


def test_prompt_set_average_and_json(tiny_factory):
    vm = tiny_factory("qwen2", seed=1)
    cases = [PromptCase("The capital of France is", " Paris", "capital_of", "France"),
             PromptCase(PROMPT, " Paris", "located_in_city", SUBJECT),
             PromptCase("No subject here", " x")]
    study = causal_study(vm, cases, kinds=("hidden", "mlp"), samples=2, noise=1.0, window=3)
    assert len(study.traces) == 2
    b = study.buckets()
    last = b["hidden"]["last token"]
    assert last["n"] == 2 and len(last["mean"]) == vm.dims.n_layers
    ies = np.stack([t.indirect_effect("hidden")[-1] for t in study.traces])
    np.testing.assert_allclose(last["mean"], ies.mean(0), rtol=1e-6)
    assert all(lo <= m <= hi for lo, m, hi in zip(last["low"], last["mean"], last["high"]))
    data = json.loads(json.dumps(study.to_json()))
    assert data["n"] == 2 and set(data["buckets"]) == {"hidden", "mlp"}


def test_cli_json_and_html(tiny_factory, tmp_path, capsys):
    vm = tiny_factory("llama", seed=2)
    model_dir = tmp_path / "tiny"
    vm.model.save_pretrained(model_dir)
    vm.tokenizer.save_pretrained(model_dir)
    out, page = tmp_path / "ct.json", tmp_path / "ct.html"
    code = main(["causal-trace", PROMPT, "--subject", SUBJECT, "--model", str(model_dir), "--samples", "2",
                 "--noise", "1", "--kind", "all", "--json", str(out), "--html", str(page)])
    assert code == 0
    data = json.loads(out.read_text())
    assert set(data) >= {"prompt", "tokens", "subject_range", "target", "p_clean", "p_corrupted", "kinds"}
    assert data["subject_range"] == [1, 4] and set(data["kinds"]) == {"hidden", "mlp", "attn"}
    assert np.array(data["kinds"]["mlp"]).shape == (len(data["tokens"]), vm.dims.n_layers)
    html = page.read_text()
    assert "<script type" in html and "Causal trace" in html and "<script src" not in html  # offline
    printed = capsys.readouterr().out
    assert "peak: token" in printed
    assert main(["causal-trace", PROMPT, "--subject", "Louvre", "--model", str(model_dir)]) == 2
    assert "does not occur" in capsys.readouterr().err


@pytest.mark.slow
def test_default_model_eiffel_tower(default_model):
    ct = causal_trace(default_model, PROMPT, SUBJECT, kinds=("hidden",), samples=5)
    assert ct.target.token == " Paris" and ct.p_clean > 0.3 and ct.p_corrupted < ct.p_clean / 3
    ie = ct.indirect_effect("hidden")
    s0, s1 = ct.subject_range
    # restoring a subject token early on brings the fact back; the last token does it late
    assert ie[s0:s1, :5].max() > 0.25 and ie[-1, -5:].max() > 0.25


def test_causal_neuron_is_the_mlp_argmax(tiny_factory):
    from visit.localization.causal_trace import causal_neuron

    vm = tiny_factory("llama", seed=4)
    cn = causal_neuron(vm, PROMPT, SUBJECT, samples=2, noise=1.0)
    ie = cn.trace.indirect_effect("mlp")
    assert cn.trace.window == 1 and cn.effect == pytest.approx(float(ie.max()))
    assert ie[cn.token, cn.layer] == ie.max() and cn.token >= cn.trace.subject_range[0]
