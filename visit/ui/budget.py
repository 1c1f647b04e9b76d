"""How many bytes the kept analyses take, and which to drop when they exceed the server's budget.

The session store keeps each browser tab's last :class:`~visit.pipeline.Analysis` (its trace's tensors, the
graph, the figure) so that panels and re-draws do not trace again. Counting sessions does not bound
memory (a 512-token prompt's trace is ~100x a 5-token one), so the store also keeps a byte budget
(:data:`visit.limits.SESSION_BYTES`): when a new analysis pushes the total over it, the *oldest* analyses
are dropped first (never the one just made), and their sessions are told to trace again.

:func:`analysis_nbytes` estimates an analysis's own bytes: tensors (``nbytes``, each storage once),
numpy arrays, strings and plain containers, walked from the analysis. It skips what is shared by every
session and owned elsewhere: the model and its weights (``nn.Module``, the :class:`VisitModel`, the
tokenizer), the logit lens (a view of ``W_U``), tensors whose storage is a model parameter's, classes,
functions and modules. It is an estimate (Python object headers are approximated), good to ~10%.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from typing import Hashable

import numpy as np
import torch

from visit import limits

CONTAINER_OVERHEAD = 64  # bytes per dict / list / object, roughly what CPython spends on one
SKIP_TYPE_NAMES = {"VisitModel", "LogitLens", "Lock", "RLock", "Event", "Condition", "Thread"}
MAX_OBJECTS = 2_000_000  # a safety stop for pathological graphs


def _skipped(obj) -> bool:
    if isinstance(obj, (torch.nn.Module, type, type(sys), type(_skipped), torch.device, torch.dtype)):
        return True
    cls = type(obj)
    if cls.__name__ in SKIP_TYPE_NAMES or callable(obj) and not hasattr(obj, "__dict__"):
        return True
    module = cls.__module__ or ""
    return module.startswith(("transformers", "tokenizers", "threading", "_thread"))


def _model_storages(obj, found: set) -> None:
    vm = getattr(getattr(obj, "trace", None), "vm", None) or getattr(obj, "vm", None)
    model = getattr(vm, "model", None)
    if isinstance(model, torch.nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            found.add(tensor.untyped_storage().data_ptr())


def analysis_nbytes(obj) -> int:
    """Estimated bytes owned by ``obj`` (an Analysis, or anything): see the module docstring."""
    shared: set[int] = set()
    _model_storages(obj, shared)
    seen_ids: set[int] = set()
    seen_storages: set[int] = set()
    total = 0
    stack = [obj]
    count = 0
    while stack and count < MAX_OBJECTS:
        item = stack.pop()
        if item is None or isinstance(item, (bool, int, float, complex)):
            continue
        if id(item) in seen_ids:
            continue
        seen_ids.add(id(item))
        count += 1
        if isinstance(item, torch.Tensor):
            try:
                storage = item.untyped_storage()
                ptr = storage.data_ptr()
                if ptr not in shared and ptr not in seen_storages:
                    seen_storages.add(ptr)
                    total += storage.nbytes()
            except (RuntimeError, NotImplementedError):  # meta / sparse tensors
                total += item.element_size() * item.nelement()
            continue
        if isinstance(item, np.ndarray):
            total += item.nbytes
            if item.dtype == object:
                stack.extend(item.ravel().tolist())
            continue
        if isinstance(item, (str, bytes, bytearray)):
            total += sys.getsizeof(item)
            continue
        if _skipped(item):
            continue
        total += CONTAINER_OVERHEAD
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 8 * len(item)
            stack.extend(item)
        elif hasattr(item, "_data") and hasattr(item, "_layout") and hasattr(item, "to_plotly_json"):
            stack.extend((item._data, item._layout))  # a plotly figure: its plain dicts, not its validators
        elif hasattr(item, "_node") and hasattr(item, "_adj"):
            stack.extend((item._node, item._adj, getattr(item, "graph", None)))  # a networkx graph
        elif hasattr(item, "__dict__"):
            stack.extend(vars(item).values())
        elif hasattr(item, "__slots__"):
            stack.extend(getattr(item, s, None) for s in item.__slots__ if isinstance(s, str))
    return total


class ByteBudget:
    """Bytes per key in the order they were added; :meth:`add` says which old keys to drop.

    ``max_bytes`` None reads :data:`visit.limits.SESSION_BYTES` on every :meth:`add` (env override).
    Thread-safe.
    """

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = max_bytes
        self._sizes: OrderedDict[Hashable, int] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def limit(self) -> int:
        return limits.SESSION_BYTES.value() if self.max_bytes is None else self.max_bytes

    def add(self, key: Hashable, nbytes: int) -> list[Hashable]:
        """Record ``key`` (newest) at ``nbytes``; return the oldest keys whose removal brings the total
        under the limit (already removed here). ``key`` itself is never returned, even when it alone
        exceeds the limit: the session that just traced keeps its result."""
        limit = self.limit
        with self._lock:
            self._sizes.pop(key, None)
            self._sizes[key] = int(nbytes)
            total = sum(self._sizes.values())
            victims = []
            for old in list(self._sizes):
                if total <= limit or old == key:
                    break
                total -= self._sizes.pop(old)
                victims.append(old)
            return victims

    def remove(self, key: Hashable) -> None:
        with self._lock:
            self._sizes.pop(key, None)

    def total(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    def sizes(self) -> dict:
        with self._lock:
            return dict(self._sizes)
