"""Per-trace memo for the analyses, so a panel and the HTML report of the same trace compute once.

Entries live as long as their trace: keyed by ``id(trace)`` and checked against a weak reference,
so a new trace that reuses a freed id never sees stale results.
"""

from __future__ import annotations

import threading
import weakref

from visit.models.overlay import weights_of

_lock = threading.Lock()
_memo: dict[int, tuple[weakref.ref, dict]] = {}


def per_trace(trace, key, compute):
    """``compute()`` once per (trace, key) and weights version; later calls return the stored value."""
    with weights_of(trace):  # the weights the trace was computed on (its session's edits), under the lock
        return _per_trace(trace, key, compute)


def _per_trace(trace, key, compute):
    key = (trace.vm.weights.version, key)
    with _lock:
        entry = _memo.get(id(trace))
        if entry is None or entry[0]() is not trace:
            entry = (weakref.ref(trace, lambda _ref, i=id(trace): _forget(i)), {})
            _memo[id(trace)] = entry
        if key in entry[1]:
            return entry[1][key]
    value = compute()
    with _lock:
        entry[1][key] = value
    return value


def _forget(trace_id: int) -> None:
    with _lock:
        entry = _memo.get(trace_id)
        if entry is not None and entry[0]() is None:
            del _memo[trace_id]
