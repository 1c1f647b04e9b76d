"""Intervention hooks, the Table 2 baselines and evaluation, and the attribute / ablate commands."""

import json

import pytest
import torch

from visit.attribution.baselines import METHODS, ffn_method_scores
from visit.attribution.intervention import (
    Component,
    final_log_probs,
    metrics_of,
    random_components,
    interventions_for,
    random_ffn_at_sources,
)
from visit.hooks import run as hooked_run
from visit.attribution.logprob import ffn_neuron_logprob_increase_brute
from visit.tracer import trace

PROMPT = "The capital of France is Paris, and the capital of Italy is"
TARGET = 1234


def test_zeroing_a_last_layer_neuron_removes_exactly_its_contribution(tiny_factory):
    vm = tiny_factory("llama", seed=2)
    tr = trace(vm, PROMPT)
    last, i, pos = vm.dims.n_layers - 1, 7, tr.position
    final = tr["ln_final.hook_in"][pos] - tr.neuron_contributions(last, [i])[0]
    expected = (vm.weights.final_norm.apply(final) @ vm.weights.W_U).log_softmax(-1)
    got = final_log_probs(vm, tr.input_ids, pos, [Component("ffn", last, i)])
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    # the hooks are gone afterwards
    torch.testing.assert_close(final_log_probs(vm, tr.input_ids, pos), tr["logits"][pos].log_softmax(-1),
                               atol=1e-5, rtol=0)


def test_zeroing_an_ffn_neuron_at_a_source_position(tiny_factory):
    vm = tiny_factory("gpt_neox_sequential", seed=3)
    tr = trace(vm, PROMPT)
    pos, last, s, i = tr.position, vm.dims.n_layers - 1, 4, 9
    ids = torch.tensor([tr.input_ids])

    def run(components):
        return hooked_run(vm, ids, write=interventions_for(vm, components, pos))[0][0].float()

    clean = tr["logits"]
    # the last layer's neuron at source s: position s loses exactly its contribution, nothing else moves
    logits = run([Component("ffn", last, i, source=s)])
    final = tr["ln_final.hook_in"][s] - tr[f"blocks.{last}.mlp.hook_post"][s, i] * vm.weights.W_out(last)[i]
    expected = vm.weights.final_norm.apply(final) @ vm.weights.W_U
    torch.testing.assert_close(logits[s], expected, atol=1e-4, rtol=0)
    others = [p for p in range(len(tr.input_ids)) if p != s]
    torch.testing.assert_close(logits[others], clean[others], atol=1e-5, rtol=0)
    # in layer 0 it reaches later positions through attention, never earlier ones
    big = int(tr["blocks.0.mlp.hook_post"][s].abs().argmax())
    logits = run([Component("ffn", 0, big, source=s)])
    torch.testing.assert_close(logits[:s], clean[:s], atol=1e-5, rtol=0)
    assert (logits[s + 1:] - clean[s + 1:]).abs().amax(-1).min() > 1e-4
    # source=None keeps the old meaning (the traced position), and equals source=pos
    a = final_log_probs(vm, tr.input_ids, pos, [Component("ffn", 1, i)])
    b = final_log_probs(vm, tr.input_ids, pos, [Component("ffn", 1, i, source=pos)])
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert Component("ffn", 1, i, source=2).label == "L1.N9@2" and Component("ffn", 1, i).label == "L1.N9"
    gen = torch.Generator().manual_seed(0)
    rand = random_ffn_at_sources(vm, 40, gen, pos, sources=range(1, pos + 1))
    assert len(set(rand)) == 40 and all(1 <= c.source <= pos and c.kind == "ffn" for c in rand)


def test_zeroing_every_head_leaves_the_output_bias(tiny_factory):
    vm = tiny_factory("gpt2", seed=2)
    tr = trace(vm, PROMPT)
    layer, pos = 1, tr.position
    comps = [Component("head", layer, h) for h in range(vm.dims.n_heads)]
    _, rec = hooked_run(vm, torch.tensor([tr.input_ids]), read=[f"blocks.{layer}.hook_attn_out"],
                        write=interventions_for(vm, comps, pos))
    torch.testing.assert_close(rec[f"blocks.{layer}.hook_attn_out"][0, pos], vm.weights.b_O(layer), atol=1e-6, rtol=0)


def test_attention_neurons_over_all_sources_equal_the_wo_neuron(tiny_factory):
    vm = tiny_factory("qwen2", seed=4)
    tr = trace(vm, PROMPT)
    pos, layer, h, j = tr.position, 1, 3, 5
    per_source = [Component("attn", layer, h, j, s) for s in range(pos + 1)]
    a = final_log_probs(vm, tr.input_ids, pos, per_source, tr)
    b = final_log_probs(vm, tr.input_ids, pos, [Component("wo", layer, h, j)])
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert not torch.allclose(a, tr["logits"][pos].log_softmax(-1), atol=1e-6)


def test_random_components_are_distinct_and_in_range(tiny_factory):
    vm = tiny_factory("gpt2")
    gen = torch.Generator().manual_seed(0)
    comps = random_components(vm, "ffn", 50, gen)
    assert len(set(comps)) == 50
    assert all(0 <= c.layer < vm.dims.n_layers and 0 <= c.index < vm.dims.d_mlp for c in comps)
    attn = random_components(vm, "attn", 20, gen, position=4)
    assert all(0 <= c.source <= 4 and 0 <= c.dim < vm.dims.d_head for c in attn)


def test_baseline_scores(tiny_factory):
    vm = tiny_factory("gpt2", seed=5)
    tr = trace(vm, PROMPT)
    s = ffn_method_scores(tr, TARGET)
    assert set(s) == set(METHODS)
    torch.testing.assert_close(s["logp_increase"], ffn_neuron_logprob_increase_brute(tr, TARGET), atol=1e-5, rtol=0)
    layer, i = 2, 11
    coeff = tr[f"blocks.{layer}.mlp.hook_post"][tr.position]
    assert float(s["coefficient"][layer, i]) == pytest.approx(abs(float(coeff[i])))
    # prob increase, written out with the lens module
    from visit.lens import LogitLens

    lens = LogitLens.for_trace(tr)
    mid = tr.resid(layer, "mid")
    v = tr.neuron_contributions(layer, [i])[0]
    p = lens.logits(torch.stack([mid + v, mid]), "frozen").softmax(-1)[:, TARGET]
    assert float(s["prob_increase"][layer, i]) == pytest.approx(float(p[0] - p[1]), abs=1e-6)
    # rank of the target in the neuron's own projection
    u = lens.logits(vm.weights.W_out(layer)[i:i + 1], "frozen")[0] - lens.logits(torch.zeros(1, vm.dims.d_model),
                                                                                  "frozen")[0]
    rank = int((u > u[TARGET]).sum()) + 1
    assert float(s["inv_rank"][layer, i]) == pytest.approx(1 / rank)
    assert bool(((s["inv_rank"] > 0) & (s["inv_rank"] <= 1)).all())


def test_evaluate_methods_rows(tiny_factory):
    from visit.attribution.evaluation import evaluate_methods
    from visit.prompts import PromptCase

    vm = tiny_factory("llama", seed=6)
    cases = [PromptCase("The capital of France is", " Paris"), PromptCase("Rome is in", " Italy")]
    rows = evaluate_methods(vm, cases, kind="ffn", top=3)
    assert [r["method"] for r in rows] == ["unedited", *METHODS, "random"]
    assert all(r["n"] == 2 and 0 < r["mrr"] <= 1 for r in rows)
    tr = trace(vm, cases[0].prompt)
    from visit.tokens import resolve_target

    m = metrics_of(tr["logits"][tr.position].log_softmax(-1), resolve_target(vm.tokenizer, " Paris").id)
    tr2 = trace(vm, cases[1].prompt)
    m2 = metrics_of(tr2["logits"][tr2.position].log_softmax(-1), resolve_target(vm.tokenizer, " Italy").id)
    assert rows[0]["logp"] == pytest.approx((m.logp + m2.logp) / 2, abs=1e-5)
    # zeroing the neurons that raise the target most lowers its log-probability
    assert rows[1]["logp"] < rows[0]["logp"]
    for kind in ("head", "attn"):
        rows = evaluate_methods(vm, cases[:1], kind=kind, top=2)
        assert [r["method"] for r in rows] == ["unedited", "logp_increase", "random"]


@pytest.fixture
def tiny_cli(monkeypatch, tiny_factory):
    vm = tiny_factory("gpt2", seed=7)
    monkeypatch.setattr("visit.cli.attribute_cmd.load_from_args", lambda args: vm)
    monkeypatch.setattr("visit.cli.ablate_cmd.load_from_args", lambda args: vm)
    return vm


@pytest.mark.parametrize("kind", ["layer", "head", "ffn", "attn", "wo"])
def test_attribute_command_writes_sorted_json(tiny_cli, tmp_path, capsys, kind):
    from visit.cli import main

    out = tmp_path / "a.json"
    assert main(["attribute", "The capital of France is", "--target", " Paris", "--kind", kind, "--top", "5",
                 "--json", str(out)]) == 0
    entries = json.loads(out.read_text())
    assert len(entries) == 5
    scores = [e["score"] for e in entries]
    assert scores == sorted(scores, reverse=True)
    for e in entries:
        assert {"kind", "layer", "score", "top_tokens"} <= set(e)
    if kind == "attn":
        assert all("position" in e and "head" in e and "index" in e for e in entries)
    assert "top tokens" in capsys.readouterr().out


def test_attribute_command_rejects_bad_input(tiny_cli, capsys):
    from visit.cli import main

    assert main(["attribute", "   ", "--target", " Paris"]) == 2
    assert main(["attribute", "Hello", "--kind", "head", "--method", "norm"]) == 2
    assert "FFN neurons only" in capsys.readouterr().err


def test_ablate_command_prints_the_table(tiny_cli, tmp_path, capsys):
    from visit.cli import main

    prompts = tmp_path / "p.tsv"
    prompts.write_text("The capital of France is\t Paris\nRome is in\tItaly\n")
    csv_path = tmp_path / "t.csv"
    assert main(["ablate", "--prompts", str(prompts), "--top", "3", "--csv", str(csv_path)]) == 0
    text = capsys.readouterr().out
    assert "unedited" in text and "random" in text and "log prob increase" in text
    assert csv_path.read_text().count("\n") == len(METHODS) + 3
    assert main(["ablate", "--prompts", str(tmp_path / "missing.tsv")]) == 2


@pytest.mark.slow
def test_default_model_top_neurons_matter_more_than_random(default_model):
    from visit.attribution.evaluation import top_components
    from visit.tokens import resolve_target

    tr = trace(default_model, "The capital of France is")
    target = resolve_target(default_model.tokenizer, " Paris").id
    clean = metrics_of(tr["logits"][tr.position].log_softmax(-1), target)
    top = top_components(tr, target, "ffn", "logp_increase", 10)
    after_top = metrics_of(final_log_probs(default_model, tr.input_ids, tr.position, top), target)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        rand = random_components(default_model, "ffn", 10, gen)
        after_rand = metrics_of(final_log_probs(default_model, tr.input_ids, tr.position, rand), target)
        assert clean.prob - after_top.prob > clean.prob - after_rand.prob
    assert after_top.prob < clean.prob


def test_attribute_command_contrast_and_query(tiny_cli, capsys):
    from visit.cli import main

    assert main(["attribute", "The capital of France is", "--target", " Paris", "--kind", "layer", "--top", "3",
                 "--competitor", " London", "--query", "2.5"]) == 0
    out = capsys.readouterr().out
    assert "bs(␣Paris) - bs(␣London)" in out and "query scores of L2.N5" in out
    assert main(["attribute", "Hi", "--query", "x"]) == 2


def test_baseline_methods_can_be_asked_for_one_at_a_time(tiny_factory):
    vm = tiny_factory("llama", seed=7)
    tr = trace(vm, PROMPT)
    everything = ffn_method_scores(tr, TARGET)
    for method in METHODS:
        alone = ffn_method_scores(tr, TARGET, methods=(method,))
        assert set(alone) == {method}
        torch.testing.assert_close(alone[method], everything[method], atol=0, rtol=0)
    with pytest.raises(ValueError, match="unknown method"):
        ffn_method_scores(tr, TARGET, methods=("nope",))
