"""Prompt-set studies, their reports and the ``visit study`` command."""

import json
import subprocess
import sys

import pytest

from visit.analyses.study import run_study
from visit.cli import main
from visit.errors import VisitError
from visit.prompts import PromptCase
from visit.report.analyses import report_sections, study_html
from visit.tokens import token_string
from visit.tracer import trace

PROMPTS = ["The capital of France is", "Tom <b>Brady</b> plays", "A cat sat on the"]


@pytest.fixture(scope="module")
def gpt2(tiny_factory):
    return tiny_factory("gpt2", seed=5)


def _cases_half_right(vm):
    """Two prompts with the model's own top token as the target, then one with a wrong target.

    Only prompts whose top token has a leading space qualify: a typed target means the next word.
    """
    right = []
    for prompt in PROMPTS + [f"{w} is a word" for w in ("Tree", "Sky", "River", "Stone", "Cloud", "Bird")]:
        top = int(trace(vm, prompt)["logits"][-1].argmax())
        text = token_string(vm.tokenizer, top)
        if text.startswith(" ") and text.strip() and len(right) < 2:
            right.append(PromptCase(prompt, text, "r"))
    assert len(right) == 2
    return right + [PromptCase("Tom <b>Brady</b> plays", " zzqqzz", "r")]


@pytest.fixture(scope="module")
def study(gpt2):
    progress = []
    result = run_study(gpt2, _cases_half_right(gpt2), ["ln", "alignment", "regularization"], progress=False,
                       options={"regularization": {"top_n": 5}}, on_progress=lambda d, n: progress.append((d, n)))
    return result, progress


def test_study_keeps_only_correct_prompts_and_reports_how_many(gpt2, study):
    result, progress = study
    assert (result.n_prompts, result.n_correct, result.n_kept) == (3, 2, 2)
    assert [c.kept for c in result.cases] == [True, True, False]
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert "2 of 3 prompts" in result.summary()
    ln, al, reg = (result.results[n] for n in ("ln", "alignment", "regularization"))
    assert ln["n_prompts"] == al["n_prompts"] == reg["n_prompts"] == 2
    n_layers = gpt2.dims.n_layers
    assert len(ln["sites"]) == 2 * n_layers + 1 and set(ln["by_mode"]) == {"renorm", "raw"}
    assert len(al["heads_vs"]["attn"]) == n_layers and all(0 <= v <= 1 for v in al["heads_vs"]["final"])
    assert len(reg["per_layer_count"]) == n_layers
    # the target statistics: the final norm's output is the model's answer, rank 1 on kept prompts
    assert ln["target"]["median_rank_after"][-1] == 1
    json.dumps(result.as_dict())  # JSON-able

    everything = run_study(gpt2, result_cases(result), ["regularization"], keep_correct=False, progress=False)
    assert everything.n_kept == 3


def result_cases(result):
    return [PromptCase(c.prompt, c.target, c.relation) for c in result.cases]


def test_study_html_is_offline_and_escaped(study):
    page = study_html(study[0])
    assert page.count("window.PlotlyConfig") == 1  # plotly.js inlined once
    assert '<script src="http' not in page
    assert "<b>Brady</b>" not in page and "&lt;b&gt;Brady&lt;/b&gt;" in page


def test_study_with_no_correct_prompt_says_so(gpt2):
    cases = [PromptCase("Tom <b>Brady</b> plays", " zzqqzz")]
    with pytest.raises(VisitError, match="none of the 1 prompts"):
        run_study(gpt2, cases, ["ln"], progress=False)


def test_report_sections_for_an_analysis(gpt2):
    from types import SimpleNamespace

    from visit.tokens import resolve_target

    tr = trace(gpt2, PROMPTS[0])
    analysis = SimpleNamespace(trace=tr, target=resolve_target(gpt2.tokenizer, " Paris"),
                               settings=SimpleNamespace(flagged_neurons={(1, 4): "regularization"}))
    sections = report_sections(analysis)
    titles = [s.title for s in sections]
    assert titles == ["Layer norm as a filter", "Semantic alignment (sim_k)", "Flagged neurons"]
    assert sections[0].figure is not None and "L1.N4" in sections[2].html


def test_cli_study_writes_json_and_html(tmp_path, gpt2, capsys):
    model_dir = tmp_path / "model"
    gpt2.model.save_pretrained(model_dir)
    gpt2.tokenizer.save_pretrained(model_dir)
    prompts = tmp_path / "p.tsv"
    prompts.write_text("".join(f"{p}\t x\n" for p in PROMPTS[:2]), encoding="utf-8")
    out_json, out_html = tmp_path / "s.json", tmp_path / "s.html"
    rc = main(["study", "alignment", "regularization", "--prompts", str(prompts), "--model", str(model_dir), "--all",
               "--top-n", "5", "--k", "10", "--quiet", "--json", str(out_json), "--html", str(out_html)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "2 of 2 prompts kept" in out and "regularization neurons" in out
    data = json.loads(out_json.read_text())
    assert data["n_kept"] == 2 and data["results"]["alignment"]["k"] == 10
    assert out_html.read_text().startswith("<!DOCTYPE html>")


def test_cli_study_bad_prompt_file_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("no tab here\n", encoding="utf-8")
    assert main(["study", "ln", "--prompts", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.tsv:1" in err and "Traceback" not in err


@pytest.mark.slow
def test_study_cli_on_default_model(tmp_path):
    out_json = tmp_path / "s.json"
    proc = subprocess.run([sys.executable, "-m", "visit", "study", "ln", "alignment", "regularization",
                           "--limit", "3", "--quiet", "--json", str(out_json)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out_json.read_text())
    assert data["n_prompts"] == 3 and 1 <= data["n_kept"] <= 3
    assert data["results"]["regularization"]["n_prompts"] == data["n_kept"]
    assert "layer norm filter" in proc.stdout
