"""The editing panel without a browser: input checks, the edit job (probabilities and graph difference before and
after), sessions isolated while both trace at the same time, revert, and the report section (escaped)."""

from __future__ import annotations

import threading

import pytest
import torch

from visit.errors import VisitError

PROMPT = "The capital of <b>France</b> is"


@pytest.fixture(scope="module")
def app_and_analysis(tiny_factory):
    from visit.pipeline import analyze
    from visit.ui import create_app

    app = create_app(model=tiny_factory("llama", seed=3), panels=["visit.ui.panels.details",
                                                                  "visit.ui.panels.causal_trace",
                                                                  "visit.ui.panels.editing"])
    return app, analyze(app.visit_registry.get(), PROMPT)


def test_inputs_are_checked_before_any_work(app_and_analysis):
    from visit.ui.panels.editing import start

    app, analysis = app_and_analysis
    ctx = app.visit_context
    good = ("The capital of {} is", "<b>France</b>", "", " Rome", "kn", "", "averaged", "", "")
    with pytest.raises(VisitError, match="trace a prompt first"):
        start(ctx, "nobody", good)
    ctx.state("checks").analysis = analysis
    for values, message in [
            (("The capital is", "Spain", "", " Rome", "kn", "", "averaged", "", ""), "no {}"),
            ((*good[:4], "nope", *good[5:]), "unknown editing method"),
            ((*good[:5], "two", *good[6:]), "whole number"),
            ((*good[:3], " " + analysis.target.token.strip(), *good[4:]), "same"),
            ((*good[:7], "x" * 5000, ""), "too long"),
            ((*good[:8], "The capital of {} is | Italy | Paris\nonly | two"), "more facts, line 2"),
            ((*good[:8], "The capital of {} is | Italy | Paris | Paris"), "more facts, line 1: .*same")]:
        with pytest.raises(VisitError, match=message):
            start(ctx, "checks", values)
    assert not len(ctx.state("checks").edits)


def logits(vm, prompt=PROMPT):
    from visit.hooks import run
    from visit.tracer import encode_prompt

    out, _ = run(vm, encode_prompt(vm, prompt), logits_to_keep=1)
    return out[0, -1]


def test_an_edit_changes_only_its_session_also_while_both_trace(app_and_analysis):
    from visit.report import render_report
    from visit.ui.panels.editing import KIND, edit_list, render, start

    app, analysis = app_and_analysis
    ctx, vm = app.visit_context, analysis.vm
    at_rest = logits(vm)
    ctx.state("a").analysis = analysis
    values = ("The capital of {} is", "<b>France</b>", "", " Rome", "kn", "", "averaged", "Paris is in\n\n<i>x</i>",
              "")
    job = ctx.jobs.wait(ctx.jobs.submit("a", KIND, start(ctx, "a", values)), 300)
    assert job.status == "done", job.error
    result = ctx.jobs.result("a", KIND)
    [edit] = ctx.state("a").edits
    assert [r["prompt"] for r in result["rows"]] == [PROMPT, "Paris is in", "<i>x</i>"]
    row = result["rows"][0]
    assert set(row["before"]["objects"]) == {"Rome", analysis.target.token.strip()}
    assert row["after"]["objects"]["Rome"] != pytest.approx(row["before"]["objects"]["Rome"], rel=1e-6)
    assert result["diff"]["top_changed"] and edit.info["difference"]["top_changed"]
    assert render(result, True) is not None and "revert" in str(edit_list(ctx.state("a")))
    from visit.generation.generate import generate
    from visit.ui.panels.editing import SPEAK_TOKENS

    spoken = result["spoken"]  # what the model says after each prompt, before and after the edit
    assert [r["prompt"] for r in spoken] == [r["prompt"] for r in result["rows"]]
    assert spoken[0]["before"].ids == generate(vm, PROMPT, SPEAK_TOKENS).ids
    with ctx.using("a"):
        assert spoken[0]["after"].ids == generate(vm, PROMPT, SPEAK_TOKENS).ids
    assert torch.equal(logits(vm), at_rest)  # the weights at rest never changed

    seen = {"a": [], "b": []}

    def work(session):
        with ctx.using(session):
            for _ in range(8):
                seen[session].append(logits(vm))

    threads = [threading.Thread(target=work, args=(s,)) for s in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with ctx.state("a").edits.applied(vm):
        edited = logits(vm)
    assert not torch.allclose(edited, at_rest)
    assert all(torch.equal(x, edited) for x in seen["a"]) and all(torch.equal(x, at_rest) for x in seen["b"])

    with ctx.using("a"):  # the session's graph after the edit: the report lists the edit, escaped
        after = ctx.analyze(vm, PROMPT)
    page = render_report(after)
    assert "Knowledge edits" in page and "&lt;b&gt;France&lt;/b&gt;" in page and "<b>France</b>" not in page
    assert "Difference graph of edit" in page
    assert "Knowledge edits" not in render_report(analysis)
    from visit.ui.callbacks import present  # the main graph says it is on edited weights, with the edit's label

    shown = str(present(after, vm, 1)["message"])
    assert "Edited weights" in shown and edit.label() in shown
    assert "Edited weights" not in str(present(analysis, vm, 1)["message"])

    ctx.state("a").show_unedited = True  # "show the graph before the edits"
    with ctx.using("a"):
        assert torch.equal(logits(vm), at_rest)
    ctx.state("a").show_unedited = False
    ctx.state("a").edits.revert(edit.id)
    with ctx.using("a"):
        assert torch.equal(logits(vm), at_rest)


def test_counterfact_evaluation_from_the_panel(app_and_analysis):
    from visit.ui.panels.editing import EVAL_KIND, render_eval, start_eval

    app, analysis = app_and_analysis
    ctx, vm = app.visit_context, analysis.vm
    for values, message in [(("kn", "", "averaged", 0), "between 1 and"), (("kn", "", "averaged", "x"), "whole"),
                            (("nope", "", "averaged", 1), "unknown editing method")]:
        with pytest.raises(VisitError, match=message):
            start_eval(ctx, "e", values)
    at_rest = logits(vm)
    job = ctx.jobs.wait(ctx.jobs.submit("e", EVAL_KIND, start_eval(ctx, "e", ("kn", "1", "averaged", 1))), 300)
    assert job.status == "done", job.error
    result = ctx.jobs.result("e", EVAL_KIND)
    assert result["n"] == 1 and result["method"] == "kn" and set(result["metrics"]) >= {"S", "ES", "PS", "NS"}
    assert result["records"][0]["layer"] == 1 and job.done == job.total == 1
    assert "unedited" in str(render_eval(result, True))
    assert torch.equal(logits(vm), at_rest)  # every record restored


def test_the_objects_table_aligns_before_and_after_and_colours_the_change():
    from visit.report.editing import percent
    from visit.ui.panels.editing import _objects_table

    row = {"prompt": "The capital of France is",
           "before": {"objects": {" Paris": 0.7, " Rome": 0.01}, "top": [{"token": " Paris"}]},
           "after": {"objects": {" Paris": 0.1, " Rome": 0.6}, "top": [{"token": " Rome"}]}}
    table = _objects_table([row])
    cells = table.children[1].children[1:3]  # P( Paris), P( Rome)
    for cell, obj, change in zip(cells, (" Paris", " Rome"), ("change-down", "change-up")):
        before, _, after = cell.children
        assert before.children == percent(row["before"]["objects"][obj]) and "num" in before.className
        assert after.children == percent(row["after"]["objects"][obj]) and change in after.className
