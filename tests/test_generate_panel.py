"""The Generate panel without a browser: input checks, the streamed generation job, a click on a generated token
(prompt + continuation traced at its position), steering the pinned nodes (both continuations, differing tokens
marked, the graph diff) and the report sections (escaped)."""

from __future__ import annotations

import pytest
import torch

from dash_helpers import texts
from visit.errors import VisitError
from dash import no_update

from visit.generation.generate import GeneratedToken, Generation, generate
from visit.generation.steer import differing, steering
from visit.graph.groups import Curation

PROMPT = "The Eiffel Tower is in the city of <b>x</b>"
GEN = (5, 0, 1, 0)  # tokens, temperature, top-p, seed
PUSH = "L2.resid_pre += 30 * dir(\" Paris\")"


@pytest.fixture(scope="module")
def app_and_analysis(tiny_factory):
    from visit.pipeline import analyze
    from visit.ui import create_app

    app = create_app(model=tiny_factory("gpt2", seed=5), panels=["visit.ui.panels.details",
                                                                 "visit.ui.panels.generate"])
    return app, analyze(app.visit_registry.get(), PROMPT)


def test_registered_and_inputs_checked_before_any_work(app_and_analysis, monkeypatch):
    from visit.ui import ids
    from visit.ui.panels.generate import start, start_steer

    app, analysis = app_and_analysis
    ctx = app.visit_context
    assert any(ids.URL_TRACE in str(key) and ids.PROMPT in str(key) for key in app.callback_map)
    with pytest.raises(VisitError, match="trace a prompt first"):
        start(ctx, "nobody", GEN)
    ctx.state("checks").analysis = analysis
    monkeypatch.setenv("VISIT_MAX_NEW_TOKENS", "8")
    for values, message in [((9, 0, 1, 0), "at most 8"), (("two", 0, 1, 0), "whole number"),
                            ((5, -1, 1, 0), "at least 0"), ((5, 0, 1.5, 0), "top-p"), ((5, "hot", 1, 0), "number")]:
        with pytest.raises(VisitError, match=message):
            start(ctx, "checks", values)
    with pytest.raises(VisitError, match="pin a head"):
        start_steer(ctx, "checks", ("zero", None, "all", "", *GEN))
    for spec, message in [("L1.H99=0", "out of range"), ("hello", "names no node"), ("L1.N1=xinf", "finite")]:
        with pytest.raises(VisitError, match=message):
            start_steer(ctx, "checks", ("zero", None, "all", spec, *GEN))


@pytest.fixture(scope="module")
def generated(app_and_analysis):
    """Session "g" generated 5 tokens after the traced prompt through the panel's job: ``(job, generation)``."""
    from visit.ui.panels.generate import KIND, start

    app, analysis = app_and_analysis
    ctx = app.visit_context
    ctx.state("g").analysis = analysis
    job = ctx.jobs.wait(ctx.jobs.submit("g", KIND, start(ctx, "g", GEN)), 120)
    assert job.status == "done", job.error
    return job, ctx.jobs.result("g", KIND)


def test_generation_streams_renders_and_reports(app_and_analysis, generated):
    from visit.report import render_report
    from visit.ui.panels.generate import TOKEN, render

    app, analysis = app_and_analysis
    job, gen = generated
    assert gen.ids == generate(analysis.vm, PROMPT, 5).ids and job.partial_count == 5
    assert analysis.extras["generation"] is gen
    drawn = render(gen, True)
    spans = [c for c in drawn.children if getattr(c, "id", None)]
    assert [s.id for s in spans] == [{"type": TOKEN, "index": i} for i in range(5)]
    assert spans[0].title.startswith(f"p = {gen.tokens[0].p:.4f}; top 5: ")
    assert PROMPT in texts(drawn)
    page = render_report(analysis)
    assert "Generation" in page and "<b>x</b>" not in page and "&lt;b&gt;x" in page


def test_clicking_a_generated_token_traces_it_in_prompt_plus_continuation(app_and_analysis, generated):
    from visit.pipeline import analyze
    from visit.ui.panels.generate import clicked_view, token_click

    app, analysis = app_and_analysis
    ctx, gen = app.visit_context, generated[1]
    text, position, target, go = token_click(ctx, "g", 2)
    assert text == PROMPT + gen.text and target == "" and go["generated"] == 2
    clicked = analyze(analysis.vm, text, None, position)
    end = len(PROMPT + analysis.vm.tokenizer.decode(gen.ids[:3]))  # the clicked token's last character ...
    start, stop = analysis.vm.tokenizer(text, return_offsets_mapping=True)["offset_mapping"][position]
    assert start < end <= stop and clicked.trace.position == position  # ... is in the traced token (the random
    # model's text re-encodes to other tokens)
    words = Generation(PROMPT, gen.prompt_ids, [GeneratedToken(w, i, 0.5) for w, i in zip(
        [" Paris", " is", " big"], analysis.vm.tokenizer(" Paris is big", add_special_tokens=False).input_ids)])
    text, position = clicked_view(words, 1, analysis.vm.tokenizer)  # ... a text that re-encodes alike: exact
    assert text == PROMPT + " Paris is big" and position == len(gen.prompt_ids) + 1
    assert token_click(ctx, "g", 99)[0] is no_update and token_click(ctx, "nobody", 0)[0] is no_update


def test_steering_the_pinned_nodes_shows_both_continuations_and_the_graph_diff(app_and_analysis):
    from visit.report import render_report
    from visit.ui.panels.generate import STEER_KIND, render_steer, start_steer

    app, analysis = app_and_analysis
    ctx, vm = app.visit_context, analysis.vm
    weights = {k: v.clone() for k, v in vm.model.state_dict().items()}
    state = ctx.state("st")
    state.analysis = analysis
    state.curation = Curation(pins=("L1.H2", "L2.mlp_out", "L0.ln1"))
    job = ctx.jobs.wait(ctx.jobs.submit("st", STEER_KIND, start_steer(ctx, "st", ("scale", 0.5, "gen", PUSH,
                                                                                   *GEN))), 300)
    assert job.status == "done", job.error
    result = ctx.jobs.result("st", STEER_KIND)
    assert result["specs"] == ["L1.H2=x0.5 @ gen", "L2.mlp_out=x0.5 @ gen", PUSH]  # L0.ln1 cannot be steered
    ids = vm.tokenizer(PROMPT).input_ids
    expected = generate(vm, PROMPT, 5, writes=steering(vm, result["specs"], ids).writes)
    assert result["original"].ids == generate(vm, PROMPT, 5).ids and result["steered"].ids == expected.ids
    marks = differing(result["original"].ids, result["steered"].ids)
    assert any(marks)
    drawn = render_steer(result, True)
    steered_side = drawn.children[0].children[1].children[1]
    assert [("gen-diff" in s.className) for s in steered_side.children] == marks
    assert result["diff"]["top_changed"] and analysis.extras["steering"] is result
    assert all(torch.equal(v, weights[k]) for k, v in vm.model.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in vm.model.modules())
    page = render_report(analysis)
    assert "Steering" in page and "gen-diff" in page and "<b>x</b>" not in page
