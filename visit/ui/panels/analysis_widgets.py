"""Shared pieces of the three analysis panels: tables, figures and prompt-set studies run as jobs.

A study runs as the session's job (:mod:`visit.ui.jobs`, drawn by :mod:`visit.ui.panels.job_widget`):
progress per prompt, cancellable. Its result depends only on the model (and its weights' version) and
the shipped prompt set, so finished studies are also cached and shared by every session; the model is
only read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
from dash import State, dcc, html

from visit import limits
from visit.analyses.study import run_study
from visit.errors import VisitError
from visit.prompts import default_prompt_file, load_prompt_file
from visit.render.analyses import Table
from visit.ui.charts import PANEL_GRAPH_CONFIG
from visit.ui.grid import column, data_grid
from visit.ui.panels.job_widget import job_controls, register_job_callbacks


def table_component(table: Table, class_name: str = "analysis-table", grid_id=None):
    """A :class:`Table` as a data grid (:mod:`visit.ui.grid`: sorting, filtering, paging; every cell text).
    Columns of numbers stay numbers (floats shown as ``.3g``, as the report does); the caption goes above."""
    fields = [str(i) for i in range(len(table.headers))]
    columns = []
    for i, (field, header) in enumerate(zip(fields, table.headers)):
        values = [row[i] for row in table.rows if i < len(row) and row[i] is not None]
        numeric = bool(values) and all(_is_number(v) for v in values)
        fmt = None if not numeric else (".3g" if any(not isinstance(v, (int, np.integer)) for v in values) else "d")
        columns.append(column(field, str(header), fmt))
    rows = [{f: (c if c is None or _is_number(c) else str(c)) for f, c in zip(fields, row)} for row in table.rows]
    caption = [html.P(table.caption, className="hint")] if table.caption else []
    return html.Div(caption + [data_grid(grid_id, rows, columns)], className=class_name)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def figure_component(fig, component_id=None):
    kwargs = {"id": component_id} if component_id else {}
    return dcc.Graph(figure=fig, config=PANEL_GRAPH_CONFIG, **kwargs)


def sections_component(sections):
    """``[(title, figure | None, Table | None)]`` -> a list of Dash children."""
    children = []
    for title, fig, table in sections:
        children.append(html.H4(title))
        if fig is not None:
            children.append(figure_component(fig))
        if table is not None:
            children.append(html.Details([html.Summary("table"), table_component(table)]))
    return children


def message(text: str, error: bool = False):
    return html.P(text, className="message message-error" if error else "hint")


class StudyCache:
    """Finished studies of the shipped prompt set, shared by every session (they depend only on the model,
    its weights' version and the study's options). Bounded; the oldest entry goes first."""

    def __init__(self, size: int = 16):
        self.size = size
        self._results: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(vm, studies, limit: int | None, keep_correct: bool = True) -> tuple:
        weights = getattr(vm, "weights", None)
        return (vm.name, id(vm), getattr(weights, "version", None), tuple(studies), limit, bool(keep_correct))

    def get(self, key):
        with self._lock:
            return self._results.get(key)

    def put(self, key, result) -> None:
        with self._lock:
            self._results[key] = result
            while len(self._results) > self.size:
                self._results.popitem(last=False)


STUDIES = StudyCache()


def study_job(vm, studies, limit: int | None, keep_correct: bool = True, cache: StudyCache = STUDIES):
    """The job function (for :class:`visit.ui.jobs.JobRunner`) that studies the first ``limit`` shipped
    prompts, reporting each prompt as progress; a study already done for this model is reused."""
    studies = list(studies)
    key = cache.key(vm, studies, limit, keep_correct)

    def run(job):
        cached = cache.get(key)
        if cached is not None:
            job.progress(cached.n_prompts, cached.n_prompts, "prompts (already studied)")
            return cached
        cases = load_prompt_file(default_prompt_file())[:limit]
        job.progress(0, len(cases), "prompts")
        result = run_study(vm, cases, studies, keep_correct=keep_correct, progress=False,
                           on_progress=lambda done, total: job.progress(done, total, "prompts"),
                           source=f"the shipped factual prompts (first {len(cases)})")
        cache.put(key, result)
        return result

    return run


def study_kind(prefix: str) -> str:
    """The job kind (and job-widget prefix) of a panel's study: ``ctx.jobs.result(session_id, kind)``."""
    return f"{prefix}-study"


def study_summary(result) -> str:
    return f"{result.summary()}; {result.elapsed_s:.0f} s"


def study_controls(prefix: str, what: str, default_limit: int = 20):
    """The prompt-set part of a panel: how many shipped prompts, run and cancel, progress, results."""
    kind = study_kind(prefix)
    return html.Div([
        html.H4(f"Over the shipped prompt set ({what})"),
        job_controls(kind, "Run study", controls=[
            html.Label("prompts:"),
            dcc.Input(id=f"{kind}-limit", type="number", min=1, max=1000, step=1, value=default_limit,
                      style={"width": "5em"}),
            dcc.Checklist(id=f"{kind}-correct", value=["correct"], inline=True,
                          options=[{"label": "only prompts the model answers correctly", "value": "correct"}]),
        ]),
    ], className="study")


def register_study_callbacks(app, prefix: str, studies, ctx, render):
    """Run ``studies`` as the session's job on the button, with progress and cancel; ``render(result)``
    (-> a list of Dash children) draws the finished study. Returns the :class:`JobWidget`."""
    kind = study_kind(prefix)

    def start(ctx, session_id, values):
        limit, correct = values
        analysis = ctx.analysis(session_id)
        if analysis is None:
            raise VisitError("trace a prompt first (the study uses the same model)")
        # blank: as many as the server allows (the shipped set is shorter than the default cap)
        limit = (limits.STUDY_PROMPTS.value() if limit in (None, "")
                 else limits.STUDY_PROMPTS.check(limit, "the number of prompts"))
        if limit < 1:
            raise VisitError("the number of prompts must be at least 1")
        return study_job(analysis.trace.vm, studies, limit, keep_correct=bool(correct))

    return register_job_callbacks(app, ctx, kind, kind, start, lambda result, finished: render(result),
                                  [State(f"{kind}-limit", "value"), State(f"{kind}-correct", "value")],
                                  summary=study_summary)
