"""Regularization neurons (VISIT 5.3): MLP neurons that are among a layer's most activated on most prompts.

"Most activated" ranks neurons by the size of their coefficient ``|m_i|`` at the traced position
(``mlp.hook_post``: act(gate)*up for gated MLPs, which can be large and negative; GPT-2's GELU
coefficients are mostly positive, where the size and the value agree). ``by="value"`` ranks by the
signed value instead, as VISIT does for GPT-2.

A neuron is flagged when it is in its layer's top ``top_n`` (VISIT: 100) in more than ``threshold``
(VISIT: half) of the prompts. For each flagged neuron we describe its value vector ``W_out[i]``:
its norm against the layer's other neurons, the entropy of its logit-lens projection (high =
close to uniform, a "general" notion), its top tokens, and its outlier weights (Fig. 9).
"""

from __future__ import annotations

import torch

from visit.hooks.names import hook_name
from visit.ids import neuron_id
from visit.lens import LogitLens
from visit.tokens import token_string

FLAG_LABEL = "regularization"


def top_activated(trace, top_n: int = 100, by: str = "abs") -> torch.Tensor:
    """Per layer, the ``top_n`` most activated neurons at the traced position: ``[L, top_n]``."""
    coeff = torch.stack([trace[hook_name(l, "mlp.hook_post")][trace.position] for l in range(trace.n_layers)])
    if by == "abs":
        coeff = coeff.abs()
    elif by != "value":
        raise ValueError("by must be 'abs' or 'value'")
    return coeff.topk(min(top_n, coeff.shape[-1]), dim=-1).indices


class ActivationCounter:
    """Counts, over prompts, how often each neuron is among its layer's ``top_n`` most activated."""

    def __init__(self, n_layers: int, d_mlp: int, top_n: int = 100, by: str = "abs"):
        self.top_n, self.by = top_n, by
        self.counts = torch.zeros(n_layers, d_mlp, dtype=torch.long)
        self.coeff_sum = torch.zeros(n_layers, d_mlp)
        self.n_prompts = 0

    def add(self, trace) -> None:
        top = top_activated(trace, self.top_n, self.by).cpu()
        self.counts.scatter_add_(1, top, torch.ones_like(top))
        self.coeff_sum += torch.stack([trace[hook_name(l, "mlp.hook_post")][trace.position].cpu()
                                       for l in range(trace.n_layers)])
        self.n_prompts += 1

    def frequent(self, threshold: float = 0.5) -> list[tuple[int, int, float]]:
        """``[(layer, neuron, share of prompts)]`` with share > threshold, by layer then share."""
        if self.n_prompts == 0:
            return []
        share = self.counts.float() / self.n_prompts
        layers, neurons = torch.nonzero(share > threshold, as_tuple=True)
        found = [(int(l), int(i), float(share[l, i])) for l, i in zip(layers, neurons)]
        return sorted(found, key=lambda t: (t[0], -t[2], t[1]))

    def mean_coefficient(self, layer: int, neuron: int) -> float:
        return float(self.coeff_sum[layer, neuron]) / max(1, self.n_prompts)


def flagged_neurons(found) -> dict[tuple[int, int], str]:
    """``GraphSettings.flagged_neurons`` for the graph: ``{(layer, neuron): "regularization"}``."""
    return {(int(f[0]), int(f[1])): FLAG_LABEL for f in found}


def outlier_weights(vector: torch.Tensor, z: float = 5.0, max_n: int = 10) -> list[dict]:
    """Entries of ``vector [d_model]`` more than ``z`` robust standard deviations from the median.

    Robust (median/MAD) so that the outliers themselves do not inflate the spread. Largest first.
    """
    median = vector.median()
    mad = (vector - median).abs().median() * 1.4826 + 1e-12
    scores = (vector - median) / mad
    idx = torch.nonzero(scores.abs() > z).flatten()
    idx = idx[scores[idx].abs().argsort(descending=True)][:max_n]
    return [{"dim": int(i), "weight": float(vector[i]), "z": float(scores[i])} for i in idx]


def describe_neurons(vm, found, k: int = 10, baseline_sample: int = 64, seed: int = 0) -> list[dict]:
    """What each flagged neuron's value vector looks like, next to its layer's typical neuron.

    ``found``: ``[(layer, neuron, share)]``. Returns one dict per neuron: ``norm``, ``entropy`` (nats,
    renorm lens), ``top`` tokens, ``outliers``, ``weights`` (the full vector, for Fig. 9), and the
    layer's ``layer_median_norm`` / ``layer_median_entropy`` (entropy over a seeded sample of neurons).
    """
    lens = LogitLens(vm)
    tok = vm.tokenizer
    if not found:
        return []
    generator = torch.Generator().manual_seed(seed)
    baselines: dict[int, tuple[float, float]] = {}
    for layer in sorted({f[0] for f in found}):
        W_out = vm.weights.W_out(layer)
        sample = torch.randperm(W_out.shape[0], generator=generator)[:baseline_sample].to(W_out.device)
        entropy = lens.project(W_out[sample], k=1).entropy
        baselines[layer] = (float(W_out.norm(dim=-1).median()), float(entropy.median()))
    vectors = torch.stack([vm.weights.W_out(layer)[neuron] for layer, neuron, _ in found])
    res = lens.project(vectors, k=k)
    max_entropy = float(torch.log(torch.tensor(float(lens.W_U.shape[1]))))
    rows = []
    for j, (layer, neuron, share) in enumerate(found):
        vector = vectors[j]
        rows.append({
            "layer": layer, "neuron": neuron, "share": share, "node_id": neuron_id(layer, neuron),
            "norm": float(vector.norm()), "entropy": float(res.entropy[j]), "max_entropy": max_entropy,
            "top": [token_string(tok, i) for i in res.top_ids[j].tolist()],
            "bottom": [token_string(tok, i) for i in res.bottom_ids[j].tolist()],
            "outliers": outlier_weights(vector),
            "weights": vector.tolist(),
            "layer_median_norm": baselines[layer][0], "layer_median_entropy": baselines[layer][1],
        })
    return rows

class RegularizationStudy:
    """Counts top activations over a prompt set, then flags and describes the frequent neurons."""

    name = "regularization"

    def __init__(self, vm, top_n: int = 100, threshold: float = 0.5, by: str = "abs"):
        self.vm, self.threshold = vm, threshold
        self.counter = ActivationCounter(vm.dims.n_layers, vm.dims.d_mlp, top_n, by)

    def add(self, trace, target_id: int | None = None) -> None:
        self.counter.add(trace)

    def result(self) -> dict:
        found = self.counter.frequent(self.threshold)
        neurons = describe_neurons(self.vm, found)
        for row in neurons:
            row["mean_coefficient"] = self.counter.mean_coefficient(row["layer"], row["neuron"])
        # the full value vectors (Fig. 9) only for the most consistent neurons: they are d_model floats each
        for row in neurons:
            row.pop("weights")
        for row in strongest(neurons, min_share=0.0, per_layer=None)[:WEIGHTS_KEPT]:
            row["weights"] = self.vm.weights.W_out(row["layer"])[row["neuron"]].tolist()
        share = self.counter.counts.float() / max(1, self.counter.n_prompts)
        return {
            "n_prompts": self.counter.n_prompts, "top_n": self.counter.top_n, "threshold": self.threshold,
            "by": self.counter.by, "neurons": neurons,
            "flagged": [[r["layer"], r["neuron"]] for r in neurons],
            "per_layer_count": [int((share[l] > self.threshold).sum()) for l in range(share.shape[0])],
            "per_layer_max_share": share.max(dim=1).values.tolist(),
        }


WEIGHTS_KEPT = 12


def strongest(neurons: list[dict], min_share: float = 0.95, per_layer: int | None = 3) -> list[dict]:
    """The most consistent neurons: share of prompts, then mean |coefficient|, at most ``per_layer`` each.

    A small model's layer has fewer neurons than GPT-2 medium's 4,096, so "top 100 on half the prompts"
    can flag dozens per layer on a templated prompt set; this picks the few worth marking in a graph.
    """
    ordered = sorted((n for n in neurons if n["share"] >= min_share),
                     key=lambda n: (-n["share"], -abs(n.get("mean_coefficient", 0.0)), n["layer"], n["neuron"]))
    if per_layer is None:
        return ordered
    taken: dict[int, int] = {}
    out = []
    for n in ordered:
        if taken.get(n["layer"], 0) < per_layer:
            taken[n["layer"]] = taken.get(n["layer"], 0) + 1
            out.append(n)
    return out
