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
from visit.hooks.names import hook_name
from visit.ids import NodeId

KINDS = ("ffn", "head", "wo", "attn")
_NODE_KINDS = {"ffn": "neuron", "head": "head", "wo": "head_dim", "attn": "attn_neuron"}  # visit.ids kinds


@dataclass(frozen=True)
class Component:
    kind: str  # one of KINDS
    layer: int
    index: int  # neuron index (ffn) or head (head, wo, attn)
    dim: int | None = None  # head dimension (wo, attn)
    source: int | None = None  # source position (attn; ffn: zero there instead of at the traced position)

    @property
    def node(self) -> NodeId:
        """The component's :class:`visit.ids.NodeId` (its kind record says where and how it is zeroed)."""
        kind = _NODE_KINDS.get(self.kind)
        if kind is None:
            raise ValueError(f"unknown component kind {self.kind!r}; choose one of {KINDS}")
        if kind == "neuron":
            return NodeId(self.layer, kind, index=self.index, source=self.source)
        if kind == "head":
            return NodeId(self.layer, kind, head=self.index)
        return NodeId(self.layer, kind, head=self.index, index=self.dim,
                      source=self.source if kind == "attn_neuron" else None)

    @property
    def label(self) -> str:
        return str(self.node)


def interventions_for(vm, components, position: int, clean_trace=None) -> list[Intervention]:
    """The hook-layer writes (:mod:`visit.hooks`) that zero ``components`` at ``position``."""
    d = vm.dims
    out: list[Intervention] = []
    for c in components:
        node = c.node
        index = node.features(d.d_head)
        if node.spec.ablate == "zero":
            at = c.source if node.kind == "neuron" and c.source is not None else position
            out.append(zero(node.hook_name, positions=at, index=index))
            continue
        if clean_trace is None:  # "subtract": the term alpha[h, p, s] v[s, kv(h), j] of the clean run
            raise ValueError("zeroing attention neurons per source needs the clean trace")
        alpha = clean_trace[hook_name(c.layer, "attn.hook_pattern")][c.index, position, c.source]
        v = clean_trace[hook_name(c.layer, "attn.hook_v")][c.source, int(clean_trace.kv_head_of[c.index]), c.dim]
        out.append(add(node.hook_name, -float(alpha * v), positions=position, index=index))
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
