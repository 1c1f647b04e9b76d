"""Server-side per-session state and the graph re-draw requests panels send.

Each browser tab holds only a session id (``dcc.Store(storage_type="session")``); what it traced lives
here, in a bounded LRU, never in per-user globals. Dash serves callbacks from several threads, so every
access goes through one lock.

Memory is bounded twice: by the number of sessions (``max_sessions``, :data:`visit.limits.SESSIONS`) and
by the bytes their analyses hold (``max_bytes``, :data:`visit.limits.SESSION_BYTES`, measured by
:mod:`visit.ui.budget` whenever a session's ``analysis`` is set). Over the byte budget the oldest
analyses are dropped first (never the one just set); such a session keeps its request, so a re-draw
recomputes it, and :meth:`SessionStore.notice` tells it why its analysis is gone.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from visit.editing.stack import EditStack
from visit.errors import VisitError
from visit.graph.groups import EMPTY, Curation
from visit.graph.settings import GraphSettings
from visit.models.overlay import NONE, Overlay
from visit.ui.budget import ByteBudget, analysis_nbytes
from visit.ui.view import ViewMemory

# TraceRequest fields a panel's graph request may change besides GraphSettings fields
REQUEST_FIELDS = ("position", "target_id")
# GraphSettings fields panels set (the controls own the others, but panels may change those too)
MARK_FIELDS = ("include", "highlight", "flagged_neurons")
DROPPED_NOTE = ("your last analysis was dropped to free memory on this shared server "
                "(the oldest go first): trace again to recompute it")


@dataclass
class TraceRequest:
    """What the user asked for: enough to re-run the analysis with changed settings."""

    prompt: str
    target_text: str | None
    position: int | None
    settings: Any  # visit.graph.settings.GraphSettings
    target_id: int | None = None  # a prediction chosen by its chip: exact, whatever its text reads as


@dataclass
class SessionState:
    model_name: str | None = None  # None: the app's default model
    analysis: Any = None  # visit.pipeline.Analysis
    request: TraceRequest | None = None
    marks: dict = field(default_factory=dict)  # sticky panel-set settings (MARK_FIELDS), kept across traces
    version: int = 0  # bumped with every new analysis
    view: ViewMemory = field(default_factory=ViewMemory)  # the user's zoom/pan on the graph
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # one trace at a time per session
    analysis_bytes: int = 0  # what the byte budget counts for this session's analysis
    dropped_note: str | None = None  # set when the budget dropped this session's analysis
    curation: Curation = EMPTY  # pins, groups, labels, selected node (visit.graph.groups); kept across traces
    edits: EditStack = field(default_factory=EditStack)  # this session's knowledge edits, in order
    show_unedited: bool = False  # trace with the weights at rest although the session has edits
    session_id: str | None = field(default=None, repr=False)
    store: Any = field(default=None, repr=False, compare=False)  # the SessionStore that accounts its bytes

    def overlay(self) -> Overlay:
        """The weights this session's work runs on (:mod:`visit.models.overlay`): its edits, unless it asked
        to see the model before them."""
        return NONE if self.show_unedited else self.edits.overlay()

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)
        if name == "analysis":
            store = self.__dict__.get("store")
            if store is not None:
                store._account(self, value)


class SessionStore:
    """Bounded LRU of :class:`SessionState` keyed by session id (oldest sessions are dropped)."""

    def __init__(self, max_sessions: int = 32, on_drop: Callable[[str], None] | None = None,
                 max_bytes: int | None = None):
        """``on_drop(session_id)`` is called for every session the LRU drops (the app's job runner
        forgets the session's jobs and results then). ``max_bytes``: the analyses' byte budget
        (None: :data:`visit.limits.SESSION_BYTES`, read on every new analysis)."""
        self.max_sessions = max_sessions
        self.on_drop = on_drop
        self.budget = ByteBudget(max_bytes)
        self._sessions: OrderedDict[str, SessionState] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session_id: str | None) -> SessionState:
        """The session's state, created when new. A missing id gets a throwaway state."""
        if not session_id:
            return SessionState()
        dropped = []
        with self._lock:
            state = self._sessions.get(session_id)
            if state is None:
                state = self._sessions[session_id] = SessionState(session_id=session_id, store=self)
                while len(self._sessions) > self.max_sessions:
                    dropped.append(self._sessions.popitem(last=False)[0])
                    self.budget.remove(dropped[-1])
            else:
                self._sessions.move_to_end(session_id)
        for old in dropped if self.on_drop is not None else ():
            self.on_drop(old)
        return state

    def analysis(self, session_id: str | None):
        """The session's current analysis, or None (what panels get as ``get_analysis``)."""
        if not session_id:
            return None
        with self._lock:
            state = self._sessions.get(session_id)
            return None if state is None else state.analysis

    def overlay(self, session_id: str | None) -> Overlay:
        """The weights the session works on now (:meth:`SessionState.overlay`); the weights at rest for an
        unknown session (nothing is created)."""
        with self._lock:
            state = self._sessions.get(session_id) if session_id else None
        return NONE if state is None else state.overlay()

    def notice(self, session_id: str | None) -> str | None:
        """Why the session has no analysis although it traced (the byte budget dropped it), or None."""
        with self._lock:
            state = self._sessions.get(session_id) if session_id else None
            return None if state is None or state.analysis is not None else state.dropped_note

    def total_bytes(self) -> int:
        """Bytes of all kept analyses, as the budget counts them."""
        return self.budget.total()

    def _account(self, state: SessionState, analysis) -> None:
        """Called when ``state.analysis`` is set: measure it, then drop the oldest analyses over budget."""
        nbytes = analysis_nbytes(analysis) if analysis is not None else 0
        with self._lock:
            if state.analysis is not analysis or self._sessions.get(state.session_id) is not state:
                return  # replaced meanwhile (its own call accounts the newer one), or the session is gone
            object.__setattr__(state, "analysis_bytes", nbytes)
            object.__setattr__(state, "dropped_note", None)
            object.__setattr__(state, "_accounted", analysis)
            if analysis is None:
                self.budget.remove(state.session_id)
                return
            for victim_id in self.budget.add(state.session_id, nbytes):
                victim = self._sessions.get(victim_id)
                if victim is not None and victim.analysis is not None and \
                        victim.analysis is victim.__dict__.get("_accounted"):  # not a newer one in flight
                    object.__setattr__(victim, "analysis", None)
                    object.__setattr__(victim, "_accounted", None)
                    object.__setattr__(victim, "analysis_bytes", 0)
                    object.__setattr__(victim, "dropped_note", DROPPED_NOTE)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def __contains__(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._sessions


def new_session_id() -> str:
    return uuid.uuid4().hex


def request_graph_update(session_id: str | None = None, /, **settings_changes) -> dict:
    """The payload a panel writes to the ``ids.GRAPH_REQUEST`` store to re-draw the graph.

    ``settings_changes`` are GraphSettings fields (e.g. ``highlight=("L3.H2",)``, ``include=(...)``,
    ``flagged_neurons={(5, 17): "regularization"}``, ``layer_start=20``), or ``position`` (the token whose
    prediction the graph shows, e.g. a causal-trace cell's token) and ``target_id`` (the token the graph
    explains; pass the current one with a new position to keep it: a blank target means "the top prediction
    at the position", which at another token is another token). The app re-runs the session's last
    analysis with them; ``include``/``highlight``/``flagged_neurons`` then stay until the user
    clears them. The payload is plain JSON (tuple keys are encoded), with a nonce so that repeating
    a request still triggers.
    """
    known = _settings_field_names() | set(REQUEST_FIELDS)
    unknown = sorted(set(settings_changes) - known)
    if unknown:
        raise ValueError(f"unknown GraphSettings fields: {', '.join(unknown)}")
    encoded = {}
    for name, value in settings_changes.items():
        if name == "flagged_neurons":
            value = [[int(l), int(n), str(label)] for (l, n), label in dict(value or {}).items()]
        elif isinstance(value, (tuple, set, frozenset)):
            value = list(value)
        encoded[name] = value
    return {"session": session_id, "changes": encoded, "nonce": uuid.uuid4().hex}


def decode_graph_request(payload: dict | None) -> dict:
    """The settings changes of a :func:`request_graph_update` payload, with Python types restored."""
    if not payload or not isinstance(payload.get("changes"), dict):
        return {}
    known = _settings_field_names() | set(REQUEST_FIELDS)
    changes = {}
    for name, value in payload["changes"].items():
        if name not in known:
            raise VisitError(f"a panel asked for an unknown graph setting '{name}'")
        if name == "flagged_neurons":
            value = {(int(l), int(n)): str(label) for l, n, label in (value or [])}
        elif name in ("include", "highlight"):
            value = tuple(value or ())
        changes[name] = value
    return changes


def _settings_field_names() -> set[str]:
    return {f.name for f in fields(GraphSettings)}
