"""Query neurons add up to the neuron's pre-activation (FFN) or coefficient (attention); the
aggregated query FFN neurons of attention value neurons; bs-values follow the residual stream."""

import pytest
import torch

from visit.attribution.contrast import bs_values, contrast
from visit.attribution.query import parse_neuron_spec, query_scores
from visit.attribution.query_attn import attn_query_ffn_neurons, attn_query_scores, top_query_ffn_neurons
from visit.errors import VisitError
from visit.tracer import trace

PROMPT = "The capital of France is Paris, and the capital of Italy is"


def pre_activation(vm, tr, layer, neuron, slot):
    from visit.models.weights import get_module

    x = tr[f"blocks.{layer}.ln2.hook_out"][tr.position]
    module = get_module(vm.weights.blocks[layer], vm.adapter.mlp_in[slot])
    bias = 0.0 if getattr(module, "bias", None) is None else float(module.bias[neuron])
    return float(x @ vm.weights.W_in(layer, slot)[:, neuron]) + bias


def test_query_scores_sum_to_the_pre_activation(tiny_model):
    tr = trace(tiny_model, PROMPT)
    layer, neuron = 2, 13
    whiches = ["gate", "up"] if tiny_model.adapter.mlp_kind == "gated" else ["gate"]
    for slot, which in enumerate(whiches):
        q = query_scores(tr, layer, neuron, which=which)
        total = sum(e["score"] for e in q["layers"]) + q["constant"]
        assert total == pytest.approx(pre_activation(tiny_model, tr, layer, neuron, slot), abs=1e-4)
        assert q["pre_activation"] == pytest.approx(total)
        scores = [e["score"] for e in q["layers"]]
        assert scores == sorted(scores, reverse=True)
    top = q["ffn_neurons"][0]
    coeff = tr[f"blocks.{top['layer']}.mlp.hook_post"][tr.position][top["index"]]
    assert top["layer"] < layer
    assert abs(top["score"]) > 0 and coeff != 0
    assert len(q["attn_subvalues"]) == 20


def test_query_rejects_bad_neurons(tiny_factory):
    vm = tiny_factory("gpt2")
    tr = trace(vm, PROMPT)
    with pytest.raises(VisitError):
        query_scores(tr, 0, 10_000)
    with pytest.raises(VisitError):
        query_scores(tr, 1, 3, which="up")  # GPT-2's MLP is not gated


def test_bs_values_follow_the_stream(tiny_model):
    tr = trace(tiny_model, PROMPT)
    ids = [11, 42, 1234]
    res = bs_values(tr, ids)
    torch.testing.assert_close(res["bs"][:, 1:] - res["bs"][:, :-1], res["block_bs"], atol=1e-4, rtol=1e-4)
    # the last point under the frozen lens is the model's own logits
    torch.testing.assert_close(res["bs"][:, -1], tr["logits"][tr.position][ids], atol=1e-4, rtol=1e-4)
    c = contrast(tr, 42, 1234)
    logits = tr["logits"][tr.position]
    assert c["log_odds"] == pytest.approx(float(logits[42] - logits[1234]), abs=1e-4)
    assert sum(c["block_diff"]) == pytest.approx(c["log_odds"] - (c["target"][0] - c["competitor"][0]), abs=1e-4)
    assert len(c["block_labels"]) == len(c["block_diff"]) == 2 * tiny_model.dims.n_layers


def test_W_V_reproduces_the_traced_values(tiny_model):
    tr = trace(tiny_model, PROMPT)
    w, d = tiny_model.weights, tiny_model.dims
    for layer in range(d.n_layers):
        assert w.W_V(layer).shape == (d.n_kv_heads, d.d_model, d.d_head)
        assert w.b_V(layer).shape == (d.n_kv_heads, d.d_head)
        v = torch.einsum("pm,kmd->pkd", tr[f"blocks.{layer}.ln1.hook_out"], w.W_V(layer)) + w.b_V(layer)
        torch.testing.assert_close(v, tr[f"blocks.{layer}.attn.hook_v"], atol=1e-5, rtol=1e-4)


def test_attn_query_scores_sum_to_the_coefficient(tiny_model):
    tr = trace(tiny_model, PROMPT)
    d, w, pos = tiny_model.dims, tiny_model.weights, tr.position
    for layer, head, dim in [(2, 3, 5), (1, 0, 11), (0, 2, 7)]:
        q = attn_query_scores(tr, layer, head, dim, top=10_000)
        z = float(tr[f"blocks.{layer}.attn.hook_z"][pos, head, dim])
        assert q["z"] == pytest.approx(z)
        assert q["raw_total"] == pytest.approx(z, abs=1e-4)
        assert sum(e["raw"] for e in q["layers"]) + q["constant"] == pytest.approx(z, abs=1e-4)
        sign = q["sign"]
        assert sign == (-1.0 if z < 0 else 1.0)
        for e in q["layers"]:  # sign-adjusted, and per source adds up to the sum over sources
            assert e["score"] == pytest.approx(sign * e["raw"])
            assert sum(e["per_source"]) == pytest.approx(e["score"], abs=1e-5)
            assert len(e["per_source"]) == pos + 1
        assert sum(q["sources"]) == pytest.approx(sign * (z - q["constant"]), abs=1e-4)
        parts = {(e["part"], e["layer"]) for e in q["layers"]}
        assert parts == {("embedding", 0)} | {(p, l) for l in range(layer) for p in ("attn", "ffn")}
        scores = [e["score"] for e in q["layers"]]
        assert scores == sorted(scores, reverse=True)
        if layer == 0:
            assert q["ffn_neurons"] == [] and q["attn_heads"] == []
            continue
        # neurons + the MLP output bias = the layer's FFN part; heads + b_O = its attention part
        by_part = {(e["part"], e["layer"]): e["score"] for e in q["layers"]}
        alpha = tr[f"blocks.{layer}.attn.hook_pattern"][head, pos, :pos + 1]
        coef = sign * alpha / tr[f"blocks.{layer}.ln1.hook_scale"][:pos + 1, 0]
        from visit.attribution.query_attn import attn_subkey

        K, _ = attn_subkey(tr, layer, head, dim)
        assert len(q["ffn_neurons"]) == layer * d.d_mlp
        for l in range(layer):
            neurons = sum(e["score"] for e in q["ffn_neurons"] if e["layer"] == l)
            bias = float(coef.sum() * (w.b_out(l) @ K))
            assert neurons + bias == pytest.approx(by_part[("ffn", l)], abs=1e-4)
            heads = sum(e["score"] for e in q["attn_heads"] if e["layer"] == l)
            bias = float(coef.sum() * (w.b_O(l) @ K))
            assert heads + bias == pytest.approx(by_part[("attn", l)], abs=1e-4)
        best = q["ffn_neurons"][0]
        assert 0 <= best["best_source"] <= pos and best["score"] >= q["ffn_neurons"][-1]["score"]


def test_aggregated_query_ffn_neurons(tiny_model):
    tr = trace(tiny_model, PROMPT)
    d = tiny_model.dims
    neurons, weights = [(2, 3, 5), (1, 0, 11), (2, 1, 2), (0, 2, 7)], [0.5, 0.2, -0.1, 0.3]
    # one value neuron, plain sum: the single-neuron FFN scores
    single = attn_query_ffn_neurons(tr, neurons[:1], weighting="sum")
    q = attn_query_scores(tr, *neurons[0], top=10_000)
    for e in q["ffn_neurons"][:20]:
        assert float(single[e["layer"], e["index"]]) == pytest.approx(e["score"], abs=1e-5)
    assert not single[2:].any()  # layer 2's value neuron reads FFN layers 0 and 1 only
    # "share": the value neurons' log-prob increases, split over the vectors they read
    per, info = attn_query_ffn_neurons(tr, neurons, weights, per_source=True, with_layers=True)
    assert per.shape == (d.n_layers, d.d_mlp, tr.position + 1)
    torch.testing.assert_close(per.sum(-1), attn_query_ffn_neurons(tr, neurons, weights), atol=1e-6, rtol=1e-5)
    assert sum(e["score"] for e in info["layers"]) + info["constant"] == pytest.approx(sum(weights), abs=1e-4)
    # linear in the value neurons: the aggregate is the weighted sum of single-neuron aggregates
    total = sum(attn_query_ffn_neurons(tr, [n], [wt]) for n, wt in zip(neurons, weights))
    torch.testing.assert_close(attn_query_ffn_neurons(tr, neurons, weights), total, atol=1e-5, rtol=1e-4)
    logp = attn_query_ffn_neurons(tr, neurons, weights, weighting="logp")
    q = attn_query_scores(tr, *neurons[1], top=10_000)
    lp1 = attn_query_ffn_neurons(tr, neurons[1:2], weights[1:2], weighting="logp")
    e = q["ffn_neurons"][0]
    assert float(lp1[e["layer"], e["index"]]) == pytest.approx(weights[1] * e["score"], abs=1e-5)
    assert logp.shape == (d.n_layers, d.d_mlp)


def test_attn_query_rejects_bad_input(tiny_factory):
    vm = tiny_factory("qwen2")
    tr = trace(vm, PROMPT)
    for spec in [(3, 0, 0), (0, 4, 0), (0, 0, 16), (-1, 0, 0)]:
        with pytest.raises(VisitError, match="no attention neuron"):
            attn_query_scores(tr, *spec)
    with pytest.raises(VisitError):
        attn_query_ffn_neurons(tr, [(1, 0, 0)], weighting="share")  # needs weights
    with pytest.raises(VisitError):
        attn_query_ffn_neurons(tr, [(1, 0, 0)], [1.0], weighting="mean")
    with pytest.raises(VisitError):
        attn_query_ffn_neurons(tr, [(1, 0, 0), (2, 0, 0)], [1.0])
    assert parse_neuron_spec("L27.N846") == ("ffn", 27, 846) == parse_neuron_spec(" 27.846 ")
    assert parse_neuron_spec("20.3.d17") == ("attn", 20, 3, 17) == parse_neuron_spec("L20.H3.D17")
    for bad in ["x", "1.2.3.4", "20.3.x17", "L1.N-2", ""]:
        with pytest.raises(VisitError, match="LAYER.HEAD.dDIM"):
            parse_neuron_spec(bad)


def test_attention_query_in_the_cli_and_the_panel(tiny_factory, monkeypatch, capsys):
    from dash_helpers import grids, texts

    from visit.cli import main
    from visit.pipeline import analyze
    from visit.ui.panels import attribution as panel

    vm = tiny_factory("gpt2", seed=7)
    monkeypatch.setattr("visit.cli.attribute_cmd.load_from_args", lambda args: vm)
    assert main(["attribute", "The capital of France is", "--target", " Paris", "--kind", "layer", "--top", "3",
                 "--query", "L2.H1.d5", "--query-attn-top", "10"]) == 0
    out = capsys.readouterr().out
    assert "query scores of attention neuron L2.H1.d5" in out and "sources:" in out
    assert "FFN query neurons of the top 10 attention value neurons" in out
    for args in (["--query", "2.9.d0"], ["--query", "2.1"], ["--query", "2.1.x"], ["--query-attn-top", "0"]):
        code = main(["attribute", "Hi", "--target", " Paris", *args])
        err = capsys.readouterr().err
        if args[1] == "2.1":
            assert code == 0
        else:
            assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    analysis = analyze(vm, "The <b>capital</b> of France is", " Paris")
    view = panel.query_view(analysis, "L2.H1.d5", "gate")
    shown = texts(view)
    assert "query FFN neurons (summed over sources)" in shown and "sources" in shown
    cells = [str(v) for grid in grids(view) for row in grid.rowData for v in row.values()]
    assert any("</" in c for c in cells)  # raw token text ("</") in grid cells, which AG Grid renders as text
    with pytest.raises(VisitError):
        panel.query_view(analysis, "L2.H9.d5", "gate")


@pytest.mark.slow
def test_default_model_query_neurons_of_attention_value_neurons_matter(default_model):
    from visit.attribution.intervention import final_log_probs, metrics_of, random_ffn_at_sources
    from visit.attribution.intervention import Component
    from visit.tokens import resolve_target

    vm = default_model
    tr = trace(vm, "The capital of France is")
    target = resolve_target(vm.tokenizer, " Paris").id
    clean = metrics_of(tr["logits"][tr.position].log_softmax(-1), target)
    # leave out the first token: zeroing its few huge attention-sink activations breaks any prediction
    sources = range(1, tr.position + 1)
    top = top_query_ffn_neurons(tr, target, n_value=200, k=100, sources=sources)
    assert all(1 <= e["source"] <= tr.position and e["score"] > 0 for e in top)
    comps = [Component("ffn", e["layer"], e["index"], source=e["source"]) for e in top]
    after = metrics_of(final_log_probs(vm, tr.input_ids, tr.position, comps), target)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        rand = random_ffn_at_sources(vm, 100, gen, tr.position, sources=sources)
        after_rand = metrics_of(final_log_probs(vm, tr.input_ids, tr.position, rand), target)
        assert clean.prob - after.prob > 5 * abs(clean.prob - after_rand.prob)
    assert after.prob < clean.prob / 10
