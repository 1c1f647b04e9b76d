"""Query neurons of attention value neurons (Yu & Ananiadou 003 section 4.2, Appendix D).

:func:`attn_query_scores` does for one dimension of one head's output what
:func:`visit.attribution.query.query_scores` does for an FFN neuron: its value subkey is read at
every source position with that position's own ln1 scale and weighted by the attention the head
pays to it. :func:`attn_query_ffn_neurons` aggregates FFN query neurons over many value neurons
(vectorised), and :func:`top_query_ffn_neurons` ranks them for the top attention value neurons of a
target.
"""

from __future__ import annotations

import torch

from visit.attribution.fast import attn_neuron_scores
from visit.errors import VisitError
from visit.hooks.names import hook_name

# with x_s = resid_pre[L] at source s (ln1 reads resid_pre in sequential and parallel blocks alike) and
# scale_s ln1's real divisor *at that source*. K_j is the value neuron's subkey; under grouped-query
# attention it belongs to the kv head, so the query heads sharing a kv head share subkeys and differ
# only in their attention weights. x_s is a sum of earlier vectors at s (embedding, attention and FFN
# outputs of layers < L, FFN neurons m_i[s] * W_out[i], heads z[s,h'] @ W_O[h']), so the query score of a
# vector u at source s is ``alpha[h,p,s] * centre(u) . K_j / scale_s``; over all vectors and sources these
# add up exactly to z minus the constant ``(beta . W_V[:,j] + b_V[j]) * sum_s alpha[h,p,s]``.


def attn_subkey(trace, layer: int, head: int, dim: int) -> tuple[torch.Tensor, float]:
    """``(K [d_model], c)``: the centred, norm-folded value subkey of attention neuron ``(layer, head, dim)``
    and the constant of its value, so ``v[s,kv,dim] = x_s . K / scale_s + c`` at every source ``s``."""
    w = trace.vm.weights
    kv = int(trace.kv_head_of[head])
    ln1 = w.ln1(layer)
    col = w.W_V(layer)[kv, :, dim]
    K = ln1.weight * col
    if ln1.kind == "layernorm":
        K = K - K.mean()
    c = (0.0 if ln1.bias is None else float(ln1.bias @ col)) + float(w.b_V(layer)[kv, dim])
    return K, c


def _source_reads(trace, layer: int) -> list[tuple[str, int, torch.Tensor]]:
    """Layer-level vectors summing to attention layer ``layer``'s input at every source: ``(part, l, [S, d])``."""
    S = trace.position + 1
    parts = [("embedding", 0, trace[hook_name(0, "hook_resid_pre")][:S])]
    for l in range(layer):
        parts.append(("attn", l, trace[hook_name(l, "hook_attn_out")][:S]))
        parts.append(("ffn", l, trace[hook_name(l, "hook_mlp_out")][:S]))
    return parts


def _check_attn_neuron(trace, layer: int, head: int, dim: int) -> None:
    d = trace.vm.dims
    if not (0 <= layer < d.n_layers and 0 <= head < d.n_heads and 0 <= dim < d.d_head):
        raise VisitError(f"no attention neuron L{layer}.H{head}.d{dim} in this model "
                         f"({d.n_layers} layers, {d.n_heads} heads, {d.d_head} dims per head)")


def attn_query_scores(trace, layer: int, head: int, dim: int, top: int = 20) -> dict:
    """What activates attention value neuron ``(layer, head, dim)`` at the traced position ``p``.

    Sign convention: an attention neuron's coefficient ``z = z[p,head,dim]`` can be negative, so every
    ``score`` is the raw inner product times ``sign(z)`` (``+1`` when ``z == 0``): positive means the
    vector pushes ``|z|`` up, i.e. helps activate the neuron. ``raw`` fields keep the signed values;
    ``sum(raw over "layers") + constant == z`` exactly.

    Returns ``{"layer", "head", "dim", "kv_head", "z", "sign", "constant", "raw_total",
    "layers": [{"part", "layer", "score", "raw", "per_source": [S]}] (every layer-level vector, sorted by
    score), "sources": [S] (sign-adjusted score of everything at each source), "ffn_neurons": [{"layer",
    "index", "score", "best_source", "best_score"}] (top ``top``; score summed over sources, weighted by
    attention), "attn_heads": [{"layer", "head", "score", "best_source"}] (top ``top``)}``.
    Per-source lists are indexed by source position ``0..p``.
    """
    _check_attn_neuron(trace, layer, head, dim)
    w, pos = trace.vm.weights, trace.position
    S = pos + 1
    K, c = attn_subkey(trace, layer, head, dim)
    alpha = trace[hook_name(layer, "attn.hook_pattern")][head, pos, :S]
    coef = alpha / trace[hook_name(layer, "ln1.hook_scale")][:S, 0]  # [S]
    z = float(trace[hook_name(layer, "attn.hook_z")][pos, head, dim])
    sign = -1.0 if z < 0 else 1.0
    constant = c * float(alpha.sum())
    layers = []
    for part, l, vecs in _source_reads(trace, layer):
        raw = coef * (vecs @ K)  # [S]
        layers.append({"part": part, "layer": l, "raw": float(raw.sum()), "score": sign * float(raw.sum()),
                       "per_source": (sign * raw).tolist()})
    raw_total = sum(e["raw"] for e in layers) + constant
    sources = torch.tensor([e["per_source"] for e in layers]).sum(0).tolist()
    layers.sort(key=lambda e: e["score"], reverse=True)

    neurons, heads = [], []
    if layer:
        # [layer, S, d_mlp]: m_i[s] * (W_out[i] . K) * alpha_s / scale_s, sign-adjusted
        per = torch.stack([trace.mlp_coefficients(l)[:S] * (w.W_out(l) @ K) for l in range(layer)])
        neurons = [{"layer": l, "index": n, "score": v, "best_source": s_best, "best_score": b}
                   for l, n, v, s_best, b in _top_summed_over_sources(sign * per * coef[None, :, None], top)]
        hs = torch.stack([torch.einsum("shd,hd->sh", trace.z_coefficients(l)[:S], w.W_O(l) @ K)
                          for l in range(layer)])  # [layer, S, H]
        heads = [{"layer": l, "head": h, "score": v, "best_source": s_best}
                 for l, h, v, s_best, _ in _top_summed_over_sources(sign * hs * coef[None, :, None], top)]
    return {"layer": layer, "head": head, "dim": dim, "kv_head": int(trace.kv_head_of[head]), "z": z,
            "sign": sign, "constant": constant, "raw_total": raw_total, "layers": layers, "sources": sources,
            "ffn_neurons": neurons, "attn_heads": heads}


def _top_summed_over_sources(scores: torch.Tensor, top: int) -> list[tuple[int, int, float, int, float]]:
    """``scores [layer, S, units]`` -> the ``top`` units by their sum over sources, best first, as
    ``(layer, unit, summed score, best source, score there)``."""
    total = scores.sum(1).reshape(-1)
    vals, idx = total.topk(min(top, total.numel()))
    best = scores.max(1)
    width = scores.shape[2]
    return [(i // width, i % width, v, int(best.indices[i // width, i % width]),
             float(best.values[i // width, i % width])) for v, i in zip(vals.tolist(), idx.tolist())]


WEIGHTINGS = ("share", "logp", "sum")


def _value_queries(trace, neurons, weights=None, weighting: str = "share") -> tuple[dict, float]:
    """Per attention layer ``L``: ``Q_L [S, d_model]`` with ``u_s . Q_L[s]`` = the aggregated score of a
    vector ``u`` at source ``s`` for the given value neurons of layer ``L``; and the aggregated constant."""
    w, pos = trace.vm.weights, trace.position
    S = pos + 1
    if weighting not in WEIGHTINGS:
        raise VisitError(f"weighting must be one of {', '.join(WEIGHTINGS)}, not '{weighting}'")
    nz = torch.as_tensor(neurons, dtype=torch.long).reshape(-1, 3)
    if weighting != "sum":
        if weights is None:
            raise VisitError(f"weighting '{weighting}' needs each value neuron's log-prob increase (weights)")
        weights = torch.as_tensor(weights, dtype=torch.float32).reshape(-1).cpu()
        if weights.numel() != nz.shape[0]:
            raise VisitError("one weight per value neuron, please")
    for layer, head, dim in nz.tolist():
        _check_attn_neuron(trace, layer, head, dim)
    queries, constant = {}, 0.0
    for layer in sorted(set(nz[:, 0].tolist())):
        rows = (nz[:, 0] == layer).nonzero().reshape(-1)
        h, j = nz[rows, 1].to(trace.vm.device), nz[rows, 2].to(trace.vm.device)
        kv = trace.kv_head_of[h]
        ln1 = w.ln1(layer)
        cols = w.W_V(layer)[kv, :, j]  # [N, d_model]
        K = cols * ln1.weight
        if ln1.kind == "layernorm":
            K = K - K.mean(-1, keepdim=True)
        c = w.b_V(layer)[kv, j] + (0.0 if ln1.bias is None else cols @ ln1.bias)  # [N]
        z = trace[hook_name(layer, "attn.hook_z")][pos][h, j]
        sign = torch.where(z < 0, -1.0, 1.0)
        if weighting == "sum":
            factor = sign
        else:
            imp = weights[rows].to(z.device)
            factor = sign * imp if weighting == "logp" else imp / torch.where(z == 0, torch.ones_like(z), z)
        alpha = trace[hook_name(layer, "attn.hook_pattern")][h, pos, :S]  # [N, S]
        coef = factor[:, None] * alpha / trace[hook_name(layer, "ln1.hook_scale")][:S, 0]
        queries[layer] = coef.T @ K  # [S, d_model]
        constant += float((factor * c * alpha.sum(-1)).sum())
    return queries, constant


def attn_query_ffn_neurons(trace, neurons, weights=None, weighting: str = "share", per_source: bool = False,
                           with_layers: bool = False):
    """Query FFN neuron scores aggregated over attention value neurons (003 section 4.2, Table 7).

    ``neurons``: ``[(layer, head, dim), ...]`` (e.g. the top 200 by log-prob increase, see
    :func:`top_attn_value_neurons`); ``weights``: their log-prob increases. The score of FFN neuron
    ``(l, i)`` at source ``s`` for one value neuron is its sign-adjusted query score
    ``sign(z) * alpha[h,p,s] * m_i[s] * W_out[i] . K / scale_s`` (see :func:`attn_query_scores`), counted
    for value neurons in layers ``> l``; the aggregate is a weighted sum over value neurons:

    - ``"share"`` (default): weight ``imp / |z|``, i.e. each value neuron's log-prob increase is split
      over its query vectors in proportion to their share of its coefficient (``raw / z``). The
      layer-level scores plus the constant then add up to ``sum(imp)``, and a value neuron counts by
      its importance, not by the size of its coefficient;
    - ``"logp"``: weight ``imp`` (sign-adjusted inner products times importance);
    - ``"sum"``: weight 1, the plain sum of sign-adjusted inner products (no ``weights`` needed).

    Returns ``[n_layers, d_mlp]`` (summed over sources) or ``[n_layers, d_mlp, S]`` with ``per_source``;
    with ``with_layers`` a pair ``(scores, {"layers": [{"part", "layer", "score"}] sorted, "constant"})``.
    One ``[S, d_model] x [d_model, d_mlp]`` product per FFN layer, whatever the number of value neurons.
    """
    d, w, pos = trace.vm.dims, trace.vm.weights, trace.position
    S = pos + 1
    queries, constant = _value_queries(trace, neurons, weights, weighting)
    out = torch.zeros(d.n_layers, d.d_mlp, S, device=trace.vm.device)
    R = torch.zeros(S, d.d_model, device=trace.vm.device)  # sum of Q_L over value layers L > l
    layers = []
    for l in range(d.n_layers - 1, -1, -1):
        if l + 1 in queries:
            R = R + queries[l + 1]
        out[l] = (trace.mlp_coefficients(l)[:S] * (R @ w.W_out(l).T)).T
        if with_layers:
            for part, name in (("ffn", "hook_mlp_out"), ("attn", "hook_attn_out")):
                score = float((trace[hook_name(l, name)][:S] * R).sum())
                layers.append({"part": part, "layer": l, "score": score})
    scores = out if per_source else out.sum(-1)
    if not with_layers:
        return scores
    if 0 in queries:
        R = R + queries[0]
    layers.append({"part": "embedding", "layer": 0, "score": float((trace[hook_name(0, "hook_resid_pre")][:S] * R).sum())})
    layers.sort(key=lambda e: e["score"], reverse=True)
    return scores, {"layers": layers, "constant": constant}


def top_attn_value_neurons(trace, target_id: int, n: int = 200) -> tuple[list[tuple[int, int, int]], torch.Tensor]:
    """The ``n`` attention neurons (summed over sources) with the largest log-prob increase of the
    target: ``([(layer, head, dim), ...], scores [n])``, best first."""
    d = trace.vm.dims
    res = attn_neuron_scores(trace, target_id, per_source=False, k=n)
    vals, idx = res.scores.reshape(-1).topk(min(n, res.scores.numel()))
    neurons = []
    for i in idx.tolist():
        layer, rest = divmod(i, d.n_heads * d.d_head)
        neurons.append((layer, *divmod(rest, d.d_head)))
    return neurons, vals


def top_query_ffn_neurons(trace, target_id: int, n_value: int = 200, k: int = 100, weighting: str = "share",
                          per_source: bool = True, sources=None) -> list[dict]:
    """The ``k`` best query FFN neurons of the top ``n_value`` attention value neurons of the target:
    ``[{"layer", "index", "source", "score"}]``, best first. With ``per_source`` each entry is one neuron
    at one source position; otherwise neurons are ranked by their score summed over sources
    (``source`` is ``None``). ``sources`` restricts the source positions (e.g. ``range(1, p + 1)`` to
    leave out the first token, whose few huge "attention sink" activations break every prediction when
    zeroed, whatever the target)."""
    neurons, weights = top_attn_value_neurons(trace, target_id, n_value)
    scores = attn_query_ffn_neurons(trace, neurons, weights, weighting, per_source=True)
    if sources is not None:
        keep = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
        keep[torch.as_tensor(list(sources), dtype=torch.long, device=scores.device)] = True
        scores = scores.masked_fill(~keep, float("-inf") if per_source else 0.0)
    if not per_source:
        scores = scores.sum(-1)
    d = trace.vm.dims
    vals, idx = scores.reshape(-1).topk(min(k, scores.numel()))
    out = []
    for v, i in zip(vals.tolist(), idx.tolist()):
        if per_source:
            rest, s = divmod(i, scores.shape[-1])
        else:
            rest, s = i, None
        layer, index = divmod(rest, d.d_mlp)
        out.append({"layer": layer, "index": index, "source": s, "score": v})
    return out
