"""CounterFact: the records' format, teacher-forced object scores, the metrics as defined, and an evaluation that
restores the weights after every record."""

import json
import math

import pytest
import torch

from visit.editing.counterfact import (Record, default_records_path, evaluate, format_table, load_records,
                                       object_nll, record_metrics, summarise)
from visit.editing.request import object_ids
from visit.errors import VisitError
from visit.hooks import run

OFFICIAL = {"case_id": 0,
            "requested_rewrite": {"prompt": "The mother tongue of {} is", "relation_id": "P103",
                                  "subject": "Danielle Darrieux", "target_new": {"str": "English", "id": "Q1860"},
                                  "target_true": {"str": "French", "id": "Q150"}},
            "paraphrase_prompts": ["Danielle Darrieux, a native", "Danielle Darrieux spoke the language"],
            "neighborhood_prompts": ["The mother tongue of Léon Blum is", "The native language of Montesquieu is"],
            "attribute_prompts": ["J. R. R. Tolkien is a native speaker of"],
            "generation_prompts": ["Danielle Darrieux's mother tongue is"]}


def test_official_format_and_shipped_records_load(tmp_path):
    path = tmp_path / "counterfact.json"
    path.write_text(json.dumps([OFFICIAL]), encoding="utf-8")
    (rec,) = load_records(path)
    assert rec.request.prompt == "The mother tongue of Danielle Darrieux is"
    assert rec.request.new == "English" and rec.request.old == "French" and len(rec.neighbours) == 2
    shipped = load_records(default_records_path())
    assert 18 <= len(shipped) <= 30 and all(r.paraphrases and len(r.neighbours) >= 2 for r in shipped)
    assert len(load_records(None, limit=3)) == 3


def test_bad_records_say_why(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"requested_rewrite": {"prompt": "no placeholder", "subject": "x",
                                                      "target_new": {"str": "a"}, "target_true": {"str": "b"}}}]))
    with pytest.raises(VisitError, match="exactly one"):
        load_records(bad)
    bad.write_text("[{}]")
    with pytest.raises(VisitError, match="format"):
        load_records(bad)
    with pytest.raises(VisitError, match="not found"):
        load_records(tmp_path / "missing.json")


def test_object_nll_is_the_teacher_forced_mean_token_nll(tiny_factory):
    vm = tiny_factory("llama")
    prompts = ["The capital of France is", "Hello"]
    objects = ["Paris", "New York City"]
    got = object_nll(vm, prompts, objects)
    for i, p in enumerate(prompts):
        for j, o in enumerate(objects):
            ids = vm.tokenizer(p).input_ids
            obj = object_ids(vm.tokenizer, o)
            logits, _ = run(vm, torch.tensor([ids + obj]))
            lp = logits[0].float().log_softmax(-1)
            want = -sum(float(lp[len(ids) - 1 + k, t]) for k, t in enumerate(obj)) / len(obj)
            assert abs(float(got[i, j]) - want) < 1e-4


def test_metrics_as_defined():
    # NLLs [new, true]: rewrite new wins; paraphrases 1 of 2; neighbours keep true in 1 of 2
    scores = {"rewrite": [[0.1, 2.0]], "paraphrase": [[0.5, 1.0], [3.0, 1.0]],
              "neighbourhood": [[2.0, 0.2], [0.3, 0.4]]}
    m = record_metrics(scores)
    assert m["ES"] == 1.0 and m["PS"] == 0.5 and m["NS"] == 0.5
    assert m["EM"] == pytest.approx(math.exp(-0.1) - math.exp(-2.0))
    assert m["PM"] == pytest.approx(((math.exp(-0.5) - math.exp(-1)) + (math.exp(-3) - math.exp(-1))) / 2)
    assert m["NM"] == pytest.approx(((math.exp(-0.2) - math.exp(-2)) + (math.exp(-0.4) - math.exp(-0.3))) / 2)
    other = record_metrics({"rewrite": [[2.0, 0.1]], "paraphrase": [[2.0, 1.0]], "neighbourhood": [[2.0, 0.2]]})
    metrics, ci = summarise([m, other])
    assert metrics["ES"] == 50.0 and metrics["PS"] == 25.0 and metrics["NS"] == 75.0
    assert metrics["S"] == pytest.approx(3 / (1 / 50 + 1 / 25 + 1 / 75))
    assert ci["ES"] == pytest.approx(1.96 * 70.71067811865476 / math.sqrt(2))
    table = format_table([("unedited", metrics, ci)])
    assert "ES" in table and "50.0 (98.0)" in table


def test_evaluation_restores_the_weights_after_every_record(tiny_factory):
    from visit.editing.edit import EDITORS, Edit, mlp_out_param, register

    vm = tiny_factory("gpt2")
    original = {n: p.detach().clone() for n, p in vm.model.named_parameters()}
    seen = []

    def fake(vm, request, layer=None, progress=None):
        seen.append(all(torch.equal(original[n], p) for n, p in vm.model.named_parameters()))
        name = mlp_out_param(vm, 1)
        shape = dict(vm.model.named_parameters())[name].shape
        return Edit("fake", request, 1, {name: torch.randn(shape, generator=torch.Generator().manual_seed(0))})

    register("fake-test")(fake)
    try:
        recs = [Record.from_json(OFFICIAL), Record.from_json({**OFFICIAL, "case_id": 1})]
        result = evaluate(vm, recs, "fake-test")
    finally:
        EDITORS.pop("fake-test")
    assert seen == [True, True]  # each record edited from the unedited model
    assert all(torch.equal(original[n], p) for n, p in vm.model.named_parameters())
    assert result.n == 2 and result.layer == 1 and set(result.metrics) == {"S", "ES", "EM", "PS", "PM", "NS", "NM"}
    assert result.records[0]["scores"] != result.records[0]["unedited_scores"]  # the edit was applied
    data = result.to_json()
    assert data["method"] == "fake-test" and len(data["records"]) == 2
