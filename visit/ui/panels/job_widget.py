"""A start/cancel/progress widget for a panel's long work, wired to the app's job runner.

Put ``job_controls(prefix, "Run")`` in your panel's layout and call ``register_job_callbacks`` once in
its ``register_callbacks(app, ctx)``::

    job_controls("causal", "Trace causally", controls=[dcc.Input(id="causal-subject")])

    register_job_callbacks(
        app, ctx, prefix="causal", kind="causal-trace",
        start=lambda ctx, session_id, values: make_job(ctx.analysis(session_id), *values),
        render=lambda value, finished: heatmaps(value),      # a partial while running, the result at the end
        inputs=[State("causal-subject", "value")])

``start(ctx, session_id, values)`` checks the inputs (raise :class:`~visit.errors.VisitError` with a
message for the user) and returns the job function ``fn(job_ctx) -> result``; the job calls
``job_ctx.progress(done, total, note)`` and, if it can, ``job_ctx.partial(value)`` (see
:mod:`visit.ui.jobs`). While the job runs, a ``dcc.Interval`` polls it: the bar and its text
(``"done/total note"``) move, and each new partial is drawn with ``render(partial, False)``; at the end
``render(result, True)`` draws the result, and the interval stops.

The poll answers only the light outputs (bar, text, status) and, when there is something new to draw, a new
``seen`` mark; a second callback, triggered by that mark alone, draws the ``body``. Dash drops an answer
when a newer request for the same outputs is on its way, so a poll that carried a drawing slower than the
poll interval (a 30-layer difference graph, a megabyte and a second to send) was superseded by the next
poll, forever: the page never showed the result. A mark changes once per partial, so its drawing is never
superseded by a poll. Cancel stops the session's job of
this kind. Errors (bad input, a failing job, a failing ``render``) show as the app's error messages;
every text goes into Dash text children, which React escapes (never ``dangerously_allow_html``).

Component ids, all ``f"{prefix}-..."`` (:class:`JobIds`): ``start``, ``cancel``, ``progress``
(``progress-bar``, ``progress-text``), ``status``, ``poll``, ``seen`` and ``body`` (where ``render``'s
output goes). The session's last finished result stays available to the panel's other callbacks as
``ctx.jobs.result(session_id, kind)``.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

from dash import Input, Output, State, ctx as dash_ctx, dcc, html, no_update

from visit.errors import VisitError
from visit.ui import ids, views
from visit.ui.jobs import Job, JobContext

log = logging.getLogger(__name__)

POLL_MS = 700  # how often the page asks a running job for progress
INSTANT_S = 0.15  # a job that finishes this fast (a cached result) is drawn without waiting for a poll

StartFn = Callable[[Any, str, tuple], Callable[[JobContext], Any]]  # (PanelContext, session id, values) -> job
RenderFn = Callable[[Any, bool], Any]  # (partial or result, finished) -> Dash children


class JobIds:
    """The component ids of one widget: ``JobIds("causal").start == "causal-start"``."""

    NAMES = ("start", "cancel", "progress", "progress-bar", "progress-text", "status", "poll", "seen", "body")

    def __init__(self, prefix: str):
        self.prefix = prefix
        (self.start, self.cancel, self.progress, self.progress_bar, self.progress_text, self.status, self.poll,
         self.seen, self.body) = (f"{prefix}-{name}" for name in self.NAMES)


def job_controls(prefix: str, start_label: str, *, controls: Sequence = (), poll_ms: int = POLL_MS) -> html.Div:
    """Start and cancel buttons (after your ``controls``: inputs the start reads), a progress bar with
    ``"done/total note"``, a status line, the result's ``body`` and a poll that runs only while a job runs."""
    i = JobIds(prefix)
    return html.Div([
        html.Div([*controls,
                  html.Button(start_label, id=i.start, n_clicks=0, className="btn btn-small"),
                  html.Button("Cancel", id=i.cancel, n_clicks=0, className="btn btn-small", disabled=True)],
                 className="job-controls"),
        html.Div([html.Div(id=i.progress_bar, className="job-progress-bar", style={"width": "0%"}),
                  html.Span(id=i.progress_text, className="job-progress-text")],
                 id=i.progress, className="job-progress", hidden=True),
        html.Div(id=i.status, className="job-status hint", role="status"),
        dcc.Interval(id=i.poll, interval=poll_ms, disabled=True),
        dcc.Store(id=i.seen),
        html.Div(id=i.body, className="job-body"),
    ], className="job")


class JobWidget:
    """The widget's logic, apart from Dash's wiring so tests can call it directly.

    Each method returns the dict of output values (``no_update`` where nothing changes):
    ``bar, text, progress_hidden, status, poll_off, cancel_off, seen``; :meth:`draw` returns the body for a
    ``seen`` mark.
    """

    def __init__(self, ctx, kind: str, start: StartFn, render: RenderFn,
                 summary: Callable[[Any], str] | None = None):
        self.ctx, self.kind, self._start, self._render, self._summary = ctx, kind, start, render, summary
        self.callback = self.body_callback = None  # the Dash callbacks, once registered

    # -- the three events ----------------------------------------------------------------
    def start(self, session_id: str | None, values: tuple = ()) -> dict:
        if not session_id:
            return self._error("this page has no session: reload it")
        try:
            fn = self._start(self.ctx, session_id, tuple(values))
            job = self.ctx.jobs.submit(session_id, self.kind, fn)  # runs on the session's weights (JobRunner)
        except VisitError as exc:
            return self._error(str(exc))
        except Exception as exc:  # noqa: BLE001 - the panel must survive its own bugs
            log.exception("starting the %s job failed", self.kind)
            return self._error(f"internal error: {type(exc).__name__}: {exc}")
        self.ctx.jobs.wait(job, INSTANT_S)
        return self.view(job, seen=None, fresh=True)

    def poll(self, session_id: str | None, seen=None) -> dict:
        job = self.ctx.jobs.job(session_id, self.kind) if session_id else None
        if job is None:
            return {**self._unchanged(), "poll_off": True, "cancel_off": True}
        return self.view(job, seen)

    def cancel(self, session_id: str | None, seen=None) -> dict:
        job = self.ctx.jobs.job(session_id, self.kind) if session_id else None
        if job is not None and job.running:
            self.ctx.jobs.cancel(session_id)
        return self.poll(session_id, seen)

    # -- drawing a job -------------------------------------------------------------------
    def view(self, job: Job, seen=None, fresh: bool = False) -> dict:
        """Outputs for ``job``'s current state; ``seen`` is the mark of what the page last drew (``[job id,
        partial count]`` or ``[job id, "done"]``): a new mark in ``out["seen"]`` asks :meth:`draw` for the body."""
        out = self._unchanged()
        running = job.running
        out.update(poll_off=not running, cancel_off=not running, progress_hidden=False)
        fraction = job.done / job.total if job.total else (1.0 if job.status == "done" else 0.0)
        if job.status == "done":
            fraction = 1.0
        out["bar"] = {"width": f"{100 * min(max(fraction, 0.0), 1.0):.1f}%"}
        out["text"] = job.progress_text()
        mark = [job.id, job.partial_count]
        if running:
            out["status"] = running_text(job)
            if (job.partial is not None or fresh) and mark != seen:
                out["seen"] = mark
        elif job.status == "done":
            out["status"] = self._done_text(job)
            if [job.id, "done"] != seen:
                out["seen"] = [job.id, "done"]
        elif job.status == "error":
            out["status"] = views.message("error", job.error or "the job failed")
            if (fresh or job.partial is not None) and mark != seen:
                out["seen"] = mark
        else:  # cancelled: keep what was drawn so far
            out["status"] = "cancelled" if job.note in ("", "cancelled") else f"cancelled ({job.note})"
            out["text"] = f"{job.done}/{job.total}" if job.total else ""
        return out

    def draw(self, session_id: str | None, seen) -> Any:
        """The body for the mark ``seen`` (set by :meth:`view`): the result once done, else the job's latest
        partial (nothing before the first one)."""
        job = self.ctx.jobs.job(session_id, self.kind) if session_id else None
        if job is None or not (isinstance(seen, list) and len(seen) == 2) or seen[0] != job.id:
            return no_update
        if seen[1] == "done":
            return self._draw(job.result, True) if job.status == "done" else no_update
        return None if job.partial is None else self._draw(job.partial, False)

    def _draw(self, value, finished: bool):
        try:
            return self._render(value, finished)
        except Exception as exc:  # noqa: BLE001
            log.exception("rendering the %s job's result failed", self.kind)
            return views.message("error", f"could not draw the result: {type(exc).__name__}: {exc}")

    def _done_text(self, job: Job) -> str:
        if self._summary is not None:
            try:
                return self._summary(job.result)
            except Exception:  # noqa: BLE001
                log.exception("summarising the %s job's result failed", self.kind)
        return f"done in {job.elapsed:.1f} s"

    @staticmethod
    def _unchanged() -> dict:
        return {name: no_update for name in OUTPUT_NAMES}

    def _error(self, text: str) -> dict:
        return {**self._unchanged(), "status": views.message("error", text), "poll_off": True}


OUTPUT_NAMES = ("bar", "text", "progress_hidden", "status", "poll_off", "cancel_off", "seen")


def register_job_callbacks(app, ctx, prefix: str, kind: str, start: StartFn, render: RenderFn,
                           inputs: Sequence[State] = (), *, summary: Callable[[Any], str] | None = None) -> JobWidget:
    """Wire the widget made by ``job_controls(prefix, ...)``: start -> ``ctx.jobs.submit(session_id, kind,
    start(ctx, session_id, values))`` with ``values`` read from ``inputs``; poll -> progress and
    ``render(partial, False)``; done -> ``render(result, True)`` and ``summary(result)`` (default "done in
    N s") in the status line; cancel -> ``ctx.jobs.cancel``. Returns the :class:`JobWidget` (for tests)."""
    widget = JobWidget(ctx, kind, start, render, summary)
    i = JobIds(prefix)
    outputs = dict(bar=Output(i.progress_bar, "style"), text=Output(i.progress_text, "children"),
                   progress_hidden=Output(i.progress, "hidden"), status=Output(i.status, "children"),
                   poll_off=Output(i.poll, "disabled"),
                   cancel_off=Output(i.cancel, "disabled"), seen=Output(i.seen, "data"))
    triggers = dict(start=Input(i.start, "n_clicks"), cancel=Input(i.cancel, "n_clicks"),
                    tick=Input(i.poll, "n_intervals"))
    states = dict(session_id=State(ids.SESSION, "data"), seen=State(i.seen, "data"))
    if inputs:
        states["values"] = list(inputs)

    @app.callback(output=outputs, inputs=dict(triggers=triggers, states=states), prevent_initial_call=True)
    def _job(triggers, states):
        session_id, seen = states["session_id"], states["seen"]
        if dash_ctx.triggered_id == i.start:
            return widget.start(session_id, tuple(states.get("values", ())))
        if dash_ctx.triggered_id == i.cancel:
            return widget.cancel(session_id, seen)
        return widget.poll(session_id, seen)

    @app.callback(Output(i.body, "children"), Input(i.seen, "data"), State(ids.SESSION, "data"),
                  prevent_initial_call=True)
    def _body(seen, session_id):
        return widget.draw(session_id, seen)

    widget.callback = _job  # the registered function (tests call it inside a Dash callback context)
    widget.body_callback = _body
    return widget


def running_text(job: Job) -> str:
    """``"running… 54 s, about 2 min left of this step"`` (the estimate once the step's pace is known)."""
    text = f"running… {job.elapsed:.0f} s"
    left = job.remaining()
    if left is None:
        return text
    return text + f", about {_duration(left)} left of this step"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{round(seconds / 60)} min"


__all__ = ["JobIds", "JobWidget", "job_controls", "register_job_callbacks", "running_text"]
