"""Exact log-probability increase of the top neurons without projecting every neuron.

A neuron adds ``v_i = m_i * d_i`` to a base residual ``h`` (``d_i`` a fixed direction: a row of
W_out for FFN neurons, a row of W_O for attention neurons). Under the frozen lens its logit change
is ``m_i * u_i`` with ``u_i = W_U^T L(d_i)`` (``L`` the linear part of the frozen norm). With
``a`` the base logits, ``p = softmax(a)`` and ``w`` the target,

    Imp_i = m_i u_i[w] - log E_p[exp(X_i)],   X_i(j) = m_i u_i[j]   (j over the vocabulary).

**Bounds (cheap for every neuron).** With ``g = W_U p`` and ``t = W_U[:, w]`` (one d_model vector
each per base residual), ``E_p X_i = m_i L(d_i)·g`` and ``u_i[w] = L(d_i)·t``: two dot products
per neuron.

* Upper bound (Jensen, ``log E e^X >= E X``): ``UB_i = m_i (L(d_i)·t - L(d_i)·g)``.
* Lower bound (Hoeffding's lemma, ``log E e^X <= E X + range(X)^2 / 8``):
  ``LB_i = UB_i - m_i^2 r_i^2 / 8`` where ``r_i >= max_j u_i[j] - min_j u_i[j]``. By
  Cauchy-Schwarz ``|u_i[j]| <= ||W_U[:, j]|| ||L(d_i)||``, so ``r_i = 2 R ||L(d_i)||`` with
  ``R = max_j ||W_U[:, j]||`` is a valid range.

So ``LB_i <= Imp_i <= UB_i`` for every neuron.

**Selection (provably exact).** Let ``tau`` be the K-th largest of the lower bounds. The K
neurons with the largest lower bounds all have ``Imp >= tau``, so the K-th largest score overall is
``>= tau``, and a neuron with ``UB_i < tau`` cannot be in the top K. We rescore exactly (full
projection, the same arithmetic as brute force) the unscored neurons with the highest upper
bounds, replace their bounds by their exact scores (still valid bounds), raise ``tau`` to the
K-th largest lower bound again, and repeat until no unscored neuron has ``UB_i >= tau``. Every
neuron left unscored then has ``Imp_i <= UB_i < tau <= `` the K-th largest score, so the rescored
set contains the exact top K: same set, order and scores as brute force (see below for fp32). Since ``tau`` climbs to
the true K-th score, the rescored set is about the neurons whose first-order term ``UB`` reaches
it: barely more than K (counts in ``docs/benchmarks.md``). The bottom K (most negative) is the
mirror image (``tau'`` = the K-th smallest upper bound, rescore while ``LB_i <= tau'``). A margin
of a few float32 ulps of the bound terms widens each comparison, so rounding in the bounds cannot
drop a neuron. The rescoring runs brute force's arithmetic (the same W_U product and blocked
log-sum-exp, :func:`visit.attribution.logprob.imp_of_scaled`), so its values match brute force's
(bit for bit in ``benchmarks/attribution.py``; a matmul library may round a row differently with
the batch it sits in, by ~1e-7, which could only swap exact neighbours).

Neurons that were not rescored get their upper bound ``UB`` (the first-order term, usually within
1e-5 of the exact score) in the returned score tensors, and a ``False`` in ``exact``. Those values
lie below the top-K threshold and above the bottom-K one, so ranking the returned tensor still
gives the exact top-K and bottom-K that were asked for.

The Cauchy-Schwarz range is loose (about 15x the real range on SmolLM2), which barely matters for
the top K -- the upper bound is tight and drives the selection -- but makes an exact *bottom* K
expensive (its selection is driven by the lower bound): ask for it only when needed.
"""

from __future__ import annotations

import math

from dataclasses import dataclass

import torch

from visit.attribution.logprob import FrozenLens, LensBase, attn_neuron_coefficients, imp_of_scaled, projection_rows

# float32 rounding of the bound terms (dot products of length d_model, then a few products):
# comparisons are widened by this many units of the largest term's magnitude
_ULPS = 64 * torch.finfo(torch.float32).eps


@dataclass
class NeuronGroup:
    """Neurons that share a base residual: ``directions [n, d_model]``, ``coefficients [c, n]``.

    ``c`` rows of coefficients per direction (1 for FFN neurons; one per source position for
    attention neurons).
    """

    base: torch.Tensor  # [d_model]
    directions: torch.Tensor  # [n, d_model]
    coefficients: torch.Tensor  # [c, n]
    key: tuple | None = None  # names the directions (e.g. ("ffn", layer)) so their norms are cached per model


@dataclass
class DirectionStats:
    """Per-direction constants of a model (``[n]`` each): with ``w`` the final norm's weight,
    ``||L(d)|| = centred_norm / scale`` and ``L(d)·x = (d·(w x) - mean * sum(w x)) / scale``."""

    mean: torch.Tensor | None  # mean over d_model, when the norm centres (LayerNorm)
    centred_norm: torch.Tensor  # ||(d - mean) * w||
    norm: torch.Tensor  # ||d||, for the rounding margin


def direction_stats(lens: FrozenLens, directions: torch.Tensor) -> DirectionStats:
    directions = directions.float()
    mean = directions.mean(-1) if lens.centre else None
    centred = directions - mean.unsqueeze(-1) if lens.centre else directions
    return DirectionStats(mean, (centred * lens.weight).norm(dim=-1), directions.norm(dim=-1))


@dataclass
class FastScores:
    scores: torch.Tensor  # [groups, c, n] exact where ``exact``; bounded estimates elsewhere
    exact: torch.Tensor  # [groups, c, n] bool
    upper: torch.Tensor  # [groups, c, n]
    lower: torch.Tensor  # [groups, c, n]
    n_candidates: int  # how many neurons were rescored exactly

    def top(self, k: int, largest: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values [k], flat indices [k])``, exact for ``k`` up to the K the scores were built for."""
        flat = self.scores.reshape(-1)
        k = min(k, flat.numel())
        return flat.topk(k, largest=largest)


def _bounds(lens: FrozenLens, groups: list[NeuronGroup], target_id: int):
    """Bounds of every neuron of every group; the base distributions of all groups in one pass.

    Per group one matrix-vector product over the raw directions: the frozen norm's linear part is
    folded into the vector it meets, and the norms it needs are model constants (cached).
    """
    base = lens.base(torch.stack([grp.base for grp in groups]))  # [G, V]
    base_logp = base.logp
    g_all = base_logp.exp() @ lens.W_U.T  # [G, d_model]: W_U p for each base
    t = lens.W_U[:, target_id]
    r_max = lens.model_constant(("max column norm",), lambda: lens.W_U.norm(dim=0).max())
    y_all = (t - g_all) * lens.weight / lens.scale  # so that L(d)·(t - g) = d·y (- the centring term)
    a_norms = (t.abs() + g_all.abs()).norm(dim=-1)  # [G]
    out = []
    for grp, y, a_norm in zip(groups, y_all, a_norms):
        key = None if grp.key is None else ("direction stats",) + grp.key
        stats = lens.model_constant(key, lambda: direction_stats(lens, grp.directions))
        first = grp.directions.float() @ y  # u_i[w] - E_p u_i
        rounding = stats.norm * y.norm()  # of that product, and (below) of t - g, both by Cauchy-Schwarz
        if stats.mean is not None:
            first = first - stats.mean * y.sum()
            rounding = rounding + stats.mean.abs() * y.abs().sum()
        l_norm = stats.centred_norm / lens.scale  # ||L(d_i)||
        rounding = rounding + l_norm * a_norm
        spread = 2 * r_max * l_norm  # a valid range of u_i over the vocabulary (Cauchy-Schwarz)
        m = grp.coefficients
        upper = m * first
        lower = upper - (m * spread).pow(2) / 8
        slack_upper = _ULPS * m.abs() * rounding
        slack_lower = slack_upper + _ULPS * (m * spread).pow(2)
        if lens.softcap is not None:  # the bounds assume logits affine in the change: score everything exactly
            upper, lower = torch.full_like(upper, math.inf), torch.full_like(upper, -math.inf)
        out.append((upper, lower, slack_upper, slack_lower))
    return out, base


def _rescore(lens: FrozenLens, groups: list[NeuronGroup], base_logp: "torch.Tensor | LensBase", target_id: int,
             g_idx: torch.Tensor, r_idx: torch.Tensor, c_idx: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Exact scores of neurons ``(group, row, col)``: ``[k]``, the same arithmetic as brute force.

    Each distinct direction is projected through W_U once, whatever number of coefficient rows
    (source positions) use it; directions of all groups share the matmuls.
    """
    out = torch.empty(g_idx.numel(), device=g_idx.device)
    chunk = chunk or projection_rows(g_idx.device)
    n_cols = max(grp.directions.shape[0] for grp in groups)
    coefficients = _stack_padded([grp.coefficients for grp in groups])  # [G, c, n]
    pairs, slot = (g_idx * n_cols + c_idx).unique(return_inverse=True)
    for start in range(0, pairs.numel(), chunk):
        chunk_pairs = pairs[start:start + chunk]
        directions = torch.cat([groups[g].directions[chunk_pairs[chunk_pairs // n_cols == g] % n_cols]
                                for g in (chunk_pairs // n_cols).unique().tolist()])  # pairs are sorted
        u = lens.delta_logits(directions)  # [k, V]
        picked = ((slot >= start) & (slot < start + chunk)).nonzero().flatten()
        picked = picked[slot[picked].argsort(stable=True)]  # read u in order
        m = coefficients[g_idx[picked], r_idx[picked], c_idx[picked]]
        out[picked] = imp_of_scaled(base_logp, u, m, target_id, base_rows=g_idx[picked], u_rows=slot[picked] - start)
    return out


def _stack_padded(mats: list[torch.Tensor]) -> torch.Tensor:
    """Stack ``[c_g, n_g]`` matrices into ``[G, max c, max n]`` (zeros where a group is smaller)."""
    rows, cols = max(m.shape[0] for m in mats), max(m.shape[1] for m in mats)
    out = mats[0].new_zeros(len(mats), rows, cols)
    for i, m in enumerate(mats):
        out[i, :m.shape[0], :m.shape[1]] = m
    return out


def _mask(index: torch.Tensor, size: int) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool, device=index.device)
    mask[index] = True
    return mask


def fast_scores(lens: FrozenLens, groups: list[NeuronGroup], target_id: int, k: int = 1000,
                k_bottom: int = 0, k_per_group: int = 0, k_bottom_per_group: int = 0,
                margin: int = 16) -> FastScores:
    """Bounds for all neurons, then exact rescoring in rounds (see the module docstring).

    Exact: the top ``k`` and bottom ``k_bottom`` over all groups, and the top ``k_per_group`` and
    bottom ``k_bottom_per_group`` within each group (layer) -- the same argument, one threshold
    per group.

    Each round rescores the unscored neurons among the K with the highest upper bounds (exact
    scores standing in for bounds where known): the K-th of those bounds is above the true K-th
    score, so all of them have to be rescored anyway. The threshold is then raised to the K-th
    largest of (exact score where known, lower bound elsewhere). It stops when no unscored upper
    bound reaches the threshold. Each round also takes the ``margin`` (or K/64) next-best open
    neurons, which usually saves a second pass over W_U.
    """
    bounds, base_logp = _bounds(lens, groups, target_id)
    upper = torch.stack([b[0] for b in bounds])
    lower = torch.stack([b[1] for b in bounds])
    shape, total = upper.shape, upper.numel()
    hi = (upper + torch.stack([b[2] for b in bounds])).reshape(-1)  # provable bounds, replaced by exact scores
    lo = (lower - torch.stack([b[3] for b in bounds])).reshape(-1)
    exact = torch.zeros(total, dtype=torch.bool, device=hi.device)
    scores = upper.reshape(-1).clone()  # the first-order term: within ~1e-5 of the truth for most neurons

    def rescore(flat: torch.Tensor) -> None:
        g_idx, r_idx, c_idx = torch.unravel_index(flat, shape)
        vals = _rescore(lens, groups, base_logp, target_id, g_idx, r_idx, c_idx)
        scores[flat] = vals
        hi[flat] = vals
        lo[flat] = vals
        exact[flat] = True

    n_groups = shape[0]
    plans = [(k, 1.0, False), (k_bottom, -1.0, False), (k_per_group, 1.0, True), (k_bottom_per_group, -1.0, True)]
    for kk, sign, per_group in plans:
        kk = min(kk, total // n_groups if per_group else total)
        if kk <= 0:
            continue
        per = total // n_groups
        while True:
            # for the bottom K everything is mirrored: the bounds swap roles and change sign
            best, worst = (hi, lo) if sign > 0 else (-lo, -hi)
            if per_group:  # the same argument within each group (layer), one threshold per group
                tau = worst.view(n_groups, -1).topk(kk, dim=1).values[:, -1:].expand(-1, per).reshape(-1)
                offsets = torch.arange(n_groups, device=hi.device).unsqueeze(1) * per
                leaders = (best.view(n_groups, -1).topk(kk, dim=1).indices + offsets).reshape(-1)
            else:
                tau = worst.topk(kk).values[-1]
                leaders = best.topk(kk).indices
            open_ = (~exact) & (best >= tau)
            if not open_.any():
                break
            # The K-th largest ``best`` bounds the true K-th score from above, so every unscored
            # neuron among the K leaders must be rescored in any case: no wasted projections.
            pick = leaders[~exact[leaders]]
            # Plus a few of the next most promising open neurons: the true K-th score lies a little
            # below the leaders' bounds, and every extra round streams all of W_U again.
            n_extra = min(max(margin, pick.numel() // 64), int(open_.sum()) - pick.numel())
            if n_extra > 0:
                others = torch.where(open_ & ~_mask(pick, total), best, torch.full_like(best, -torch.inf))
                pick = torch.cat([pick, others.topk(n_extra).indices])
            rescore(pick)
    return FastScores(scores.reshape(shape), exact.reshape(shape), upper, lower, int(exact.sum()))


@dataclass
class NeuronScores:
    """Scores of one kind of neuron at one position."""

    scores: torch.Tensor  # FFN: [n_layers, d_mlp]; attention: [n_layers, n_heads, d_head(, src)]
    exact: torch.Tensor  # bool, same shape
    n_candidates: int
    n_total: int


def ffn_groups(trace) -> list[NeuronGroup]:
    w, pos = trace.vm.weights, trace.position
    return [NeuronGroup(trace.resid(l, "mid"), w.W_out(l), trace.mlp_coefficients(l)[pos].unsqueeze(0),
                        ("ffn", l)) for l in range(trace.n_layers)]


def attn_groups(trace, per_source: bool = True) -> list[NeuronGroup]:
    d = trace.vm.dims
    groups = []
    for layer in range(trace.n_layers):
        coeff = attn_neuron_coefficients(trace, layer)  # [src, H*dh]
        if not per_source:
            coeff = coeff.sum(0, keepdim=True)
        directions = trace.vm.weights.W_O(layer).reshape(d.n_heads * d.d_head, d.d_model)
        groups.append(NeuronGroup(trace.resid(layer, "pre"), directions, coeff, ("attn", layer)))
    return groups


def ffn_neuron_scores(trace, target_id: int, k: int = 1000, k_bottom: int = 0, per_layer: int = 0,
                      bottom_per_layer: int = 0) -> NeuronScores:
    """FFN neurons: ``scores [n_layers, d_mlp]``, exact for the top ``k`` and bottom ``k_bottom``
    overall and the top ``per_layer`` / bottom ``bottom_per_layer`` of each layer."""
    res = fast_scores(FrozenLens.for_trace(trace), ffn_groups(trace), target_id, k, k_bottom, per_layer,
                      bottom_per_layer)
    return NeuronScores(res.scores[:, 0], res.exact[:, 0], res.n_candidates, res.scores.numel())


def attn_neuron_scores(trace, target_id: int, per_source: bool = True, k: int = 1000,
                       k_bottom: int = 0) -> NeuronScores:
    """Attention neurons: ``[n_layers, n_heads, d_head, src]`` (or without ``src`` when summed)."""
    d = trace.vm.dims
    res = fast_scores(FrozenLens.for_trace(trace), attn_groups(trace, per_source), target_id, k, k_bottom)
    n_src = res.scores.shape[1]

    def shape(x):
        x = x.permute(0, 2, 1).reshape(trace.n_layers, d.n_heads, d.d_head, n_src)
        return x if per_source else x[..., 0]

    return NeuronScores(shape(res.scores), shape(res.exact), res.n_candidates, res.scores.numel())


def ffn_neuron_logprob_increase(trace, target_id: int, per_layer: int = 20) -> torch.Tensor:
    """``[n_layers, d_mlp]``: FFN neuron scores, exact wherever a ranking can look.

    Exact (equal to :func:`~visit.attribution.logprob.ffn_neuron_logprob_increase_brute`) for the top 1000
    overall and the top ``per_layer`` of every layer; every other entry holds its first-order upper bound
    (usually within 1e-5 of the exact score, see the module doc), below those, so ranking the tensor, overall or
    per layer, gives the exact top neurons. The most negative neurons per layer
    are ranked by that first-order term (exact certification of the bottom is ~10x the cost; use
    ``ffn_neuron_scores(..., bottom_per_layer=k)`` when it matters). Memoised per trace.
    """
    return trace.memo(("ffn_contract", target_id, per_layer),
                      lambda: ffn_neuron_scores(trace, target_id, k=1000, per_layer=per_layer).scores)
