"""Mixture-of-experts MLPs (Mixtral, Qwen2-MoE, Qwen3-MoE) as plain neurons of their layer.

At each position a MoE MLP adds ``sum over the chosen experts e of w_e * down_e(act(gate_e x) * up_e x)``, plus,
in Qwen2-MoE, a shared expert ``sigmoid(g . x) * down_s(act(gate_s x) * up_s x)``. visit treats every expert's
neurons as neurons of the layer, in one flat index (so node ids ``L{l}.N{n}``, interventions ``index=(n,)`` and
every per-neuron analysis keep their types)::

    neuron n = e * d_expert + i          expert e's neuron i              (0 <= e < n_experts)
    neuron n = n_experts * d_expert + j  the shared expert's neuron j     (when there is one)

``dims.d_mlp`` is the total. A neuron's coefficient (``mlp.hook_post``) is its expert's router weight times
``act(gate) * up`` where the router chose that expert at that position and 0 where it did not; the shared
expert's is ``sigmoid(g . x) * act(gate) * up``. Row n of ``W_out`` is the expert's down-projection column for
that neuron, column n of ``W_in`` its gate (or up) row. Coefficients times rows sum exactly to the MLP's output
(the experts have no biases), so the router weight is part of the coefficient and only the chosen experts'
neurons contribute.

The MoE block computes its experts inside one module, so the hook views here are computed from the block's
input by calling the model's own router (the same choices the block made) and the experts' own weights:
``mlp.hook_pre`` (gate pre-activations of every expert, read only), ``mlp.hook_post`` (written as a linear
change of the block's output: ``out + (new - old) @ W_out``) and ``mlp.hook_expert_weights`` (``[..., n_experts]``:
the router weight of each chosen expert, 0 for the others; read only; TransformerLens's hook of that name holds
the softmax before the top-k). Layers without experts (Qwen2-MoE's ``mlp_only_layers``) are not supported.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from visit.errors import VisitError
from visit.models.dispatch import read_param

VIEWS = {"mlp.hook_pre": "moe_pre", "mlp.hook_post": "moe_post", "mlp.hook_expert_weights": "moe_router"}
READ_ONLY_VIEWS = frozenset({"moe_pre", "moe_router"})


def neuron_count(model: nn.Module, adapter) -> int:
    """``n_experts * d_expert (+ d_shared)``; a clear error when some blocks have no experts."""
    moe, c = adapter.moe, model.config
    blocks = model.get_submodule(adapter.blocks)
    dense = [i for i, block in enumerate(blocks) if not _has(block, moe.experts)]
    if dense:
        raise VisitError(f"layers {dense} of this mixture-of-experts model have a dense MLP instead of experts; "
                         "visit supports models whose every layer has experts")
    shared = int(getattr(c, moe.d_shared)) if moe.d_shared else 0
    return int(getattr(c, moe.n_experts)) * int(getattr(c, moe.d_expert)) + shared


def _has(block: nn.Module, path: str) -> bool:
    try:
        block.get_submodule(path)
    except AttributeError:
        return False
    return True


def _parts(weights, layer: int):
    moe = weights.adapter.moe
    shared = weights.block_module(layer, moe.shared) if moe.shared else None
    gate = weights.block_module(layer, moe.shared_gate) if moe.shared_gate else None
    return moe, weights.block_module(layer, moe.experts), shared, gate


def down_rows(weights, layer: int) -> torch.Tensor:
    """``[d_mlp, d_model]`` fp32: row n is neuron n's output vector (the experts' own, no post-norm gain)."""
    _, experts, shared, _ = _parts(weights, layer)
    down = read_param(experts, "down_proj").float()  # [E, d_model, d_expert]
    rows = down.transpose(1, 2).reshape(-1, down.shape[1])
    if shared is None:
        return rows
    return torch.cat([rows, read_param(shared.down_proj).float().T.to(rows.device)])


def in_columns(weights, layer: int, which: int) -> torch.Tensor:
    """``[d_model, d_mlp]`` fp32: column n is neuron n's gate (``which=0``) or up (``which=1``) key."""
    _, experts, shared, _ = _parts(weights, layer)
    gate_up = read_param(experts, "gate_up_proj").float()  # [E, 2 * d_expert, d_model]: [gate | up]
    d_expert = gate_up.shape[1] // 2
    cols = gate_up[:, which * d_expert:(which + 1) * d_expert].reshape(-1, gate_up.shape[2]).T
    if shared is None:
        return cols
    key = read_param(shared.gate_proj if which == 0 else shared.up_proj).float().T
    return torch.cat([cols, key.to(cols.device)], dim=1)


def _route(weights, layer: int, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The router's own choice for ``flat [tokens, d_model]``: ``(weights [tokens, k], indices [tokens, k])``."""
    out = weights.block_module(layer, weights.adapter.moe.router)(flat)
    return out[1], out[2]


def coefficients(weights, layer: int, x: torch.Tensor) -> torch.Tensor:
    """``x [..., d_model]`` (the MLP's input) -> ``[..., d_mlp]`` neuron coefficients, in ``x``'s dtype."""
    _, experts, shared, gate = _parts(weights, layer)
    lead, flat = x.shape[:-1], x.reshape(-1, x.shape[-1])
    top_w, top_i = _route(weights, layer, flat)
    gate_up = read_param(experts, "gate_up_proj").to(flat.device)  # where it lives (offloaded: from disk)
    n_experts, d_expert = gate_up.shape[0], gate_up.shape[1] // 2
    out = flat.new_zeros(flat.shape[0], n_experts, d_expert)
    for e in top_i.unique().tolist():
        if e >= n_experts:  # the block skips such indices too
            continue
        tok, slot = (top_i == e).nonzero(as_tuple=True)
        g, u = F.linear(flat[tok], gate_up[e]).chunk(2, dim=-1)
        out[tok, e] = experts.act_fn(g) * u * top_w[tok, slot, None].to(flat.dtype)
    out = out.reshape(flat.shape[0], -1)
    if shared is not None:
        h = shared.act_fn(shared.gate_proj(flat)) * shared.up_proj(flat)
        out = torch.cat([out, h if gate is None else torch.sigmoid(gate(flat)) * h], dim=-1)
    return out.reshape(*lead, -1)


def pre_activations(weights, layer: int, x: torch.Tensor) -> torch.Tensor:
    """``[..., d_mlp]``: every neuron's gate pre-activation ``x . W_in[:, n]`` (chosen experts or not)."""
    _, experts, shared, _ = _parts(weights, layer)
    gate_up = read_param(experts, "gate_up_proj").to(x.device)
    d_expert = gate_up.shape[1] // 2
    pre = torch.einsum("...d,efd->...ef", x, gate_up[:, :d_expert]).flatten(-2)
    return pre if shared is None else torch.cat([pre, shared.gate_proj(x)], dim=-1)


def expert_weights(weights, layer: int, x: torch.Tensor) -> torch.Tensor:
    """``[..., n_experts]``: the router weight of each expert chosen at each position, 0 for the others."""
    flat = x.reshape(-1, x.shape[-1])
    top_w, top_i = _route(weights, layer, flat)
    n_experts = int(getattr(weights.model.config, weights.adapter.moe.n_experts))
    out = torch.zeros(flat.shape[0], n_experts + 1, dtype=top_w.dtype, device=flat.device)
    out.scatter_(1, top_i.clamp(max=n_experts), top_w)
    return out[:, :n_experts].reshape(*x.shape[:-1], n_experts)


def output_change(weights, layer: int, delta: torch.Tensor) -> torch.Tensor:
    """``delta [..., d_mlp]`` (a change of coefficients) -> the change of the MLP's output ``[..., d_model]``."""
    rows = weights.memo(("moe_down_rows", layer), lambda: down_rows(weights, layer))
    return delta.float() @ rows.to(delta.device)


def read(weights, layer: int, view: str, x: torch.Tensor) -> torch.Tensor:
    """The MoE view ``view`` (a value of :data:`VIEWS`) computed from the MLP's input ``x [batch, pos, d_model]``."""
    if view == "moe_post":
        return coefficients(weights, layer, x)
    if view == "moe_pre":
        return pre_activations(weights, layer, x)
    if view == "moe_router":
        return expert_weights(weights, layer, x)
    raise ValueError(f"unknown mixture-of-experts view {view}")


def expert_of(weights, neuron: int) -> tuple[int | None, int]:
    """Flat neuron index -> ``(expert, index within it)``; expert ``None`` for the shared expert's neurons."""
    c, moe = weights.model.config, weights.adapter.moe
    n_experts, d_expert = int(getattr(c, moe.n_experts)), int(getattr(c, moe.d_expert))
    if neuron >= n_experts * d_expert:
        return None, neuron - n_experts * d_expert
    return divmod(int(neuron), d_expert)


def neuron_info(weights, neuron: int, router_weights: torch.Tensor) -> dict:
    """A graph node's attributes for flat neuron ``neuron`` at a position whose ``mlp.hook_expert_weights`` are
    ``router_weights [n_experts]``: ``expert`` (None for the shared expert), ``expert_neuron`` (the index inside
    it) and ``router_weight`` (the weight the router gave that expert there; None for the shared expert)."""
    expert, index = expert_of(weights, neuron)
    weight = None if expert is None else float(router_weights[expert])
    return {"expert": expert, "expert_neuron": index, "router_weight": weight}
