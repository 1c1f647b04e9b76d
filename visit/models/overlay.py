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
session's edited weights stay valid across its requests. Work on an edited session's trace holds the lock (it is
serialised with every other use of the model); work that only reads the weights at rest shares the lock's read
side (:meth:`ModelLock.reading`) and runs beside other readers and forward passes, as it did before sessions
could edit. Long jobs take the lock per pass, so other sessions interleave.
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
    """Read the weights ``trace`` was computed on (its overlay) for the block: the model's lock with that overlay
    applied, or, for a trace of the weights at rest, a shared read that runs beside other readers and beside
    forward passes at rest, and only excludes a session's edits being swapped in (:meth:`ModelLock.reading`)."""
    overlay = getattr(trace, "overlay", NONE)
    with session_weights(overlay):
        if overlay:
            with trace.vm.lock:
                yield
        else:
            with trace.vm.lock.reading():
                yield


class OverlayConflict(RuntimeError):
    """A thread holding a model's lock under one overlay asked for it under another."""


class ModelLock:
    """``vm.lock``: a reentrant lock that applies the holder's overlay (module doc) while it is held.

    Two kinds of holders: the lock itself (exclusive: forward passes, which hook the model's modules, and any work
    under a session's edits) and shared *readers* of the weights at rest (:meth:`reading`: building a graph,
    attribution, lens projections from a trace of the unedited model). Swapping a session's edits in waits for
    the readers to finish (and new readers wait for it), so a reader never sees edited tensors, while readers and
    forward passes at rest run side by side. Order, to never deadlock: readers may then take the lock; a thread
    applying edits takes the write side before the lock; a thread holding the lock reads without the read side.
    """

    def __init__(self):
        self._lock = threading.RLock()
        self._depth = 0  # only the owner thread reads or writes it
        self._applied: Overlay = NONE
        self._change = None
        self._writing = False  # the owner holds the write side (its overlay is applied)
        self._rw = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False  # a thread holds the write side
        self._writers_waiting = 0
        self._local = threading.local()  # this thread's read depth
        self.vm = None  # set by :meth:`bind`

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Read the weights at rest for the block (shared with other readers; see the class doc)."""
        if self.held_by_me():  # the lock already excludes edits being swapped in; it also checks the overlay
            with self:
                yield
            return
        depth = getattr(self._local, "reads", 0)
        if depth == 0:
            with self._rw:
                while self._writer or self._writers_waiting:
                    self._rw.wait()
                self._readers += 1
        self._local.reads = depth + 1
        try:
            yield
        finally:
            self._local.reads = depth
            if depth == 0:
                with self._rw:
                    self._readers -= 1
                    if self._readers == 0:
                        self._rw.notify_all()

    def _write_acquire(self) -> None:
        if getattr(self._local, "reads", 0):
            raise OverlayConflict("a reader of the weights at rest asked for a session's edited weights")
        with self._rw:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._rw.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True

    def _write_release(self) -> None:
        with self._rw:
            self._writer = False
            self._rw.notify_all()

    def bind(self, vm) -> "ModelLock":
        self.vm = vm
        return self

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        wanted = current()
        nested = self.held_by_me()
        if wanted and not nested:
            self._write_acquire()  # before the lock (see the class doc)
        if not self._lock.acquire(blocking, timeout):
            if wanted and not nested:
                self._write_release()
            return False
        self._depth += 1
        if self._depth > 1:
            if wanted.key != self._applied.key:
                self._depth -= 1
                self._lock.release()
                raise OverlayConflict(f"the model's lock is held under the weights {self._applied.key or 'at rest'}"
                                      f" and was asked for under {wanted.key or 'the weights at rest'}")
            return True
        if wanted:
            self._writing = True
            change = self.vm.weights.changed(list(wanted.deltas), key=wanted.key)
            try:
                self._applied = wanted
                change.__enter__()
            except BaseException:
                self._applied, self._depth, self._writing = NONE, self._depth - 1, False
                self._lock.release()
                self._write_release()
                raise
            self._change = change
        return True

    def release(self) -> None:
        writing = False
        try:
            if self._depth == 1 and self._change is not None:
                change, self._change = self._change, None
                change.__exit__(None, None, None)
        finally:
            if self._depth == 1:
                self._applied = NONE
                writing, self._writing = self._writing, False
            self._depth -= 1
            self._lock.release()
            if writing:
                self._write_release()

    def __enter__(self) -> "ModelLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def held_by_me(self) -> bool:
        """True when this thread holds the lock (for assertions and tests)."""
        return self._lock._is_owned()  # noqa: SLF001 - RLock has no public owner test


def version_under(vm, overlay: Overlay | None = None):
    """The weights' version as a thread working under ``overlay`` (default: this thread's) sees it: read on the
    lock's shared side for the weights at rest (no wait behind another session's forward pass)."""
    overlay = overlay if overlay is not None else current()
    with session_weights(overlay), (vm.lock if overlay else vm.lock.reading()):
        return vm.weights.version


__all__ = ["Overlay", "NONE", "current", "session_weights", "weights_of", "ModelLock", "OverlayConflict",
           "version_under"]
