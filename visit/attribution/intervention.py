"""Intervention: zero components with forward hooks on the unmodified model, re-run, measure.

What "zero" means, at the traced position (the position whose prediction is attributed) unless said:

- ``ffn`` neuron ``(layer, index)``: its coefficient, i.e. entry ``index`` of the input of the MLP's
  output projection (for gated MLPs that is ``act(gate) * up``); with ``source=s`` it is zeroed at
  position ``s`` instead (query neurons act at the source positions attention reads; zeroing at
  ``s`` changes the residual stream at ``s`` and, through attention, every later position);
- ``head`` ``(layer, head)``: the head's slice of z (the input of W_O), so b_O stays;
- ``wo`` neuron ``(layer, head, dim)``: one entry of z (an attention neuron summed over sources);
- ``attn`` neuron ``(layer, head, dim, source)``: the term ``alpha[h,p,s] v[s,kv(h),j]`` is
  subtracted from z, with the value it had in the clean run (exact when nothing upstream of it
  at this position is zeroed as well).

The zeroing is a list of hook-layer writes (:func:`interventions_for`, :mod:`visit.hooks`); the model's
weights are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from visit.hooks import Intervention, add, run, zero

KINDS = ("ffn", "head", "wo", "attn")


@dataclass(frozen=True)
class Component:
    kind: str  # one of KINDS
    layer: int
    index: int  # neuron index (ffn) or head (head, wo, attn)
    dim: int | None = None  # head dimension (wo, attn)
    source: int | None = None  # source position (attn; ffn: zero there instead of at the traced position)

    @property
    def label(self) -> str:
        if self.kind == "ffn":
            return f"L{self.layer}.N{self.index}" + ("" if self.source is None else f"@{self.source}")
        if self.kind == "head":
            return f"L{self.layer}.H{self.index}"
        if self.kind == "wo":
            return f"L{self.layer}.H{self.index}.d{self.dim}"
        return f"L{self.layer}.H{self.index}.d{self.dim}.s{self.source}"


def interventions_for(vm, components, position: int, clean_trace=None) -> list[Intervention]:
    """The hook-layer writes (:mod:`visit.hooks`) that zero ``components`` at ``position``."""
    d = vm.dims
    out: list[Intervention] = []
    for c in components:
        p = f"blocks.{c.layer}"
        if c.kind == "ffn":
            out.append(zero(f"{p}.mlp.hook_post", positions=position if c.source is None else c.source,
                            index=(c.index,)))
        elif c.kind == "head":
            out.append(zero(f"{p}.attn.hook_z", positions=position, index=(c.index,)))
        elif c.kind == "wo":
            out.append(zero(f"{p}.attn.hook_z", positions=position, index=(c.index, c.dim)))
        elif c.kind == "attn":
            if clean_trace is None:
                raise ValueError("zeroing attention neurons per source needs the clean trace")
            alpha = clean_trace[f"{p}.attn.hook_pattern"][c.index, position, c.source]
            v = clean_trace[f"{p}.attn.hook_v"][c.source, int(clean_trace.kv_head_of[c.index]), c.dim]
            out.append(add(f"{p}.attn.hook_z", -float(alpha * v), positions=position, index=(c.index, c.dim)))
        else:
            raise ValueError(f"unknown component kind {c.kind!r}; choose one of {KINDS}")
    return out


def final_log_probs(vm, input_ids: list[int], position: int, components=(), clean_trace=None) -> torch.Tensor:
    """Log-probabilities ``[V]`` at ``position`` with ``components`` zeroed (none: the clean run)."""
    logits, _ = run(vm, torch.tensor([input_ids]), write=interventions_for(vm, components, position, clean_trace))
    return logits[0, position].float().log_softmax(-1)


@dataclass(frozen=True)
class TargetMetrics:
    rank: int  # 1-based
    prob: float
    logp: float

    @property
    def reciprocal_rank(self) -> float:
        return 1.0 / self.rank


def metrics_of(log_probs: torch.Tensor, target_id: int) -> TargetMetrics:
    lp = log_probs[target_id]
    rank = int((log_probs > lp).sum()) + 1
    return TargetMetrics(rank, float(lp.exp()), float(lp))


def random_components(vm, kind: str, n: int, generator: torch.Generator, position: int | None = None):
    """``n`` distinct random components of one kind (the baseline for any selection of that size)."""
    d = vm.dims
    sizes = {"ffn": d.d_mlp, "head": d.n_heads, "wo": d.n_heads * d.d_head,
             "attn": d.n_heads * d.d_head * ((position or 0) + 1)}
    per_layer = sizes[kind]
    picks = torch.randperm(d.n_layers * per_layer, generator=generator)[:n].tolist()
    out = []
    for flat in picks:
        layer, rest = divmod(flat, per_layer)
        if kind in ("ffn", "head"):
            out.append(Component(kind, layer, rest))
        elif kind == "wo":
            out.append(Component(kind, layer, rest // d.d_head, rest % d.d_head))
        else:
            hd, src = divmod(rest, (position or 0) + 1)
            out.append(Component(kind, layer, hd // d.d_head, hd % d.d_head, src))
    return out


def random_ffn_at_sources(vm, n: int, generator: torch.Generator, position: int, layers=None, sources=None):
    """``n`` distinct random ``ffn`` neurons, each zeroed at a random source position (the baseline for
    query neurons); ``layers`` and ``sources`` restrict the draw (default: every layer, ``0..position``)."""
    d = vm.dims
    layers = list(range(d.n_layers)) if layers is None else list(layers)
    sources = list(range(position + 1)) if sources is None else list(sources)
    per_layer = d.d_mlp * len(sources)
    picks = torch.randperm(len(layers) * per_layer, generator=generator)[:n].tolist()
    out = []
    for flat in picks:
        li, rest = divmod(flat, per_layer)
        index, si = divmod(rest, len(sources))
        out.append(Component("ffn", layers[li], index, source=sources[si]))
    return out
