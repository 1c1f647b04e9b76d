"""Which heads, memory values, W_O neurons and MLP neurons each layer keeps (VISIT A.5 pruning).

By activation (VISIT): heads by output norm, memory values by attention weight, W_O neurons by
``|z|``, MLP neurons by their coefficient (``mlp.hook_post``: the largest and the most negative).
By attribution: heads and MLP neurons by the exact log-probability increase of the target
(:mod:`visit.attribution`); memory values and W_O neurons stay ranked by activation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from visit.attribution import ffn_neuron_logprob_increase, head_logprob_increase, layer_logprob_increase
from visit.errors import VisitError
from visit.graph.circuit import circuit, kept_share
from visit.graph.settings import GraphSettings
from visit.hooks.names import hook_name
from visit.ids import NodeId

INCLUDABLE = ("head", "query", "key", "memory", "neuron", "wo_neuron")  # spine nodes are always drawn


@dataclass
class LayerSelection:
    heads: list[int]  # in display order (by score, best first)
    memory: dict[int, list[int]]  # head -> source positions (by attention weight, best first)
    wo_neurons: list[int]  # flattened head * d_head index
    neurons: dict[int, str] = field(default_factory=dict)  # neuron -> role: top|bottom|circuit|included|flagged


@dataclass
class Forced:
    heads: set = field(default_factory=set)  # (layer, head)
    memory: set = field(default_factory=set)  # (layer, head, source)
    wo: set = field(default_factory=set)  # (layer, index)
    neurons: set = field(default_factory=set)  # (layer, neuron)


def parse_includes(ids, trace) -> Forced:
    """Node ids to force in -> the components they name; malformed or out-of-range ids raise."""
    d, n_src = trace.vm.dims, trace.position + 1
    forced = Forced()
    for node_id in ids:
        node_id = str(node_id).strip()
        node = NodeId.try_parse(node_id)
        if node is not None and node.spec.spine:
            continue
        if node is None or node.kind not in INCLUDABLE or node.source is not None and node.kind == "neuron":
            raise VisitError(f"cannot include {node_id!r}: not a node id like L5.H3, L5.H3.mem2, L5.N123 or L5.WO17")
        layer, head, src = node.layer, node.head, node.source
        neuron = node.index if node.kind == "neuron" else None
        wo = node.index if node.kind == "wo_neuron" else None
        _check(layer < d.n_layers, node_id, f"the model has {d.n_layers} layers")
        if head is not None:
            _check(head < d.n_heads, node_id, f"the model has {d.n_heads} heads")
            forced.heads.add((layer, head))
            if src is not None:
                _check(src < n_src, node_id, f"position {trace.position} attends to sources 0-{n_src - 1}")
                forced.memory.add((layer, head, src))
        elif neuron is not None:
            _check(neuron < d.d_mlp, node_id, f"the MLP has {d.d_mlp} neurons")
            forced.neurons.add((layer, neuron))
        else:
            _check(wo < d.n_heads * d.d_head, node_id, f"W_O has {d.n_heads * d.d_head} neurons")
            forced.wo.add((layer, wo))
    return forced


def _check(ok: bool, node_id: str, why: str) -> None:
    if not ok:
        raise VisitError(f"cannot include {node_id!r}: {why}")


def attribution_scores(trace, target_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``([n_layers, n_heads], [n_layers, d_mlp])`` exact log-prob increases, from :mod:`visit.attribution`
    (memoised per trace: re-drawing with other knobs costs nothing)."""
    heads = trace.memo(("head_contract", target_id), lambda: head_logprob_increase(trace, target_id))
    return heads, ffn_neuron_logprob_increase(trace, target_id)


def circuit_selection(trace, target_id: int, layers: range, share: float) -> tuple[dict, dict, float]:
    """``({layer: [heads]}, {layer: [neurons]}, kept share)``: the circuit of :mod:`visit.graph.circuit`."""
    return trace.memo(("circuit", target_id, layers.start, layers.stop, float(share)),
                      lambda: _circuit_selection(trace, target_id, layers, share))


def _circuit_selection(trace, target_id: int, layers: range, share: float) -> tuple[dict, dict, float]:
    head_scores, neuron_scores = attribution_scores(trace, target_id)
    scores = {}
    for layer in layers:
        hs = head_scores[layer].float().cpu()
        for h in torch.nonzero(hs > 0).flatten().tolist():
            scores[("H", layer, h)] = float(hs[h])
        ns = neuron_scores[layer].float().cpu()
        positive = torch.nonzero(ns > 0).flatten()
        for i, v in zip(positive.tolist(), ns[positive].tolist()):
            scores[("N", layer, i)] = v

    steps = layer_logprob_increase(trace, target_id)
    total = float(sum(steps["attn"][layer] + steps["ffn"][layer] for layer in layers))
    kept = circuit(scores, share, total)
    heads: dict[int, list[int]] = {}
    neurons: dict[int, list[int]] = {}
    for kind, layer, index in kept:
        (heads if kind == "H" else neurons).setdefault(layer, []).append(index)
    return heads, neurons, kept_share(scores, kept, total)


def _top(scores: torch.Tensor, k: int, largest: bool = True) -> list[int]:
    k = min(k, scores.numel())
    return scores.topk(k, largest=largest).indices.tolist() if k > 0 else []


def select(trace, settings: GraphSettings, target_id: int, layers: range, forced: Forced) -> dict[int, LayerSelection]:
    d, pos = trace.vm.dims, trace.position
    head_scores = neuron_scores = circuit_heads = circuit_neurons = None
    if settings.prune_by == "attribution":
        head_scores, neuron_scores = attribution_scores(trace, target_id)
    elif settings.prune_by == "circuit":
        circuit_heads, circuit_neurons, _ = circuit_selection(trace, target_id, layers, settings.circuit_share)
    flagged = settings.flagged_neurons
    out = {}
    for layer in layers:
        head_rank = (head_scores[layer].to(torch.float32).cpu() if head_scores is not None
                     else trace[hook_name(layer, "attn.hook_result")].norm(dim=-1).cpu())
        heads = head_rank.argsort(descending=True).tolist()
        if circuit_heads is not None:
            keep = set(circuit_heads.get(layer, [])) | {h for (l, h) in forced.heads if l == layer}
            heads = [h for h in heads if h in keep]
        elif settings.heads_per_layer is not None:
            keep = set(heads[:settings.heads_per_layer]) | {h for (l, h) in forced.heads if l == layer}
            heads = [h for h in heads if h in keep]
        pattern = trace[hook_name(layer, "attn.hook_pattern")][:, pos, :pos + 1].cpu()  # [H, src]
        memory = {}
        for h in heads:
            srcs = _top(pattern[h], settings.memory_per_head)
            srcs += [s for (l, hh, s) in sorted(forced.memory) if l == layer and hh == h and s not in srcs]
            memory[h] = srcs
        z = trace[hook_name(layer, "attn.hook_z")][pos].reshape(-1).cpu()
        wo = _top(z.abs(), settings.wo_neurons)
        wo += [j for (l, j) in sorted(forced.wo) if l == layer and j not in wo]
        coeff = (neuron_scores[layer].to(torch.float32).cpu() if neuron_scores is not None
                 else trace[hook_name(layer, "mlp.hook_post")][pos].cpu())
        neurons: dict[int, str] = {}
        if circuit_neurons is not None:
            for i in circuit_neurons.get(layer, []):
                neurons[i] = "circuit"
        else:
            for i in _top(coeff, settings.mlp_top):
                neurons[i] = "top"
            for i in _top(coeff, settings.mlp_bottom, largest=False):
                neurons.setdefault(i, "bottom")
        for (l, i) in sorted(forced.neurons):
            if l == layer:
                neurons.setdefault(i, "included")
        for (l, i), _label in flagged.items():
            if l == layer and 0 <= i < d.d_mlp:
                neurons[i] = "flagged"
        out[layer] = LayerSelection(heads, memory, wo, neurons)
    return out
