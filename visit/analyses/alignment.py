"""Semantic alignment inside the attention block (VISIT Section 3, App. D).

``sim_k`` (VISIT eq. 3, after Dar et al. 2022) is the share of two vectors' top-k logit-lens tokens
that they have in common: ``|top_k(x) ∩ top_k(y)| / k``, 1 for the same top-k set, 0 for disjoint.

At the traced position and for every layer we compare, all through the logit lens with the final
norm re-applied ("renorm"):

- each head projected through W_O (``attn.hook_result``) against the attention output, the block
  output (``resid_post``) and the final output (the last residual, whose lens is the model's logits);
- the heads ranked by the norm of their W_O output (3.2);
- each head's memory values (``trace.memory_values``) ranked by attention weight against their head (3.3);
- the probability each memory value gives its own source token (Fig. 18).

Memory values are projected for the ``memory_top`` sources with the highest attention weight per head
(default 3, what the flow graph shows and VISIT's Fig. 5 plots); ``memory_top=None`` projects them all,
which costs ``n_layers * n_heads * n_tokens`` vocabulary projections.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from visit.hooks.names import hook_name
from visit.lens import LogitLens

TARGETS = ("attn", "block", "final")


def sim_k(top_a: torch.Tensor, top_b: torch.Tensor) -> torch.Tensor:
    """Top-k intersection score of token-id sets ``[..., k]`` and ``[..., k]`` (broadcast) -> ``[...]``.

    Both sides must hold k distinct ids each (as ``topk`` gives); the score is in [0, 1].
    """
    if top_a.shape[-1] != top_b.shape[-1]:
        raise ValueError("sim_k needs top-k sets of the same size")
    k = top_a.shape[-1]
    common = (top_a.unsqueeze(-1) == top_b.unsqueeze(-2)).any(-1).sum(-1)
    return common.float() / k


def vector_sim_k(lens: LogitLens, a: torch.Tensor, b: torch.Tensor, k: int = 50, mode: str = "renorm") -> torch.Tensor:
    """sim_k of vectors ``a [n, d_model]`` and ``b [n or 1, d_model]`` through the lens -> ``[n]``."""
    return sim_k(top_ids(lens, a, k, mode), top_ids(lens, b, k, mode))


def top_ids(lens: LogitLens, vectors: torch.Tensor, k: int, mode: str = "renorm") -> torch.Tensor:
    """Top-k token ids of each vector's projection, chunked: ``[n, d_model] -> [n, k]``."""
    vectors = vectors.reshape(-1, vectors.shape[-1])
    parts = [lens.logits(chunk, mode).topk(k, dim=-1).indices for chunk in vectors.split(lens.chunk_size)]
    return torch.cat(parts) if parts else torch.empty(0, k, dtype=torch.long)


def top_ids_and_probs_of(lens: LogitLens, vectors: torch.Tensor, k: int, token_ids: torch.Tensor,
                         mode: str = "renorm") -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k ids ``[n, k]`` and the probability of one given token per vector ``[n]`` in one pass."""
    ids, probs = [], []
    for chunk, tokens in zip(vectors.split(lens.chunk_size), token_ids.split(lens.chunk_size)):
        logits = lens.logits(chunk, mode)
        ids.append(logits.topk(k, dim=-1).indices)
        probs.append(logits.log_softmax(-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1).exp())
    return torch.cat(ids), torch.cat(probs)


@dataclass
class AlignmentResult:
    """Alignment at one traced position. L layers, H heads, M memory values per head (by attention)."""

    k: int
    heads_vs: dict[str, torch.Tensor]  # "attn" | "block" | "final" -> [L, H] sim_k of each head
    head_norms: torch.Tensor  # [L, H] norm of each head's W_O output
    norm_order: torch.Tensor  # [L, H] head index by descending norm
    memory_order: torch.Tensor  # [L, H, M] source positions by descending attention weight
    memory_attention: torch.Tensor  # [L, H, M] their attention weights
    memory_vs_head: torch.Tensor  # [L, H, M] sim_k of each of those memory values with its head
    source_token_prob: torch.Tensor  # [L, H, M] lens probability each gives its own source token

    def by_norm_rank(self, target: str) -> torch.Tensor:
        """``[L, H]``: column r is the sim_k of the head with the (r+1)-th largest norm."""
        return self.heads_vs[target].gather(1, self.norm_order)

    def as_dict(self) -> dict:
        out = {"k": self.k, "heads_vs": {t: v.tolist() for t, v in self.heads_vs.items()}}
        for name in ("head_norms", "norm_order", "memory_order", "memory_attention", "memory_vs_head",
                     "source_token_prob"):
            out[name] = getattr(self, name).tolist()
        return out


def attention_alignment(trace, k: int = 50, lens: LogitLens | None = None,
                        memory_top: int | None = 3) -> AlignmentResult:
    """All of the Section 3 comparisons at the traced position, projected in a few batched passes."""
    lens = lens or LogitLens(trace.vm)
    n_layers, n_heads, pos = trace.n_layers, trace.vm.dims.n_heads, trace.position
    n_src = pos + 1
    k = min(k, lens.W_U.shape[1])

    heads = torch.stack([trace[hook_name(l, "attn.hook_result")] for l in range(n_layers)])  # [L, H, d]
    outputs = torch.stack([trace[hook_name(l, "hook_attn_out")][pos] for l in range(n_layers)]
                          + [trace.resid(l, "post") for l in range(n_layers)]
                          + [trace["ln_final.hook_in"][pos]])  # [2L + 1, d]
    head_top = top_ids(lens, heads.reshape(-1, heads.shape[-1]), k).reshape(n_layers, n_heads, k)
    out_top = top_ids(lens, outputs, k)
    heads_vs = {
        "attn": sim_k(head_top, out_top[:n_layers].unsqueeze(1)),
        "block": sim_k(head_top, out_top[n_layers:2 * n_layers].unsqueeze(1)),
        "final": sim_k(head_top, out_top[-1].expand(n_layers, 1, k)),
    }
    head_norms = heads.norm(dim=-1)
    norm_order = head_norms.argsort(dim=1, descending=True)

    attention = torch.stack([trace[hook_name(l, "attn.hook_pattern")][:, pos, :n_src] for l in range(n_layers)])
    m = n_src if memory_top is None else min(memory_top, n_src)
    memory_attention, memory_order = attention.topk(m, dim=-1)  # [L, H, M], descending
    d_model = heads.shape[-1]
    memory = torch.empty(n_layers, n_heads, m, d_model, device=heads.device)
    for l in range(n_layers):
        every = trace.memory_values(l)  # [H, S, d]: cheap next to the projections
        memory[l] = every.gather(1, memory_order[l].unsqueeze(-1).expand(-1, -1, d_model))
    input_ids = torch.as_tensor(trace.input_ids, device=heads.device)
    mem_top, mem_prob = top_ids_and_probs_of(lens, memory.reshape(-1, d_model), k,
                                             input_ids[memory_order.reshape(-1)])
    mem_sim = sim_k(mem_top.reshape(n_layers, n_heads, m, k), head_top.unsqueeze(2))  # [L, H, M]
    return AlignmentResult(
        k=k, heads_vs=heads_vs, head_norms=head_norms, norm_order=norm_order, memory_order=memory_order,
        memory_attention=memory_attention, memory_vs_head=mem_sim,
        source_token_prob=mem_prob.reshape(n_layers, n_heads, m),
    )

class AlignmentStudy:
    """Per-layer means over a prompt set for VISIT Figures 2-5 and 18."""

    name = "alignment"

    def __init__(self, vm, k: int = 50, n_memory: int = 3):
        """``n_memory``: memory values per head, by attention weight, compared and projected."""
        self.vm, self.k, self.n_memory = vm, k, n_memory
        self.lens = LogitLens(vm)
        L, H = vm.dims.n_layers, vm.dims.n_heads
        self.heads_vs = {t: torch.zeros(L) for t in TARGETS}  # mean over heads, summed over prompts
        self.by_norm_rank = {t: torch.zeros(L, H) for t in TARGETS}
        self.memory_sum = torch.zeros(L, n_memory)
        self.memory_count = torch.zeros(n_memory)
        self.source_prob = torch.zeros(L)
        self.top_memory_source_prob = torch.zeros(L)
        self.n = 0

    def add(self, trace, target_id: int | None = None) -> None:
        res = attention_alignment(trace, self.k, self.lens, memory_top=self.n_memory)
        for t in TARGETS:
            self.heads_vs[t] += res.heads_vs[t].mean(1).cpu()
            self.by_norm_rank[t] += res.by_norm_rank(t).cpu()
        r = min(self.n_memory, res.memory_vs_head.shape[-1])
        self.memory_sum[:, :r] += res.memory_vs_head[..., :r].mean(1).cpu()
        self.memory_count[:r] += 1
        self.source_prob += res.source_token_prob.mean((1, 2)).cpu()
        self.top_memory_source_prob += res.source_token_prob[..., 0].mean(1).cpu()
        self.n += 1

    def result(self) -> dict:
        n = max(1, self.n)
        return {
            "n_prompts": self.n, "k": self.k, "n_memory": self.n_memory, "layers": list(range(self.vm.dims.n_layers)),
            "heads_vs": {t: (v / n).tolist() for t, v in self.heads_vs.items()},
            "by_norm_rank": {t: (v / n).tolist() for t, v in self.by_norm_rank.items()},
            "memory_vs_head": (self.memory_sum / self.memory_count.clamp(min=1)).tolist(),
            "source_token_prob": (self.source_prob / n).tolist(),
            "top_memory_source_token_prob": (self.top_memory_source_prob / n).tolist(),
            "uniform_prob": 1.0 / self.lens.W_U.shape[1],
        }
