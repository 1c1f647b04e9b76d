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

All of them come out of one pass that projects every neuron through the unembedding (the cost of
brute force, about 20 s on a CPU for the default model); the fast exact method covers (a) alone.
"""

from __future__ import annotations

import torch

from visit.attribution.logprob import FrozenLens, imp_of_scaled

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


def ffn_method_scores(trace, target_id: int, chunk: int = 512) -> dict[str, torch.Tensor]:
    """Every method's score for every FFN neuron: ``{method: [n_layers, d_mlp]}``."""
    lens = FrozenLens.for_trace(trace)
    weights, pos = trace.vm.weights, trace.position
    zero_logits = lens.offset  # the lens at the zero vector
    zero_logp = zero_logits.log_softmax(-1)
    out = {name: [] for name in METHODS}
    for layer in range(trace.n_layers):
        base_logp = lens.logits(trace.resid(layer, "mid").unsqueeze(0))[0].log_softmax(-1)
        base_p = base_logp[target_id].exp()
        coeff = trace[f"blocks.{layer}.mlp.hook_post"][pos]
        W_out = weights.W_out(layer)
        rows = {name: [] for name in ("logp_increase", "logp", "inv_rank")}
        for start in range(0, W_out.shape[0], chunk):
            u = lens.delta_logits(W_out[start:start + chunk])  # [k, V]
            m = coeff[start:start + chunk]
            rows["logp_increase"].append(imp_of_scaled(base_logp, u, m, target_id))
            rows["logp"].append(imp_of_scaled(zero_logp, u, m, target_id) + zero_logp[target_id])
            rank = (u > u[:, target_id:target_id + 1]).sum(-1) + 1
            rows["inv_rank"].append(1.0 / rank.float())
        imp = torch.cat(rows["logp_increase"])
        inv_rank = torch.cat(rows["inv_rank"])
        norm = W_out.norm(dim=-1)
        out["logp_increase"].append(imp)
        out["logp"].append(torch.cat(rows["logp"]))
        out["prob_increase"].append(base_p * torch.expm1(imp))
        out["norm"].append(norm)
        out["coefficient"].append(coeff.abs())
        out["inv_rank"].append(inv_rank)
        out["coef_norm"].append(coeff.abs() * norm)
        out["coef_inv_rank"].append(coeff.abs() * inv_rank)
    return {name: torch.stack(rows) for name, rows in out.items()}


def top_neurons(scores: torch.Tensor, k: int) -> list[tuple[int, int]]:
    """The ``k`` highest-scoring ``(layer, neuron)`` pairs of a ``[n_layers, d_mlp]`` tensor, best first."""
    idx = scores.reshape(-1).topk(min(k, scores.numel())).indices
    return [divmod(int(i), scores.shape[1]) for i in idx]
