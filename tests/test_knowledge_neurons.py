"""Knowledge neurons: integrated gradients (completeness, batched = full passes), coarse/refined sets,
suppress/enhance writes, weights untouched (also after a cancel), bad input, the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from visit import hooks
from visit.errors import VisitError
from visit.localization.integrated_gradients import check_steps, integrated_gradients, layer_zeroed_prob
from visit.localization.knowledge_neurons import (
    NeuronScore, coarse_set, knowledge_neurons, manipulate, manipulation_writes, one_token_target, refine,
)

PROMPT = "The capital of France is the city of"


def _top(vm, prompt=PROMPT) -> int:
    ids = vm.tokenizer(prompt, return_tensors="pt").input_ids
    logits, _ = hooks.run(vm, ids)
    return int(logits[0, -1].argmax())


def _snapshot(vm) -> dict:
    return {n: p.detach().clone() for n, p in vm.model.named_parameters()}


def _same_weights(vm, saved) -> bool:
    return all(torch.equal(p, saved[n]) for n, p in vm.model.named_parameters())


def _no_hooks(vm) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in vm.model.modules())


@pytest.fixture(scope="module")
def llama(tiny_factory):
    return tiny_factory("llama", seed=3)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_completeness_attributions_approach_the_layer_zeroed_difference(tiny_factory, family):
    vm = tiny_factory(family, seed=1)
    tid, layer = _top(vm), 1
    full, zeroed = layer_zeroed_prob(vm, PROMPT, tid, layer)
    delta = full - zeroed
    errors = {m: abs(float(integrated_gradients(vm, PROMPT, tid, steps=m, layers=[layer])[layer].sum()) - delta)
              for m in (4, 64)}
    assert abs(delta) > 0
    assert errors[64] < 0.25 * errors[4] and errors[64] < 0.05 * abs(delta), (errors, delta)


def test_batched_resume_equals_full_passes(tiny_model):
    vm = tiny_model
    tid = _top(vm)
    for position, rows in ((None, 240), (3, 2)):  # rows=2 < steps: a layer's steps split over passes
        fast = integrated_gradients(vm, PROMPT, tid, steps=3, position=position, rows=rows)
        slow = integrated_gradients(vm, PROMPT, tid, steps=3, position=position, method="full")
        scale = float(slow.abs().max())
        assert scale > 0 and torch.allclose(fast, slow, rtol=1e-4, atol=1e-5 * scale), float((fast - slow).abs().max())


def test_layers_subset_and_progress(llama):
    seen = []
    attr = integrated_gradients(llama, PROMPT, 5, steps=4, layers=[2, 0], rows=4,
                                progress=lambda d, t, note: seen.append((d, t)))
    assert attr[1].abs().sum() == 0 and attr[0].abs().sum() > 0 and attr[2].abs().sum() > 0
    assert seen == [(1, 2), (2, 2)]


def test_coarse_and_refined_sets():
    a = torch.zeros(2, 4)
    a[0, 1], a[1, 2], a[1, 3], a[0, 0] = 1.0, 0.5, 0.2, -3.0
    b = torch.zeros(2, 4)
    b[1, 2], b[0, 3] = 2.0, 1.0
    ca, cb = coarse_set(a, 0.3), coarse_set(b, 0.3)
    assert [n.key for n in ca] == [(0, 1), (1, 2)]
    assert [n.key for n in cb] == [(1, 2), (0, 3)]
    assert coarse_set(-a.abs(), 0.3) == []
    refined, shares = refine([a, b], [ca, cb], share=0.5)
    assert [n.key for n in refined] == [(1, 2)] and shares == {(1, 2): 1.0}
    assert refined[0].score == pytest.approx(1.25)  # mean attribution over the prompts
    refined, _ = refine([a, b], [ca, cb], share=0.4)
    assert {n.key for n in refined} == {(0, 1), (1, 2), (0, 3)}


def test_suppress_and_enhance_change_exactly_the_written_coefficients(llama):
    vm = llama
    ids = vm.tokenizer(PROMPT, return_tensors="pt").input_ids
    p = ids.shape[1] - 1
    neurons = [NeuronScore(1, 7, 0.0), NeuronScore(1, 30, 0.0), NeuronScore(2, 4, 0.0)]
    names = [f"blocks.{l}.mlp.hook_post" for l in range(3)]
    logits, rec = hooks.run(vm, ids.expand(3, -1), read=names,
                            write=manipulation_writes(neurons, 0.0, p, row=1) + manipulation_writes(neurons, 2.0, p, row=2))
    clean, sup, enh = (rec[names[1]][r] for r in range(3))
    changed = torch.zeros_like(clean, dtype=torch.bool)
    changed[p, [7, 30]] = True
    assert torch.equal(sup[~changed], clean[~changed]) and torch.equal(enh[~changed], clean[~changed])
    assert torch.equal(sup[p, [7, 30]], torch.zeros(2)) and torch.equal(enh[p, [7, 30]], 2 * clean[p, [7, 30]])
    assert torch.equal(rec[names[0]][1], rec[names[0]][0])  # earlier layers: untouched
    assert torch.equal(rec[names[2]][1][:p], rec[names[2]][0][:p])  # earlier positions: untouched
    # manipulate() reports exactly these passes' probabilities
    tid = _top(vm)
    sup_res, enh_res = manipulate(vm, neurons, [(PROMPT, tid)])
    probs = logits[:, p].float().softmax(-1)[:, tid]
    assert sup_res["prompts"][0]["before"] == pytest.approx(float(probs[0]), rel=1e-6)
    assert sup_res["prompts"][0]["after"] == pytest.approx(float(probs[1]), rel=1e-6)
    assert enh_res["prompts"][0]["after"] == pytest.approx(float(probs[2]), rel=1e-6)


def test_knowledge_neurons_result_and_weights_untouched(llama):
    vm = llama
    saved = _snapshot(vm)
    kn = knowledge_neurons(vm, PROMPT, None, paraphrases=["France's capital is the city of"], steps=4,
                           unrelated=[("The capital of Italy is", " Rome"), "Kenya lies in"])
    assert _same_weights(vm, saved) and _no_hooks(vm)
    assert kn.target.id == _top(vm) and len(kn.coarse) == 2 and len(kn.attributions) == 2
    assert {n.key for n in kn.refined} == {n.key for n in kn.coarse[0]} & {n.key for n in kn.coarse[1]}
    data = json.loads(json.dumps(kn.to_json()))
    assert set(data) >= {"coarse", "refined", "suppress", "enhance"}
    assert data["coarse"] == [n.as_dict() for n in kn.coarse[0]]
    assert len(data["suppress"]["related"]["prompts"]) == 2 and len(data["enhance"]["unrelated"]["prompts"]) == 2
    assert sum(kn.layer_histogram()) == len(kn.refined)
    assert data["comparison"]["top"] == max(1, len(kn.refined))


def test_weights_untouched_after_an_exception_mid_computation(llama):
    vm = llama
    saved = _snapshot(vm)
    tid = _top(vm)
    before = integrated_gradients(vm, PROMPT, tid, steps=4, rows=4)

    def cancel(done, total, note):
        if done == 2:
            raise RuntimeError("cancelled")

    for method in ("resume", "full"):
        with pytest.raises(RuntimeError, match="cancelled"):
            integrated_gradients(vm, PROMPT, tid, steps=4, rows=4, method=method, progress=cancel)
        assert _same_weights(vm, saved) and _no_hooks(vm)
    assert torch.equal(integrated_gradients(vm, PROMPT, tid, steps=4, rows=4), before)


def test_bad_input(llama):
    vm = llama
    with pytest.raises(VisitError, match="4 tokens"):
        one_token_target(vm.tokenizer, " Reykjavik")
    with pytest.raises(VisitError, match="4 tokens"):
        knowledge_neurons(vm, PROMPT, " Reykjavik", steps=2)
    with pytest.raises(VisitError, match="empty"):
        knowledge_neurons(vm, "   ", " Paris", steps=2)
    with pytest.raises(VisitError, match="empty"):
        knowledge_neurons(vm, PROMPT, " Paris", paraphrases=[""], steps=2)
    with pytest.raises(VisitError, match="threshold"):
        knowledge_neurons(vm, PROMPT, " Paris", steps=2, threshold=3)
    for steps in (0, 2.5, "20", True):
        with pytest.raises(VisitError, match="steps"):
            integrated_gradients(vm, PROMPT, 5, steps=steps)
    with pytest.raises(VisitError, match="at most 64"):
        check_steps(65, capped=True)
    with pytest.raises(VisitError, match="out of range"):
        integrated_gradients(vm, PROMPT, 5, steps=2, layers=[7])
    with pytest.raises(VisitError, match="vocabulary"):
        integrated_gradients(vm, PROMPT, -1, steps=2)


def test_cli_one_fact_and_prompt_file(llama, tmp_path, capsys):
    from visit.cli import main

    model_dir = tmp_path / "model"
    llama.model.save_pretrained(model_dir)
    llama.tokenizer.save_pretrained(model_dir)
    common = ["--model", str(model_dir), "--device", "cpu", "--steps", "2"]
    out = tmp_path / "kn.json"
    assert main(["knowledge-neurons", PROMPT, "--paraphrases", "France's capital is the city of",
                 "--subject", "France", "--json", str(out), *common]) == 0
    text = capsys.readouterr().out
    assert "refined knowledge neurons" in text and "suppress (x0)" in text and "causal neuron" in text
    data = json.loads(out.read_text())
    assert {"coarse", "refined", "suppress", "enhance", "causal_neuron"} <= set(data)
    cn = data["causal_neuron"]
    assert 3 <= cn["token"] < 9 and 0 <= cn["layer"] < llama.dims.n_layers  # from the subject on
    prompts = tmp_path / "facts.tsv"
    prompts.write_text("The capital of France is\t Paris\tcapital\nThe capital of Italy is\t Rome\tcapital\n"
                       "Kenya is in\t Africa\tcontinent\n", encoding="utf-8")
    assert main(["knowledge-neurons", "--prompts", str(prompts), "--all", "--json", str(out), *common]) == 0
    text = capsys.readouterr().out
    assert "capital: 2 facts" in text and "coarse-set neurons per layer" in text
    data = json.loads(out.read_text())
    assert [r["relation"] for r in data["relations"]] == ["capital", "continent"]
    assert main(["knowledge-neurons", PROMPT, "--target", " Reykjavik", *common]) == 2
    assert main(["knowledge-neurons", *common]) == 2
    assert main(["knowledge-neurons", PROMPT, "--model", str(model_dir), "--device", "cpu", "--steps", "0"]) == 2
    errors = [l for l in capsys.readouterr().err.splitlines() if l.startswith("error: ")]
    assert len(errors) == 3 and "4 tokens" in errors[0] and "--prompts" in errors[1] and "steps" in errors[2]


@pytest.mark.slow
def test_default_model_paris_has_knowledge_neurons(default_model):
    vm = default_model
    saved = {n: p.detach().clone() for n, p in vm.model.named_parameters() if "layers.29" in n}
    kn = knowledge_neurons(vm, "The capital of France is", " Paris", unrelated=(), compare=False)
    assert kn.refined and kn.probs[0] > 0.5
    assert kn.suppress["related"]["mean_after"] < kn.probs[0] < kn.enhance["related"]["mean_after"]
    assert max(n.layer for n in kn.refined) >= 20
    assert all(torch.equal(p, saved[n]) for n, p in vm.model.named_parameters() if n in saved)
