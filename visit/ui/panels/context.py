"""What a panel gets from the app: this session's state, the job runner, the models and ``analyze``.

``create_app`` builds one :class:`PanelContext` and passes it to every panel's
``register_callbacks(app, ctx)``. Inside a callback, with the session id from
``State(ids.SESSION, "data")``::

    analysis = ctx.analysis(session_id)   # the session's current visit.pipeline.Analysis, or None
    vm = ctx.model(session_id)            # the model the session uses (loads it on first use)
    ctx.jobs.submit(session_id, "my-kind", fn)   # long work: see visit.ui.jobs and job_widget

The model is shared by every session: change what a forward pass computes only through the hook layer's
interventions (which undo themselves), never by editing weights in place. A session's knowledge edits
(``ctx.state(session_id).edits``) exist in the weights only inside ``vm.weights_for(...)``
(:mod:`visit.models.overlay`), which every library function that runs the model takes with the session its context
is bound to. Panels bind
nothing: every callback registered with ``app.callback`` runs bound to its ``ids.SESSION`` session
(:mod:`visit.ui.session_callbacks`), every job bound to its session's weights as they were when it was submitted
(:class:`visit.ui.jobs.JobRunner`), and values computed later from a trace meet the trace's own weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from visit import limits, pipeline
from visit.models import VisitModel
from visit.models.overlay import bind_session
from visit.ui.jobs import JobRunner
from visit.ui.model_registry import ModelRegistry
from visit.ui.state import SessionState, SessionStore


@dataclass
class PanelContext:
    sessions: SessionStore
    jobs: JobRunner
    registry: ModelRegistry
    analyze: Callable  # visit.pipeline.analyze(vm, prompt, target, position, settings, target_id=...)

    def analysis(self, session_id: str | None):
        """The session's current :class:`visit.pipeline.Analysis`, or None before its first trace."""
        return self.sessions.analysis(session_id)

    def state(self, session_id: str | None) -> SessionState:
        """The session's server-side state (created when new; a throwaway one for a missing id)."""
        return self.sessions.get(session_id)

    def model(self, session_id: str | None) -> VisitModel:
        """The model this session uses (the app's default until it loads another); may raise VisitError."""
        return self.registry.get(self.state(session_id).model_name)

    def using(self, session_id: str | None):
        """Context manager: bind the block to the session's weights as they are now (its edits; none for an
        unknown session). The app does it for every callback and job; tests call it directly."""
        return bind_session(self.sessions.overlay(session_id))

    @classmethod
    def create(cls, *, model: VisitModel | None = None, loader=None, model_name: str = "default",
               max_sessions: int = 32, analyze: Callable | None = None, max_workers: int = 2) -> "PanelContext":
        """A context with fresh parts (what ``create_app`` uses; tests build one for a tiny model).
        Sessions the store drops are dropped from the job runner too; the runner refuses jobs beyond the
        server's caps (:data:`visit.limits.JOBS_PER_SESSION`, :data:`visit.limits.JOBS`)."""
        if analyze is None:
            analyze = pipeline.analyze
        jobs = JobRunner(max_workers=max_workers, max_sessions=max(64, 2 * max_sessions),
                         max_jobs=limits.JOBS.value, max_per_session=limits.JOBS_PER_SESSION.value)
        sessions = SessionStore(max_sessions, on_drop=jobs.drop)
        registry = ModelRegistry(loader=loader, preloaded=model, default_name=model_name)
        ctx = cls(sessions=sessions, jobs=jobs, registry=registry, analyze=analyze)
        jobs.session_context = ctx.using  # every job runs on its session's weights
        return ctx


__all__ = ["PanelContext"]
