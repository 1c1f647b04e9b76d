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


def pack(W: torch.Tensor) -> torch.Tensor:
    """``W [d, V]`` packed for oneDNN's linear (which takes the weight as ``[out, in]``: W.T)."""
    return torch.ops.mkldnn._reorder_linear_weight(W.T.contiguous(), None)


def packed_times(x: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    """``x @ W`` with ``W`` already :func:`pack`\ ed (plain torch: a remote lens runs it where the model lives)."""
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), packed, None, "none", [], "")


def onednn_fits(x: torch.Tensor, W: torch.Tensor) -> bool:
    """Whether the packed product applies: fp32 rows on the CPU, no gradient wanted."""
    return (x.device.type == "cpu" and x.dtype == W.dtype == torch.float32 and x.dim() == 2
            and not (torch.is_grad_enabled() and (x.requires_grad or W.requires_grad)) and x.shape[0] > 0)


def _packed(W: torch.Tensor) -> torch.Tensor:
    """W packed for oneDNN, cached on the tensor object itself (so it dies with it; a cache keyed
    by address could hand a new matrix at a reused address the old one's packing)."""
    with _LOCK:
        cached = getattr(W, "_visit_packed", None)
        if cached is None or cached[0] != W._version:
            cached = (W._version, pack(W))
            W._visit_packed = cached
        return cached[1]


def rows_times(x: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """``x @ W`` for ``x [n, d]`` and a fixed ``W [d, V]`` -> ``[n, V]``."""
    if _ONEDNN_OK[0] and onednn_fits(x, W):
        try:
            return packed_times(x, _packed(W))
        except (AttributeError, RuntimeError, NotImplementedError):
            _ONEDNN_OK[0] = False
    return x @ W
