"""Edits speak: continuations before and after an edit (library, ``visit edit --generate``) and GE in
``visit edit-eval --fluency``."""

import json

import pytest
import torch

from visit.cli import main
from visit.editing.counterfact import load_records
from visit.generation.edits import continuations
from visit.generation.fluency import generation_entropy, record_prompts, records_fluency
from visit.generation.generate import generate
from visit.hooks.params import weights_changed
from visit.models.overlay import NONE, Overlay

PROMPTS = ["The capital of France is", "Paris is the capital of"]


@pytest.fixture(scope="module")
def vm(tiny_factory):
    return tiny_factory("gpt2")


def test_continuations_before_and_after_are_those_of_each_weights(vm):
    name = "transformer.h.1.mlp.c_proj.weight"
    delta = {name: torch.randn_like(dict(vm.model.named_parameters())[name]) * 2}
    rows = continuations(vm, PROMPTS, NONE, Overlay(("speak-test",), (delta,)), 4)
    with weights_changed(vm, delta):
        edited = [generate(vm, p, 4).ids for p in PROMPTS]
    assert [r["before"].ids for r in rows] == [generate(vm, p, 4).ids for p in PROMPTS]
    assert [r["after"].ids for r in rows] == edited
    assert any(r["before"].ids != r["after"].ids for r in rows)


def test_records_fluency_is_the_ge_of_the_greedy_continuations(vm):
    records = load_records(None, 1)
    prompts = record_prompts(records[0])
    assert prompts[0] == records[0].request.prompt  # the shipped records have no generation prompts
    texts = [generate(vm, p, 4).text for p in prompts]
    assert records_fluency(vm, records, 4) == pytest.approx(generation_entropy(texts))


def test_edit_generate_cli(vm, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("visit.cli.edit_cmd.load_from_args", lambda args: vm)
    out = tmp_path / "e.json"
    before = {k: v.clone() for k, v in vm.model.state_dict().items()}
    assert main(["edit", "The capital of {} is", "--subject", "France", "--new", "Rome", "--old", "Paris",
                 "--method", "kn", "--prompts", "Paris is the capital of", "--generate", "3",
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    rows = data["continuations"]
    assert [r["prompt"] for r in rows] == ["The capital of France is", "Paris is the capital of"]
    assert rows[0]["before"]["text"] == generate(vm, "The capital of France is", 3).text
    assert all(len(r["after"]["tokens"]) == 3 for r in rows)
    assert f"before: {rows[0]['before']['text']!r}" in capsys.readouterr().out
    assert all(torch.equal(v, before[k]) for k, v in vm.model.state_dict().items())
    assert main(["edit", "The capital of {} is", "--subject", "France", "--new", "Rome", "--generate", "999"]) == 2
    assert "VISIT_MAX_NEW_TOKENS" in capsys.readouterr().err


def test_edit_eval_fluency_cli(vm, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("visit.cli.edit_eval_cmd.load_from_args", lambda args: vm)
    out = tmp_path / "ev.json"
    assert main(["edit-eval", "--method", "kn", "--limit", "1", "--fluency", "3", "--json", str(out)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    record = load_records(None, 1)[0]
    assert data["unedited"]["GE"] == pytest.approx(records_fluency(vm, [record], 3))
    assert data["records"][0]["unedited"]["GE"] == data["unedited"]["GE"]
    assert data["metrics"]["GE"] is not None and "fluency GE" in capsys.readouterr().out
