"""Query neurons (Yu & Ananiadou 002 section 3.3, 003 section 3.4): what activates a value neuron.

FFN neuron ``(L, i)`` reads ``x = resid_mid[L]`` (``resid_pre[L]`` for parallel blocks) through its
norm: its pre-activation is ``LN(x) . k + b = (centre(x) / s) . (gamma * k) + (beta . k + b)``,
with ``k`` the neuron's input row and ``s`` the norm's real scale. We call ``K = gamma * k`` the
norm-folded *subkey*. ``x`` is a sum of earlier vectors (embedding, attention and FFN outputs,
neurons, attention subvalues), so each part ``v`` contributes ``centre(v) . K / s`` to the
pre-activation, and these contributions add up exactly to it (minus the constant
``beta . k + b``). That inner product is the query score.

Gated MLPs (SwiGLU) have no single subkey: the coefficient is ``act(gate . x) * (up . x)``.
``which="gate"`` (the default) scores against the gate row, which decides whether the neuron
fires; ``which="up"`` against the up row, which scales it (and sets its sign).

Attention value neurons have their own module, :mod:`visit.attribution.query_attn`.
"""

from __future__ import annotations

import torch

from visit.errors import VisitError
from visit.hooks.names import hook_name
from visit.models.weights import get_module


def subkey(trace, layer: int, neuron: int, which: str = "gate") -> tuple[torch.Tensor, float]:
    """``(K' [d_model], constant)``: the centred, norm-folded subkey divided by the real norm scale,
    and the constant part of the pre-activation, so ``pre_activation = sum_v v . K' + constant``."""
    vm = trace.vm
    gated = vm.adapter.mlp_kind == "gated"
    if which not in ("gate", "up"):
        raise VisitError("which must be 'gate' or 'up'")
    if which == "up" and not gated:
        raise VisitError("this model's MLP is not gated; it has one subkey (use which='gate')")
    slot = 1 if which == "up" else 0
    ln2 = vm.weights.ln2(layer)
    k = vm.weights.W_in(layer, slot)[:, neuron]
    K = ln2.weight * k
    if ln2.kind == "layernorm":
        K = K - K.mean()
    scale = trace[hook_name(layer, "ln2.hook_scale")][trace.position].reshape(())
    bias = getattr(get_module(vm.weights.blocks[layer], vm.adapter.mlp_in[slot]), "bias", None)
    constant = (0.0 if ln2.bias is None else float(ln2.bias @ k)) + (0.0 if bias is None else float(bias[neuron]))
    return K / scale, constant


def _reads(trace, layer: int) -> list[tuple[str, int, torch.Tensor]]:
    """The layer-level vectors summing to the MLP's input at the position: ``(part, layer, vector)``."""
    pos = trace.position
    parts = [("embedding", 0, trace.resid(0, "pre"))]
    for l in range(layer + 1):
        if l < layer or not trace.vm.parallel:
            parts.append(("attn", l, trace[hook_name(l, "hook_attn_out")][pos]))
        if l < layer:
            parts.append(("ffn", l, trace[hook_name(l, "hook_mlp_out")][pos]))
    return parts


def query_scores(trace, layer: int, neuron: int, which: str = "gate", top: int = 20) -> dict:
    """Query scores for FFN value neuron ``(layer, neuron)`` at the traced position.

    Returns ``{"subkey": which, "pre_activation", "constant", "layers": [{"part", "layer", "score"}]
    (every layer-level vector, sorted), "ffn_neurons": [{"layer", "index", "score"}] (top by
    score), "attn_subvalues": [{"layer", "head", "position", "score"}] (top by score)}``.
    """
    d = trace.vm.dims
    if not 0 <= layer < d.n_layers or not 0 <= neuron < d.d_mlp:
        raise VisitError(f"no FFN neuron L{layer}.N{neuron} in this model")
    K, constant = subkey(trace, layer, neuron, which)
    pos = trace.position
    layers = [{"part": part, "layer": l, "score": float(v @ K)} for part, l, v in _reads(trace, layer)]
    pre_activation = sum(e["score"] for e in layers) + constant
    layers.sort(key=lambda e: e["score"], reverse=True)
    ffn_scores = torch.stack([trace.mlp_coefficients(l)[pos] * (trace.vm.weights.W_out(l) @ K)
                              for l in range(layer)]) if layer else torch.zeros(0, d.d_mlp)
    neurons = []
    if ffn_scores.numel():
        vals, idx = ffn_scores.reshape(-1).topk(min(top, ffn_scores.numel()))
        neurons = [{"layer": int(i) // d.d_mlp, "index": int(i) % d.d_mlp, "score": float(v)}
                   for v, i in zip(vals.tolist(), idx.tolist())]
    last_attn = layer if not trace.vm.parallel else layer - 1
    subvalues = []
    for l in range(last_attn + 1):
        mem = trace.memory_values(l) @ K  # [H, src]
        for h in range(d.n_heads):
            for s in range(mem.shape[1]):
                subvalues.append({"layer": l, "head": h, "position": s, "score": float(mem[h, s])})
    subvalues.sort(key=lambda e: e["score"], reverse=True)
    return {"subkey": which, "pre_activation": pre_activation, "constant": constant, "layers": layers,
            "ffn_neurons": neurons, "attn_subvalues": subvalues[:top]}


# --- attention value neurons (003 section 4.2 "query neurons for attention value neurons", Appendix D) ---
#
# Attention neuron (L, h, j) is dimension j of head h's output z at the traced position p:
#
#     z[p,h,j] = sum_s alpha[h,p,s] * v[s,kv(h),j],
#     v[s,kv,j] = LN1(x_s) . W_V[kv,:,j] + b_V[kv,j]
#               = centre(x_s) . K_j / scale_s + (beta . W_V[kv,:,j] + b_V[kv,j]),   K_j = gamma * W_V[kv,:,j]
#
def parse_neuron_spec(text: str) -> tuple:
    """``"27.846"`` / ``"L27.N846"`` -> ``("ffn", 27, 846)``; ``"20.3.d17"`` / ``"L20.H3.d17"`` ->
    ``("attn", 20, 3, 17)``. Raises :class:`VisitError` with one line on anything else."""
    parts = str(text).strip().upper().split(".")
    prefixes = {2: ("L", "N"), 3: ("L", "H", "D")}.get(len(parts))
    try:
        if prefixes is None:
            raise ValueError
        nums = [int(p[1:] if p[:1] == pre else p) for p, pre in zip(parts, prefixes)]
        if any(n < 0 for n in nums):
            raise ValueError
    except ValueError:
        raise VisitError(f"write a neuron as LAYER.NEURON (FFN, e.g. 27.846 or L27.N846) or LAYER.HEAD.dDIM "
                         f"(attention, e.g. 20.3.d17 or L20.H3.d17), not '{text}'") from None
    return ("ffn", *nums) if len(nums) == 2 else ("attn", *nums)
