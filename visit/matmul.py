"""Products with one large fixed matrix (the unembedding), fast on CPU.

Every lens projection and every exact attribution score multiplies many rows by W_U
(``[d_model, d_vocab]``, 113 MB for the default model). On CPU, oneDNN with the matrix packed once
into its blocked layout runs these shapes about 1.5x faster than torch's default (MKL) matmul,
still in float32 (``benchmarks/attribution.py``; results in ``docs/benchmarks.md``). The packed copy
is cached per matrix. Elsewhere (GPU, other dtypes, a torch build without the oneDNN ops) it is a
plain ``@``.
"""

from __future__ import annotations

import threading

import torch

_LOCK = threading.Lock()
_ONEDNN_OK = [True]  # flipped off at the first failure of the private ops


def _packed(W: torch.Tensor) -> torch.Tensor:
    """W packed for oneDNN, cached on the tensor object itself (so it dies with it; a cache keyed
    by address could hand a new matrix at a reused address the old one's packing)."""
    with _LOCK:
        cached = getattr(W, "_visit_packed", None)
        if cached is None or cached[0] != W._version:
            # oneDNN's linear takes the weight as [out, in]: W.T, packed for its kernels
            cached = (W._version, torch.ops.mkldnn._reorder_linear_weight(W.T.contiguous(), None))
            W._visit_packed = cached
        return cached[1]


def rows_times(x: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """``x @ W`` for ``x [n, d]`` and a fixed ``W [d, V]`` -> ``[n, V]``."""
    if (_ONEDNN_OK[0] and x.device.type == "cpu" and x.dtype == W.dtype == torch.float32 and x.dim() == 2
            and not (torch.is_grad_enabled() and (x.requires_grad or W.requires_grad)) and x.shape[0] > 0):
        try:
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), _packed(W), None, "none", [], "")
        except (AttributeError, RuntimeError, NotImplementedError):
            _ONEDNN_OK[0] = False
    return x @ W
