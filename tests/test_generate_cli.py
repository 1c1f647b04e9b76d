"""``visit generate``: the JSON schema holds what the library generated, steering prints both continuations, bad
input gives one line and exit status 2 with the weights untouched."""

import json

import pytest
import torch

from visit.cli import main
from visit.generation.generate import generate
from visit.generation.steer import steering

PROMPT = "The Eiffel Tower is in the city of"


@pytest.fixture(scope="module")
def vm(tiny_factory):
    return tiny_factory("gpt2")


@pytest.fixture
def cli_model(vm, monkeypatch):
    monkeypatch.setattr("visit.cli.generate_cmd.load_from_args", lambda args: vm)
    return vm


def test_json_holds_the_generation(cli_model, tmp_path, capsys):
    out = tmp_path / "g.json"
    assert main(["generate", PROMPT, "--max-new-tokens", "4", "--json", str(out)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    expected = generate(cli_model, PROMPT, 4)
    assert data["prompt"] == PROMPT and data["text"] == expected.text
    assert [t["id"] for t in data["tokens"]] == expected.ids
    assert data["tokens"][0]["p"] == pytest.approx(expected.tokens[0].p)
    assert len(data["tokens"][0]["top"]) == 5 and set(data["tokens"][0]["top"][0]) == {"token", "id", "p"}
    assert PROMPT + expected.text in capsys.readouterr().out


def test_steer_prints_original_and_steered(cli_model, tmp_path, capsys):
    out = tmp_path / "s.json"
    spec = "L2.resid_pre += 30 * dir(\" Paris\")"
    assert main(["generate", PROMPT, "--max-new-tokens", "3", "--steer", spec, "--json", str(out)]) == 0
    text = capsys.readouterr().out
    ids = cli_model.tokenizer(PROMPT).input_ids
    steered = generate(cli_model, PROMPT, 3, writes=steering(cli_model, [spec], ids).writes)
    original = generate(cli_model, PROMPT, 3)
    assert f"original: {PROMPT}{original.text}" in text and f"{PROMPT}{steered.text}" in text
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["steer"] == [spec] and data["text"] == steered.text and data["original"]["text"] == original.text


@pytest.mark.parametrize("argv, message", [
    (["--steer", "Paris"], "names no node"),
    (["--steer", "L7.H0=0"], "out of range"),
    (["--steer", "L1.H9=0"], "out of range"),
    (["--steer", "L1.N5=xnan"], "finite"),
    (["--steer", "L1.resid_pre=x1e39"], "NaN or infinite"),
    (["--max-new-tokens", "65"], "VISIT_MAX_NEW_TOKENS"),
    (["--top-p", "0"], "top-p"),
])
def test_bad_input_exits_2_with_one_line(cli_model, capsys, argv, message):
    before = {k: v.clone() for k, v in cli_model.model.state_dict().items()}
    assert main(["generate", PROMPT, "--max-new-tokens", "2", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert all(torch.equal(v, before[k]) for k, v in cli_model.model.state_dict().items())
