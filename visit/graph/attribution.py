"""Each graph node's predicted effect on the target: its log-probability increase (Yu & Ananiadou).

A node stands for a vector that the model *adds* to the residual stream (a head's result, a memory
value, a W_O neuron, an MLP neuron, a whole attention or MLP output). Its attribution is
``Imp = log p(target | h + v) - log p(target | h)`` under the frozen final norm
(:class:`visit.attribution.logprob.FrozenLens`), with ``h`` what the vector is added to:

==========================================  =====================
node kinds                                  base ``h``
==========================================  =====================
head, memory, wo_neuron, concat, attn_out   ``resid_pre[layer]``
neuron, mlp_out                             ``resid_mid[layer]``
==========================================  =====================

Residuals, norms, queries and keys are not added to anything and get ``None``. This is the same number
as :func:`visit.attribution.head_logprob_increase` for a head and as the FFN neuron scores for a
neuron, so the graph, the attribution panel, circuit pruning and "verify" (predicted change) agree.
"""

from __future__ import annotations

import torch

from visit.attribution.logprob import FrozenLens, increase_of_vectors
from visit.graph.nodes import GROUP_KIND

ADDED_TO_PRE = frozenset({"head", "memory", "wo_neuron", "concat", "attn_out"})
ADDED_TO_MID = frozenset({"neuron", "mlp_out"})


def base_of(kind: str) -> str | None:
    """``"pre"``, ``"mid"`` or ``None``: which residual a node of ``kind`` is added to."""
    if kind in ADDED_TO_PRE:
        return "pre"
    if kind in ADDED_TO_MID:
        return "mid"
    return None


def node_attribution(analysis, node_ids=None) -> dict[str, float | None]:
    """``{node id: Imp or None}`` for ``node_ids`` (default: every node of ``analysis.graph``).

    One batched frozen-lens projection per (layer, base); memoised per trace, target and weights version
    (:meth:`visit.tracer.Trace.memo`), so repeated calls cost nothing.
    """
    g = analysis.graph
    ids = list(g.nodes) if node_ids is None else [n for n in node_ids if n in g]
    target_id = analysis.target.id
    known = analysis.trace.memo(("node_attribution", target_id), dict)
    # a user's group (visit.graph.groups) carries its members' summed attribution; its id is not memoised
    grouped = {n: g.nodes[n].get("attribution") for n in ids if g.nodes[n]["kind"] == GROUP_KIND}
    todo = [n for n in ids if n not in known and n not in grouped]
    if todo:
        known.update(_compute(analysis, todo))
    return {n: grouped[n] if n in grouped else known.get(n) for n in ids}


def _compute(analysis, ids: list[str]) -> dict[str, float | None]:
    g, tr = analysis.graph, analysis.trace
    out: dict[str, float | None] = {}
    groups: dict[tuple[int, str], list[str]] = {}
    for n in ids:
        a = g.nodes[n]
        base = base_of(a["kind"])
        if base is None or n not in analysis.vectors:
            out[n] = None
        else:
            groups.setdefault((a["layer"], base), []).append(n)
    if groups:
        lens = FrozenLens.for_trace(tr)
        for (layer, base), members in groups.items():
            vecs = torch.stack([analysis.vectors[n].to(lens.W_U.device).float() for n in members])
            scores = increase_of_vectors(lens, tr.resid(layer, base), vecs, analysis.target.id).tolist()
            out.update(zip(members, (float(s) for s in scores)))
    return out
