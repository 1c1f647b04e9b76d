"""The difference of two flow graphs, aligned by node id: what changed between "before" and "after".

One data structure serves every before/after view: two prompts, two targets or two positions (the compare
view), and a model before and after a knowledge edit (the editing panel). Node ids (``L5.H3``,
``L5.N123``, ``L7.resid_post``: :func:`visit.graph.nodes.node_id`) name the same component in both graphs,
so the two graphs align without any matching heuristics.

Usage::

    from visit.graph.diff import diff_graphs
    before = analyze(vm, "The capital of France is")
    after = analyze(vm, "The capital of France is", interventions=[...])   # or an edited model
    d = diff_graphs(before, after)
    d["top_changed"]          # ids of the most changed nodes, most changed first
    d["nodes"]["L29.resid_post"]["delta"]["target_rank"]

Per node, three quantities before and after, and their change (after - before):

- ``target_rank`` (1-based rank of the target in the node's logit lens, final norm re-applied),
- ``target_prob`` (its probability there) and ``log_prob`` (its natural log, what "verify" compares),
- ``attribution``: the node's log-probability increase of the target
  (:func:`visit.graph.attribution.node_attribution`; ``None`` for residuals, norms, queries and keys).

Each analysis is judged by *its own* target (``analysis.target``): for two targets the view shows how
each target fares, for an edit (same target typed before and after) how the model's support moved.

The returned dict is plain JSON-able data::

    {"before": {"prompt", "target", "target_id", "position", "model"},   # the same for "after"
     "same_target": bool,
     "final": {"before": {...}, "after": {...}, "delta": {...}},          # the last node shown in both
     "nodes": {node_id: {"id", "kind", "layer", "location", "x", "y" (drawn position; the before graph's),
                         "present": "both"|"before"|"after",
                         "before": {target_rank, target_prob, log_prob, attribution} | None,
                         "after":  {...} | None,
                         "delta":  {target_rank, target_prob, log_prob, attribution} (None parts where
                                   either side lacks the value),
                         "change": float >= 0 (how much it changed: |delta attribution|, else
                                   |delta log_prob|, else 0),
                         "top_changed": bool}},
     "top_changed": [node ids, most changed first],
     "edges": [[u, v], ...] (both graphs' edges, for drawing the difference graph),
     "only_before": [...], "only_after": [...]}

The editing engineer's caveat: attribution is memoised per trace and weights version, so compute the
"before" analysis's attribution (``node_attribution(before)``) before the weights change if the edit
touches the unembedding or final norm; edits of MLP weights (ROME, MEMIT) do not affect it.
"""

from __future__ import annotations

import math

from visit.graph.attribution import node_attribution

FIELDS = ("target_rank", "target_prob", "log_prob", "attribution")
TOP_CHANGED = 10


def _values(analysis, attribution: dict) -> dict[str, dict]:
    out = {}
    for n, a in analysis.graph.nodes(data=True):
        p = a.get("target_prob")
        out[n] = {"target_rank": a.get("target_rank"), "target_prob": p,
                  "log_prob": math.log(p) if p is not None and p > 0 else None,
                  "attribution": attribution.get(n)}
    return out


def _delta(b: dict | None, a: dict | None) -> dict:
    if b is None or a is None:
        return {f: None for f in FIELDS}
    return {f: (a[f] - b[f] if a[f] is not None and b[f] is not None else None) for f in FIELDS}


def _change(delta: dict) -> float:
    for f in ("attribution", "log_prob"):
        if delta[f] is not None:
            return abs(float(delta[f]))
    return 0.0


def _side(analysis) -> dict:
    return {"prompt": analysis.prompt, "target": analysis.target.token, "target_id": analysis.target.id,
            "position": analysis.trace.position, "model": analysis.vm.name}


def diff_graphs(before, after, top: int = TOP_CHANGED) -> dict:
    """``before`` and ``after`` (:class:`visit.pipeline.Analysis`) -> the aligned difference (module doc).

    Nodes present in only one graph (pruning kept different components) are listed with ``None`` on the
    other side and never count as "top changed"; ``top`` nodes with the largest ``change`` > 0 are marked.
    """
    vb = _values(before, node_attribution(before))
    va = _values(after, node_attribution(after))
    gb, ga = before.graph, after.graph
    order = list(gb.nodes) + [n for n in ga.nodes if n not in gb]
    nodes = {}
    for n in order:
        attrs = gb.nodes[n] if n in gb else ga.nodes[n]
        b, a = vb.get(n), va.get(n)
        delta = _delta(b, a)
        nodes[n] = {"id": n, "kind": attrs["kind"], "layer": attrs["layer"], "location": attrs.get("location"),
                    "x": attrs.get("x"), "y": attrs.get("y"),
                    "present": "both" if (b is not None and a is not None) else ("before" if b is not None else "after"),
                    "before": b, "after": a, "delta": delta, "change": _change(delta), "top_changed": False}
    ranked = sorted((n for n, d in nodes.items() if d["present"] == "both" and d["change"] > 0),
                    key=lambda n: -nodes[n]["change"])[:top]
    for n in ranked:
        nodes[n]["top_changed"] = True
    common_final = [n for n in order if nodes[n]["present"] == "both" and nodes[n]["kind"] == "resid_post"]
    final = None
    if common_final:
        last = max(common_final, key=lambda n: nodes[n]["layer"])
        final = {"id": last, "before": nodes[last]["before"], "after": nodes[last]["after"],
                 "delta": nodes[last]["delta"]}
    return {"before": _side(before), "after": _side(after),
            "same_target": before.target.id == after.target.id, "final": final, "nodes": nodes,
            "top_changed": ranked,
            "edges": [[u, v] for g in (gb, ga) for u, v in g.edges if g is gb or not gb.has_edge(u, v)],
            "only_before": [n for n in order if nodes[n]["present"] == "before"],
            "only_after": [n for n in order if nodes[n]["present"] == "after"]}
