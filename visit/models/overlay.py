"""Whose weights a thread sees: a session's edits, swapped in whenever its thread holds the model's lock.

The app keeps one copy of each model in memory and serves many browser sessions; each session may have its own
knowledge edits (:class:`visit.editing.stack.EditStack`). The weights *at rest* are always the originals. A
thread declares the session it works for with :func:`session_weights` (a :class:`Overlay`: the session's
weight deltas and a key naming them); from then on, every time that thread takes the model's lock
(:class:`ModelLock`, ``vm.lock``) at the outermost level, the deltas are added
(:meth:`visit.models.weights.ModelWeights.changed`), and when it lets the lock go the originals are copied back
bit-exactly. Everything in the library that runs the model or reads its weights holds ``vm.lock``, so:

- a session's forward passes, traces, attributions and jobs see its edits, batch by batch, while other
  sessions' requests interleave between batches and see theirs (or none);
- nobody ever sees weights edited by another session: edits exist in the tensors only while the lock is held.

A trace remembers the overlay it was computed under (``Trace.overlay``) and :func:`weights_of` re-enters it, so
anything computed later from that trace (attribution, analyses, the rest of the graph) meets the same weights,
whichever thread asks.

Cost: applying is one fp32 add and copy per edited matrix (a ROME edit of the default model: one 1536 x 576
matrix, about a millisecond) at every outermost acquisition by a session with edits, and the copy back at the
release. Versions are keyed (:attr:`visit.models.weights.ModelWeights.version`), so caches derived from a
session's edited weights stay valid across its requests. Holding the lock for a whole analysis serialises
analyses of different sessions (the trace queue already lets them take turns).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

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
    """The overlay this thread (context) works under; :data:`NONE` for the weights at rest."""
    return _current.get()


@contextmanager
def session_weights(overlay: Overlay | None) -> Iterator[None]:
    """Work under ``overlay`` (None: the weights at rest) for the block: later acquisitions of any model's
    lock by this thread apply it. Set it before taking the lock; changing it while holding a lock raises."""
    token = _current.set(overlay or NONE)
    try:
        yield
    finally:
        _current.reset(token)


@contextmanager
def weights_of(trace) -> Iterator[None]:
    """The model's lock, with the weights ``trace`` was computed on (its overlay) in force."""
    with session_weights(getattr(trace, "overlay", NONE)), trace.vm.lock:
        yield


class OverlayConflict(RuntimeError):
    """A thread holding a model's lock under one overlay asked for it under another."""


class ModelLock:
    """``vm.lock``: a reentrant lock that applies the holder's overlay (module doc) while it is held."""

    def __init__(self):
        self._lock = threading.RLock()
        self._depth = 0  # only the owner thread reads or writes it
        self._applied: Overlay = NONE
        self._change = None
        self.vm = None  # set by :meth:`bind`

    def bind(self, vm) -> "ModelLock":
        self.vm = vm
        return self

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if not self._lock.acquire(blocking, timeout):
            return False
        self._depth += 1
        wanted = current()
        if self._depth > 1:
            if wanted.key != self._applied.key:
                self._depth -= 1
                self._lock.release()
                raise OverlayConflict(f"the model's lock is held under the weights {self._applied.key or 'at rest'}"
                                      f" and was asked for under {wanted.key or 'the weights at rest'}")
            return True
        if wanted:
            change = self.vm.weights.changed(list(wanted.deltas), key=wanted.key)
            try:
                self._applied = wanted
                change.__enter__()
            except BaseException:
                self._applied, self._depth = NONE, self._depth - 1
                self._lock.release()
                raise
            self._change = change
        return True

    def release(self) -> None:
        try:
            if self._depth == 1 and self._change is not None:
                change, self._change = self._change, None
                change.__exit__(None, None, None)
        finally:
            if self._depth == 1:
                self._applied = NONE
            self._depth -= 1
            self._lock.release()

    def __enter__(self) -> "ModelLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def held_by_me(self) -> bool:
        """True when this thread holds the lock (for assertions and tests)."""
        return self._lock._is_owned()  # noqa: SLF001 - RLock has no public owner test


def version_under(vm, overlay: Overlay | None = None):
    """The weights' version as a thread working under ``overlay`` (default: this thread's) sees it."""
    with session_weights(overlay if overlay is not None else current()), vm.lock:
        return vm.weights.version


__all__ = ["Overlay", "NONE", "current", "session_weights", "weights_of", "ModelLock", "OverlayConflict",
           "version_under"]
