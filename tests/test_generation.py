"""Generation on the hook layer: greedy equals ``model.generate`` on every family, probabilities are the model's,
sampling is seeded, the cap holds, streaming and cancelling work, and a session's edits apply (only to it)."""

import pytest
import torch

from conftest import FAMILIES, MORE_FAMILIES
from visit.errors import VisitError
from visit.generation.generate import generate
from visit.hooks import run
from visit.hooks.params import weights_changed
from visit.models.overlay import Overlay, bind_session

PROMPT = "The Eiffel Tower is in the city of"
N = 6


def reference(vm, prompt_ids, n):
    """``model.generate``'s greedy continuation (the tokens after the prompt)."""
    ids = torch.tensor([prompt_ids])
    out = vm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                            pad_token_id=0)
    return out[0, ids.shape[1]:].tolist()


@pytest.fixture(scope="module")
def llama(tiny_factory):
    return tiny_factory("llama")


@pytest.mark.parametrize("family", FAMILIES + MORE_FAMILIES)
def test_greedy_equals_model_generate_on_every_family(tiny_factory, family):
    vm = tiny_factory(family)
    g = generate(vm, PROMPT, N)
    assert len(g.tokens) == N or g.stopped == "eos"
    assert g.ids == reference(vm, g.prompt_ids, N)
    assert g.text == vm.tokenizer.decode(g.ids)


@pytest.mark.slow
def test_greedy_equals_model_generate_on_the_default_model(default_model):
    g = generate(default_model, "The capital of France is", 16)
    assert g.ids == reference(default_model, g.prompt_ids, 16)
    assert g.tokens[0].p > 0.1  # the default model is fairly sure of its first word


def test_each_token_carries_the_models_probability_and_top5(llama):
    g = generate(llama, PROMPT, 3)
    ids = list(g.prompt_ids)
    for tok in g.tokens:
        logits, _ = run(llama, torch.tensor([ids]))
        probs = logits[0, -1].float().softmax(-1)
        assert tok.p == pytest.approx(float(probs[tok.id]), rel=1e-4, abs=1e-7)
        assert [t["id"] for t in tok.top] == probs.topk(5).indices.tolist()
        assert tok.top[0]["id"] == tok.id  # greedy
        assert tok.top[0]["p"] >= tok.top[-1]["p"]
        ids.append(tok.id)
    data = g.to_json()
    assert set(data) >= {"prompt", "tokens", "text"} and set(data["tokens"][0]) == {"token", "id", "p", "top"}


def test_sampling_is_seeded_and_top_p_narrows_to_greedy(llama):
    a = generate(llama, PROMPT, N, temperature=1.0, seed=3)
    assert generate(llama, PROMPT, N, temperature=1.0, seed=3).ids == a.ids
    others = [generate(llama, PROMPT, N, temperature=1.0, seed=s).ids for s in (4, 5, 6)]
    assert any(o != a.ids for o in others)  # a random tiny model: sampling spreads
    assert generate(llama, PROMPT, N, temperature=1.0, top_p=1e-6, seed=3).ids == generate(llama, PROMPT, N).ids


def test_cap_context_and_bad_sampling_values_are_one_line_errors(llama, monkeypatch):
    monkeypatch.setenv("VISIT_MAX_NEW_TOKENS", "4")
    with pytest.raises(VisitError, match="at most 4.*VISIT_MAX_NEW_TOKENS"):
        generate(llama, PROMPT, 5)
    assert len(generate(llama, PROMPT, 4).tokens) == 4
    monkeypatch.setenv("VISIT_MAX_NEW_TOKENS", "100000")
    with pytest.raises(VisitError, match="context"):
        generate(llama, PROMPT, llama.dims.n_ctx)
    for kw, msg in [({"temperature": -1}, "temperature"), ({"temperature": float("nan")}, "temperature"),
                    ({"top_p": 0}, "top-p"), ({"top_p": 1.5}, "top-p")]:
        with pytest.raises(VisitError, match=msg):
            generate(llama, PROMPT, 2, **kw)
    with pytest.raises(VisitError, match="empty"):
        generate(llama, "  ", 2)


def test_streaming_callback_and_cancel(llama):
    seen = []
    full = generate(llama, PROMPT, 4, on_token=lambda tok, i: seen.append((i, tok.id)))
    assert seen == list(enumerate(full.ids))
    part = generate(llama, PROMPT, 4, cancelled=lambda: len(seen) >= 6, on_token=lambda tok, i: seen.append(i))
    assert part.stopped == "cancelled" and part.ids == full.ids[:2]

    class Stop(Exception):
        pass

    def boom(tok, i):
        raise Stop

    with pytest.raises(Stop):  # a job's partial() raising Cancelled stops the generation the same way
        generate(llama, PROMPT, 4, on_token=boom)
    assert generate(llama, PROMPT, 4).ids == full.ids


def test_a_sessions_edits_apply_to_its_generation_only(tiny_factory):
    vm = tiny_factory("gpt2")
    name = "transformer.h.1.mlp.c_proj.weight"
    before = dict(vm.model.named_parameters())[name].detach().clone()
    delta = {name: torch.randn_like(before) * 2}
    plain = generate(vm, PROMPT, N)
    with weights_changed(vm, delta):
        edited = generate(vm, PROMPT, N)
        assert edited.ids == reference(vm, edited.prompt_ids, N)
    assert edited.ids != plain.ids
    with bind_session(Overlay(("test-edit",), (delta,))):
        assert generate(vm, PROMPT, N).ids == edited.ids  # the session's edits, applied pass by pass
    assert generate(vm, PROMPT, N).ids == plain.ids  # other sessions (the weights at rest) never see them
    assert torch.equal(dict(vm.model.named_parameters())[name], before)
