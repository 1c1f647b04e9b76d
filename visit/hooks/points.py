"""Hook points: where each TransformerLens-named value lives in a Hugging Face model, derived from the adapter.

A :class:`HookPoint` knows one module of the model, whether the value is that module's input or output, and
how to view it in the canonical shape ``[batch, pos, *features]``:

=====================================  ====================  ==========================================
name                                   features              module (adapter field), side
=====================================  ====================  ==========================================
``hook_embed``                         ``[d_model]``         ``embed``, output
``blocks.{l}.hook_resid_pre``          ``[d_model]``         the block, input
``blocks.{l}.ln1.hook_in/out``         ``[d_model]``         ``ln1``, input / output
``blocks.{l}.attn.hook_q``             ``[n_heads, d_head]`` ``qkv`` projection(s), output (before rotary)
``blocks.{l}.attn.hook_k/hook_v``      ``[n_kv, d_head]``    ``qkv`` projection(s), output
``blocks.{l}.attn.hook_pattern``       ``[n_heads, src]``    ``attn``, output[1] (read only; batch, head, dest, src)
``blocks.{l}.attn.hook_z``             ``[n_heads, d_head]`` ``attn_out``, input
``blocks.{l}.hook_attn_out``           ``[d_model]``         ``attn``, output[0]
``blocks.{l}.ln2.hook_in/out``         ``[d_model]``         ``ln2``, input / output
``blocks.{l}.mlp.hook_pre``            ``[d_mlp]``           ``mlp_in[0]``, output (gate pre-activation)
``blocks.{l}.mlp.hook_post``           ``[d_mlp]``           ``mlp_out``, input (the neuron coefficients)
``blocks.{l}.hook_mlp_out``            ``[d_model]``         ``mlp``, output
``blocks.{l}.hook_resid_post``         ``[d_model]``         the block, output
``ln_final.hook_in/out``               ``[d_model]``         ``final_norm``, input / output
``logits``                             ``[d_vocab]``         the output embedding, output (*)
=====================================  ====================  ==========================================

``hook_embed`` is the embedding module's output: Gemma 1/2 multiply it by sqrt(d_model) afterwards, inside the
model's forward (adapter field ``embed_scale``), so there ``blocks.0.hook_resid_pre`` = sqrt(d_model) x
``hook_embed``; Gemma 3's embedding module scales by itself.

(*) Models that soft-cap their logits after the unembedding (adapter field ``logit_softcap``, Gemma 2) read and
write ``logits`` on the model's own output (``.logits``, after the cap), so ``logits`` is always what the
model returns.

``hook_pattern`` keeps the module's own ``[batch, heads, dest, src]`` layout and cannot be written (the
attention probabilities are computed inside the attention module; write ``hook_z`` or a head's q/k instead).
``hook_resid_mid`` is not a module boundary (the residual addition happens inside the block's forward): the
tracer derives it, and to change it write ``hook_attn_out``.

Writing an ``ln*.hook_in`` changes only what the norm reads, not the residual stream the block carries on.

Blocks with sandwich norms (adapter fields ``ln1_post``/``ln2_post``, Gemma 2/3) also have
``blocks.{l}.ln1_post.hook_in/out`` and ``ln2_post.hook_in/out`` (``[d_model]``, that norm's input / output),
and there ``hook_attn_out``/``hook_mlp_out`` are the post-norms' outputs (what joins the residual stream) rather
than the attention's / MLP's own outputs (those are ``ln1_post.hook_in``/``ln2_post.hook_in``).

Blocks without a norm before the attention / MLP (adapter field ``ln1``/``ln2`` empty, OLMo 2) have
``ln1.hook_in/out`` (``ln2.*``) both at the attention's (MLP's) input: the norm is the identity there.

Mixtures of experts (adapter field ``moe``, Mixtral / Qwen-MoE) compute their experts inside one module, so
``mlp.hook_pre``, ``mlp.hook_post`` and ``blocks.{l}.mlp.hook_expert_weights`` (``[n_experts]``, MoE only) are
*computed* from the MoE block's input at its output (:attr:`HookPoint.computed`; :mod:`visit.models.moe`): the
flat neuron index covers every expert, ``hook_post`` holds the router-weighted coefficients (0 for experts not
chosen) and writing it changes the block's output by ``(new - old) @ W_out``; the other two are read only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from visit.errors import VisitError
from visit.hooks.names import hook_name, parse_hook_name
from visit.models import moe
from visit.models.weights import get_module

# per-layer suffix -> (adapter field or "" for the block itself, side, view)
_LAYER_POINTS: dict[str, tuple[str, str, str]] = {
    "hook_resid_pre": ("", "in", "plain"),
    "ln1.hook_in": ("ln1", "in", "plain"),
    "ln1.hook_out": ("ln1", "out", "plain"),
    "attn.hook_q": ("qkv", "out", "q"),
    "attn.hook_k": ("qkv", "out", "k"),
    "attn.hook_v": ("qkv", "out", "v"),
    "attn.hook_pattern": ("attn", "out", "pattern"),
    "attn.hook_z": ("attn_out", "in", "heads"),
    "hook_attn_out": ("attn", "out", "first"),
    "ln2.hook_in": ("ln2", "in", "plain"),
    "ln2.hook_out": ("ln2", "out", "plain"),
    "mlp.hook_pre": ("mlp_in", "out", "plain"),  # "gate" view when the adapter fuses [gate | up]
    "mlp.hook_post": ("mlp_out", "in", "plain"),
    "hook_mlp_out": ("mlp", "out", "first"),
    "hook_resid_post": ("", "out", "first"),
}
_MODEL_POINTS: dict[str, tuple[str, str, str]] = {
    "hook_embed": ("embed", "out", "plain"),
    "ln_final.hook_in": ("final_norm", "in", "plain"),
    "ln_final.hook_out": ("final_norm", "out", "plain"),
    "logits": ("unembed", "out", "plain"),
}
# only for adapters that declare the field (sandwich norms); they also move hook_attn_out / hook_mlp_out
_POST_NORM_POINTS: dict[str, tuple[str, str, str]] = {
    "ln1_post.hook_in": ("ln1_post", "in", "plain"),
    "ln1_post.hook_out": ("ln1_post", "out", "plain"),
    "ln2_post.hook_in": ("ln2_post", "in", "plain"),
    "ln2_post.hook_out": ("ln2_post", "out", "plain"),
}
_POST_NORM_OUTPUTS = {"hook_attn_out": "ln1_post", "hook_mlp_out": "ln2_post"}
READ_ONLY = {"attn.hook_pattern"}
DERIVED = {"hook_resid_mid": "write blocks.{l}.hook_attn_out instead (resid_mid = resid_pre + attn_out)"}


@dataclass(frozen=True)
class HookPoint:
    """One named value: ``module`` (a path from the model's root), ``side`` ("in" | "out") and ``view``.

    Views: ``plain`` (the tensor itself), ``first`` (element 0 of a tuple output), ``heads`` (``[b, p, H*dh]``
    viewed as ``[b, p, H, dh]``), ``gate`` (the first ``d_mlp`` features of a fused ``[gate | up]`` output),
    ``logits_attr`` (the ``.logits`` of the model's output), ``q``/``k``/``v`` (a slice of the q/k/v projections' outputs, by the
    adapter's ``qkv_layout``), ``pattern`` (element 1 of the attention output).
    """

    name: str
    module: str
    side: str
    view: str
    suffix: str  # the per-layer name, or the model-level name
    layer: int | None = None

    @property
    def writable(self) -> bool:
        return self.suffix not in READ_ONLY and self.view not in moe.READ_ONLY_VIEWS

    @property
    def computed(self) -> bool:
        """The value is computed from the module's input, not held in its output (mixture-of-experts views)."""
        return self.view in moe.READ_ONLY_VIEWS or self.view == "moe_post"


def parse(name: str) -> tuple[int | None, str]:
    """``"blocks.3.mlp.hook_post"`` -> ``(3, "mlp.hook_post")``; model-level names -> ``(None, name)``."""
    return parse_hook_name(name)


def hook_point(vm, name: str) -> HookPoint:
    """The :class:`HookPoint` called ``name`` for this model (raises :class:`VisitError` naming the known ones)."""
    return _hook_point(vm.adapter, vm.dims.n_layers, name)


@lru_cache(maxsize=4096)
def _hook_point(adapter, n_layers: int, name: str) -> HookPoint:
    layer, suffix = parse(name)
    if layer is None:
        if suffix not in _MODEL_POINTS:
            raise VisitError(f"unknown hook point '{name}'; known: {', '.join(known_names(1))}")
        field, side, view = _MODEL_POINTS[suffix]
        if field == "unembed" and adapter.logit_softcap:  # the model soft-caps after the unembedding
            return HookPoint(name, "<root>", "out", "logits_attr", suffix)
        path = "" if field == "unembed" else getattr(adapter, field)
        return HookPoint(name, path if field != "unembed" else "<unembed>", side, view, suffix)
    if suffix in DERIVED:
        raise VisitError(f"'{name}' is derived, not a module boundary: {DERIVED[suffix].format(l=layer)}")
    if suffix in _POST_NORM_POINTS and not getattr(adapter, _POST_NORM_POINTS[suffix][0]):
        raise VisitError(f"'{name}': this model's blocks have no norm after the attention / MLP")
    if suffix in moe.VIEWS and suffix not in _LAYER_POINTS and adapter.moe is None:
        raise VisitError(f"'{name}': this model's MLP is not a mixture of experts")
    if suffix not in _LAYER_POINTS and suffix not in _POST_NORM_POINTS and suffix not in moe.VIEWS:
        raise VisitError(f"unknown hook point '{name}'; known per layer: {', '.join(_LAYER_POINTS)}")
    if not 0 <= layer < n_layers:
        raise VisitError(f"layer {layer} is out of range: the model has {n_layers} layers (0..{n_layers - 1})")
    if adapter.moe is not None and suffix in moe.VIEWS:  # computed from the MoE block's input, at its output
        return HookPoint(name, f"{adapter.blocks}.{layer}.{adapter.mlp}", "out", moe.VIEWS[suffix], suffix, layer)
    field, side, view = _LAYER_POINTS.get(suffix) or _POST_NORM_POINTS[suffix]
    if field in ("ln1", "ln2") and not getattr(adapter, field):  # no norm there (OLMo 2): the branch's input
        field, side = ("attn" if field == "ln1" else "mlp"), "in"
    if suffix in _POST_NORM_OUTPUTS and getattr(adapter, _POST_NORM_OUTPUTS[suffix]):
        field, side, view = _POST_NORM_OUTPUTS[suffix], "out", "plain"
    if field == "qkv":
        index = "qkv".index(view) if adapter.qkv_layout == "separate" else 0
        rel = adapter.qkv[index]
    elif field == "mlp_in":
        rel = adapter.mlp_in[0]
        view = "gate" if adapter.mlp_in_fused else view
    elif field == "":
        rel = ""
    else:
        rel = getattr(adapter, field)
    path = f"{adapter.blocks}.{layer}" + (f".{rel}" if rel else "")
    return HookPoint(name, path, side, view, suffix, layer)


def known_names(n_layers: int, adapter=None) -> list[str]:
    """Every hook point name of a model with ``n_layers`` layers (with ``adapter``: also its post-norm points)."""
    suffixes = list(_LAYER_POINTS)
    if adapter is not None:
        suffixes += [s for s, (field, _, _) in _POST_NORM_POINTS.items() if getattr(adapter, field)]
        suffixes += [s for s in moe.VIEWS if s not in _LAYER_POINTS and adapter.moe is not None]
    return list(_MODEL_POINTS) + [hook_name(l, s) for l in range(n_layers) for s in suffixes]


def module_of(vm, point: HookPoint) -> nn.Module:
    if point.module == "<unembed>":
        return vm.model.get_output_embeddings()
    if point.module == "<root>":
        return vm.model
    return get_module(vm.model, point.module)


def _qkv_slice(vm, view: str) -> tuple[slice | None, tuple[int, int]]:
    """Which part of the projection's last axis holds q, k or v, and its ``(heads, d_head)``."""
    d, layout = vm.dims, vm.adapter.qkv_layout
    heads = d.n_heads if view == "q" else d.n_kv_heads
    if layout == "separate":
        return None, (heads, d.d_head)
    if layout == "fused_qkv_blocks":  # [q: H*dh | k: KV*dh | v: KV*dh] (KV = H without grouped queries)
        start = {"q": 0, "k": d.n_heads, "v": d.n_heads + d.n_kv_heads}[view] * d.d_head
        return slice(start, start + heads * d.d_head), (heads, d.d_head)
    if layout == "fused_per_head":  # [H, (q, k, v), dh]: not a contiguous slice, handled in read/write
        return slice(None), (heads, d.d_head)
    raise ValueError(f"unknown qkv layout {layout}")


def read(vm, point: HookPoint, value, inputs: torch.Tensor | None = None) -> torch.Tensor:
    """The canonical view ``[batch, pos, *features]`` of a module's input or output ``value``; ``inputs`` (the
    module's first input) for the views :attr:`HookPoint.computed` from it."""
    view = point.view
    if view == "plain":
        return value
    if point.computed:
        return moe.read(vm.weights, point.layer, view, inputs)
    if view == "first":
        return value[0] if isinstance(value, tuple) else value
    if view == "logits_attr":
        return value.logits
    if view == "gate":  # the first half of a fused [gate | up] projection's output
        return value[..., :vm.dims.d_mlp]
    if view == "pattern":
        if not isinstance(value, tuple) or len(value) < 2 or value[1] is None:
            raise VisitError("the model did not return attention patterns; load it with attn_implementation='eager'")
        return value[1]
    if view == "heads":
        b, p, _ = value.shape
        return value.view(b, p, vm.dims.n_heads, vm.dims.d_head)
    part, (heads, dh) = _qkv_slice(vm, view)
    b, p, _ = value.shape
    if vm.adapter.qkv_layout == "fused_per_head":
        return value.view(b, p, vm.dims.n_heads, 3, dh)[:, :, :, "qkv".index(view)]
    x = value if part is None else value[..., part]
    return x.reshape(b, p, heads, dh)


def write(vm, point: HookPoint, value, new: torch.Tensor, old: torch.Tensor | None = None):
    """``value`` (a module input or output) with the canonical view replaced by ``new`` (not in place); ``old``
    is what :func:`read` gave (computed views change the output by the linear effect of ``new - old``)."""
    view = point.view
    if view == "plain":
        return new
    if view == "moe_post":
        first = value[0] if isinstance(value, tuple) else value
        first = first + moe.output_change(vm.weights, point.layer, new - old).to(first.dtype)
        return (first,) + tuple(value[1:]) if isinstance(value, tuple) else first
    if view == "first":
        return (new,) + tuple(value[1:]) if isinstance(value, tuple) else new
    if view == "heads":
        return new.reshape(value.shape)
    if view == "logits_attr":
        value.logits = new
        return value
    if view == "gate":
        return torch.cat([new, value[..., vm.dims.d_mlp:]], dim=-1)
    if view == "pattern":
        raise VisitError(f"'{point.name}' is read only")
    part, _ = _qkv_slice(vm, view)
    b, p, _ = value.shape
    if part is None:
        return new.reshape(value.shape)
    if vm.adapter.qkv_layout == "fused_per_head":
        fused = value.view(b, p, vm.dims.n_heads, 3, vm.dims.d_head)
        parts = list(fused.unbind(3))
        parts["qkv".index(view)] = new
        return torch.stack(parts, dim=3).reshape(value.shape)
    return torch.cat([value[..., :part.start], new.reshape(b, p, -1), value[..., part.stop:]], dim=-1)
