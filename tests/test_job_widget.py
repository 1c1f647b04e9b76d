"""The panels' job widget without a browser: a panel built the way new panels are (layout + one
``register_job_callbacks`` call + a registry entry), driven through the widget's callback."""

import threading
import types
from contextvars import copy_context

import pytest
from dash import State, dcc, html, no_update
from dash._callback_context import context_value
from dash._utils import AttributeDict

from dash_helpers import texts
from visit.errors import VisitError
from visit.ui.panels.job_widget import JobIds, job_controls, register_job_callbacks

WAIT = 10
HOSTILE = "<img src=x onerror=alert(1)>"


class RowsJob:
    """A job drawing ``steps`` rows one at a time; each row waits for the test to release it."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.go, self.reached = threading.Event(), threading.Event()

    def __call__(self, ctx, session_id, values):
        (steps,) = values
        if ctx.analysis(session_id) is None:
            raise VisitError("trace a prompt first")
        if not steps or int(steps) < 1:
            raise VisitError(f"steps must be at least 1, not {steps} {HOSTILE}")

        def run(job):
            rows = []
            for i in range(int(steps)):
                rows.append(f"row {i} {HOSTILE}")
                job.progress(i + 1, int(steps), "rows")
                job.partial(list(rows))
                self.reached.set()
                assert self.go.wait(WAIT)
                self.go.clear()
            if int(steps) == 13:
                raise VisitError(f"unlucky {HOSTILE}")
            return rows

        return run

    def step(self):
        self.reached.clear()
        self.go.set()
        assert self.reached.wait(WAIT)


def render(value, finished):
    if value == ["boom"]:
        raise RuntimeError("cannot draw")
    return html.Ul([html.Li(row) for row in value] + ([html.Li("finished")] if finished else []))


def make_panel(job: RowsJob):
    panel = types.ModuleType("visit_rows_panel")
    panel.job = job
    panel.TITLE = "Rows"
    panel.layout = lambda: html.Div(job_controls("rows", "Draw rows", controls=[dcc.Input(id="rows-steps")]))

    def register_callbacks(app, ctx):
        panel.widget = register_job_callbacks(app, ctx, "rows", "rows", job, render, [State("rows-steps", "value")])

    panel.register_callbacks = register_callbacks
    return panel


@pytest.fixture(scope="module")
def app_and_panel(tiny_factory):
    from visit.pipeline import analyze
    from visit.ui import create_app

    panel = make_panel(RowsJob())
    app = create_app(model=tiny_factory("gpt2"), panels=["visit.ui.panels.details", panel])
    return app, panel, analyze(app.visit_registry.get(), "Hello there")


@pytest.fixture()
def setup(app_and_panel):
    """The app, its rows widget and a fresh job; session "s" has traced a prompt."""
    app, panel, analysis = app_and_panel
    job = panel.job
    job.reset()
    app.visit_context.state("s").analysis = analysis
    yield app, panel.widget, job
    app.visit_jobs.cancel("s")
    job.go.set()
    app.visit_jobs.drop("s")


def walk(component):
    yield component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if hasattr(child, "to_plotly_json"):
            yield from walk(child)


def test_controls_and_wiring(setup):
    app, widget, _ = setup
    i = JobIds("rows")
    layout = app.layout()
    found = {c.id: c for c in walk(layout) if isinstance(getattr(c, "id", None), str)}
    for cid in (i.start, i.cancel, i.progress, i.progress_bar, i.progress_text, i.status, i.poll, i.body, "rows-steps"):
        assert cid in found, cid
    assert found[i.poll].disabled is True and found[i.cancel].disabled is True  # idle: no polling
    assert not any("dangerously_allow_html" in str(c.to_plotly_json()) for c in found.values())
    assert any(i.status in key for key in app.callback_map)
    # the body is drawn by a callback that the poll never triggers: a drawing slower than the poll interval
    # would otherwise be superseded by the next poll, forever (issue 17's blocker)
    body_callbacks = [c for key, c in app.callback_map.items() if f"{i.body}.children" in key]
    assert len(body_callbacks) == 1
    assert [x["id"] for x in body_callbacks[0]["inputs"]] == [i.seen]
    poll_outputs = [key for key, c in app.callback_map.items() if any(x["id"] == i.poll for x in c["inputs"])]
    assert poll_outputs and all(i.body not in key for key in poll_outputs)
    assert app.visit_jobs is app.visit_context.jobs and widget.ctx is app.visit_context


def test_start_poll_progressive_rows_and_finish(setup):
    app, widget, job = setup
    out = widget.start("s", (3,))
    assert out["poll_off"] is False and out["cancel_off"] is False and out["progress_hidden"] is False
    assert job.reached.wait(WAIT)
    out = widget.poll("s", None)  # (start itself may have drawn the first row already)
    assert out["text"] == "1/3 rows" and out["bar"] == {"width": "33.3%"} and "running" in out["status"]
    assert texts(widget.draw("s", out["seen"])) == [f"row 0 {HOSTILE}"]  # a text child: React never parses it
    again = widget.poll("s", out["seen"])
    assert again["seen"] is no_update  # the same partial is not drawn twice
    job.step()
    out = widget.poll("s", out["seen"])
    assert out["text"] == "2/3 rows" and len(texts(widget.draw("s", out["seen"]))) == 2
    job.step()
    job.go.set()
    app.visit_jobs.wait(app.visit_jobs.job("s", "rows"), WAIT)
    out = widget.poll("s", out["seen"])
    assert out["poll_off"] is True and out["cancel_off"] is True and out["bar"] == {"width": "100.0%"}
    assert texts(widget.draw("s", out["seen"]))[-1] == "finished" and out["status"].startswith("done in")
    assert widget.poll("s", out["seen"])["seen"] is no_update  # drawn once
    assert len(app.visit_jobs.result("s", "rows")) == 3


def test_bad_input_and_job_errors_show_as_messages(setup):
    app, widget, job = setup
    out = widget.start("nobody", (3,))
    assert out["status"].className == "message message-error" and out["status"].children == "trace a prompt first"
    assert out["poll_off"] is True
    out = widget.start("s", (0,))
    assert out["status"].children == f"steps must be at least 1, not 0 {HOSTILE}"  # text, escaped by React
    out = widget.start("s", (13,))
    for _ in range(12):
        job.step()
    job.go.set()
    app.visit_jobs.wait(app.visit_jobs.job("s", "rows"), WAIT)
    out = widget.poll("s", out["seen"])
    assert out["status"].className == "message message-error" and out["status"].children == f"unlucky {HOSTILE}"
    assert out["poll_off"] is True and len(texts(widget.draw("s", out["seen"]))) == 13  # what was drawn stays


def test_a_failing_render_is_a_message():
    from visit.ui.panels.job_widget import JobWidget

    widget = JobWidget(None, "rows", None, render)
    shown = widget._draw(["boom"], False)
    assert shown.className == "message message-error" and "cannot draw" in shown.children


def test_cancel_through_the_registered_callback(setup):
    app, widget, job = setup
    i = JobIds("rows")

    def fire(prop_id, values=(3,), seen=None):
        def call():
            context_value.set(AttributeDict(triggered_inputs=[{"prop_id": prop_id, "value": 1}]))
            return widget.callback({"start": 1, "cancel": 1, "tick": 1},
                                   {"session_id": "s", "seen": seen, "values": list(values)})
        return copy_context().run(call)

    out = fire(f"{i.start}.n_clicks")
    assert out["poll_off"] is False
    assert job.reached.wait(WAIT)
    out = fire(f"{i.poll}.n_intervals", seen=out["seen"])
    assert out["text"] == "1/3 rows"
    out = fire(f"{i.cancel}.n_clicks", seen=out["seen"])
    assert out["status"] == "cancelled" and out["poll_off"] is True and out["cancel_off"] is True
    assert app.visit_jobs.job("s", "rows").status == "cancelled" and app.visit_jobs.result("s", "rows") is None
    # starting again replaces nothing (the cancelled job is not running) and runs afresh
    out = fire(f"{i.start}.n_clicks", values=(1,))
    assert out["poll_off"] is False
