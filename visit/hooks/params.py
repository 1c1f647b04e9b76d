"""Temporary weight changes that undo themselves, bit-exactly, also on an exception.

A change is a set of ``{parameter name: delta}`` (as in ``model.named_parameters()``). :func:`weights_changed`
adds them for the duration of a block and then copies the saved originals back (``torch.equal`` with what was
there before; no ``W + d - d`` rounding). Stacks of edits (the editing panel's list) are applied in order from the
originals each time, so removing any one of them leaves exactly the weights the others give in that order.

Every change goes through :meth:`visit.models.weights.ModelWeights.changed`, which gives the weights a version of
their own while it lasts and the old one back afterwards, so caches keyed by the weights' version never serve
numbers computed from other weights.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

import torch

from visit.errors import VisitError

Delta = Mapping[str, torch.Tensor]


def parameter(vm, name: str) -> torch.nn.Parameter:
    params = dict(vm.model.named_parameters())
    if name not in params:
        raise VisitError(f"the model has no parameter '{name}'")
    return params[name]


@contextmanager
def weights_changed(vm, deltas: Sequence[Delta] | Delta = (), key=None) -> Iterator[None]:
    """Add each delta in ``deltas`` (one mapping or a sequence applied in order) for the block's duration.

    The sums are done in fp32 and cast to the parameter's dtype, on top of the bound session's weights
    (``vm.weights_for()``). Holds ``vm.lock`` exclusively throughout, so no other thread sees the changed weights
    or runs the model meanwhile. ``key`` (hashable) names the change for the weights' version
    (:meth:`visit.models.weights.ModelWeights.changed`): the same key on the same weights gives the same
    version, so caches survive re-applying it; without a key the version is new every time. When the block
    ends the weights and the version are again the ones before.
    """
    if vm.backend is not None:
        raise VisitError(f"{vm.name} runs remotely: editing changes weights, which stay where the model lives; "
                         f"load the model locally to edit it")
    stack = [deltas] if isinstance(deltas, Mapping) else list(deltas)
    known = dict(vm.model.named_parameters())
    missing = [n for d in stack for n in d if n not in known]
    if missing:
        raise VisitError(f"the model has no parameter '{missing[0]}'")
    with vm.lock, vm.weights_for(), vm.weights.changed(stack, key):
        yield


def check_finite(vm, names: Sequence[str]) -> None:
    """Raise :class:`VisitError` when a parameter holds NaN or inf (after an edit)."""
    for n in names:
        if not torch.isfinite(parameter(vm, n)).all():
            raise VisitError(f"the edit made parameter '{n}' non-finite (NaN or inf)")
