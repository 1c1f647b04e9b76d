"""Admission for traces: at most a few analyses at once, the rest wait in order and can see where they stand.

Every trace (and model load) of the app's main callback runs inside ``queue.turn(session_id)``. At most
:data:`visit.limits.TRACES` analyses compute at once (default 1: on a CPU one analysis already uses every
core, and each holds its transient tensors, so more at once only adds memory and thrashing); the others
wait first-come first-served. More than :data:`visit.limits.QUEUE` waiting requests are refused at once
with a one-line "busy" message instead of piling up threads.

With batched traces (:mod:`visit.batching`, :data:`visit.limits.BATCH`) a session gives its turn back while its
forward pass waits to share a pass with others (:meth:`TraceQueue.lent`): the next sessions are admitted and join
the same pass, and each takes its turn back, before anyone who arrived later, to build its graph. On shutdown
(:mod:`visit.serving.gunicorn`) :meth:`TraceQueue.close` refuses new and waiting requests with one line.

While a trace is in flight the page polls :meth:`TraceQueue.position` (a ``dcc.Interval`` that the trace
callback's ``running`` switches on) and shows "waiting for the model: N traces ahead of yours", so a request
that has to wait says so instead of hanging silently.
"""

from __future__ import annotations

import itertools
import threading
from contextlib import contextmanager

from dash import Input, Output, State, dcc, html

from visit import limits
from visit.errors import VisitError
from visit.ui import ids, notice

POLL = "visit-queue-poll"  # dcc.Interval: on while this tab's trace is in flight
STATUS = "visit-queue-status"  # where the page says how many traces wait before its own


class TraceQueue:
    """FIFO admission with ``slots`` concurrent turns (None: :data:`visit.limits.TRACES`, read per turn).
    :meth:`lent` gives a turn back while its forward pass waits to share a batch; :meth:`close` refuses every
    turn from then on."""

    def __init__(self, slots: int | None = None, max_waiting: int | None = None):
        self.slots, self.max_waiting = slots, max_waiting
        self.closed: str | None = None  # the message every turn gets once the server shuts down
        self._tickets = itertools.count()
        self._waiting: list[tuple[int, str]] = []  # (ticket, key), oldest ticket first
        self._running: dict[int, str] = {}
        self._lent: dict[int, str] = {}  # turns given back while their trace waits for a shared pass
        self._mine = threading.local()  # the ticket of the turn this thread holds
        self._cond = threading.Condition()

    def _slots(self) -> int:
        return max(1, self.slots if self.slots is not None else limits.TRACES.value())

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
            self._enter(ticket, key)
        self._mine.ticket = ticket
        try:
            yield
        finally:
            self._mine.ticket = None
            with self._cond:
                del self._running[ticket]
                self._cond.notify_all()

    def _enter(self, ticket: int, key: str) -> None:  # the condition held
        """Wait in ticket order (a lent turn coming back keeps its old ticket, so it goes first) for a slot."""
        self._waiting.append((ticket, key))
        self._waiting.sort()
        while not (self._waiting[0][0] == ticket and len(self._running) < self._slots()):
            self._cond.wait()
            if self.closed and ticket not in self._lent:
                self._waiting = [w for w in self._waiting if w[0] != ticket]
                self._cond.notify_all()
                raise VisitError(self.closed)
        self._waiting.pop(0)
        self._lent.pop(ticket, None)
        self._running[ticket] = key
        self._cond.notify_all()  # the next in line may fit too when slots > 1

    @contextmanager
    def lent(self):
        """Give this thread's turn back for the block, then take it again before anyone who arrived later.

        The app's tracer wraps the wait for a batched forward pass in it (:mod:`visit.batching`): while one
        session's trace waits to share a pass, the next sessions are admitted and join the same pass; the
        graph building after it runs in turns, first come first served, as before. A no-op without a turn."""
        ticket = getattr(self._mine, "ticket", None)
        if ticket is None:
            yield
            return
        with self._cond:
            key = self._running.pop(ticket)
            self._lent[ticket] = key
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._enter(ticket, key)

    def position(self, key: str | None) -> int | None:
        """0 while ``key``'s trace runs, k when k-1 requests wait before it (1 = next), None when absent. A turn
        lent while its trace waits for a shared forward pass counts as waiting: 1 + the requests waiting before it."""
        with self._cond:
            return self._place(key)[0]

    def _place(self, key) -> tuple[int | None, int]:  # the condition held
        """(position, lent turns older than key's): what :func:`status_text` says."""
        if key in self._running.values():
            return 0, 0
        lent = next((t for t, k in self._lent.items() if k == key), None)
        if lent is not None:
            return (1 + sum(t < lent for t, _ in self._waiting if t not in self._lent),
                    sum(t < lent for t in self._lent))
        for i, (ticket, waiting_key) in enumerate(self._waiting):
            if waiting_key == key:
                return i + 1, sum(t < ticket for t in self._lent if all(t != w for w, _ in self._waiting))
        return None, 0

    def ahead(self, key: str | None) -> tuple[int, int] | None:
        """``(traces ahead of key's, its position)`` while it waits (:func:`status_text`); None otherwise. Ahead:
        the running turns, the lent ones older than it (their pass comes first) and those waiting before it."""
        with self._cond:
            position, lent_before = self._place(key)
            if not position:
                return None
            return position - 1 + len(self._running) + lent_before, position

    def counts(self) -> tuple[int, int]:
        """(running, waiting)."""
        with self._cond:
            return len(self._running), len(self._waiting)


def status_text(queue: TraceQueue, key: str | None) -> str:
    """What the page shows while its trace is in flight."""
    place = queue.ahead(key)
    if place is None:
        return ""
    ahead, position = place
    return (f"waiting for the model: {ahead} trace{'s' if ahead != 1 else ''} ahead of yours "
            f"(position {position} in the queue)")


def components():
    """The page's part: the poll timer (off until a trace is in flight) and the status line."""
    return [dcc.Interval(id=POLL, interval=700, disabled=True),
            html.Div(id=STATUS, className="queue-status", style={"display": "none"}), *notice.components()]


RUNNING = [(POLL, "disabled", False, True), (STATUS, "style", {}, {"display": "none"})]


def running_outputs():
    """``running=`` entries for the trace callback: poll and show the status only while it is in flight."""
    return [(Output(cid, prop), on, off) for cid, prop, on, off in RUNNING]


def register(app, queue: TraceQueue) -> None:
    """The poll callback: the session's place in the queue, as text."""
    @app.callback(Output(STATUS, "children"), Input(POLL, "n_intervals"), State(ids.SESSION, "data"),
                  prevent_initial_call=True)
    def show_position(_, session_id):
        return status_text(queue, session_id)
