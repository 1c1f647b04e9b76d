"""Per-trace memo of attribution results (the panel, the report and the graph ask for the same scores)."""

from __future__ import annotations

from visit.models.overlay import weights_of


def memo(trace, key, compute):
    """``compute()`` once per ``(trace, key)`` and weights version; the result lives as long as the trace.

    Attribution combines the trace with the model's weights, so the weights' version is part of the key: after
    an edit the same trace is scored again with the weights it now meets (never a stale number)."""
    store = trace.__dict__.setdefault("_attribution_memo", {})
    with weights_of(trace):  # the weights the trace was computed on (its session's edits), under the lock
        key = (trace.vm.weights.version, key)
        if key not in store:
            store[key] = compute()
        return store[key]
