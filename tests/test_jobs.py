"""The job runner: progress, partial results, cancel, replace, errors, one job per session, results per session.

Jobs here block on events the test sets, so nothing depends on timing.
"""

import contextvars
import threading
from contextlib import contextmanager

import pytest

from visit.errors import VisitError
from visit.ui.jobs import Cancelled, JobRunner, one_line

WAIT = 10  # seconds; only reached when something is broken


def blocking_job(steps: int = 3):
    """A job that reports progress and partials, then waits at each step until the test releases it."""
    go, reached = threading.Event(), threading.Event()

    def fn(ctx):
        rows = []
        for i in range(steps):
            rows.append(i)
            ctx.progress(i + 1, steps, f"row {i}")
            ctx.partial(list(rows))
            reached.set()
            assert go.wait(WAIT), "the test never released the job"
            go.clear()
        return sum(rows)

    return fn, go, reached


def test_progress_partials_and_result():
    runner = JobRunner()
    fn, go, reached = blocking_job(3)
    job = runner.submit("s", "rows", fn)
    assert reached.wait(WAIT)
    assert (job.status, job.done, job.total, job.note, job.partial) == ("running", 1, 3, "row 0", [0])
    assert job.progress_text() == "1/3 row 0" and job.partial_count == 1
    assert runner.result("s", "rows") is None  # nothing finished yet
    for _ in range(2):
        reached.clear()
        go.set()
        assert reached.wait(WAIT)
    go.set()
    runner.wait(job, WAIT)
    assert (job.status, job.result, job.partial, job.error) == ("done", 3, [0, 1, 2], None)
    assert job.finished >= job.started and runner.result("s", "rows") == 3
    assert runner.job("s") is job and runner.job("s", "rows") is job and runner.job("s", "other") is None


def test_cancel_stops_the_job_at_its_next_progress():
    runner = JobRunner()
    fn, go, reached = blocking_job(3)
    job = runner.submit("s", "rows", fn)
    assert reached.wait(WAIT)
    assert runner.cancel("s") is True
    assert job.status == "cancelled" and job.finished is not None  # at once, before the thread notices
    go.set()  # the job's next ctx.progress raises Cancelled
    assert runner.wait(job, WAIT).status == "cancelled"
    assert job.partial == [0] and job.result is None and runner.result("s", "rows") is None
    assert runner.cancel("s") is False  # nothing running any more
    assert runner.cancel("never-seen") is False


def test_a_job_that_ignores_the_cancel_has_its_result_discarded():
    runner = JobRunner()
    release = threading.Event()
    job = runner.submit("s", "stubborn", lambda ctx: release.wait(WAIT) and "late")
    runner.cancel("s")
    release.set()
    runner.wait(job, WAIT)
    assert job.status == "cancelled" and job.result is None and runner.result("s", "stubborn") is None


def test_one_running_job_per_session_replace_or_refuse():
    runner = JobRunner(max_workers=4)
    fn, go, reached = blocking_job(2)
    first = runner.submit("s", "a", fn)
    assert reached.wait(WAIT)
    with pytest.raises(VisitError, match="still running"):
        runner.submit("s", "b", lambda ctx: 1, replace=False)
    assert first.running
    other = runner.submit("t", "a", lambda ctx: "other session")  # other sessions are not affected
    second = runner.submit("s", "b", lambda ctx: "second")  # replace=True: the first is cancelled
    assert first.status == "cancelled" and "replaced by b" in first.note
    assert runner.wait(second, WAIT).result == "second" and runner.wait(other, WAIT).result == "other session"
    go.set()
    runner.wait(first, WAIT)
    assert first.status == "cancelled" and runner.job("s") is second and runner.job("s", "a") is first
    assert runner.result("s", "b") == "second" and runner.result("s", "a") is None
    assert runner.result("t", "a") == "other session"


def test_errors_become_one_line_messages(caplog):
    runner = JobRunner()

    def bad_input(ctx):
        raise VisitError("the subject 'Rome' is not in the prompt")

    def bug(ctx):
        raise KeyError("oops\nsecond line")

    job = runner.wait(runner.submit("s", "x", bad_input), WAIT)
    assert (job.status, job.error) == ("error", "the subject 'Rome' is not in the prompt")
    with caplog.at_level("ERROR", logger="visit.ui.jobs"):
        job = runner.wait(runner.submit("s", "x", bug), WAIT)
    assert job.status == "error" and job.error.startswith("internal error: KeyError:") and "\n" not in job.error
    assert "Traceback" in caplog.text or any(r.exc_info for r in caplog.records)
    assert runner.result("s", "x") is None
    assert one_line("\n  first\nsecond") == "first"


def test_check_and_the_cancelled_flag():
    runner = JobRunner()
    seen = {}
    started, release = threading.Event(), threading.Event()

    def fn(ctx):
        seen["before"] = ctx.cancelled
        started.set()
        release.wait(WAIT)
        seen["after"] = ctx.cancelled
        ctx.check()
        seen["not reached"] = True

    job = runner.submit("s", "x", fn)
    assert started.wait(WAIT)
    runner.cancel("s")
    release.set()
    runner.wait(job, WAIT)
    assert seen == {"before": False, "after": True} and job.status == "cancelled"
    with pytest.raises(Cancelled):
        raise Cancelled("x")


def test_workers_bound_how_many_jobs_compute_at_once():
    runner = JobRunner(max_workers=1)
    fn, go, reached = blocking_job(1)
    first = runner.submit("a", "x", fn)
    assert reached.wait(WAIT)
    second = runner.submit("b", "x", lambda ctx: "b done")
    assert second.running and second.note == "queued" and runner.wait(second, 0.2).running
    go.set()
    assert runner.wait(second, WAIT).result == "b done" and first.status == "done"


def test_results_are_bounded_and_dropped_with_the_session():
    runner = JobRunner(max_sessions=2)
    for sid in ("a", "b", "c"):
        runner.wait(runner.submit(sid, "x", lambda ctx, sid=sid: sid), WAIT)
    assert len(runner) == 2 and runner.result("a", "x") is None and runner.result("c", "x") == "c"
    runner.drop("c")
    assert runner.result("c", "x") is None and runner.job("c") is None


def test_the_apps_session_store_drops_jobs_with_its_sessions():
    from visit.ui.panels.context import PanelContext

    model = object()  # the registry serves whatever it was given
    ctx = PanelContext.create(model=model, max_sessions=1)
    ctx.state("a")
    ctx.jobs.wait(ctx.jobs.submit("a", "x", lambda job: 1), WAIT)
    assert ctx.jobs.result("a", "x") == 1
    ctx.state("b")  # the store keeps one session: "a" goes, with its results
    assert ctx.jobs.result("a", "x") is None and "a" not in ctx.sessions
    assert ctx.model("b") is model and ctx.analysis("b") is None


def test_caps_refuse_jobs_while_too_many_threads_are_alive(monkeypatch):
    """Cancelled jobs that have not stopped yet still count: clicking Start again and again cannot pile up
    threads. The app reads the caps from visit.limits at every submit."""
    runner = JobRunner(max_workers=4, max_per_session=2, max_jobs=lambda: 3)
    fn, go, reached = blocking_job(1)
    first = runner.submit("s", "a", fn)
    assert reached.wait(WAIT)
    stubborn = threading.Event()
    second = runner.submit("s", "b", lambda ctx: stubborn.wait(WAIT))  # replaces the first (still stopping)
    assert first.status == "cancelled"
    with pytest.raises(VisitError, match="still stopping"):
        runner.submit("s", "c", lambda ctx: 1)
    other = runner.submit("t", "a", lambda ctx: stubborn.wait(WAIT))
    with pytest.raises(VisitError, match="server is busy"):
        runner.submit("u", "a", lambda ctx: 1)
    go.set()
    stubborn.set()
    for job in (first, second, other):
        runner.wait(job, WAIT)
    assert runner.wait(runner.submit("u", "a", lambda ctx: "ok"), WAIT).result == "ok"

    from visit.ui.panels.context import PanelContext

    monkeypatch.setenv("VISIT_MAX_JOBS", "0")
    ctx = PanelContext.create(model=object())
    with pytest.raises(VisitError, match="VISIT_MAX_JOBS|at most 0"):
        ctx.jobs.submit("s", "x", lambda job: 1)


def test_a_job_runs_inside_its_sessions_context_made_at_submission():
    """The app binds each job to its session's weights as they were when it was submitted (PanelContext.using)."""
    bound = contextvars.ContextVar("bound", default=None)
    weights = {"s": "edits-1"}

    @contextmanager
    def bind(value):
        token = bound.set(value)
        try:
            yield
        finally:
            bound.reset(token)

    runner = JobRunner(session_context=lambda session_id: bind(weights[session_id]))  # read at submission
    go = threading.Event()

    def fn(ctx):
        assert go.wait(WAIT)
        return bound.get()

    job = runner.submit("s", "read", fn)
    weights["s"] = "edits-2"  # a change after the submission does not reach the running job
    go.set()
    runner.wait(job, WAIT)
    assert (job.status, job.result) == ("done", "edits-1") and bound.get() is None
    assert runner.wait(JobRunner().submit("s", "read", lambda ctx: bound.get()), WAIT).result is None  # unbound


def test_a_stage_estimates_what_is_left_at_its_own_pace():
    import time

    from visit.ui.jobs import Job, JobContext
    from visit.ui.panels.job_widget import running_text

    job = Job(id=1, session_id="s", kind="edit")
    ctx = JobContext(job)
    assert job.remaining() is None and running_text(job).startswith("running… ")
    ctx.progress(0, 10, "first edit at layer 6: building ROME's key statistics")
    assert job.remaining() is None  # no step of this stage done yet
    job.stage = (10, time.time() - 4.0, 0)  # the stage began 4 s ago; 2 of its 10 steps are done
    ctx.progress(2, 10, "first edit at layer 6: building ROME's key statistics")
    assert 15.5 < job.remaining() < 17.0  # 2 s a step, 8 steps left
    assert "about 16 s left of this step" in running_text(job) or "about 17 s left" in running_text(job)
    ctx.progress(0, 3, "probabilities before and after")  # the next stage: a new total, timed anew
    assert job.stage[0] == 3 and job.remaining() is None
