"""Admission for traces: at most a few analyses at once, the rest wait in order and can see where they stand.

Every trace (and model load) of the app's main callback runs inside ``queue.turn(session_id)``. At most
:data:`visit.limits.TRACES` analyses compute at once (default 1: on a CPU one analysis already uses every
core, and each holds its transient tensors, so more at once only adds memory and thrashing); the others
wait first-come first-served. More than :data:`visit.limits.QUEUE` waiting requests are refused at once
with a one-line "busy" message instead of piling up threads.

While a trace is in flight the page polls :meth:`TraceQueue.position` (a ``dcc.Interval`` that the trace
callback's ``running`` switches on) and shows "waiting for the model: N traces ahead of yours", so a request
that has to wait says so instead of hanging silently.
"""

from __future__ import annotations

import itertools
import threading
from contextlib import contextmanager
from typing import Callable

from visit import limits
from visit.errors import VisitError

POLL = "visit-queue-poll"  # dcc.Interval: on while this tab's trace is in flight
STATUS = "visit-queue-status"  # where the page says how many traces wait before its own


class TraceQueue:
    """FIFO admission with ``slots`` concurrent turns (an int, a function returning one, or None:
    :data:`visit.limits.TRACES`; read per turn). :meth:`close` refuses every turn from then on."""

    def __init__(self, slots: int | Callable[[], int] | None = None, max_waiting: int | None = None):
        self.slots, self.max_waiting = slots, max_waiting
        self.closed: str | None = None  # the message every turn gets once the server shuts down
        self._tickets = itertools.count()
        self._waiting: list[tuple[int, str]] = []  # (ticket, key) in arrival order
        self._running: dict[int, str] = {}
        self._cond = threading.Condition()

    def _slots(self) -> int:
        if self.slots is None:
            return max(1, limits.TRACES.value())
        return max(1, self.slots() if callable(self.slots) else self.slots)

    def close(self, message: str) -> None:
        """Refuse new turns with ``message`` (a :class:`VisitError`); requests waiting now get it too."""
        with self._cond:
            self.closed = message
            self._cond.notify_all()

    @contextmanager
    def turn(self, key: str | None):
        """Wait for a turn (first come, first served), run the block, give the turn back (also on errors)."""
        key = key or ""
        with self._cond:
            if self.closed:
                raise VisitError(self.closed)
            cap = self.max_waiting if self.max_waiting is not None else limits.QUEUE.value()
            if len(self._waiting) >= cap and len(self._running) >= self._slots():
                raise VisitError(f"the server is busy: {len(self._waiting)} traces are waiting already; "
                                 f"try again in a minute")
            ticket = next(self._tickets)
            self._waiting.append((ticket, key))
            while not (self._waiting[0][0] == ticket and len(self._running) < self._slots()):
                self._cond.wait()
                if self.closed:
                    self._waiting = [w for w in self._waiting if w[0] != ticket]
                    self._cond.notify_all()
                    raise VisitError(self.closed)
            self._waiting.pop(0)
            self._running[ticket] = key
            self._cond.notify_all()  # the next in line may fit too when slots > 1
        try:
            yield
        finally:
            with self._cond:
                del self._running[ticket]
                self._cond.notify_all()

    def position(self, key: str | None) -> int | None:
        """0 while ``key``'s trace runs, k when k-1 requests wait before it (1 = next), None when absent."""
        with self._cond:
            if key in self._running.values():
                return 0
            for i, (_, waiting_key) in enumerate(self._waiting):
                if waiting_key == key:
                    return i + 1
            return None

    def counts(self) -> tuple[int, int]:
        """(running, waiting)."""
        with self._cond:
            return len(self._running), len(self._waiting)


def status_text(queue: TraceQueue, key: str | None) -> str:
    """What the page shows while its trace is in flight."""
    position = queue.position(key)
    if not position:
        return ""
    running, _ = queue.counts()
    ahead = position - 1 + running
    return (f"waiting for the model: {ahead} trace{'s' if ahead != 1 else ''} ahead of yours "
            f"(position {position} in the queue)")


def components():
    """The page's part: the poll timer (off until a trace is in flight) and the status line."""
    from dash import dcc, html

    from visit.ui import notice

    return [dcc.Interval(id=POLL, interval=700, disabled=True),
            html.Div(id=STATUS, className="queue-status", style={"display": "none"}), *notice.components()]


RUNNING = [(POLL, "disabled", False, True), (STATUS, "style", {}, {"display": "none"})]


def running_outputs():
    """``running=`` entries for the trace callback: poll and show the status only while it is in flight."""
    from dash import Output

    return [(Output(cid, prop), on, off) for cid, prop, on, off in RUNNING]


def register(app, queue: TraceQueue) -> None:
    """The poll callback: the session's place in the queue, as text."""
    from dash import Input, Output, State

    from visit.ui import ids

    @app.callback(Output(STATUS, "children"), Input(POLL, "n_intervals"), State(ids.SESSION, "data"),
                  prevent_initial_call=True)
    def show_position(_, session_id):
        return status_text(queue, session_id)
