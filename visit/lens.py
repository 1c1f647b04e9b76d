"""The logit lens: project vectors to the vocabulary through the final norm and the unembedding.

Three modes:

- ``"renorm"``: re-apply the final norm to each vector (what a node "says" on its own);
- ``"frozen"``: divide by the real final residual's scale at the position (``ln_final.hook_scale``),
  so projections of parts add up to the projection of the whole (what attribution needs);
- ``"raw"``: the unembedding alone.

Models with final logit soft-capping (Gemma 2: ``logits = cap * tanh(logits / cap)``) get it applied after
the unembedding in every mode, as the model does.

Everything is batched: vectors ``[n, d_model]`` are projected in chunks, one matmul per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from visit.matmul import rows_times
from visit.models.loading import VisitModel
from visit.tokens import token_string

MODES = ("renorm", "frozen", "raw")


@dataclass
class LensResult:
    """Projections of n vectors. Ranks are 1-based (1 = the most likely token)."""

    top_ids: torch.Tensor  # [n, k]
    top_probs: torch.Tensor  # [n, k]
    bottom_ids: torch.Tensor | None  # [n, k]; None when asked for without the bottom tokens
    bottom_probs: torch.Tensor | None  # [n, k]
    entropy: torch.Tensor  # [n] in nats
    target_prob: torch.Tensor | None  # [n]
    target_rank: torch.Tensor | None  # [n]
    target_logit: torch.Tensor | None  # [n]

    def __len__(self) -> int:
        return self.top_ids.shape[0]


def soft_cap(logits: torch.Tensor, cap: float) -> torch.Tensor:
    """Gemma 2's final logit soft-capping: ``cap * tanh(logits / cap)``."""
    return torch.tanh(logits / cap) * cap


def top_tokens(logits: torch.Tensor, k: int, target: int | None = None, bottom: bool = True) -> dict:
    """``logits [n, d_vocab]`` -> :class:`LensResult`'s fields as a dict. Plain torch only: a remote model's lens
    runs this where the model lives (:mod:`visit.remote`)."""
    # Few passes over the [n, vocab] block (this is the hot path of every graph): one softmax, two
    # top-k, one dot product for the entropy; log-sum-exp comes from the top token's probability.
    probs = logits.softmax(-1)
    k = min(k, logits.shape[-1])
    top_l, top_i = logits.topk(k, dim=-1)
    lse = top_l[:, :1] - probs.gather(-1, top_i[:, :1]).log()  # [n, 1]
    entropy = lse[:, 0] - torch.linalg.vecdot(probs, logits)
    out = dict(top_ids=top_i, top_probs=(top_l - lse).exp(), bottom_ids=None, bottom_probs=None,
               entropy=entropy, target_prob=None, target_rank=None, target_logit=None)
    if bottom:
        bot_l, out["bottom_ids"] = logits.topk(k, dim=-1, largest=False)
        out["bottom_probs"] = (bot_l - lse).exp()
    if target is not None:
        t_logit = logits[:, target]
        out["target_logit"] = t_logit
        out["target_prob"] = probs[:, target]
        out["target_rank"] = (logits > t_logit.unsqueeze(-1)).sum(-1, dtype=torch.int32) + 1
    return out


class LogitLens:
    def __init__(self, vm: VisitModel, final_scale: torch.Tensor | None = None, chunk_size: int = 256):
        """``final_scale`` (a scalar or ``[1]``) is needed for the frozen mode; take it from
        ``trace["ln_final.hook_scale"][trace.position]``."""
        self.vm = vm
        self.norm = vm.weights.final_norm
        self.softcap = vm.weights.logit_softcap
        self.final_scale = final_scale
        self.chunk_size = chunk_size

    @property
    def W_U(self) -> torch.Tensor:
        """``[d_model, d_vocab]``, read when first used (a remote model projects where it lives instead)."""
        return self.vm.weights.W_U

    @property
    def b_U(self) -> torch.Tensor | None:
        return self.vm.weights.b_U

    @classmethod
    def for_trace(cls, trace, chunk_size: int = 256) -> "LogitLens":
        return cls(trace.vm, trace["ln_final.hook_scale"][trace.position], chunk_size)

    def normed(self, vectors: torch.Tensor, mode: str = "renorm") -> torch.Tensor:
        vectors = vectors.float()
        if mode == "renorm":
            return self.norm.apply(vectors)
        if mode == "frozen":
            if self.final_scale is None:
                raise ValueError("the frozen lens needs the final residual's scale")
            return self.norm.apply(vectors, scale=self.final_scale)
        if mode == "raw":
            return vectors
        raise ValueError(f"unknown lens mode {mode!r}; choose one of {MODES}")

    def logits(self, vectors: torch.Tensor, mode: str = "renorm") -> torch.Tensor:
        """``[n, d_model] -> [n, d_vocab]``; only use for small n (see :meth:`project`)."""
        logits = rows_times(self.normed(vectors, mode).reshape(-1, self.W_U.shape[0]), self.W_U)
        logits = logits.reshape(*vectors.shape[:-1], -1)
        if self.b_U is not None:
            logits = logits + self.b_U
        return logits if self.softcap is None else soft_cap(logits, self.softcap)

    def project(self, vectors: torch.Tensor, mode: str = "renorm", k: int = 10,
                target: int | None = None, bottom: bool = True) -> LensResult:
        """Top-k (and unless ``bottom=False`` bottom-k) tokens, entropy and the target's probability and
        rank for each vector."""
        vectors = vectors.reshape(-1, vectors.shape[-1]).to(self.vm.device)
        project, size = self._project_chunk, self.chunk_size
        if self.vm.backend is not None:  # where the model lives (visit.remote), all rows in one request
            project, size = self.vm.backend.lens_chunk(self), max(1, len(vectors))
        parts = [project(chunk, mode, k, target, bottom) for chunk in vectors.split(size)]
        if not parts:
            parts = [project(vectors, mode, k, target, bottom)]
        merged = {key: (torch.cat([p[key] for p in parts]) if parts[0][key] is not None else None)
                  for key in parts[0]}
        return LensResult(**merged)

    def _project_chunk(self, vectors, mode, k, target, bottom=True):
        return top_tokens(self.logits(vectors, mode), k, target, bottom)

    def describe(self, result: LensResult, i: int) -> dict:
        """One vector's projection as plain data (token strings raw, not escaped)."""
        tok = self.vm.tokenizer
        row = {
            "top": [{"token": token_string(tok, t), "id": int(t), "prob": float(p)}
                    for t, p in zip(result.top_ids[i].tolist(), result.top_probs[i].tolist())],
            "bottom": [{"token": token_string(tok, t), "id": int(t), "prob": float(p)}
                       for t, p in zip(result.bottom_ids[i].tolist(), result.bottom_probs[i].tolist())]
            if result.bottom_ids is not None else [],
            "entropy": float(result.entropy[i]),
        }
        if result.target_prob is not None:
            row["target_prob"] = float(result.target_prob[i])
            row["target_rank"] = int(result.target_rank[i])
        return row
