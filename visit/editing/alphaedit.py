"""AlphaEdit (Fang et al., ICLR 2025): MEMIT's updates projected onto the null space of the preserved knowledge.

MEMIT balances the new facts against ``C = E[k k^T]`` (how much the corpus's keys may move). AlphaEdit instead
forbids moving them: every update ``Delta [d_in, d_out]`` (``[in, out]`` view, ``out = k @ W``) is made of rows
in the span of ``P = U0 U0^T``, ``U0`` the eigenvectors of ``C`` whose eigenvalues are small, so for a
preserved key ``k0`` (a key of the corpus, living in the span of C's large eigenvectors) ``k0 @ Delta ~ 0`` and
the layer's output on it is unchanged. Per layer of MEMIT's range, with ``K`` this batch's keys, ``R`` the
layer's residuals (:mod:`visit.editing.memit`) and ``K_p`` the keys of the edits made earlier in the session::

    Delta = (P (K^T K + K_p^T K_p) + alpha I)^-1 P K^T R

(``(I - P) Delta = 0`` follows from it: multiply by ``I - P``; so ``Delta = P Delta`` exactly, and
``k0 @ Delta = (P k0) @ Delta = 0`` for ``k0`` orthogonal to ``U0``.) The ``K_p^T K_p`` term keeps the new
update from undoing earlier edits: for sequential editing it accumulates every earlier edit's keys at this
layer (AlphaEdit's ``cache_c``); here it is read from the session's earlier edits (``history``, passed by
:meth:`visit.editing.stack.EditStack.edit`), so reverting an edit also drops its keys.

Choices (the reference tunes an absolute eigenvalue threshold per model, ~1e-2): the null space is the
eigenvectors of ``C`` with an eigenvalue below ``threshold x`` C's *median* eigenvalue (:data:`THRESHOLD`):
relative, so it does not depend on the keys' scale, and to the median rather than the largest, because a
layer's largest eigenvalue can be an outlier hundreds of times the rest (the default model's layer 2: 71.9
against a median of ~0.008, one always-on neuron); and ``alpha`` = 10 (the reference's ``L2``). The target optimisation,
keys and layer order are MEMIT's (:func:`visit.editing.memit.edit_facts`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch

from visit.editing.edit import Edit, register
from visit.editing.memit import MemitConfig, _layer_stats, as_requests, edit_facts, prepare, resolve_layers
from visit.editing.stats import KeyStats
from visit.errors import VisitError

THRESHOLD = 1.0
ALPHA = 10.0
_PROJECTIONS: dict[tuple, torch.Tensor] = {}


@dataclass(frozen=True)
class AlphaConfig(MemitConfig):
    """MEMIT's settings plus the null-space threshold (relative to C's median eigenvalue) and ``alpha``."""

    threshold: float = THRESHOLD
    alpha: float = ALPHA


def null_space(stats: KeyStats, threshold: float = THRESHOLD) -> torch.Tensor:
    """``P = U0 U0^T [d_mlp, d_mlp]`` (fp32): the projection onto C's eigenvectors with eigenvalue below
    ``threshold x`` the median eigenvalue. Cached per statistics (model, layer, corpus, size) and threshold."""
    key = (stats.model, stats.layer, stats.corpus, stats.n_tokens, float(threshold), str(stats.C.device))
    if key not in _PROJECTIONS:
        values, vectors = torch.linalg.eigh(stats.C.double())
        U0 = vectors[:, values < float(threshold) * values.median()]
        if U0.shape[1] == 0:
            raise VisitError(f"layer {stats.layer}'s key statistics have no eigenvalue below {threshold} x the "
                             f"median: the null space is empty, so AlphaEdit cannot change this layer")
        _PROJECTIONS[key] = (U0 @ U0.T).float()
    return _PROJECTIONS[key]


def alphaedit_solve(K: torch.Tensor, R: torch.Tensor, P: torch.Tensor, preserved: torch.Tensor | None = None,
                    alpha: float = ALPHA) -> torch.Tensor:
    """``(P (K^T K + preserved) + alpha I)^-1 P K^T R`` in fp64 -> fp32: ``K [n, d_in]``, ``R [n, d_out]``,
    ``P [d_in, d_in]``, ``preserved [d_in, d_in]`` (``K_p^T K_p`` of earlier edits, or None)."""
    K64, P64 = K.double(), P.double().to(K.device)
    A = K64.T @ K64
    if preserved is not None:
        A = A + preserved.double().to(K.device)
    A = P64 @ A + float(alpha) * torch.eye(A.shape[0], dtype=torch.float64, device=K.device)
    return torch.linalg.solve(A, P64 @ K64.T @ R.double().to(K.device)).float()


def preserved_keys(history: Sequence[Edit], layer: int, d: int, device) -> torch.Tensor | None:
    """``K_p^T K_p [d, d]``: the keys earlier edits wrote at ``layer`` (MEMIT/AlphaEdit's per-layer keys,
    ROME's key at its layer), or None when there are none."""
    total = None
    for e in history:
        keys = e.tensors.get("keys", {}).get(layer)
        if keys is None and e.layer == layer and "key" in e.tensors:
            keys = e.tensors["key"].view(1, -1)
        if keys is not None:
            k = keys.double().to(device)
            total = k.T @ k if total is None else total + k.T @ k
    return total


@register("alphaedit")
def alphaedit_edit(vm, request, layer: int | None = None, layers=None, config: AlphaConfig | None = None,
                   stats: dict | None = None, progress=None, history: Sequence[Edit] = (),
                   threshold: float | None = None, alpha: float | None = None) -> Edit:
    """An AlphaEdit edit of one request or a batch; ``history``: the edits already applied (their keys are
    preserved). Other arguments as :func:`visit.editing.memit.memit_edit`."""
    config = config if isinstance(config, AlphaConfig) else AlphaConfig(**(vars(config) if config else {}))
    if threshold is not None:
        config = replace(config, threshold=float(threshold))
    if alpha is not None:
        config = replace(config, alpha=float(alpha))
    picked = resolve_layers(vm, layer, layers)
    stats = _layer_stats(vm, picked, stats, config, progress)
    ranks = {}

    def solve(lay: int, K: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        P = null_space(stats[lay], config.threshold).to(K.device)
        ranks[lay] = int(round(float(P.trace())))
        return alphaedit_solve(K, R, P, preserved_keys(history, lay, K.shape[1], K.device), config.alpha)

    edit = edit_facts(vm, "alphaedit", as_requests(request), picked, config, solve, progress)
    edit.info.update(threshold=config.threshold, alpha=config.alpha, null_space_dims=ranks,
                     preserved_edits=len(history), stats=stats[picked[0]].corpus)
    return edit


alphaedit_edit.prepare = prepare
alphaedit_edit.batched = True
alphaedit_edit.uses_history = True
