"""The three analysis panels without a browser: their content and the background prompt-set studies."""

import pytest

from visit.pipeline import analyze
from visit.ui.panels import PANELS, load_panels
from visit.ui.panels import alignment as alignment_panel
from visit.ui.panels import layer_norm as layer_norm_panel
from visit.ui.panels import regularization as regularization_panel
from visit.ui.jobs import JobRunner
from visit.ui.panels.analysis_widgets import StudyCache, study_job, study_summary
from dash_helpers import grids, texts


@pytest.fixture(scope="module")
def analysis(tiny_factory):
    return analyze(tiny_factory("llama"), "The <b>capital</b> of France is")


def test_the_panels_are_registered():
    names = ("visit.ui.panels.layer_norm", "visit.ui.panels.alignment", "visit.ui.panels.regularization")
    assert set(names) <= set(PANELS)
    assert [p.TITLE for p in load_panels(names)] == ["Layer norm", "Alignment", "Regularization neurons"]


def test_layer_norm_panel_shows_each_norms_token_lists(analysis):
    rows = layer_norm_panel.filter_rows(analysis, "renorm")
    assert rows is layer_norm_panel.filter_rows(analysis, "renorm")  # computed once per trace
    table = layer_norm_panel.site_table(rows[0])
    shown = texts(table)
    assert rows[0].site.key in shown[0] and "rank" in shown[0]
    from visit.tokens import display_token

    cells = [v for row in grids(table)[0].rowData for v in row.values()]
    assert display_token(rows[0].gained[0]["token"]) in cells
    assert display_token(rows[0].control_lost[0]["token"]) in cells


def test_alignment_panel_ranks_heads_by_norm(analysis):
    res = alignment_panel.alignment_of(analysis)
    table = alignment_panel.heads_table(analysis, res, 1)
    grid = grids(table)[0]
    assert len(grid.rowData) == analysis.trace.vm.dims.n_heads
    assert grid.rowData[0]["1"] == f"L1.H{int(res.head_norms[1].argmax())}"
    assert [c["filter"] for c in grid.columnDefs[:3]] == ["agNumberColumnFilter", "agTextColumnFilter",
                                                         "agNumberColumnFilter"]  # numbers sort as numbers


def test_background_study_runs_renders_and_is_reused(analysis):
    runner, cache = JobRunner(), StudyCache()
    vm = analysis.trace.vm
    studies = ("ln", "alignment", "regularization")
    job = runner.wait(runner.submit("s1", "study", study_job(vm, studies, 2, False, cache=cache)), timeout=240)
    assert job.status == "done" and job.result.n_kept == 2 and (job.done, job.total) == (2, 2)
    assert "2 of 2 prompts" in study_summary(job.result)
    # another session asking for the same study gets the finished one at once
    again = runner.wait(runner.submit("s2", "study", study_job(vm, studies, 2, False, cache=cache)), timeout=10)
    assert again.result is job.result and "already studied" in again.note
    for render in (lambda r: layer_norm_panel.sections_component(
                       layer_norm_panel.figures.ln_study_figures(r.results["ln"])),
                   lambda r: alignment_panel.sections_component(
                       alignment_panel.figures.alignment_study_figures(r.results["alignment"])),
                   regularization_panel.render):
        assert render(job.result)
    here = regularization_panel.activity_here(analysis, job.result.results["regularization"])
    neurons = job.result.results["regularization"]["neurons"]
    assert len(neurons) > 30  # tiny model: top 100 of 96 neurons, every neuron passes
    grid = grids(here)[0]  # a long table is paged
    assert len(grid.rowData) == len(neurons) and grid.rowData[0]["0"] == neurons[0]["node_id"]
    assert grid.dashGridOptions["pagination"]


def test_a_study_with_no_correct_answer_reports_it(analysis):
    runner = JobRunner()
    job = runner.submit("s", "study", study_job(analysis.trace.vm, ("regularization",), 1, True, cache=StudyCache()))
    assert runner.wait(job, timeout=120).status == "error"
    assert "none of the 1 prompts" in job.error


def test_the_study_panel_runs_its_study_as_the_sessions_job(tiny_factory, analysis):
    """The regularization panel through the app: start checks its inputs, the job's result is the
    session's, and the flag button uses it."""
    from visit.ui import create_app
    from visit.ui.panels.analysis_widgets import study_kind

    app = create_app(model=analysis.trace.vm, panels=["visit.ui.panels.regularization"])
    ctx = app.visit_context
    widget = regularization_panel.register_study_callbacks(app, "regtest", ("regularization",), ctx,
                                                           regularization_panel.render)
    assert "trace a prompt" in texts(widget.start("s1", (2, []))["status"])[0]
    ctx.state("s1").analysis = analysis
    assert "at least 1" in texts(widget.start("s1", (0, []))["status"])[0]
    out = widget.start("s1", (2, []))
    app.visit_jobs.wait(app.visit_jobs.job("s1"), timeout=240)
    out = widget.poll("s1", out["seen"])
    assert "2 of 2 prompts" in out["status"] and out["poll_off"] and widget.draw("s1", out["seen"])
    assert ctx.jobs.result("s1", study_kind("regtest")).n_kept == 2
    assert ctx.jobs.result("s2", study_kind("regtest")) is None  # results belong to their session


def test_the_flow_graph_report_has_the_analyses_sections(analysis):
    from visit.pipeline import export_html

    page = export_html(analysis)
    for title in ("Layer norm as a filter", "Semantic alignment (sim_k)"):
        assert f"<h2>{title}</h2>" in page
    assert "(failed)</h2>" not in page and "<b>capital" not in page
