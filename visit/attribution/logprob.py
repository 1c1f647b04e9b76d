"""Log-probability increase (Yu & Ananiadou): ``Imp(v) = log p(w | h + v) - log p(w | h)``.

Every probability here comes from the *frozen* logit lens: the final norm divides by the scale of
the real final residual at the traced position (LayerNorm also centres, RMSNorm does not), so the
lens is affine in the residual and contributions add up. Bases ``h``:

============================  ===========================  =======================================
component                     h (what it is added to)      v
============================  ===========================  =======================================
attention layer l             ``resid_pre[l]``             ``attn_out[l]`` (incl. b_O)
FFN layer l                   ``resid_mid[l]``             ``mlp_out[l]`` (incl. the MLP bias)
head (l, h)                   ``resid_pre[l]``             the head's result (b_O excluded)
attention neuron (l,h,j,s)    ``resid_pre[l]``             ``alpha[h,p,s] v[s,kv(h),j] W_O[h,j]``
attention neuron (l,h,j)      ``resid_pre[l]``             ``z[p,h,j] W_O[h,j]`` (summed over s)
FFN neuron (l, i)             ``resid_mid[l]``             ``m_i W_out[i]`` (no bias)
============================  ===========================  =======================================

Parallel blocks (GPT-NeoX) read ``resid_pre`` in both the attention and the MLP; we still score the
FFN layer and its neurons against ``resid_mid = resid_pre + attn_out`` (the sequential convention),
so that layer scores telescope: their sum is ``log p(final) - log p(embedding)``.

Everything in this module is the direct ("brute force") computation: each vector is projected
through the whole unembedding. :mod:`visit.attribution.fast` gets the same numbers for the top
neurons without projecting every neuron.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from visit.hooks.names import hook_name
from visit.lens import LogitLens, soft_cap
from visit.matmul import rows_times


@dataclass
class FrozenLens:
    """The frozen final norm + unembedding of one traced position, as an affine map.

    ``frozen_logits(x) = linear(x) @ W_U + offset`` where ``linear`` centres (LayerNorm), divides
    by the real final scale and multiplies by the norm weight; ``offset`` carries the norm bias
    through W_U plus b_U.
    """

    W_U: torch.Tensor  # [d_model, d_vocab]
    weight: torch.Tensor  # [d_model]
    scale: torch.Tensor  # scalar
    centre: bool
    offset: torch.Tensor  # [d_vocab]
    weights: object = None  # the model's ModelWeights, for model-lifetime constants (optional)
    softcap: float | None = None  # the model's final logit soft-cap (Gemma 2): logits = c tanh(z / c)

    @classmethod
    def for_trace(cls, trace) -> "FrozenLens":
        lens = LogitLens.for_trace(trace)
        norm = lens.norm
        offset = torch.zeros(lens.W_U.shape[1], device=lens.W_U.device)
        if norm.bias is not None:
            offset = offset + norm.bias @ lens.W_U
        if lens.b_U is not None:
            offset = offset + lens.b_U
        return cls(lens.W_U, norm.weight, lens.final_scale.reshape(()), norm.kind == "layernorm", offset,
                   trace.vm.weights, lens.softcap)

    def model_constant(self, key: tuple | None, build):
        """``build()`` once per model (it must not depend on the traced position's scale); every time
        when ``key`` is None or the lens has no model."""
        if key is None or self.weights is None:
            return build()
        return self.weights.memo(("frozen lens",) + key, build)

    def linear(self, vectors: torch.Tensor) -> torch.Tensor:
        """The linear part of the frozen norm: ``[..., d_model] -> [..., d_model]``."""
        vectors = vectors.float()
        if self.centre:
            vectors = vectors - vectors.mean(-1, keepdim=True)
        return vectors / self.scale * self.weight

    def raw_logits(self, residuals: torch.Tensor) -> torch.Tensor:
        """Frozen-lens logits before any soft-cap (affine in the residual): ``[n, d_model] -> [n, d_vocab]``."""
        return rows_times(self.linear(residuals), self.W_U) + self.offset

    def logits(self, residuals: torch.Tensor) -> torch.Tensor:
        """Frozen-lens logits of whole residuals, soft-capped as the model does: ``[n, d_model] -> [n, d_vocab]``."""
        raw = self.raw_logits(residuals)
        return raw if self.softcap is None else soft_cap(raw, self.softcap)

    def base(self, residuals: torch.Tensor) -> "LensBase":
        """The lens's distribution at base residuals ``[d_model]`` or ``[G, d_model]``: what ``Imp`` starts from."""
        raw = self.raw_logits(residuals.reshape(-1, residuals.shape[-1]))
        if residuals.dim() == 1:
            raw = raw[0]
        if self.softcap is None:
            return LensBase(raw.log_softmax(-1))
        return LensBase(soft_cap(raw, self.softcap).log_softmax(-1), raw, self.softcap)

    def delta_logits(self, vectors: torch.Tensor) -> torch.Tensor:
        """What adding each vector changes in the logits: ``[n, d_model] -> [n, d_vocab]``."""
        return rows_times(self.linear(vectors), self.W_U)


@dataclass
class LensBase:
    """A base distribution for :func:`imp_of_scaled`: its log-probabilities ``logp`` (``[V]`` or ``[G, V]``) and,
    for a soft-capped model, the logits before the cap (``raw``) and the cap, which the change is added to."""

    logp: torch.Tensor
    raw: torch.Tensor | None = None
    cap: float | None = None


def log_probs_of(lens: FrozenLens, residuals: torch.Tensor, target_id: int) -> torch.Tensor:
    """``log p(target | x)`` under the frozen lens for each residual: ``[n, d_model] -> [n]``."""
    return lens.logits(residuals).log_softmax(-1)[:, target_id]


def projection_rows(device) -> int:
    """How many neurons to project through W_U at a time. On CPU, 128 rows of logits (25 MB for a
    49k vocabulary) stay in the last-level cache between the product and the log-sum-exp that reads
    them: ~20% faster than 1,000-row products on the 2-core development machine. GPUs want big ones."""
    return 128 if torch.device(device).type == "cpu" else 2048


def shifted_logsumexp(base: torch.Tensor, u: torch.Tensor, m: torch.Tensor | None = None,
                      base_rows: torch.Tensor | None = None, u_rows: torch.Tensor | None = None,
                      block: int | None = None, cap: float | None = None) -> torch.Tensor:
    """``log sum_j exp(base[b_i, j] + m_i * u[r_i, j])`` for each output row ``i`` -> ``[n]``; with ``cap``,
    ``log sum_j exp(cap tanh((base + m u) / cap))`` (a soft-capped model's logits).

    ``u [k, V]``; ``m [n]`` (1 when omitted); ``base [V]``, or ``[G, V]`` with ``base_rows [n]``;
    ``u_rows [n]`` picks the row of ``u`` for each output (default: row ``i``, ``n = k``).

    A log-sum-exp is several passes (shift, max, subtract, exp, sum); over a whole ``[1000, 49k]``
    block each pass streams 200 MB through memory. Doing ``block`` rows at a time in one scratch
    buffer keeps the passes in cache: about 7x faster on CPU, bit-identical.
    """
    n = u.shape[0] if u_rows is None else u_rows.numel()
    if block is None:
        block = 32 if u.device.type == "cpu" else 4096
    out = u.new_empty(n)
    width = min(block, n)
    scratch, u_buf, base_buf = (u.new_empty(width, u.shape[1]) for _ in range(3))
    for start in range(0, n, block):
        stop = min(start + block, n)
        blk = scratch[:stop - start]
        b = base if base_rows is None else _rows(base, base_rows[start:stop], base_buf)
        rows = u[start:stop] if u_rows is None else _rows(u, u_rows[start:stop], u_buf)
        if m is None:
            torch.add(b, rows, out=blk)
        else:
            torch.addcmul(b, m[start:stop].unsqueeze(-1), rows, out=blk)
        if cap is not None:
            blk.div_(cap).tanh_().mul_(cap)
        top = blk.amax(-1, keepdim=True)
        blk.sub_(top).exp_()
        out[start:stop] = blk.sum(-1).log_().add_(top.squeeze(-1))
    return out


def _rows(x: torch.Tensor, index: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
    """``x[index]`` without a fresh allocation: a view when the rows are one repeated row or a run
    of consecutive rows (the common cases), else gathered into ``buffer``."""
    first, last = int(index[0]), int(index[-1])
    if first == last and bool((index == first).all()):
        return x[first]
    if last - first == index.numel() - 1 and bool((index.diff() == 1).all()):
        return x[first:last + 1]
    return torch.index_select(x, 0, index, out=buffer[:index.numel()])


def imp_of_scaled(base_logp: "torch.Tensor | LensBase", u: torch.Tensor, m: torch.Tensor | None, target_id: int,
                  **rows) -> torch.Tensor:
    """``Imp = m u[w] - log sum_j p_j exp(m u_j)`` from base log-probabilities and logit changes
    ``u`` scaled by ``m`` (arguments as :func:`shifted_logsumexp`) -> ``[n]``.

    The same quantity as ``log p(w|h+v) - log p(w|h)``, but written so that a small change gives a
    small number directly (no difference of two log-probabilities). The log-sum-exp still adds the
    change to ``log p``, so fp32 keeps it to ~1e-7 when the base distribution is peaked (late layers
    of a trained model) and to ~1e-6 when it is flat (early layers, random models: ``log p ~ -10.8``).
    A ``p``-weighted sum avoids that but costs ~20% more here; brute force and the fast method share
    this function, so their rankings agree either way.

    ``base_logp`` may be a :class:`LensBase`; for a soft-capped model (``base.cap``) the change is added to the
    logits before the cap and ``Imp = c tanh((z_w + m u_w) / c) - log sum_j exp(c tanh((z_j + m u_j) / c)) -
    log p(w | h)``: exact, as a difference of two log-probabilities.
    """
    at_target = u[:, target_id] if rows.get("u_rows") is None else u[rows["u_rows"], target_id]
    if m is not None:
        at_target = m * at_target
    if isinstance(base_logp, LensBase):
        if base_logp.cap is None:
            base_logp = base_logp.logp
        else:
            b = base_logp
            picked = rows.get("base_rows")
            raw_w = b.raw[..., target_id] if picked is None else b.raw[picked, target_id]
            logp_w = b.logp[..., target_id] if picked is None else b.logp[picked, target_id]
            capped = soft_cap(raw_w + at_target, b.cap)
            return capped - shifted_logsumexp(b.raw, u, m, cap=b.cap, **rows) - logp_w
    return at_target - shifted_logsumexp(base_logp, u, m, **rows)


def imp_from_logit_change(base_logp: "torch.Tensor | LensBase", delta: torch.Tensor, target_id: int) -> torch.Tensor:
    """``Imp`` of logit changes ``delta [n, V]`` given base log-probabilities ``[V]`` -> ``[n]``."""
    return imp_of_scaled(base_logp, delta, None, target_id)


def increase_of_vectors(lens: FrozenLens, base: torch.Tensor, vectors: torch.Tensor, target_id: int,
                        chunk: int | None = None) -> torch.Tensor:
    """Brute-force ``Imp`` of many vectors added to one base residual.

    ``base [d_model]``, ``vectors [n, d_model]`` -> ``[n]``. Projects every vector (chunked).
    """
    base_logp = lens.base(base)
    out = []
    chunk = chunk or projection_rows(vectors.device)
    for part in vectors.reshape(-1, vectors.shape[-1]).split(chunk):
        out.append(imp_from_logit_change(base_logp, lens.delta_logits(part), target_id))
    return torch.cat(out) if out else torch.zeros(0, device=vectors.device)


def increase_of_scaled(lens: FrozenLens, base: torch.Tensor, directions: torch.Tensor, coefficients: torch.Tensor,
                       target_id: int, chunk: int | None = None) -> torch.Tensor:
    """Brute-force ``Imp`` of ``coefficients[..., i] * directions[i]`` added to ``base``.

    ``directions [n, d_model]``, ``coefficients [..., n]`` (e.g. ``[src, n]`` for attention neurons
    per source position) -> ``[..., n]``. Each direction is projected once and reused for every
    coefficient.
    """
    base_logp = lens.base(base)
    coeff = coefficients.reshape(-1, coefficients.shape[-1])  # [c, n]
    out = torch.empty_like(coeff)
    chunk = chunk or projection_rows(directions.device)
    for start in range(0, directions.shape[0], chunk):
        u = lens.delta_logits(directions[start:start + chunk])  # [k, V]
        for row in range(coeff.shape[0]):
            out[row, start:start + chunk] = imp_of_scaled(base_logp, u, coeff[row, start:start + chunk], target_id)
    return out.reshape(coefficients.shape)


def layer_logprob_increase(trace, target_id: int) -> dict[str, torch.Tensor]:
    """Per layer: ``{"attn": [n_layers], "ffn": [n_layers]}``; they telescope (see the module doc)."""
    lens = FrozenLens.for_trace(trace)
    n = trace.n_layers
    points = [trace.resid(0, "pre")]
    for layer in range(n):
        points += [trace.resid(layer, "mid"), trace.resid(layer, "post")]
    lp = log_probs_of(lens, torch.stack(points), target_id)
    steps = lp[1:] - lp[:-1]
    return {"attn": steps[0::2].clone(), "ffn": steps[1::2].clone()}


def embedding_and_final_logprob(trace, target_id: int) -> tuple[float, float]:
    """``log p(target)`` of the embedding (``resid_pre[0]``) and of the final residual, frozen lens."""
    lens = FrozenLens.for_trace(trace)
    lp = log_probs_of(lens, torch.stack([trace.resid(0, "pre"), trace.resid(trace.n_layers - 1, "post")]),
                      target_id)
    return float(lp[0]), float(lp[1])


def head_logprob_increase(trace, target_id: int) -> torch.Tensor:
    """``[n_layers, n_heads]``: each head's result (b_O excluded) added to the layer input."""
    lens = FrozenLens.for_trace(trace)
    rows = []
    for layer in range(trace.n_layers):
        heads = trace[hook_name(layer, "attn.hook_result")]
        rows.append(increase_of_vectors(lens, trace.resid(layer, "pre"), heads, target_id))
    return torch.stack(rows)


def ffn_neuron_logprob_increase_brute(trace, target_id: int) -> torch.Tensor:
    """``[n_layers, d_mlp]``: every FFN neuron projected through the whole vocabulary."""
    lens = FrozenLens.for_trace(trace)
    rows = []
    for layer in range(trace.n_layers):
        coeff = trace.mlp_coefficients(layer)[trace.position]
        rows.append(increase_of_scaled(lens, trace.resid(layer, "mid"), trace.vm.weights.W_out(layer), coeff,
                                       target_id))
    return torch.stack(rows)


def attn_neuron_coefficients(trace, layer: int) -> torch.Tensor:
    """``[src, n_heads * d_head]``: ``alpha[h,p,s] * v[s,kv(h),j]``, the coefficient of direction W_O[h,j].

    Summed over sources it is ``z[p, h, j]`` (the input of W_O).
    """
    pos = trace.position
    alpha = trace[hook_name(layer, "attn.hook_pattern")][:, pos, :pos + 1]  # [H, src]
    v = trace[hook_name(layer, "attn.hook_v")][:pos + 1][:, trace.kv_head_of]  # [src, H, dh]
    v = v / trace.post_scale(layer, "attn")[pos]  # a post-norm's frozen scale (Gemma 2/3), else 1
    return (alpha.T.unsqueeze(-1) * v).reshape(pos + 1, -1)


def attn_neuron_logprob_increase_brute(trace, target_id: int, per_source: bool = True) -> torch.Tensor:
    """Attention neurons, every one projected through the whole vocabulary.

    ``per_source=True``: ``[n_layers, n_heads, d_head, src]``; otherwise summed over source
    positions (the W_O neuron, coefficient ``z``): ``[n_layers, n_heads, d_head]``.
    """
    lens = FrozenLens.for_trace(trace)
    d = trace.vm.dims
    rows = []
    for layer in range(trace.n_layers):
        directions = trace.vm.weights.W_O(layer).reshape(d.n_heads * d.d_head, d.d_model)
        coeff = attn_neuron_coefficients(trace, layer)
        if not per_source:
            coeff = coeff.sum(0, keepdim=True)
        scores = increase_of_scaled(lens, trace.resid(layer, "pre"), directions, coeff, target_id)  # [src, H*dh]
        scores = scores.T.reshape(d.n_heads, d.d_head, -1)
        rows.append(scores if per_source else scores[..., 0])
    return torch.stack(rows)
