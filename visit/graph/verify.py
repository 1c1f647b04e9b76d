"""Verify a node (or a group of nodes): knock it out in a real forward pass and compare the actual change of
``log p(target)`` with the change its attribution predicts.

Knock-outs are hook-layer writes (:mod:`visit.hooks`) at the traced position only:

===========  ==========================================  ============================================
node kind    written value                               its vector in the graph
===========  ==========================================  ============================================
head         ``blocks.l.attn.hook_z[p, h]``               ``z[p, h] @ W_O[h]``
wo_neuron    ``blocks.l.attn.hook_z[p, h, d]``            ``z[p, h, d] * W_O[h, d]``
neuron       ``blocks.l.mlp.hook_post[p, i]``             ``post[p, i] * W_out[i]``
attn_out     ``blocks.l.hook_attn_out[p]``                itself
mlp_out      ``blocks.l.hook_mlp_out[p]``                 itself
===========  ==========================================  ============================================

``mode="zero"`` writes 0; ``mode="mean"`` writes the value's mean over the shipped factual prompt set (at each
prompt's last token; :func:`prompt_set_means`, computed once per model and weights version).

Predicted change (first order, the frozen final norm of :mod:`visit.graph.attribution`): for zeroing, minus
the node's log-probability increase ``-Imp(v)``; for the mean, ``Imp(v_mean) - Imp(v)`` against the same base.
A group's prediction is the sum of its nodes'. The actual change is ``log p(target)`` of the real forward pass
with the writes minus that of the traced pass. Where the two disagree, the node's effect is indirect (through
later layers) or non-linear: exactly what a calibration scatter of many checks shows.
"""

from __future__ import annotations

import torch

from visit.attribution.logprob import FrozenLens, increase_of_vectors
from visit.errors import VisitError
from visit.graph.attribution import base_of, node_attribution
from visit.graph.nodes import KINDS, node_of
from visit.hooks import Intervention, run
from visit.ids import COMPONENT_KINDS
from visit.hooks.batch import left_padded, pad_id
from visit.models.overlay import weights_of
from visit.prompts import default_prompt_file, load_prompt_file
from visit.tracer import encode_prompt

VERIFIABLE = tuple(k for k in KINDS if COMPONENT_KINDS[k].ablate == "zero")  # heads, W_O and MLP neurons, outputs
MODES = ("zero", "mean")
MEAN_PROMPTS = 24  # prompts of the shipped set the means are taken over


def _site(vm, attrs: dict) -> tuple[str, tuple]:
    """``(hook name, feature index)`` of the value a node stands for (its kind's record in :mod:`visit.ids`)."""
    kind = attrs["kind"]
    if kind not in VERIFIABLE:
        raise VisitError(f"cannot verify a {kind} node: verify works on heads, W_O neurons, MLP neurons and "
                         f"attention / MLP outputs")
    node = node_of(attrs)
    return node.hook_name, node.features(vm.dims.d_head)


def prompt_set_means(vm, names: list[str], limit: int = MEAN_PROMPTS) -> dict[str, torch.Tensor]:
    """``{name: mean over prompts of the value at the prompt's last token}`` (features' shape), over the first
    ``limit`` prompts of the shipped factual set; kept per model and weights version. The prompts run as one
    left-padded batch (every row computes what it computes alone, up to float rounding), or one at a time where a
    sliding attention window is narrower than the batch."""
    store = vm.weights.memo(("verify means", limit), dict)  # cleared with the weights' version
    missing = [n for n in dict.fromkeys(names) if n not in store]
    if missing:
        cases = load_prompt_file(default_prompt_file())[:limit]
        rows = [encode_prompt(vm, case.prompt)[0].tolist() for case in cases]
        window = getattr(vm.model.config, "sliding_window", None)
        if window and max(len(r) for r in rows) > int(window):
            sums: dict[str, torch.Tensor] = {}
            for row in rows:
                _, rec = run(vm, torch.tensor([row], device=vm.device), read=missing)
                for n in missing:
                    sums[n] = rec[n][0, -1].float() + sums.get(n, 0)
            store.update({n: sums[n] / len(rows) for n in missing})
        else:
            batch = left_padded(rows, pad_id(vm.tokenizer), vm.device)
            _, rec = run(vm, batch.ids, attention_mask=batch.mask, position_ids=batch.positions, read=missing,
                         logits_to_keep=1)
            store.update({n: rec[n][:, -1].float().mean(0) for n in missing})
    return {n: store[n] for n in names}


def _vector(vm, attrs: dict, value: torch.Tensor) -> torch.Tensor:
    """The d_model vector a node adds to the residual when its written value is ``value``."""
    layer, kind = attrs["layer"], attrs["kind"]
    w = vm.weights
    if kind == "head":
        return value.to(w.device).float() @ w.W_O(layer)[attrs["head"]]
    if kind == "wo_neuron":
        d = vm.dims
        return value.to(w.device).float() * w.W_O(layer).reshape(d.n_heads * d.d_head, d.d_model)[attrs["neuron"]]
    if kind == "neuron":
        return value.to(w.device).float() * w.W_out(layer)[attrs["neuron"]]
    return value.to(w.device).float()


def verify(analysis, node_ids, mode: str = "zero") -> dict:
    """Knock out ``node_ids`` (one id or a list: a group) together and compare predicted with actual change.

    Returns ``{"nodes", "mode", "predicted", "actual", "log_prob_before", "log_prob_after", "prob_before",
    "prob_after", "per_node": [{"id", "predicted"}]}`` (changes of the natural log of p(target))."""
    if mode not in MODES:
        raise VisitError(f"verify mode must be one of {', '.join(MODES)}, not {mode!r}")
    ids = [node_ids] if isinstance(node_ids, str) else list(dict.fromkeys(node_ids))
    if not ids:
        raise VisitError("choose a node (or pinned nodes) to verify")
    g, tr, vm = analysis.graph, analysis.trace, analysis.vm
    for n in ids:
        if n not in g:
            raise VisitError(f"there is no node {n!r} in this graph")
    sites = {n: _site(vm, g.nodes[n]) for n in ids}
    with weights_of(tr):  # the weights the trace was computed on (its session's edits)
        if getattr(tr, "weights_version", vm.weights.version) != vm.weights.version:
            raise VisitError("the model's weights changed since this trace: trace again to verify")
        return _verify(analysis, ids, mode, sites)


def _verify(analysis, ids: list[str], mode: str, sites: dict) -> dict:
    g, tr, vm = analysis.graph, analysis.trace, analysis.vm
    attribution = node_attribution(analysis, ids)
    means = prompt_set_means(vm, sorted({name for name, _ in sites.values()})) if mode == "mean" else {}
    pos, target = tr.position, analysis.target.id
    writes, per_node = [], []
    lens = FrozenLens.for_trace(tr) if mode == "mean" else None
    for n in ids:
        name, index = sites[n]
        attrs = g.nodes[n]
        if mode == "zero":
            writes.append(Intervention(name, "zero", positions=[pos], index=index))
            predicted = -attribution[n]
        else:
            mean = means[name][index] if index else means[name]
            writes.append(Intervention(name, "replace", mean, positions=[pos], index=index))
            base = tr.resid(attrs["layer"], base_of(attrs["kind"]))
            imp_mean = float(increase_of_vectors(lens, base, _vector(vm, attrs, mean).unsqueeze(0), target)[0])
            predicted = imp_mean - attribution[n]
        per_node.append({"id": n, "predicted": float(predicted)})
    logits, _ = run(vm, torch.tensor([tr.input_ids]), write=writes)
    after = float(logits[0, pos].float().log_softmax(-1)[target])
    before = float(tr["logits"][pos].float().log_softmax(-1)[target])
    predicted = sum(p["predicted"] for p in per_node)
    return {"nodes": ids, "mode": mode, "predicted": predicted, "actual": after - before,
            "log_prob_before": before, "log_prob_after": after, "prob_before": float(torch.tensor(before).exp()),
            "prob_after": float(torch.tensor(after).exp()), "per_node": per_node}
