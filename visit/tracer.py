"""One hooked forward pass of an unmodified Hugging Face model -> a :class:`Trace`.

Values are stored under TransformerLens names, in fp32, without the batch dimension:

=====================================  ===============================  =========================================
name                                   shape                            what
=====================================  ===============================  =========================================
``blocks.{l}.hook_resid_pre``          ``[pos, d_model]``               residual stream into block l
``blocks.{l}.ln1.hook_in/out/scale``   ``[pos, d_model]`` / ``[pos,1]`` attention norm input, output, divisor
``blocks.{l}.attn.hook_q``             ``[pos, n_heads, d_head]``       queries (before rotary embeddings)
``blocks.{l}.attn.hook_k/hook_v``      ``[pos, n_kv_heads, d_head]``    keys (before rotary) and values
``blocks.{l}.attn.hook_pattern``       ``[n_heads, dest, src]``         attention probabilities
``blocks.{l}.attn.hook_z``             ``[pos, n_heads, d_head]``       per-head outputs (input of W_O)
``blocks.{l}.attn.hook_result``        ``[n_heads, d_model]``           per-head contributions at the position
``blocks.{l}.ln1_post.hook_in/scale``  ``[pos, d_model]`` / ``[pos,1]`` post-attention norm (sandwich models only)
``blocks.{l}.hook_attn_out``           ``[pos, d_model]``               attention output (incl. b_O)
``blocks.{l}.hook_resid_mid``          ``[pos, d_model]``               resid_pre + attn_out
``blocks.{l}.ln2.hook_in/out/scale``   as ln1                           MLP norm
``blocks.{l}.mlp.hook_post``           ``[pos, d_mlp]``                 neuron coefficients (act(gate)*up if gated)
``blocks.{l}.mlp.hook_expert_weights`` ``[pos, n_experts]``             router weights, 0 where not chosen (MoE only)
``blocks.{l}.ln2_post.hook_in/scale``  as ln1_post                      post-MLP norm (sandwich models only)
``blocks.{l}.hook_mlp_out``            ``[pos, d_model]``               MLP output (incl. bias)
``blocks.{l}.hook_resid_post``         ``[pos, d_model]``               residual stream out of block l
``ln_final.hook_in/out/scale``         as ln1                           final norm
``logits``                             ``[pos, d_vocab]``               the model's logits
=====================================  ===============================  =========================================

For parallel blocks (GPT-NeoX) ln2 reads resid_pre, and resid_mid is still resid_pre + attn_out. Blocks without
a norm before the attention / MLP (OLMo 2) have ln1/ln2 as the identity (scale 1; hook_out = hook_in).

Mixtures of experts (Mixtral, Qwen-MoE): ``d_mlp`` counts every expert's neurons in one flat index (expert e's
neuron i is ``e * d_expert + i``, a shared expert's come last) and ``mlp.hook_post`` is each neuron's coefficient
with its expert's router weight folded in, 0 for experts the router did not choose at that position
(:mod:`visit.models.moe`); the neurons then sum to ``hook_mlp_out`` like any MLP's.

Sandwich norms (Gemma 2/3): ``hook_attn_out``/``hook_mlp_out`` are the post-norms' outputs, what joins the
residual. Heads, memory values, W_O neurons and MLP neurons stay exact parts of them with the post-norm's scale
*frozen at its real value* (``ln*_post.hook_scale``, the scale of the real sum at that position): a part's
contribution is its coefficient / that scale times the effective output row (``vm.weights.W_O``/``W_out``, the
post-norm's gain folded in). :meth:`Trace.post_scale` gives the divisor (ones without post-norms);
``hook_z``/``mlp.hook_post`` stay what the modules computed, and :meth:`Trace.z_coefficients` /
:meth:`Trace.mlp_coefficients` are the coefficients of the effective rows (use these for contributions). The parts add up exactly; removing one part is
then a linear change (the scale is not recomputed), like the frozen logit lens.
Memory values and neuron contributions are computed on demand from these, so nothing of size
``[heads, src, d_model]`` per layer or ``[d_mlp, d_model]`` is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from visit.errors import VisitError
from visit.hooks.interventions import Intervention
from visit.hooks.names import hook_name
from visit.hooks.runner import run
from visit.models.loading import VisitModel
from visit.memo import Memo
from visit.models.overlay import NONE, Overlay, current, weights_of
from visit.tokens import token_strings


@dataclass
class Trace:
    model_name: str
    prompt: str
    input_ids: list[int]
    tokens: list[str]  # raw token strings (leading spaces kept)
    position: int
    values: dict[str, torch.Tensor]
    vm: VisitModel = field(repr=False)
    interventions: tuple = ()  # what was written during the pass (visit.hooks)
    weights_version: tuple = ()  # vm.weights.version when traced
    overlay: Overlay = NONE  # the session's weight edits in force when traced (visit.models.overlay)
    memos: Memo = field(default_factory=Memo, init=False, repr=False, compare=False)  # see memo()

    def memo(self, key, compute):
        """``compute()`` once per ``key`` and weights version; the result lives as long as the trace.

        What is derived from a trace often combines it with the model's weights (attribution, the lens), so the
        weights' version is part of the key: after an edit the same trace is scored again with the weights it
        now meets, never a stale number. ``compute`` runs on the weights the trace was computed on (its
        session's edits, :func:`visit.models.overlay.weights_of`)."""
        with weights_of(self):
            return self.memos.get((self.vm.weights.version, key), compute)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.values[name]

    def __contains__(self, name: str) -> bool:
        return name in self.values

    @property
    def n_layers(self) -> int:
        return self.vm.dims.n_layers

    @property
    def kv_head_of(self) -> torch.Tensor:
        """``[n_heads]``: the kv head each query head reads (grouped-query attention)."""
        d = self.vm.dims
        return torch.arange(d.n_heads, device=self.vm.device) // (d.n_heads // d.n_kv_heads)

    def post_scale(self, layer: int, which: str) -> torch.Tensor:
        """``[pos, 1]``: the frozen divisor of the post-norm after the attention (``"attn"``) or MLP
        (``"mlp"``); ones when the block has none. Contribution = coefficient / post_scale * effective row."""
        name = hook_name(layer, f"{'ln1_post' if which == 'attn' else 'ln2_post'}.hook_scale")
        if name in self.values:
            return self.values[name]
        return torch.ones(len(self.input_ids), 1, device=self.vm.device)

    def mlp_coefficients(self, layer: int) -> torch.Tensor:
        """``[pos, d_mlp]``: the MLP neurons' coefficients of their (effective) ``W_out`` rows: ``mlp.hook_post``,
        divided by the post-norm's frozen scale when there is one."""
        post = self.values[hook_name(layer, "mlp.hook_post")]
        name = hook_name(layer, "ln2_post.hook_scale")
        return post / self.values[name] if name in self.values else post

    def z_coefficients(self, layer: int) -> torch.Tensor:
        """``[pos, n_heads, d_head]``: the coefficients of the (effective) ``W_O`` rows: ``attn.hook_z``, divided
        by the post-norm's frozen scale when there is one."""
        z = self.values[hook_name(layer, "attn.hook_z")]
        name = hook_name(layer, "ln1_post.hook_scale")
        return z / self.values[name].unsqueeze(-1) if name in self.values else z

    def resid(self, layer: int, where: str) -> torch.Tensor:
        """Residual at the traced position: ``where`` in pre|mid|post. ``[d_model]``"""
        return self.values[hook_name(layer, f"hook_resid_{where}")][self.position]

    def memory_values(self, layer: int, heads=None, sources=None) -> torch.Tensor:
        """VISIT's attention memory: ``alpha[h, p, s] * v[s, kv(h)] @ W_O[h]``.

        Returns ``[len(heads), len(sources), d_model]``; summed over all sources it is the head's
        contribution (the value bias rides along inside v, scaled by alpha).
        """
        heads = torch.arange(self.vm.dims.n_heads) if heads is None else torch.as_tensor(heads)
        n_src = self.position + 1
        sources = torch.arange(n_src) if sources is None else torch.as_tensor(sources)
        heads, sources = heads.to(self.vm.device), sources.to(self.vm.device)
        alpha = self.values[hook_name(layer, "attn.hook_pattern")][heads][:, self.position][:, sources]  # [h, s]
        v = self.values[hook_name(layer, "attn.hook_v")][sources][:, self.kv_head_of[heads]]  # [s, h, dh]
        weighted = alpha.unsqueeze(-1) * v.transpose(0, 1) / self.post_scale(layer, "attn")[self.position]
        return torch.einsum("hsd,hdm->hsm", weighted, self.vm.weights.W_O(layer)[heads])

    def neuron_contributions(self, layer: int, neurons) -> torch.Tensor:
        """``m_i * W_out[i]`` for the given MLP neurons at the traced position: ``[k, d_model]``."""
        neurons = torch.as_tensor(neurons, device=self.vm.device)
        coeff = self.mlp_coefficients(layer)[self.position][neurons]
        return coeff.unsqueeze(-1) * self.vm.weights.W_out(layer)[neurons]

    def wo_neuron_contributions(self, layer: int, neurons) -> torch.Tensor:
        """``z_i * W_O[i]`` for W_O neurons (flattened head*d_head index): ``[k, d_model]``."""
        d = self.vm.dims
        neurons = torch.as_tensor(neurons, device=self.vm.device)
        z = self.z_coefficients(layer)[self.position].reshape(-1)[neurons]
        W_O = self.vm.weights.W_O(layer).reshape(d.n_heads * d.d_head, d.d_model)
        return z.unsqueeze(-1) * W_O[neurons]


def encode_prompt(vm: VisitModel, prompt: str) -> torch.Tensor:
    if not isinstance(prompt, str) or not prompt.strip():
        raise VisitError("the prompt is empty; type some text to trace")
    ids = vm.tokenizer(prompt, return_tensors="pt").input_ids
    if ids.shape[1] == 0:
        raise VisitError("the prompt encodes to no tokens")
    if ids.shape[1] > vm.dims.n_ctx:
        raise VisitError(f"the prompt is {ids.shape[1]} tokens long; this model's context is {vm.dims.n_ctx} tokens")
    return ids


def resolve_position(position: int | None, n_tokens: int) -> int:
    if position is None:
        return n_tokens - 1
    if not -n_tokens <= position < n_tokens:
        raise VisitError(f"position {position} is out of range: the prompt has {n_tokens} tokens (0..{n_tokens - 1})")
    return position % n_tokens


# what one trace records, per layer (the rest of the table above is derived from these)
_LAYER_READS = ("ln1.hook_in", "ln1.hook_out", "ln2.hook_in", "ln2.hook_out", "attn.hook_q", "attn.hook_k",
                "attn.hook_v", "attn.hook_pattern", "attn.hook_z", "hook_attn_out", "mlp.hook_post",
                "hook_mlp_out", "hook_resid_post")


def _post_reads(adapter) -> tuple[str, ...]:
    """The adapter's extra per-layer reads: its post-norms' inputs, a mixture of experts' router weights."""
    post = tuple(f"{field}.hook_in" for field in ("ln1_post", "ln2_post") if getattr(adapter, field))
    return post + (("mlp.hook_expert_weights",) if adapter.moe else ())


def trace_reads(n_layers: int, adapter=None) -> list[str]:
    """The hook point names a trace reads (with ``adapter``: also its post-norms' inputs)."""
    per_layer = _LAYER_READS + (_post_reads(adapter) if adapter is not None else ())
    return [hook_name(l, s) for l in range(n_layers) for s in per_layer] + ["ln_final.hook_in",
                                                                             "ln_final.hook_out"]


def trace(vm: VisitModel, prompt: str, position: int | None = None,
          interventions: Sequence[Intervention] = ()) -> Trace:
    """Run one forward pass through the hook layer and return everything the views need.

    ``position`` indexes the prompt's tokens (negative counts from the end; default the last).
    ``interventions`` (:mod:`visit.hooks`) are applied during the pass (batch row 0); the trace then shows the
    changed model, and every derived value (residuals, logits) is what the changed pass computed.
    """
    input_ids = encode_prompt(vm, prompt)
    pos = resolve_position(position, input_ids.shape[1])
    with vm.weights_for():  # the pass, the derived values and the version on the bound session's weights
        logits, rec = run(vm, input_ids, read=trace_reads(vm.dims.n_layers, vm.adapter), write=interventions)
        values = collect_values(vm, rec.values, logits[0], pos)
        version = vm.weights.version
    ids = input_ids[0].tolist()
    return Trace(vm.name, prompt, ids, token_strings(vm.tokenizer, ids), pos, values, vm,
                 tuple(interventions), version, current())


def collect_values(vm: VisitModel, raw: dict, logits: torch.Tensor, pos: int) -> dict[str, torch.Tensor]:
    """Batch row 0 of the recorded values ``raw`` (``{name: [batch, pos, ...]}``, :func:`trace_reads`), in fp32,
    plus the derived ones (scales, resid_pre/mid, results); ``logits [pos, d_vocab]`` that row's logits.
    :mod:`visit.batching` hands it one row of a padded pass at a time."""
    d, w = vm.dims, vm.weights
    values: dict[str, torch.Tensor] = {}
    zs: dict[int, torch.Tensor] = {}
    for layer in range(d.n_layers):
        for name in _LAYER_READS + _post_reads(vm.adapter):
            values[hook_name(layer, name)] = raw[hook_name(layer, name)][0].float()
        norms = [("ln1", w.ln1(layer)), ("ln2", w.ln2(layer))]
        norms += [(ln, params) for ln, params in (("ln1_post", w.post_norm(layer, "attn")),
                                                  ("ln2_post", w.post_norm(layer, "mlp"))) if params is not None]
        for ln, params in norms:
            values[hook_name(layer, f"{ln}.hook_scale")] = params.scale(values[hook_name(layer, f"{ln}.hook_in")])
        values[hook_name(layer, "hook_resid_pre")] = values[hook_name(layer, "ln1.hook_in")]
        z = values[hook_name(layer, "attn.hook_z")][pos]
        if hook_name(layer, "ln1_post.hook_scale") in values:
            z = z / values[hook_name(layer, "ln1_post.hook_scale")][pos]
        zs[layer] = z
        values[hook_name(layer, "hook_resid_mid")] = (
            values[hook_name(layer, "hook_resid_pre")] + values[hook_name(layer, "hook_attn_out")] if vm.parallel
            else values[hook_name(layer, "ln2.hook_in")]
        )
    for layer, result in w.head_results(zs).items():  # all layers at once (one request for a remote model)
        values[hook_name(layer, "attn.hook_result")] = result
    for name in ("ln_final.hook_in", "ln_final.hook_out"):
        values[name] = raw[name][0].float()
    values["ln_final.hook_scale"] = w.final_norm.scale(values["ln_final.hook_in"])
    values["logits"] = logits.float()
    return values
