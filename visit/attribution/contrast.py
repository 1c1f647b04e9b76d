"""Token contrast (Yu & Ananiadou 002 section 4.3): bs-values of competing tokens along the stream.

The bs-value (before-softmax value) of token ``t`` for a residual ``x`` is its frozen-lens logit.
Because the lens is affine, the bs-value after a sub-block is the bs-value before it plus the
sub-block's own bs-value (``linear(v) . W_U[:, t]``); the difference between two tokens' bs-values
shows which sub-blocks separate them (" Paris" vs " London").
"""

from __future__ import annotations

import torch

from visit.attribution.logprob import FrozenLens
from visit.hooks.names import hook_name


def stream_points(trace) -> tuple[list[str], torch.Tensor]:
    """Labels and residuals ``[2 * n_layers + 1, d_model]``: embedding, then after each attention and FFN."""
    labels, points = ["embedding"], [trace.resid(0, "pre")]
    for layer in range(trace.n_layers):
        labels += [f"L{layer} attn", f"L{layer} FFN"]
        points += [trace.resid(layer, "mid"), trace.resid(layer, "post")]
    return labels, torch.stack(points)


def bs_values(trace, token_ids: list[int]) -> dict:
    """``{"labels": [...], "bs": [tokens, points], "block_bs": [tokens, 2 * n_layers]}``.

    ``block_bs[t, b]`` is sub-block b's own bs-value for token t (attention and FFN of each layer in
    order), so ``bs[:, b + 1] - bs[:, b] == block_bs[:, b]``.
    """
    lens = FrozenLens.for_trace(trace)
    labels, points = stream_points(trace)
    ids = torch.as_tensor(token_ids, device=points.device)
    bs = (lens.linear(points) @ lens.W_U[:, ids] + lens.offset[ids]).T  # [tokens, points]
    pos = trace.position
    blocks = []
    for layer in range(trace.n_layers):
        blocks += [trace[hook_name(layer, "hook_attn_out")][pos], trace[hook_name(layer, "hook_mlp_out")][pos]]
    block_bs = (lens.linear(torch.stack(blocks)) @ lens.W_U[:, ids]).T
    return {"labels": labels, "bs": bs, "block_bs": block_bs}


def contrast(trace, target_id: int, competitor_id: int) -> dict:
    """bs-values of target and competitor along the stream and per-sub-block differences.

    ``{"labels", "target": [points], "competitor": [points], "block_labels", "block_diff": [blocks],
    "log_odds": final target minus competitor logit}``.
    """
    res = bs_values(trace, [target_id, competitor_id])
    diff = res["block_bs"][0] - res["block_bs"][1]
    return {"labels": res["labels"], "target": res["bs"][0].tolist(), "competitor": res["bs"][1].tolist(),
            "block_labels": res["labels"][1:], "block_diff": diff.tolist(),
            "log_odds": float(res["bs"][0, -1] - res["bs"][1, -1])}
