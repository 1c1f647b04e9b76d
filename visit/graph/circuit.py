"""The circuit that carries the target: the fewest components whose log-probability increase reaches a share
of the total (the second pruning mode, next to VISIT's own pruning by activation).

Components are attention heads and MLP neurons of the drawn layers, scored by their exact log-probability
increase of the target (Yu & Ananiadou, :mod:`visit.attribution`). The *total* is what the drawn layers do to
the target: the change of ``log p(target)`` from the first drawn layer's input to the last one's output (the
layers' scores telescope to it exactly). Components that lower the target are never part of the circuit.
Sorting the positive scores in decreasing order and keeping the shortest prefix whose sum reaches
``share x total`` keeps the fewest components that can reach the share (any other set of that size sums to no
more), in the spirit of circuit-tracer's pruning to 80% of the influence.

Why not the sum of the positive scores as the total: components raise and lower the target by far more than
the net change (on the default model, "The capital of France is" -> " Paris": +137 and -124 nats for +13.5),
so 80% of the positive sum takes ~3,900 components, 80% of the net change 9. When the layers lower the target
(net change <= 0) the positive sum is the total.
"""

from __future__ import annotations

from typing import Hashable, Mapping

DEFAULT_SHARE = 0.8


def circuit(scores: Mapping[Hashable, float], share: float = DEFAULT_SHARE, total: float | None = None) -> list:
    """The keys of ``scores`` to keep, best first: the shortest prefix of the positive scores, in decreasing
    order, whose sum reaches ``share`` (0 < share <= 1) of ``total`` (default, or when ``total <= 0``: the sum of
    the positive scores; a ``total`` beyond that sum is capped to it).

    >>> circuit({"a": 3.0, "b": 1.0, "c": -2.0, "d": 0.5}, 0.8)
    ['a', 'b']
    """
    if not 0 < share <= 1:
        raise ValueError(f"the circuit share must be in (0, 1], not {share!r}")
    positive = sorted(((float(v), k) for k, v in scores.items() if v > 0), key=lambda p: -p[0])
    total = effective_total(scores, total)
    if total <= 0:
        return []
    goal, kept, running = share * total, [], 0.0
    for value, key in positive:
        if running >= goal * (1 - 1e-12):
            break
        kept.append(key)
        running += value
    return kept


def effective_total(scores: Mapping[Hashable, float], total: float | None = None) -> float:
    """``total`` when positive, capped at the sum of the positive scores; else that sum."""
    positive = sum(float(v) for v in scores.values() if v > 0)
    return positive if total is None or total <= 0 else min(float(total), positive)


def kept_share(scores: Mapping[Hashable, float], kept, total: float | None = None) -> float:
    """The share of the total that ``kept`` carries (what the graph's note reports)."""
    total = effective_total(scores, total)
    return sum(float(scores[k]) for k in kept if scores[k] > 0) / total if total > 0 else 0.0
