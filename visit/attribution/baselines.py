"""The eight FFN-neuron attribution methods of Yu & Ananiadou (2024, Table 2).

A neuron is ``m * v`` (coefficient times its W_out row), ``h`` the post-attention residual, ``w``
the target, probabilities from the frozen lens (``p(w | m v)`` is the lens applied to the neuron
alone: its logits are the lens' affine map at ``m v``). "Projecting v into vocabulary space"
(the rank methods) uses the lens' linear part on v (norm weight, centring for LayerNorm).

==================  ===  ===========================================
name                 id  score
==================  ===  ===========================================
``logp_increase``    a   log p(w | h + m v) - log p(w | h)  (ours)
``logp``             b   log p(w | m v)
``prob_increase``    c   p(w | h + m v) - p(w | h)
``norm``             d   ||v||
``coefficient``      e   |m|
``inv_rank``         f   1 / rank of w in v's projection
``coef_norm``        g   |m| * ||v||
``coef_inv_rank``    h   |m| / rank of w in v's projection
==================  ===  ===========================================

The projected ones come out of one pass that projects every neuron through the unembedding (the
cost of brute force, about 20 s on a CPU for the default model); the fast exact method covers (a)
alone (:mod:`visit.attribution.fast`); d), e) and g) need no projection.
"""

from __future__ import annotations

import torch

from visit.attribution.logprob import FrozenLens, imp_of_scaled, projection_rows

METHODS = ("logp_increase", "logp", "prob_increase", "norm", "coefficient", "inv_rank", "coef_norm",
           "coef_inv_rank")
METHOD_IDS = dict(zip(METHODS, "abcdefgh"))
METHOD_LABELS = {
    "logp_increase": "log prob increase",
    "logp": "log prob",
    "prob_increase": "prob increase",
    "norm": "norm |v|",
    "coefficient": "|m|",
    "inv_rank": "1/rank",
    "coef_norm": "|m|*|v|",
    "coef_inv_rank": "|m|/rank",
}


PROJECTED = ("logp_increase", "logp", "prob_increase", "inv_rank", "coef_inv_rank")  # need every neuron's projection


def ffn_method_scores(trace, target_id: int, methods=METHODS, chunk: int | None = None) -> dict[str, torch.Tensor]:
    """Each asked method's score for every FFN neuron: ``{method: [n_layers, d_mlp]}``.

    Methods d), e) and g) need no projection and cost nothing; the others project every neuron
    once (shared between them), the rank comparisons in cache-sized blocks.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {METHODS}")
    lens = FrozenLens.for_trace(trace)
    weights, pos = trace.vm.weights, trace.position
    zero = lens.base(torch.zeros_like(lens.weight))  # the lens at the zero vector
    zero_logp = zero.logp
    projected = any(m in PROJECTED for m in methods)
    chunk = chunk or projection_rows(lens.W_U.device)
    ranked = any(m in ("inv_rank", "coef_inv_rank") for m in methods)
    out = {name: [] for name in methods}
    for layer in range(trace.n_layers):
        coeff = trace.mlp_coefficients(layer)[pos]
        W_out = weights.W_out(layer)
        norm = W_out.norm(dim=-1)
        rows = {"logp_increase": [], "logp": [], "inv_rank": []}
        if projected:
            base = lens.base(trace.resid(layer, "mid"))
            base_logp = base.logp
            for start in range(0, W_out.shape[0], chunk):
                u = lens.delta_logits(W_out[start:start + chunk])  # [k, V]
                m = coeff[start:start + chunk]
                if {"logp_increase", "prob_increase"} & set(methods):
                    rows["logp_increase"].append(imp_of_scaled(base, u, m, target_id))
                if "logp" in methods:
                    rows["logp"].append(imp_of_scaled(zero, u, m, target_id) + zero_logp[target_id])
                if ranked:
                    rows["inv_rank"].append(1.0 / _target_rank(u, target_id).float())
            imp = torch.cat(rows["logp_increase"]) if rows["logp_increase"] else None
            inv_rank = torch.cat(rows["inv_rank"]) if rows["inv_rank"] else None
        per_method = {
            "logp_increase": lambda: imp,
            "logp": lambda: torch.cat(rows["logp"]),
            "prob_increase": lambda: base_logp[target_id].exp() * torch.expm1(imp),
            "norm": lambda: norm,
            "coefficient": lambda: coeff.abs(),
            "inv_rank": lambda: inv_rank,
            "coef_norm": lambda: coeff.abs() * norm,
            "coef_inv_rank": lambda: coeff.abs() * inv_rank,
        }
        for name in methods:
            out[name].append(per_method[name]())
    return {name: torch.stack(rows) for name, rows in out.items()}


def _target_rank(u: torch.Tensor, target_id: int, block: int = 32) -> torch.Tensor:
    """``[k]``: 1 + how many tokens each row of ``u [k, V]`` puts above the target (blocks stay in cache)."""
    out = torch.empty(u.shape[0], dtype=torch.long, device=u.device)
    for start in range(0, u.shape[0], block):
        part = u[start:start + block]
        out[start:start + block] = (part > part[:, target_id:target_id + 1]).sum(-1) + 1
    return out


def top_neurons(scores: torch.Tensor, k: int) -> list[tuple[int, int]]:
    """The ``k`` highest-scoring ``(layer, neuron)`` pairs of a ``[n_layers, d_mlp]`` tensor, best first."""
    idx = scores.reshape(-1).topk(min(k, scores.numel())).indices
    return [divmod(int(i), scores.shape[1]) for i in idx]
