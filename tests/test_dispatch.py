"""Models spread over devices (visit/models/dispatch.py) and the memory estimate (visit/models/memory.py).

A tiny random model is saved, then loaded twice through ``load_model``: on one device, and with a device map
over the CPU and disk (some blocks and the unembedding offloaded: their parameters are ``meta`` and accelerate
reads them from the checkpoint at forward time). Traces, decompositions, attribution, interventions and resumed
passes must be the same numbers. No GPU here: the GPU + CPU split is not exercised.
"""

from __future__ import annotations

import json

import pytest
import torch
from test_exactness import check_decompositions

from visit.attribution.logprob import ffn_neuron_logprob_increase_brute, head_logprob_increase
from visit.errors import VisitError
from visit.hooks import add, run, zero
from visit.hooks.resume import Join, record, resume
from visit.models import dispatch, load_model, memory
from visit.tracer import trace

PROMPT = "The capital of France is Paris, and the capital of Italy is"
# block 0 in memory, blocks 1-2 and the unembedding on disk (GPT-2 ties it to the input embedding)
MAPS = {
    "llama": {"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk",
              "model.layers.2": "disk", "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "disk"},
    "gpt2": {"transformer.wte": "cpu", "transformer.wpe": "cpu", "transformer.h.0": "cpu",
             "transformer.h.1": "disk", "transformer.h.2": "disk", "transformer.ln_f": "cpu", "lm_head": "cpu"},
}


@pytest.fixture(scope="module", params=sorted(MAPS))
def pair(request, tiny_factory, tmp_path_factory):
    """``(plain, dispatched)``: one saved tiny model loaded on the CPU and over CPU + disk."""
    family = request.param
    path = tmp_path_factory.mktemp(f"dispatch-{family}")
    built = tiny_factory(family)
    built.model.save_pretrained(path)
    built.tokenizer.save_pretrained(path)
    plain = load_model(str(path), device="cpu")
    spread = load_model(str(path), device_map=json.dumps(MAPS[family]))
    return plain, spread


def test_layers_are_offloaded_and_computed_on_the_cpu(pair):
    _, vm = pair
    assert vm.device == torch.device("cpu")
    assert dispatch.is_offloaded(vm.weights.blocks[1]) and not dispatch.is_offloaded(vm.weights.blocks[0])
    w = vm.weights.W_O(1)
    assert w.device.type == "cpu" and torch.isfinite(w).all()
    # offloaded views are read when needed, not kept: no fp32 copy of the offloaded layers accumulates
    assert vm.weights.W_O(1) is not w and vm.weights.W_O(0) is vm.weights.W_O(0)


def test_dispatched_model_traces_exactly_like_the_undispatched_one(pair):
    plain, spread = pair
    a, b = trace(plain, PROMPT), trace(spread, PROMPT)
    assert a.values.keys() == b.values.keys()
    for name in a.values:
        torch.testing.assert_close(b[name], a[name], atol=1e-6, rtol=0, msg=name)
    check_decompositions(spread, PROMPT)


def test_dispatched_model_attributes_exactly_like_the_undispatched_one(pair):
    plain, spread = pair
    a, b = trace(plain, PROMPT), trace(spread, PROMPT)
    target = int(a["logits"][-1].argmax())
    torch.testing.assert_close(head_logprob_increase(b, target), head_logprob_increase(a, target), atol=1e-6, rtol=0)
    torch.testing.assert_close(ffn_neuron_logprob_increase_brute(b, target),
                               ffn_neuron_logprob_increase_brute(a, target), atol=1e-6, rtol=0)


def test_interventions_and_resumed_passes_on_offloaded_layers(pair):
    plain, spread = pair
    ids = plain.tokenizer(PROMPT, return_tensors="pt").input_ids
    head = zero("blocks.2.attn.hook_z", index=(1,))
    out = [run(vm, ids, read=["blocks.2.hook_attn_out"], write=[head]) for vm in pair]
    torch.testing.assert_close(out[1][0], out[0][0], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1][1]["blocks.2.hook_attn_out"], out[0][1]["blocks.2.hook_attn_out"],
                               atol=1e-6, rtol=0)
    names = [f"blocks.{l}.hook_resid_pre" for l in range(plain.dims.n_layers)]
    t = ids.shape[1] - 3
    delta = torch.randn(plain.dims.d_model, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        rec = record(spread, ids[0], rows=1, read=names)
        hidden = rec.read[names[1]][0, t:].clone()
        hidden[0] += delta
        resumed, _ = resume(spread, rec, t, [Join(1, hidden)])
        full, _ = run(plain, ids, write=[add(names[1], delta, positions=t)])
    torch.testing.assert_close(resumed[0], full[0, -1], atol=1e-5, rtol=0)


def test_options_are_parsed_or_refused_with_one_line(tmp_path):
    assert dispatch.parse_device_map(" Auto ") == "auto" and dispatch.parse_device_map("") is None
    assert dispatch.parse_device_map('{"a": "cuda:1", "b": "disk", "c": 0}') == {"a": 1, "b": "disk", "c": 0}
    file = tmp_path / "map.json"
    file.write_text('{"lm_head": "cpu"}')
    assert dispatch.parse_device_map(str(file)) == {"lm_head": "cpu"}
    assert dispatch.parse_max_memory("0=20GiB, cpu=1.5GiB,disk=100MB") == {0: 20 * 2**30, "cpu": int(1.5 * 2**30),
                                                                           "disk": 10**8}
    assert dispatch.parse_max_memory('{"cpu": "2GB"}') == {"cpu": 2 * 10**9}
    for bad in ("everywhere", '{"a": "tpu"}', "{not json"):
        with pytest.raises(VisitError):
            dispatch.parse_device_map(bad)
    for bad in ("cpu", "cpu=lots", "gpu7=1GiB"):
        with pytest.raises(VisitError):
            dispatch.parse_max_memory(bad)


@pytest.fixture(scope="module")
def empty_llama(tiny_factory):
    config = tiny_factory("llama").model.config
    return memory.empty_model(config, torch.float32)


def test_estimate_counts_the_parameters_and_the_trace(tiny_factory, empty_llama):
    vm = tiny_factory("llama")
    est = memory.estimate(empty_llama, vm.dims, torch.float32, 64)
    assert est.parameters == sum(p.numel() for p in vm.model.parameters())
    assert est.weights_bytes == 4 * est.parameters
    logits = 64 * vm.dims.d_vocab * 4
    assert logits < est.trace_bytes < 3 * logits  # the tiny model's trace is mostly its logits
    assert memory.estimate(empty_llama, vm.dims, torch.bfloat16, 64).weights_bytes == 2 * est.parameters


def test_plans_fill_the_budget_then_disk_or_refuse(empty_llama):
    total = sum(p.numel() for p in empty_llama.parameters()) * 4
    small = {"cpu": total // 2}
    with pytest.raises(VisitError, match="add disk=SIZE"):
        dispatch.plan_device_map(empty_llama, "auto", small, torch.float32, 1000)
    plan = dispatch.plan_device_map(empty_llama, "auto", {**small, "disk": 10 * total}, torch.float32, 1000)
    assert "disk" in plan.values()  # (accelerate keeps room for the largest layer, here the embedding)
    assert set(dispatch.plan_device_map(empty_llama, "auto", {"cpu": 2 * total}, torch.float32, 1000).values()) \
        == {"cpu"}
    with pytest.raises(VisitError, match="would go to disk"):
        dispatch.plan_device_map(empty_llama, "sequential", {**small, "disk": 1000}, torch.float32, 1000)
    with pytest.raises(VisitError, match="a trace needs"):
        dispatch.plan_device_map(empty_llama, "auto", {"cpu": 500, "disk": 10 * total}, torch.float32, 1000)
    with pytest.raises(VisitError, match="not a module"):
        dispatch.plan_device_map(empty_llama, {"model.nothing": "cpu"}, None, torch.float32, 1000)
    with pytest.raises(VisitError, match="without a device"):
        dispatch.plan_device_map(empty_llama, {"lm_head": "cpu"}, None, torch.float32, 1000)


def test_load_refuses_what_will_not_fit(pair, tmp_path):
    plain, _ = pair
    path = plain.model.name_or_path
    with pytest.raises(VisitError, match="will not fit on cpu"):
        load_model(path, device="cpu", max_memory="cpu=1MiB")
    with pytest.raises(VisitError, match="either --device or --device-map"):
        load_model(path, device="cpu", device_map="auto")


def test_cli_takes_the_device_map(pair, capsys, tmp_path):
    from visit.cli import main

    plain, spread = pair
    path = plain.model.name_or_path
    if plain.model.config.model_type == "llama":  # the options' path once; the graphs below on both families
        assert main(["trace", PROMPT, "--model", path, "--device-map", "auto",
                     "--max-memory", "cpu=1MiB,disk=1GiB"]) == 2
        assert "a trace needs" in capsys.readouterr().err
        assert main(["trace", PROMPT, "--model", path, "--device-map", "sequential",
                     "--max-memory", "cpu=60MiB,disk=1GiB"]) == 0
        assert "layer" in capsys.readouterr().out
    # the graph of the offloaded model (lens labels, attribution) is the undispatched one's
    graphs = []
    for extra in ([], ["--device-map", json.dumps(spread.model.hf_device_map)]):
        out = tmp_path / f"graph{len(graphs)}.json"
        assert main(["graph", PROMPT, "--model", path, "--json", str(out), *extra]) == 0
        graphs.append(json.loads(out.read_text())["nodes"])
    assert graphs[0] == graphs[1] and graphs[0]


def test_app_spreads_its_models_with_the_flags(monkeypatch, tiny_factory):
    import dash
    from test_access import load_app_module

    import visit.models

    app_main = load_app_module()
    calls, served = [], {}
    monkeypatch.setattr(visit.models, "load_model", lambda name, **kw: calls.append((name, kw)) or tiny_factory("gpt2"))
    import visit.serving.gunicorn

    monkeypatch.setattr(dash.Dash, "run", lambda self, **kw: served.update(app=self))
    # gunicorn itself is tested in tests/test_serving.py: here only the app it would serve is built
    monkeypatch.setattr(visit.serving.gunicorn, "serve", lambda build, host, port, **kw: served.update(app=build()) or 0)
    monkeypatch.setenv("VISIT_MAX_MEMORY", "cpu=8GiB,disk=50GiB")
    assert app_main.main(["--device-map", "auto"]) == 0
    served["app"].visit_registry.get("another")  # the model box loads with the server's setting
    spread = {"device_map": "auto", "max_memory": "cpu=8GiB,disk=50GiB"}
    assert calls == [("default", spread), ("another", spread)]
