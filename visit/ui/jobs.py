"""Long work off the request thread: one job runner for every panel (and the CLI's tests).

A *job* is a function ``fn(ctx: JobContext) -> result`` run on a background thread. While it runs it
reports ``ctx.progress(done, total, note)`` and, where the work allows it, ``ctx.partial(value)`` (e.g. the
heatmap rows computed so far), so the page can fill in progressively. Both calls raise :class:`Cancelled`
once the user cancelled the job; long loops without progress calls use ``ctx.check()``.

Rules the runner keeps:

- **bound to its session**: a job runs inside ``session_context(session_id)`` (the app's: that session's
  weights as they were when the job was submitted, :mod:`visit.models.overlay`), made at submission, so job
  functions never bind anything themselves;
- **one running job per session**: :meth:`JobRunner.submit` cancels the session's running job first
  (``replace=True``) or refuses with a :class:`VisitError` (``replace=False``);
- **bounded concurrency**: at most ``max_workers`` jobs compute at once (the rest wait, note "queued");
  threads are daemons, so a job never keeps the process alive. Optional caps refuse new jobs (one-line
  :class:`VisitError`) while too many threads are alive, cancelled ones that have not stopped yet included:
  ``max_per_session`` per session and ``max_jobs`` in all (the app passes :data:`visit.limits.JOBS_PER_SESSION`
  and :data:`visit.limits.JOBS`; each an int or a function returning one, read at every submit);
- **one-line errors**: a :class:`VisitError` raised by a job becomes ``job.error`` with its message (what the
  user can fix); anything else becomes ``"internal error: Type: message"`` and is logged with its traceback;
- **results per session**: the last finished result of each kind is kept per session
  (:meth:`JobRunner.result`), in a bounded LRU of sessions, and dropped with the session
  (:meth:`JobRunner.drop`; the app's :class:`~visit.ui.state.SessionStore` calls it on eviction).

Cancelling is cooperative: :meth:`JobRunner.cancel` marks the job ``"cancelled"`` at once (the page
stops waiting) and its thread stops at its next ``progress``/``partial``/``check``; whatever it returns
after that is discarded. Nothing here knows about Dash: ``visit.ui.panels.job_widget`` is the page side.

Example (also how tests use it)::

    runner = JobRunner()

    def count(ctx):
        for i in range(10):
            ctx.progress(i, 10, "counting")
            ctx.partial(list(range(i + 1)))
        return 10

    job = runner.wait(runner.submit("session-1", "count", count))
    assert (job.status, job.result) == ("done", 10) and runner.result("session-1", "count") == 10
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Optional, Union

from visit.errors import VisitError

log = logging.getLogger(__name__)

STATUSES = ("running", "done", "error", "cancelled")
Cap = Optional[Union[int, Callable[[], int]]]  # a cap, a function reading one (e.g. a Limit's value), or none
SessionContext = Callable[[str], ContextManager]  # session id -> what its jobs run in (see JobRunner)


class Cancelled(Exception):
    """Raised inside a job (by ``progress``/``partial``/``check``) once the job was cancelled."""


@dataclass(eq=False)
class Job:
    """One submitted job. The runner updates it in place: read its fields to follow it (compared by identity)."""

    id: int
    session_id: str
    kind: str
    status: str = "running"  # one of STATUSES
    done: int = 0
    total: int = 0
    note: str = ""
    partial: Any = None  # the latest ctx.partial(value)
    partial_count: int = 0  # how many partials were sent (the page redraws only new ones)
    result: Any = None  # fn's return value once status == "done"
    error: str | None = None  # one line, once status == "error"
    started: float = field(default_factory=time.time)
    finished: float | None = None
    stage: tuple = ()  # (total, time, done) when the current stage (a new total) began: for :meth:`remaining`
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    _ended: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)  # thread stopped

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def elapsed(self) -> float:
        """Seconds since it started (until it finished, once it has)."""
        return (self.finished or time.time()) - self.started

    def remaining(self) -> float | None:
        """Seconds the current stage still needs at its pace so far (None before a step of it is done)."""
        if not self.stage or not self.total or self.done <= self.stage[2]:
            return None
        total, since, first = self.stage
        return (time.time() - since) / (self.done - first) * (total - self.done)

    def progress_text(self) -> str:
        """``"done/total note"`` (``"done note"`` while the total is unknown)."""
        count = f"{self.done}/{self.total}" if self.total else (f"{self.done}" if self.done else "")
        return " ".join(part for part in (count, self.note) if part)


class JobContext:
    """What a job function gets: report progress and partial results, notice cancellation."""

    def __init__(self, job: Job, lock: threading.Lock | None = None):
        self._job = job
        self._lock = lock or threading.Lock()  # the runner's: a cancel's note is never overwritten

    @property
    def cancelled(self) -> bool:
        return self._job._cancel.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if the job was cancelled (call it in long loops)."""
        if self._job._cancel.is_set():
            raise Cancelled(f"job {self._job.kind} was cancelled")

    def progress(self, done: int, total: int, note: str = "") -> None:
        """``done`` of ``total`` steps (``note`` says what is going on); raises :class:`Cancelled`."""
        job = self._job
        with self._lock:
            self.check()
            if not job.stage or job.stage[0] != int(total) or int(done) < job.done:  # a new stage: time it anew
                job.stage = (int(total), time.time(), int(done))
            job.done, job.total, job.note = int(done), int(total), str(note)

    def partial(self, value) -> None:
        """A progressive result (the page renders it while the job runs); raises :class:`Cancelled`."""
        with self._lock:
            self.check()
            self._job.partial = value
            self._job.partial_count += 1


class JobRunner:
    """Runs panel jobs on daemon threads, one running job per session, ``max_workers`` at a time."""

    def __init__(self, max_workers: int = 2, max_sessions: int = 64, *, max_jobs: Cap = None,
                 max_per_session: Cap = None, session_context: SessionContext | None = None):
        """``session_context(session_id)``: the context manager a session's job runs in, made when the job is
        submitted (the app's: the session's weights as they are then, :meth:`PanelContext.using`)."""
        self.session_context = session_context
        self.max_workers = max(1, int(max_workers))
        self.max_sessions = max(1, int(max_sessions))
        self.max_jobs, self.max_per_session = max_jobs, max_per_session
        self.closed: str | None = None  # set by shutdown(): new jobs are refused with it
        self._live: set[Job] = set()  # jobs whose thread has not stopped yet (queued, running or stopping)
        self._slots = threading.Semaphore(self.max_workers)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        # session id -> {"running": Job | None, "latest": {kind: Job}, "last": Job | None, "results": {kind: value}}
        self._sessions: OrderedDict[str, dict] = OrderedDict()

    # -- submitting and following --------------------------------------------------------------
    def submit(self, session_id: str, kind: str, fn: Callable[[JobContext], Any], *, replace: bool = True) -> Job:
        """Start ``fn(ctx)`` for the session. The session's running job is cancelled first
        (``replace=True``); with ``replace=False`` a running job makes this raise :class:`VisitError`."""
        with self._lock:
            if self.closed:
                raise VisitError(self.closed)
            entry = self._entry(session_id)
            current = entry["running"]
            if current is not None and current.running and not replace:
                raise VisitError(f"a {current.kind} job is still running in this session "
                                 f"({current.progress_text() or 'starting'}); cancel it first")
            self._check_caps(session_id)
            if current is not None and current.running:
                self._cancel(current, f"replaced by {kind}")
            job = Job(next(self._ids), session_id, kind, note="queued")
            self._live.add(job)
            entry["running"] = job
            entry["latest"][kind] = job
            entry["last"] = job
        within = self.session_context(session_id) if self.session_context is not None else nullcontext()
        threading.Thread(target=self._run, args=(job, fn, within), name=f"visit-job-{job.id}-{kind}",
                         daemon=True).start()
        return job

    def job(self, session_id: str, kind: str | None = None) -> Job | None:
        """The session's latest job (of ``kind``), running or finished, or None."""
        with self._lock:
            entry = self._sessions.get(session_id)
            if entry is None:
                return None
            return entry["last"] if kind is None else entry["latest"].get(kind)

    def result(self, session_id: str, kind: str):
        """The last successfully finished result of ``kind`` for the session, or None."""
        with self._lock:
            entry = self._sessions.get(session_id)
            return None if entry is None else entry["results"].get(kind)

    def cancel(self, session_id: str) -> bool:
        """Cancel the session's running job; False when nothing was running."""
        with self._lock:
            entry = self._sessions.get(session_id)
            job = None if entry is None else entry["running"]
            if job is None or not job.running:
                return False
            self._cancel(job, "cancelled")
            return True

    def wait(self, job: Job, timeout: float | None = None) -> Job:
        """Block until ``job``'s thread has stopped (or ``timeout`` seconds passed); returns it. For tests and
        the CLI. A cancelled job's status is final at once, but its thread stops only at its next check."""
        job._ended.wait(timeout)
        return job

    def drop(self, session_id: str) -> None:
        """Forget a session: cancel its running job, drop its jobs and results."""
        with self._lock:
            entry = self._sessions.pop(session_id, None)
            if entry is not None and entry["running"] is not None and entry["running"].running:
                self._cancel(entry["running"], "session closed")

    def shutdown(self, note: str = "the server is shutting down") -> int:
        """Cancel every running or queued job (their pages show ``note``) and refuse new ones with it; returns
        how many were cancelled. The server calls it when it stops (:mod:`visit.serving.gunicorn`)."""
        with self._lock:
            self.closed = note
            running = [e["running"] for e in self._sessions.values() if e["running"] is not None and e["running"].running]
            for job in running:
                self._cancel(job, note)
            return len(running)

    def __len__(self) -> int:
        """How many sessions the runner remembers."""
        with self._lock:
            return len(self._sessions)

    # -- internals (self._lock held where noted) -----------------------------------------------------
    def _entry(self, session_id: str) -> dict:  # lock held
        entry = self._sessions.get(session_id)
        if entry is None:
            entry = self._sessions[session_id] = {"running": None, "latest": {}, "last": None, "results": {}}
            while len(self._sessions) > self.max_sessions:
                old_id, old = self._sessions.popitem(last=False)
                if old["running"] is not None and old["running"].running:
                    self._cancel(old["running"], "session closed")
        else:
            self._sessions.move_to_end(session_id)
        return entry

    def _check_caps(self, session_id: str) -> None:  # lock held
        cap = _cap(self.max_per_session)
        if cap is not None and sum(j.session_id == session_id for j in self._live) >= cap:
            raise VisitError(f"this session's earlier jobs are still stopping (at most {cap} at a time); "
                             "try again in a moment")
        cap = _cap(self.max_jobs)
        if cap is not None and len(self._live) >= cap:
            raise VisitError(f"the server is busy with {len(self._live)} jobs (at most {cap}); try again later")

    @staticmethod
    def _cancel(job: Job, note: str) -> None:  # lock held
        job._cancel.set()
        job.status, job.note, job.finished = "cancelled", note, time.time()

    def _finish(self, job: Job, status: str, *, result=None, error: str | None = None) -> None:
        with self._lock:
            if job.status != "running":  # cancelled meanwhile: its outcome is discarded
                return
            job.result, job.error, job.status, job.finished = result, error, status, time.time()
            entry = self._sessions.get(job.session_id)
            if entry is not None:
                if status == "done":
                    entry["results"][job.kind] = result
                if entry["running"] is job:
                    entry["running"] = None

    def _run(self, job: Job, fn: Callable[[JobContext], Any], within: ContextManager) -> None:
        try:
            with self._slots:
                if not job._cancel.is_set():
                    job.note = ""
                    with within:
                        self._call(job, fn)
        finally:
            with self._lock:
                self._live.discard(job)
            job._ended.set()

    def _call(self, job: Job, fn: Callable[[JobContext], Any]) -> None:
        try:
            result = fn(JobContext(job, self._lock))
        except Cancelled:
            self._finish(job, "cancelled")
        except VisitError as exc:
            self._finish(job, "error", error=one_line(str(exc)))
        except Exception as exc:  # noqa: BLE001 - a failing job must not take the app down
            log.exception("job %s (%s) failed", job.id, job.kind)
            self._finish(job, "error", error=one_line(f"internal error: {type(exc).__name__}: {exc}"))
        else:
            self._finish(job, "cancelled" if job._cancel.is_set() else "done", result=result)


def _cap(cap: Cap) -> int | None:
    return cap() if callable(cap) else cap


def one_line(text: str) -> str:
    """The first non-empty line of a message (errors are shown on one line)."""
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "") or "failed"


__all__ = ["Cancelled", "Job", "JobContext", "JobRunner", "STATUSES", "one_line"]
