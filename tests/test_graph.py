"""The flow graph's structure on tiny random models: kinds per layer, pruning bounds, edge scores equal
the traced values, memory values name their sources, parallel blocks, projections equal the lens."""

from __future__ import annotations

import re

import pytest
import torch

from visit.errors import VisitError
from visit.graph import GraphSettings, build_graph
from visit.graph.builder import memory_vectors
from visit.lens import LogitLens
from visit.tracer import trace

PROMPT = "The capital of France is the city of"
TARGET = 7042  # " Paris" in the default tokenizer
SINGLE_KINDS = ("resid_pre", "ln1", "qkv", "concat", "attn_out", "resid_mid", "ln2", "mlp_out", "resid_post")


@pytest.fixture(scope="module")
def traced(tiny_model):
    return trace(tiny_model, PROMPT)


def kinds_in_layer(g, layer):
    out = {}
    for n, a in g.nodes(data=True):
        if a["layer"] == layer:
            out.setdefault(a["kind"], []).append(n)
    return out


def test_node_kinds_per_layer(traced):
    d = traced.vm.dims
    g = build_graph(traced, TARGET).graph
    n_src = traced.position + 1
    for layer in range(d.n_layers):
        kinds = kinds_in_layer(g, layer)
        for kind in SINGLE_KINDS:
            assert kinds[kind] == [f"L{layer}.{kind}"]
        assert len(kinds["head"]) == len(kinds["query"]) == d.n_heads
        assert len(kinds["memory"]) == len(kinds["key"]) == d.n_heads * min(3, n_src)
        assert len(kinds["wo_neuron"]) == 5
        assert 5 <= len(kinds["neuron"]) <= 10
    for n, a in g.nodes(data=True):
        assert re.match(r"^L\d+\.(resid_pre|ln1|qkv|concat|attn_out|resid_mid|ln2|mlp_out|resid_post|H\d+"
                        r"(\.q|\.key\d+|\.mem\d+)?|WO\d+|N\d+)$", n), n
        assert a["id"] == n and a["location"].startswith(f"{a['layer']}) ")


def test_blocks_are_chained_and_skips_present(traced):
    g = build_graph(traced, TARGET).graph
    parallel = traced.vm.parallel
    for layer in range(traced.n_layers):
        p = f"L{layer}"
        assert g.has_edge(f"{p}.resid_pre", f"{p}.resid_mid")  # attention skip
        assert g.has_edge(f"{p}.resid_mid", f"{p}.resid_post")  # MLP skip
        assert g.has_edge(f"{p}.attn_out", f"{p}.resid_mid") and g.has_edge(f"{p}.mlp_out", f"{p}.resid_post")
        ln2_input = f"{p}.resid_pre" if parallel else f"{p}.resid_mid"
        assert list(g.predecessors(f"{p}.ln2")) == [ln2_input]
        if layer:
            assert g.has_edge(f"L{layer - 1}.resid_post", f"{p}.resid_pre")


def test_pruning_bounds_and_layer_range(traced):
    s = GraphSettings(layer_start=1, layer_end=2, heads_per_layer=2, memory_per_head=1, wo_neurons=2,
                      mlp_top=1, mlp_bottom=1)
    g = build_graph(traced, TARGET, s).graph
    assert {a["layer"] for _, a in g.nodes(data=True)} == {1, 2}
    for layer in (1, 2):
        kinds = kinds_in_layer(g, layer)
        assert len(kinds["head"]) == 2 and len(kinds["memory"]) == 2 and len(kinds["key"]) == 2
        assert len(kinds["wo_neuron"]) == 2 and len(kinds["neuron"]) == 2
        norms = traced[f"blocks.{layer}.attn.hook_result"].norm(dim=-1)
        assert {g.nodes[n]["head"] for n in kinds["head"]} == set(norms.topk(2).indices.tolist())


def test_size_bounded_by_knobs(traced):
    s = GraphSettings(heads_per_layer=1, memory_per_head=2, wo_neurons=1, mlp_top=2, mlp_bottom=0)
    g = build_graph(traced, TARGET, s).graph
    per_layer = len(SINGLE_KINDS) + 1 * (2 + 2 * 2) + 1 + 2
    assert g.number_of_nodes() == traced.n_layers * per_layer


def test_edge_scores_equal_traced_values(traced):
    g = build_graph(traced, TARGET).graph
    pos = traced.position
    checked = set()
    for u, v, e in g.edges(data=True):
        a, b = g.nodes[u], g.nodes[v]
        p = f"blocks.{b['layer']}"
        if b["kind"] in ("key", "memory") or (a["kind"] == "memory" and b["kind"] == "head"):
            m = b if b["kind"] in ("key", "memory") else a
            alpha = float(traced[f"{p}.attn.hook_pattern"][m["head"], pos, m["source"]])
            assert e["coefficient"] == pytest.approx(alpha, abs=1e-7) and e["score"] == pytest.approx(alpha, abs=1e-7)
        elif b["kind"] == "neuron":
            act = float(traced[f"{p}.mlp.hook_post"][pos, b["neuron"]])
            assert e["coefficient"] == pytest.approx(act, abs=1e-6) and e["score"] == pytest.approx(abs(act), abs=1e-6)
        elif b["kind"] == "wo_neuron":
            z = float(traced[f"{p}.attn.hook_z"][pos].reshape(-1)[b["neuron"]])
            assert e["coefficient"] == pytest.approx(z, abs=1e-6)
        elif a["kind"] == "head":
            norm = float(traced[f"{p}.attn.hook_result"][a["head"]].norm())
            assert e["role"] == "summation" and e["norm"] == pytest.approx(norm, rel=1e-5)
        elif (a["kind"], b["kind"]) == ("mlp_out", "resid_post"):
            assert e["norm"] == pytest.approx(float(traced[f"{p}.hook_mlp_out"][pos].norm()), rel=1e-5)
        elif (a["kind"], b["kind"]) == ("attn_out", "resid_mid"):
            assert e["norm"] == pytest.approx(float(traced[f"{p}.hook_attn_out"][pos].norm()), rel=1e-5)
        elif a["kind"] == "neuron":
            vec = traced.neuron_contributions(a["layer"], [a["neuron"]])[0]
            assert e["norm"] == pytest.approx(float(vec.norm()), rel=1e-5)
        else:
            continue
        checked.add((a["kind"], b["kind"]))
    assert {("query", "key"), ("key", "memory"), ("memory", "head"), ("ln2", "neuron"), ("concat", "wo_neuron"),
            ("head", "concat"), ("mlp_out", "resid_post"), ("neuron", "mlp_out")} <= checked


def test_memory_values_name_the_top_sources(traced):
    g = build_graph(traced, TARGET).graph
    pos = traced.position
    for n, a in g.nodes(data=True):
        if a["kind"] != "head":
            continue
        pattern = traced[f"blocks.{a['layer']}.attn.hook_pattern"][a["head"], pos, :pos + 1]
        mems = [m for m in g.predecessors(n) if g.nodes[m]["kind"] == "memory"]
        assert {g.nodes[m]["source"] for m in mems} == set(pattern.topk(3).indices.tolist())
        for m in mems:
            ma = g.nodes[m]
            assert ma["source_token"] == traced.tokens[ma["source"]]
            assert m == f"L{a['layer']}.H{a['head']}.mem{ma['source']}"
            assert ma["attention"] == pytest.approx(float(pattern[ma["source"]]))


def test_memory_vectors_match_the_tracer(traced):
    memory = {0: [0, 2], 3: [traced.position]}
    mine = memory_vectors(traced, 1, memory)
    for h, srcs in memory.items():
        ref = traced.memory_values(1, [h], srcs)[0]
        for s, vec in zip(srcs, ref):
            torch.testing.assert_close(mine[(h, s)], vec, rtol=1e-5, atol=1e-6)


def test_mlp_neurons_are_top_and_bottom_by_activation(traced):
    g = build_graph(traced, TARGET, GraphSettings(mlp_top=3, mlp_bottom=2)).graph
    for layer in range(traced.n_layers):
        act = traced[f"blocks.{layer}.mlp.hook_post"][traced.position]
        roles = {g.nodes[n]["neuron"]: g.nodes[n]["role"] for n in kinds_in_layer(g, layer)["neuron"]}
        assert {i for i, r in roles.items() if r == "top"} == set(act.topk(3).indices.tolist())
        assert set(act.topk(2, largest=False).indices.tolist()) <= set(roles)


def test_projections_equal_the_lens_and_are_batched(tiny_model, monkeypatch):
    traced = trace(tiny_model, PROMPT)  # fresh: lens rows are kept per trace
    calls = []
    original = LogitLens.project

    def counting(self, vectors, *args, **kwargs):
        calls.append(vectors.shape[0])
        return original(self, vectors, *args, **kwargs)

    monkeypatch.setattr(LogitLens, "project", counting)
    built = build_graph(traced, TARGET)
    assert len(calls) == 1 and built.graph.graph["projected_rows"] == calls[0]
    # a block's input is the previous block's output: projected once, not twice
    assert calls[0] < sum(1 for _, a in built.graph.nodes(data=True) if a["projected"])
    # drawn again (other settings, same trace): only nodes never projected before are projected
    again = build_graph(traced, TARGET, GraphSettings(mlp_top=7))
    assert len(calls) == 2 and calls[1] == 2 * traced.n_layers
    assert again.graph.nodes["L0.resid_post"]["top"] == built.graph.nodes["L0.resid_post"]["top"]
    monkeypatch.setattr(LogitLens, "project", original)
    g, lens, last = built.graph, LogitLens.for_trace(traced), traced.n_layers - 1
    refs = {f"L{last}.resid_post": traced.resid(last, "post"), "L1.resid_mid": traced.resid(1, "mid"),
            "L0.H1": traced["blocks.0.attn.hook_result"][1],
            "L1.ln2": traced["blocks.1.ln2.hook_out"][traced.position],
            "L2.mlp_out": traced["blocks.2.hook_mlp_out"][traced.position]}
    res = lens.project(torch.stack(list(refs.values())), mode="renorm", k=5, target=TARGET)
    for i, n in enumerate(refs):
        a = g.nodes[n]
        assert [t["id"] for t in a["top"]] == res.top_ids[i].tolist()
        assert a["target_rank"] == int(res.target_rank[i])
        assert a["target_prob"] == pytest.approx(float(res.target_prob[i]), rel=1e-4, abs=1e-9)
        assert a["entropy"] == pytest.approx(float(res.entropy[i]), rel=1e-4)
        assert a["norm"] == pytest.approx(float(refs[n].norm()), rel=1e-5)
    # the model's own prediction is what the last residual says (the lens re-applies the final norm)
    assert g.nodes[f"L{last}.resid_post"]["top"][0]["id"] == int(traced["logits"][traced.position].argmax())
    # a norm node carries the lens of its input as well
    assert g.nodes["L1.ln1"]["in_target_rank"] == g.nodes["L1.resid_pre"]["target_rank"]
    for n, a in g.nodes(data=True):
        assert a["projected"] == (a["kind"] not in ("qkv", "query", "key"))


def test_hidden_norms_are_bridged(traced):
    g = build_graph(traced, TARGET, GraphSettings(show_norms=False)).graph
    assert not [n for n, a in g.nodes(data=True) if a["kind"] in ("ln1", "ln2")]
    e = g.edges["L0.resid_pre", "L0.qkv"]
    assert e["via"] == "L0.ln1" and e["via_rank_in"] is not None and e["via_rank_out"] is not None


def test_min_edge_score_prunes_weak_edges_and_dangling_nodes(traced):
    full = build_graph(traced, TARGET).graph
    g = build_graph(traced, TARGET, GraphSettings(min_edge_score=0.3)).graph
    assert g.number_of_nodes() < full.number_of_nodes()
    for u, v, e in g.edges(data=True):
        if e["role"] in ("coefficient", "summation"):
            assert e["score"] >= 0.3
    for n, a in g.nodes(data=True):
        if a["kind"] not in SINGLE_KINDS:
            assert g.in_degree(n) and g.out_degree(n), n


def test_include_highlight_and_flags(traced):
    act = traced["blocks.1.mlp.hook_post"][traced.position]
    quiet = int(act.abs().argmin())
    s = GraphSettings(mlp_top=1, mlp_bottom=0, heads_per_layer=1, include=(f"L1.N{quiet}", "L2.H3.mem0"),
                      highlight=("L0.resid_post",), flagged_neurons={(2, 5): "regularization"})
    g = build_graph(traced, TARGET, s).graph
    assert g.nodes[f"L1.N{quiet}"]["role"] == "included" and g.nodes[f"L1.N{quiet}"]["included"]
    assert "L2.H3" in g and "L2.H3.mem0" in g
    assert g.nodes["L0.resid_post"]["highlighted"]
    assert g.nodes["L2.N5"]["flag"] == "regularization"
    with pytest.raises(VisitError, match="cannot include"):
        build_graph(traced, TARGET, GraphSettings(include=("L1.X3",)))
    with pytest.raises(VisitError, match="heads"):
        build_graph(traced, TARGET, GraphSettings(include=("L1.H99",)))


def test_bad_settings_raise_visit_errors(traced):
    for bad in (GraphSettings(layer_start=99, layer_end=100), GraphSettings(layer_start=2, layer_end=1),
                GraphSettings(memory_per_head=-1), GraphSettings(prune_by="magic"),
                GraphSettings(min_edge_score=-1)):
        with pytest.raises(VisitError):
            build_graph(traced, TARGET, bad)


def test_prune_by_attribution_uses_the_attribution_scores(traced):
    if traced.vm.name not in ("tiny-gpt2", "tiny-llama", "tiny-gpt_neox"):
        pytest.skip("one model per adapter is enough here (the attribution scores are tested on their own)")
    attribution = pytest.importorskip("visit.attribution")
    s = GraphSettings(prune_by="attribution", heads_per_layer=2, mlp_top=2, mlp_bottom=1)
    g = build_graph(traced, TARGET, s).graph
    heads = attribution.head_logprob_increase(traced, TARGET)
    neurons = attribution.ffn_neuron_logprob_increase(traced, TARGET)
    for layer in range(traced.n_layers):
        kinds = kinds_in_layer(g, layer)
        assert {g.nodes[n]["head"] for n in kinds["head"]} == set(heads[layer].topk(2).indices.tolist())
        tops = {g.nodes[n]["neuron"] for n in kinds["neuron"] if g.nodes[n]["role"] == "top"}
        assert tops == set(neurons[layer].topk(2).indices.tolist())


@pytest.mark.slow
def test_default_model_last_node_says_paris(default_model):
    from visit.pipeline import analyze

    a = analyze(default_model, "The capital of France is", " Paris", settings=GraphSettings(layer_start=28))
    last = a.graph.nodes["L29.resid_post"]
    assert last["label"] == " Paris" and last["target_rank"] == 1
    assert a.top_predictions[0]["token"] == " Paris"


def test_settings_accept_whole_floats_and_reject_other_types(traced):
    s = GraphSettings(layer_start=1.0, layer_end=2.0, memory_per_head=2.0).validated(traced.n_layers)
    assert s.layers(traced.n_layers) == range(1, 3) and s.memory_per_head == 2
    with pytest.raises(VisitError, match="whole numbers"):
        GraphSettings(layer_start="a").validated(traced.n_layers)
    with pytest.raises(VisitError, match="ends before"):
        GraphSettings(layer_start=2, layer_end=1).validated(traced.n_layers)
