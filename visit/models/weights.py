"""fp32 views of the weights the decompositions need, in one layout whatever the architecture.

Shapes (TransformerLens conventions): W_O ``[n_heads, d_head, d_model]``, W_out ``[d_mlp, d_model]``,
W_in ``[d_model, d_mlp]``, W_U ``[d_model, d_vocab]``. Conv1D stores ``[in, out]``, nn.Linear ``[out, in]``;
:func:`as_in_out` hides that. Nothing here writes to the model: tied embeddings stay intact.

Sandwich norms (Gemma 2/3: ``ln1_post``/``ln2_post`` on the attention's and the MLP's output): ``W_O``, ``b_O``,
``W_out`` and ``b_out`` are the *effective* output projections with the post-norm's gain ``(1 + w)`` folded in
(per output feature), so a head's, memory value's or neuron's contribution to the residual is its coefficient
divided by the post-norm's real scale at that position (``ln*_post.hook_scale``, frozen) times these rows; the
contributions then add up exactly to what the model added. Without post-norms they are the modules' own weights.
"""

from __future__ import annotations

import itertools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Mapping

import torch
from torch import nn

from visit.models import moe
from visit.errors import VisitError
from visit.models.adapters import ArchAdapter
from visit.models.dispatch import compute_device, is_offloaded, read_param

_anonymous = itertools.count(1)


def get_module(root: nn.Module, path: str) -> nn.Module:
    module = root
    for part in path.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)
    return module


def as_in_out(module: nn.Module, layout: str) -> torch.Tensor:
    """The projection's weight as ``[in, out]`` (a view for fp32 models; read from disk when offloaded)."""
    weight = read_param(module, "weight")
    weight = weight if layout == "conv1d" else weight.T
    return weight.float()


def bias_or_zeros(module: nn.Module, size: int, device) -> torch.Tensor:
    bias = read_param(module, "bias")
    if bias is None:
        return torch.zeros(size, device=device)
    return bias.float().to(device)


@dataclass(frozen=True)
class NormParams:
    kind: str  # "layernorm" | "rmsnorm" | "none" (no norm there, OLMo 2: the identity, scale 1)
    weight: torch.Tensor  # [d_model]
    bias: torch.Tensor | None  # [d_model] for LayerNorm
    eps: float

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """The divisor the norm applies: ``[..., 1]`` (TransformerLens' ``hook_scale``)."""
        x = x.float()
        if self.kind == "none":
            return torch.ones_like(x[..., :1])
        if self.kind == "layernorm":
            return (x.var(-1, keepdim=True, unbiased=False) + self.eps).sqrt()
        return (x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()

    def apply(self, x: torch.Tensor, scale: torch.Tensor | None = None, add_bias: bool = True) -> torch.Tensor:
        """Normalise ``x [..., d_model]``; with ``scale`` given, that scale is frozen instead of recomputed."""
        x = x.float()
        if scale is None:
            scale = self.scale(x)
        if self.kind == "layernorm":
            x = x - x.mean(-1, keepdim=True)
        y = x / scale * self.weight
        if add_bias and self.bias is not None:
            y = y + self.bias
        return y


def norm_params(module: nn.Module, kind: str, offset: float = 0.0, device=None) -> NormParams:
    """The norm's parameters (on ``device`` when given); ``offset`` is added to the stored weight (Gemma
    multiplies by ``1 + weight``)."""
    eps = getattr(module, "eps", None)
    if eps is None:
        eps = getattr(module, "variance_epsilon")
    bias = read_param(module, "bias")
    weight = read_param(module, "weight").float().to(device)
    if offset:
        weight = weight + offset
    return NormParams(kind, weight, None if bias is None else bias.float().to(device), float(eps))


class ModelWeights:
    """Lazily built fp32 weight views for one model."""

    def __init__(self, model: nn.Module, adapter: ArchAdapter, dims):
        self.model = model
        self.adapter = adapter
        self.dims = dims
        self.blocks = get_module(model, adapter.blocks)
        self._caches: dict[tuple, dict] = {}  # version -> {key: value}, the MEMO_VERSIONS most recent
        self._state: tuple = ()  # keys of the temporary changes in force (:meth:`changed`): () at rest
        self._writes = 0  # permanent in-place writes announced with :meth:`written`

    @property
    def version(self) -> tuple:
        """Changes whenever the weights change; equal versions mean equal weights, so a cached value computed under
        a version is valid whenever that version comes back:

        - a temporary change (:meth:`changed`, :func:`visit.hooks.params.weights_changed`, a session's edits)
          gives the weights a version of their own while it lasts; when it ends the originals are copied back
          bit-exactly and the version is again the one before, so caches of the weights at rest survive a
          session's edits;
        - a change applied under a ``key`` (a session's edit stack: the ids of its edits, which never change)
          has the same version every time it is applied on the same weights, so that session's caches survive
          other sessions' requests; one applied without a key gets a version never seen before;
        - a permanent in-place write counts once it is announced with :meth:`written`.
        """
        return self._state, self._writes

    def written(self) -> None:
        """Announce a permanent in-place write to the parameters (made holding ``vm.lock`` exclusively): every
        cache keyed by :attr:`version` is stale from now on. Temporary changes go through :meth:`changed`."""
        self._writes += 1

    @contextmanager
    def changed(self, deltas: list[Mapping[str, torch.Tensor]], key=None) -> Iterator[None]:
        """Add the deltas (``{parameter name: delta}``, in order, summed in fp32) for the block, then copy the
        saved originals back bit-exactly, also on an exception. The caller holds ``vm.lock`` exclusively.

        The version inside is keyed by ``key`` (none: a fresh one); afterwards it is the one before."""
        named = dict(self.model.named_parameters())
        params = {n: named[n] for n in dict.fromkeys(n for d in deltas for n in d)}
        offloaded = [n for n, p in params.items() if p.device.type == "meta"]
        if offloaded:
            raise VisitError(f"cannot change '{offloaded[0]}': that layer is offloaded (--device-map); edits and "
                             f"weight changes need the model in memory")
        saved = {n: p.detach().clone() for n, p in params.items()}
        state = self._state
        try:
            with torch.no_grad():
                for n, p in params.items():
                    total = saved[n].float()
                    for d in deltas:
                        if n in d:
                            total = total + d[n].to(device=p.device, dtype=torch.float32)
                    p.copy_(total.to(p.dtype))
            self._state = state + (key if key is not None else ("anonymous", next(_anonymous)),)
            yield
        finally:
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(saved[n])
            self._state = state

    def block_module(self, layer: int, path: str) -> nn.Module:
        return get_module(self.blocks[layer], path)

    MEMO_VERSIONS = 2  # the weights at rest and one edited state: each holds e.g. a packed unembedding

    def memo(self, key, build):
        """``build()`` once per key for this model's current weights: weight views and constants derived
        from the weights (e.g. per-neuron norms the attribution bounds use). Keyed by :attr:`version`, so an
        edited model never gets values computed from the weights it had before; the values of the
        :data:`MEMO_VERSIONS` most recent versions are kept."""
        version = self.version
        cache = self._caches.pop(version, None)
        if cache is None:
            cache = {}
            while len(self._caches) >= self.MEMO_VERSIONS:
                self._caches.pop(next(iter(self._caches)))
        self._caches[version] = cache  # most recent last
        if key not in cache:
            cache[key] = build()
        return cache[key]

    def post_gain(self, layer: int, which: str) -> torch.Tensor | None:
        """``[d_model]``: the gain of the post-norm after the attention (``which="attn"``) or the MLP
        (``"mlp"``), or None when the block has none."""
        path = self.adapter.ln1_post if which == "attn" else self.adapter.ln2_post
        if not path:
            return None
        return self._view(("post_gain", layer, which), lambda: norm_params(
            self.block_module(layer, path), self.adapter.norm_kind, self.adapter.norm_offset).weight)

    def post_norm(self, layer: int, which: str) -> NormParams | None:
        """The post-norm after the attention (``"attn"``) or the MLP (``"mlp"``), or None."""
        path = self.adapter.ln1_post if which == "attn" else self.adapter.ln2_post
        return norm_params(self.block_module(layer, path), self.adapter.norm_kind,
                           self.adapter.norm_offset, self.device) if path else None

    def _with_gain(self, x: torch.Tensor, layer: int, which: str) -> torch.Tensor:
        gain = self.post_gain(layer, which)
        return x if gain is None else x * gain

    def W_O(self, layer: int) -> torch.Tensor:
        """``[n_heads, d_head, d_model]`` (effective: times the post-norm's gain when there is one)"""
        d = self.dims
        return self._view(
            ("W_O", layer),
            lambda: self._with_gain(as_in_out(self.block_module(layer, self.adapter.attn_out),
                                              self.adapter.weight_layout), layer, "attn").reshape(
                d.n_heads, d.d_head, d.d_model
            ),
        )

    def prefetch_rows(self, W_out: Mapping[int, list[int]], W_O: Mapping[int, list[int]]) -> None:
        """A hint that these rows of ``W_out`` / of ``W_O`` viewed ``[n_heads * d_head, d_model]`` are about to be
        read (a graph's neurons): nothing to do here; a remote model fetches them in one request."""

    def head_results(self, z: Mapping[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """``{layer: z [n_heads, d_head]}`` (the coefficients of one position) -> ``{layer: [n_heads, d_model]}``:
        each head's contribution, ``z[h] @ W_O[h]`` (a remote model computes it where the weights are)."""
        return {layer: torch.einsum("hd,hdm->hm", zl, self.W_O(layer)) for layer, zl in z.items()}

    def through_heads(self, asks: Mapping[int, tuple[torch.Tensor, torch.Tensor]]) -> dict[int, torch.Tensor]:
        """``{layer: (heads [P], x [P, d_head])}`` -> ``{layer: [P, d_model]}``: each ``x[i] @ W_O[heads[i]]``
        (memory values; a remote model computes them where the weights are)."""
        return {layer: torch.bmm(x.unsqueeze(1), self.W_O(layer)[heads]).squeeze(1) for layer, (heads, x) in asks.items()}

    def b_O(self, layer: int) -> torch.Tensor:
        """``[d_model]`` (zeros when the model has no output bias; effective like :meth:`W_O`)"""
        return self._view(
            ("b_O", layer),
            lambda: self._with_gain(bias_or_zeros(self.block_module(layer, self.adapter.attn_out),
                                                  self.dims.d_model, self.device), layer, "attn"),
        )

    def _v_slice(self, x: torch.Tensor) -> torch.Tensor:
        """The value part of a q/k/v projection's output axis (last axis of ``x``), as
        ``[..., n_kv_heads, d_head]``, following the adapter's declared ``qkv_layout``."""
        d, layout = self.dims, self.adapter.qkv_layout
        lead = x.shape[:-1]
        if layout == "separate":  # x is v_proj's own output axis
            return x.reshape(*lead, d.n_kv_heads, d.d_head)
        if layout == "fused_qkv_blocks":  # [q: H*dh | k: KV*dh | v: KV*dh]
            return x[..., (d.n_heads + d.n_kv_heads) * d.d_head:].reshape(*lead, d.n_kv_heads, d.d_head)
        if layout == "fused_per_head":  # [H, (q, k, v), dh]
            return x.reshape(*lead, d.n_heads, 3, d.d_head)[..., :, 2, :]
        raise ValueError(f"unknown qkv layout {layout}")

    def _v_module(self, layer: int) -> nn.Module:
        return self.block_module(layer, self.adapter.qkv[-1])  # v_proj, or the one fused projection

    def W_V(self, layer: int) -> torch.Tensor:
        """``[n_kv_heads, d_model, d_head]``: the value projection (applied to ln1's output)."""
        return self._view(
            ("W_V", layer),
            lambda: self._v_slice(as_in_out(self._v_module(layer), self.adapter.weight_layout))
            .permute(1, 0, 2),
        )

    def b_V(self, layer: int) -> torch.Tensor:
        """``[n_kv_heads, d_head]`` (zeros when the value projection has no bias)."""

        def build():
            module = self._v_module(layer)
            size = module.weight.shape[0 if self.adapter.weight_layout == "linear" else 1]
            return self._v_slice(bias_or_zeros(module, size, self.device))

        return self._view(("b_V", layer), build)

    def W_out(self, layer: int) -> torch.Tensor:
        """``[d_mlp, d_model]``: row i is neuron i's value vector (effective: times the post-norm's gain)."""
        return self._view(
            ("W_out", layer),
            lambda: self._with_gain(moe.down_rows(self, layer) if self.adapter.moe else as_in_out(
                self.block_module(layer, self.adapter.mlp_out), self.adapter.weight_layout), layer, "mlp"),
        )

    def b_out(self, layer: int) -> torch.Tensor:
        return self._view(
            ("b_out", layer),
            lambda: self._with_gain(bias_or_zeros(self.block_module(layer, self.adapter.mlp_out),
                                                  self.dims.d_model, self.device), layer, "mlp"),
        )

    def W_in(self, layer: int, which: int = 0) -> torch.Tensor:
        """``[d_model, d_mlp]``: column i is neuron i's key (gate for ``which=0`` on gated MLPs, up for 1)."""
        return self._view(
            ("W_in", layer, which),
            lambda: moe.in_columns(self, layer, which) if self.adapter.moe else self._in_slice(as_in_out(
                self.block_module(layer, self.adapter.mlp_in[which]), self.adapter.weight_layout), which),
        )

    def _in_slice(self, w: torch.Tensor, which: int) -> torch.Tensor:
        """The gate (0) or up (1) half of a fused ``[gate | up]`` projection; the projection itself otherwise."""
        if not self.adapter.mlp_in_fused:
            return w
        return w[:, which * self.dims.d_mlp:(which + 1) * self.dims.d_mlp]

    def ln1(self, layer: int) -> NormParams:
        return self._pre_norm(layer, self.adapter.ln1)

    def ln2(self, layer: int) -> NormParams:
        return self._pre_norm(layer, self.adapter.ln2)

    def _pre_norm(self, layer: int, path: str) -> NormParams:
        """The norm at ``path``; the identity (kind ``"none"``) when the adapter declares none there (OLMo 2)."""
        if not path:
            return NormParams("none", torch.ones(self.dims.d_model, device=self.device), None, 0.0)
        return norm_params(self.block_module(layer, path), self.adapter.norm_kind, self.adapter.norm_offset,
                           self.device)

    @property
    def final_norm(self) -> NormParams:
        return self.memo("final_norm", lambda: norm_params(get_module(self.model, self.adapter.final_norm),
                                                          self.adapter.norm_kind, self.adapter.norm_offset,
                                                          self.device))

    @property
    def logit_softcap(self) -> float | None:
        """The final logits' soft-capping constant (``logits = cap * tanh(logits / cap)``), or None."""
        cap = getattr(self.model.config, self.adapter.logit_softcap, None) if self.adapter.logit_softcap else None
        return float(cap) if cap else None

    @property
    def W_U(self) -> torch.Tensor:
        """``[d_model, d_vocab]``"""
        return self.memo("W_U", lambda: read_param(self.model.get_output_embeddings()).float().to(self.device).T)

    @property
    def b_U(self) -> torch.Tensor | None:
        def build():
            bias = read_param(self.model.get_output_embeddings(), "bias")
            return None if bias is None else bias.float().to(self.device)

        return self.memo("b_U", build)

    @property
    def device(self) -> torch.device:
        """Where the views live and visit's maths runs (a dispatched model's main device)."""
        return compute_device(self.model)

    def _view(self, key: tuple, build):
        """A per-layer view (``key[1]`` is the layer) on :attr:`device`: kept in :meth:`memo` for layers whose
        weights are in memory, built anew at each use for offloaded ones (read from disk, dropped after use),
        so an offloaded model is never materialised whole in fp32."""
        offloaded = self.__dict__.setdefault("_offloaded_layers", {})
        layer = key[1]
        if layer not in offloaded:
            offloaded[layer] = is_offloaded(self.blocks[layer])
        if offloaded[layer]:
            return _to(build(), self.device)
        return self.memo(key, lambda: _to(build(), self.device))


def _to(value, device):
    return value.to(device) if isinstance(value, torch.Tensor) else value
