"""A thread-safe memo: ``compute()`` once per key, for the results derived from one trace.

Every :class:`visit.tracer.Trace` owns one (``trace.memos``); :meth:`visit.tracer.Trace.memo` keys it by the
weights' version, so the panels, the report and the graph that ask for the same scores compute them once, and
an edited model never serves stale numbers. It lives and dies with its trace: no global table, no ids.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Hashable


class Memo:
    """``get(key, compute)``: the stored value, or ``compute()`` stored. Two threads asking at once may both
    compute (the lock is not held while computing, so a slow computation blocks nobody); both get the value
    stored first."""

    def __init__(self) -> None:
        self._values: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._values:
                return self._values[key]
        value = compute()
        with self._lock:
            return self._values.setdefault(key, value)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._values
