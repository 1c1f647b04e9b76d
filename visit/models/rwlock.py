"""A readers-writer lock, reentrant on both sides: the model's ``vm.lock``.

Shared holders (:meth:`RWLock.reading`) run side by side; an exclusive holder (``with lock:``) runs alone.
Waiting writers go first: a new reader waits while a writer waits, so a stream of readers never starves a
writer. Both sides are reentrant per thread, and a thread holding the exclusive side may also read. The one
refused order is a reader asking for the exclusive side (two such readers would wait for each other forever):
it raises :class:`LockOrderError` at once instead of hanging.

Nothing here knows about models; :mod:`visit.models.overlay` builds the session weights on it.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator


class LockOrderError(RuntimeError):
    """A thread holding only the shared side asked for the exclusive side (it would deadlock)."""


class RWLock:
    """``with lock:`` exclusive, ``with lock.reading():`` shared; both reentrant (see the module doc)."""

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0  # threads holding the shared side
        self._owner: int | None = None  # the thread holding the exclusive side
        self._depth = 0  # the owner's nesting depth
        self._writers_waiting = 0
        self._local = threading.local()  # .reads: this thread's shared nesting depth

    def _reads(self) -> int:
        return getattr(self._local, "reads", 0)

    def held_by_me(self) -> bool:
        """True when this thread holds the exclusive side."""
        return self._owner == threading.get_ident()

    def reading_by_me(self) -> bool:
        """True when this thread holds the shared side (and not the exclusive one)."""
        return self._reads() > 0 and not self.held_by_me()

    def writers_waiting(self) -> int:
        """How many threads wait for the exclusive side now (for tests and monitoring)."""
        with self._cond:
            return self._writers_waiting

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the exclusive side; False when ``blocking`` is off or ``timeout`` (seconds) passed first."""
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            if self._reads():
                raise LockOrderError("this thread reads under the lock and asked for it exclusively")
            self._writers_waiting += 1
            free = lambda: self._owner is None and not self._readers  # noqa: E731
            try:
                ok = self._cond.wait_for(free, None if timeout < 0 else timeout) if blocking else free()
            finally:
                self._writers_waiting -= 1
            if not ok:
                self._cond.notify_all()  # readers held back by this writer may go
                return False
            self._owner, self._depth = me, 1
            return True

    def release(self) -> None:
        """Let go of the exclusive side (once per :meth:`acquire`)."""
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of a lock this thread does not hold exclusively")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    def __enter__(self) -> "RWLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold the shared side for the block (free for the exclusive holder itself and for a nested read)."""
        depth = self._reads()
        if depth == 0 and not self.held_by_me():
            with self._cond:
                self._cond.wait_for(lambda: self._owner is None and not self._writers_waiting)
                self._readers += 1
        self._local.reads = depth + 1
        try:
            yield
        finally:
            self._local.reads = depth
            if depth == 0 and not self.held_by_me():
                with self._cond:
                    self._readers -= 1
                    if not self._readers:
                        self._cond.notify_all()


__all__ = ["RWLock", "LockOrderError"]
