"""Ranked components as plain data (what the CLI prints and writes, the report and the panel show).

Each entry: ``{"kind", "layer", "head"?, "index"?, "position"?, "score", "top_tokens", "node"}``,
sorted by score, best first. ``kind`` is one of ``attn_layer``, ``ffn_layer``, ``head``,
``ffn_neuron``, ``attn_neuron`` (per source position) or ``wo_neuron`` (summed over sources);
``top_tokens`` are the tokens whose logits the component raises most under the frozen lens (raw
strings, not escaped); ``node`` is the graph node id the component belongs to.
"""

from __future__ import annotations

import torch

from visit.attribution.baselines import METHODS, ffn_method_scores
from visit.attribution.fast import attn_neuron_scores, ffn_neuron_scores
from visit.attribution.logprob import FrozenLens, head_logprob_increase, layer_logprob_increase
from visit.errors import VisitError
from visit.hooks.names import hook_name
from visit.ids import head_id, neuron_id, node_id, spine_id
from visit.tokens import token_string

KINDS = ("layer", "head", "ffn", "attn", "wo")


def _top_tokens(trace, lens: FrozenLens, vectors: torch.Tensor, k: int) -> list[list[str]]:
    if vectors.shape[0] == 0:
        return []
    ids = lens.delta_logits(vectors).topk(k, dim=-1).indices
    tok = trace.vm.tokenizer
    return [[token_string(tok, int(i)) for i in row] for row in ids]


def ranked_components(trace, target_id: int, kind: str = "ffn", method: str = "logp_increase", top: int = 20,
                      n_tokens: int = 8, bottom: bool = False) -> list[dict]:
    """The ``top`` components of ``kind`` by ``method`` (``bottom=True``: the most negative)."""
    if kind not in KINDS:
        raise VisitError(f"unknown kind '{kind}'; choose one of {', '.join(KINDS)}")
    if method not in METHODS:
        raise VisitError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    if method != "logp_increase" and kind != "ffn":
        raise VisitError(f"method '{method}' applies to FFN neurons only (--kind ffn)")
    if top < 1:
        raise VisitError("--top must be at least 1")
    lens = FrozenLens.for_trace(trace)
    w, pos, d = trace.vm.weights, trace.position, trace.vm.dims
    entries: list[dict] = []
    if kind == "layer":
        scores = layer_logprob_increase(trace, target_id)
        for part, hook, node in (("attn", "hook_attn_out", "attn_out"), ("ffn", "hook_mlp_out", "mlp_out")):
            for layer in range(trace.n_layers):
                entries.append({"kind": f"{part}_layer", "layer": layer, "score": float(scores[part][layer]),
                                "node": spine_id(layer, node),
                                "_vec": trace[hook_name(layer, hook)][pos]})
    elif kind == "head":
        scores = head_logprob_increase(trace, target_id)
        for layer in range(trace.n_layers):
            for h in range(d.n_heads):
                entries.append({"kind": "head", "layer": layer, "head": h, "score": float(scores[layer, h]),
                                "node": head_id(layer, h),
                                "_vec": trace[hook_name(layer, "attn.hook_result")][h]})
    elif kind == "ffn":
        if method == "logp_increase":
            res = ffn_neuron_scores(trace, target_id, k=0 if bottom else top, k_bottom=top if bottom else 0)
            scores = res.scores
        else:
            scores = trace.memo(("method", target_id, method),
                                lambda: ffn_method_scores(trace, target_id, methods=(method,))[method])
        vals, idx = scores.reshape(-1).topk(min(top, scores.numel()), largest=not bottom)
        for v, flat in zip(vals.tolist(), idx.tolist()):
            layer, i = divmod(flat, d.d_mlp)
            entries.append({"kind": "ffn_neuron", "layer": layer, "index": i, "score": v, "node": neuron_id(layer, i),
                            "_vec": trace.neuron_contributions(layer, [i])[0]})
    else:
        per_source = kind == "attn"
        res = attn_neuron_scores(trace, target_id, per_source=per_source, k=0 if bottom else top,
                                 k_bottom=top if bottom else 0)
        vals, idx = res.scores.reshape(-1).topk(min(top, res.scores.numel()), largest=not bottom)
        for v, flat in zip(vals.tolist(), idx.tolist()):
            c = [int(x) for x in torch.unravel_index(torch.tensor(flat), res.scores.shape)]
            layer, h, j = c[:3]
            coeff = trace.z_coefficients(layer)[pos, h, j]
            e = {"kind": "attn_neuron" if per_source else "wo_neuron", "layer": layer, "head": h, "index": j,
                 "score": v, "node": node_id(layer, "wo_neuron", index=h * d.d_head + j)}
            if per_source:
                e["position"] = c[3]
                e["node"] = node_id(layer, "memory", head=h, source=c[3])
                coeff = (trace[hook_name(layer, "attn.hook_pattern")][h, pos, c[3]]
                         * trace[hook_name(layer, "attn.hook_v")][c[3], int(trace.kv_head_of[h]), j]
                         / trace.post_scale(layer, "attn")[pos, 0])
            e["_vec"] = coeff * w.W_O(layer)[h, j]
            entries.append(e)
    if kind in ("layer", "head"):
        entries.sort(key=lambda e: e["score"], reverse=not bottom)
        entries = entries[:top]
    vectors = torch.stack([e.pop("_vec") for e in entries]) if entries else torch.zeros(0, d.d_model)
    for e, toks in zip(entries, _top_tokens(trace, lens, vectors, n_tokens)):
        e["top_tokens"] = toks
    return entries


def layer_scores(trace, target_id: int) -> dict[str, torch.Tensor]:
    """``{"attn", "ffn"} -> [n_layers]``: :func:`~visit.attribution.logprob.layer_logprob_increase`, memoised."""
    return trace.memo(("layers", target_id), lambda: layer_logprob_increase(trace, target_id))


def head_scores(trace, target_id: int) -> torch.Tensor:
    """``[n_layers, n_heads]``: :func:`~visit.attribution.logprob.head_logprob_increase`, memoised per trace."""
    return trace.memo(("heads", target_id), lambda: head_logprob_increase(trace, target_id))


def ranked(trace, target_id: int, kind: str, method: str = "logp_increase", top: int = 20) -> list[dict]:
    """:func:`ranked_components`, memoised per trace (the panel and the report ask for the same list)."""
    return trace.memo(("ranked", target_id, kind, method, top),
                      lambda: ranked_components(trace, target_id, kind, method, top))
