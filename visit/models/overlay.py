"""Whose weights the model holds: a session's edits enter the tensors only inside ``vm.weights_for(...)``.

The app keeps one copy of each model in memory and serves many browser sessions; each session may have its own
knowledge edits (:class:`visit.editing.stack.EditStack`, handed over as an :class:`Overlay`: weight deltas under
a key). The weights *at rest* are always the originals.

The API (everything else in the library and the app goes through these four):

``vm.lock`` -- :class:`visit.models.rwlock.RWLock`, a plain readers-writer lock over the weights' values.
    ``with vm.lock.reading():`` reads the weights at rest, beside other readers and beside forward passes at rest;
    ``with vm.lock:`` has the model to itself (no reader, no pass, no other session). It never changes the
    weights by itself. A permanent in-place write (none in visit; tests) holds it and then calls
    :meth:`visit.models.weights.ModelWeights.written`.

``with vm.weights_for(overlay=None):`` -- the one context that swaps a session's edits in and out. For the block,
    the model holds ``overlay``'s weights (default: those of the session this context is bound to, :func:`current`)
    and the thread may run it:

    - with edits: ``vm.lock`` exclusively, the deltas added (:meth:`visit.models.weights.ModelWeights.changed`),
      and the originals copied back bit-exactly when the block ends, also on an exception;
    - at rest: ``vm.lock``'s shared side, so readers keep running beside it;
    - in both cases the model's pass mutex, so two threads' hooks never meet in one forward pass.

    It also binds ``overlay`` for the block (nested calls without an argument agree). Reentrant: nested with the
    same weights it is free; with other weights, or asking for edits while only reading, it raises
    :class:`OverlayConflict`. Everything that runs the model takes it: :func:`visit.hooks.run`,
    :func:`visit.tracer.trace`, and long jobs per pass or batch, so other sessions interleave between them.

``with bind_session(overlay):`` -- the session this context works for (a ``ContextVar``, read by
    :func:`current`); no lock, no tensor touched. The app binds every Dash callback to its session when it is
    registered (:mod:`visit.ui.session_callbacks`) and the job runner runs each job bound to its session's weights
    as they were when it was submitted (:class:`visit.ui.jobs.JobRunner`), so no panel names the weights. Library
    code that compares weights (before/after an edit) binds them itself. A plain ``threading.Thread`` starts
    unbound (the weights at rest, never another session's); to carry the binding into one, start it with
    ``contextvars.copy_context().run`` as its target.

``with weights_of(trace):`` -- the weights ``trace`` was computed on (``Trace.overlay``), for work derived from it
    later, in any thread: ``weights_for(trace.overlay)`` for an edited trace, the shared side for one at rest.

Guarantees: nobody sees another session's edits (they are in the tensors only while their thread holds the lock
exclusively), readers of the weights at rest never see edits, and the weights and their version come back
bit-exactly. Versions are keyed (:attr:`visit.models.weights.ModelWeights.version`), so caches derived from a
session's edited weights stay valid across its requests.

Cost: one fp32 add and copy per edited matrix (a ROME edit of the default model: one 1536 x 576 matrix, about a
millisecond) at every outermost ``weights_for`` of a session with edits, and the copy back at its end.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator, Mapping

import torch



@dataclass(frozen=True)
class Overlay:
    """Weight deltas (``{parameter name: fp32 delta}``, applied in order) under a hashable ``key``: equal keys
    must mean equal deltas (an edit stack's key is the ids of its edits, which never change). ``edits``: what
    made them (:class:`visit.editing.edit.Edit`), so a trace can say which edits it saw (the report lists them)."""

    key: tuple = ()
    deltas: tuple[Mapping[str, torch.Tensor], ...] = field(default=(), compare=False, repr=False)
    edits: tuple = field(default=(), compare=False, repr=False)

    def __bool__(self) -> bool:
        return bool(self.deltas)


NONE = Overlay()
_current: ContextVar[Overlay] = ContextVar("visit_overlay", default=NONE)


def current() -> Overlay:
    """The weights of the session this context is bound to; :data:`NONE` (the weights at rest) when unbound."""
    return _current.get()


@contextmanager
def bind_session(overlay: Overlay | None) -> Iterator[None]:
    """Work for the session whose weights are ``overlay`` (None: the weights at rest) in this block: later
    ``vm.weights_for()`` calls without an argument use them. Touches no lock and no tensor."""
    token = _current.set(overlay or NONE)
    try:
        yield
    finally:
        _current.reset(token)


class OverlayConflict(RuntimeError):
    """A thread inside ``weights_for`` asked for other weights (or for edits while only reading)."""


class SessionWeights:
    """The swap behind :meth:`visit.models.loading.VisitModel.weights_for` (one per model; module doc)."""

    def __init__(self, vm):
        self.vm = vm
        self.passes = threading.RLock()  # forward passes one at a time: hooks are registered on shared modules
        self._applied: Overlay | None = None  # what the exclusive holder swapped in; only that thread touches it

    @contextmanager
    def weights_for(self, overlay: Overlay | None = None) -> Iterator[None]:
        wanted = current() if overlay is None else overlay
        lock = self.vm.lock
        with bind_session(wanted):
            if lock.held_by_me() and self._applied is not None:  # nested inside a swap
                if wanted.key != self._applied.key:
                    raise OverlayConflict(f"the model holds the weights {self._applied.key or 'at rest'}; asked "
                                          f"for {wanted.key or 'the weights at rest'} inside")
                with self.passes:
                    yield
            elif not wanted:
                with lock.reading(), self.passes:
                    yield
            elif lock.reading_by_me():
                raise OverlayConflict("a reader of the weights at rest asked for a session's edited weights")
            else:
                with lock, self._swapped(wanted), self.passes:
                    yield

    @contextmanager
    def _swapped(self, overlay: Overlay) -> Iterator[None]:
        """``overlay``'s deltas added for the block (the caller holds the lock exclusively)."""
        self._applied = overlay
        try:
            with self.vm.weights.changed(list(overlay.deltas), key=overlay.key):
                yield
        finally:
            self._applied = None


@contextmanager
def weights_of(trace) -> Iterator[None]:
    """Read the weights ``trace`` was computed on (its overlay) for the block: ``weights_for`` its overlay when it
    has edits, else the shared side of the lock (beside other readers and passes at rest), bound to no edits."""
    overlay = getattr(trace, "overlay", NONE)
    if overlay:
        with trace.vm.weights_for(overlay):
            yield
    else:
        with bind_session(NONE), trace.vm.lock.reading():
            yield


def version_under(vm, overlay: Overlay | None = None):
    """The weights' version as work under ``overlay`` (default: the bound session's) sees it; read on the lock's
    shared side for the weights at rest (no wait behind another session's forward pass)."""
    overlay = overlay if overlay is not None else current()
    if not overlay:
        with vm.lock.reading():
            return vm.weights.version
    with vm.weights_for(overlay):
        return vm.weights.version


__all__ = ["Overlay", "NONE", "current", "bind_session", "weights_of", "SessionWeights", "OverlayConflict",
           "version_under"]
