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

Each method is one :class:`AttributionMethod` record in :data:`REGISTRY` (name, label, the pieces it reads,
its score function); its id is its place in the registry, so a ninth method is ``i``. The projected ones come
out of one pass that projects every neuron through the unembedding (the cost of brute force, about 20 s on a
CPU for the default model); the fast exact method covers (a) alone (:mod:`visit.attribution.fast`); d), e) and
g) need no projection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from visit.attribution.logprob import FrozenLens, imp_of_scaled, projection_rows


@dataclass
class LayerPieces:
    """One layer's ingredients the methods share, each ``[d_mlp]`` (None where no asked method needs it):
    ``coeff`` m, ``norm`` ||v||, ``imp`` log p(w | h + m v) - log p(w | h), ``logp`` log p(w | m v),
    ``inv_rank`` 1 / rank of w in v's projection; ``base_p`` is p(w | h) (a scalar)."""

    coeff: torch.Tensor
    norm: torch.Tensor
    imp: torch.Tensor | None = None
    logp: torch.Tensor | None = None
    inv_rank: torch.Tensor | None = None
    base_p: torch.Tensor | None = None


@dataclass(frozen=True)
class AttributionMethod:
    """One FFN-neuron attribution method: ``name`` (the CLI's ``--method``, the JSON key), ``label`` (for
    people), ``needs`` (which projected :class:`LayerPieces` it reads: none for the methods that cost nothing)
    and ``score`` (the layer's ``[d_mlp]`` scores from those pieces)."""

    name: str
    label: str
    needs: frozenset
    score: Callable[[LayerPieces], torch.Tensor]

    @property
    def projected(self) -> bool:
        """Needs every neuron's projection through the unembedding (the costly pass)."""
        return bool(self.needs)


class MethodRegistry:
    """The methods in the order of Table 2; each gets its letter id from its place (a, b, ..., z, aa, ab, ...)."""

    def __init__(self, methods):
        self.methods = tuple(methods)
        self.by_name = {m.name: m for m in self.methods}
        if len(self.by_name) != len(self.methods):
            raise ValueError("two attribution methods share a name")
        self.ids = {m.name: letter_id(i) for i, m in enumerate(self.methods)}

    def __iter__(self):
        return iter(self.methods)

    def __len__(self) -> int:
        return len(self.methods)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.by_name)

    def title(self, name: str) -> str:
        """``"a) log prob increase"``: the method's id and label, as the tables and the app show it."""
        return f"{self.ids[name]}) {self.by_name[name].label}"

    def get(self, name: str) -> AttributionMethod:
        if name not in self.by_name:
            raise ValueError(f"unknown method(s) {[name]}; choose from {self.names}")
        return self.by_name[name]


def letter_id(i: int) -> str:
    """0 -> ``"a"``, 25 -> ``"z"``, 26 -> ``"aa"``: a method's id from its place in the registry."""
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(ord("a") + r) + out
    return out


REGISTRY = MethodRegistry((
    AttributionMethod("logp_increase", "log prob increase", frozenset({"imp"}), lambda p: p.imp),
    AttributionMethod("logp", "log prob", frozenset({"logp"}), lambda p: p.logp),
    AttributionMethod("prob_increase", "prob increase", frozenset({"imp"}), lambda p: p.base_p * torch.expm1(p.imp)),
    AttributionMethod("norm", "norm |v|", frozenset(), lambda p: p.norm),
    AttributionMethod("coefficient", "|m|", frozenset(), lambda p: p.coeff.abs()),
    AttributionMethod("inv_rank", "1/rank", frozenset({"inv_rank"}), lambda p: p.inv_rank),
    AttributionMethod("coef_norm", "|m|*|v|", frozenset(), lambda p: p.coeff.abs() * p.norm),
    AttributionMethod("coef_inv_rank", "|m|/rank", frozenset({"inv_rank"}), lambda p: p.coeff.abs() * p.inv_rank),
))
# views of the registry, for the callers that name methods
METHODS = REGISTRY.names
METHOD_IDS = REGISTRY.ids
METHOD_LABELS = {m.name: m.label for m in REGISTRY}
PROJECTED = tuple(m.name for m in REGISTRY if m.projected)  # need every neuron's projection


def ffn_method_scores(trace, target_id: int, methods=METHODS, chunk: int | None = None,
                      registry: MethodRegistry = REGISTRY) -> dict[str, torch.Tensor]:
    """Each asked method's score for every FFN neuron: ``{method: [n_layers, d_mlp]}``.

    Methods d), e) and g) need no projection and cost nothing; the others project every neuron
    once (shared between them), the rank comparisons in cache-sized blocks.
    """
    unknown = [m for m in methods if m not in registry.by_name]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {registry.names}")
    asked = [registry.by_name[m] for m in methods]
    needs = frozenset().union(*(m.needs for m in asked))
    lens = FrozenLens.for_trace(trace)
    weights, pos = trace.vm.weights, trace.position
    zero = lens.base(torch.zeros_like(lens.weight))  # the lens at the zero vector
    zero_logp = zero.logp
    chunk = chunk or projection_rows(lens.W_U.device)
    out = {m.name: [] for m in asked}
    for layer in range(trace.n_layers):
        coeff = trace.mlp_coefficients(layer)[pos]
        W_out = weights.W_out(layer)
        pieces = LayerPieces(coeff, W_out.norm(dim=-1))
        if needs:
            base = lens.base(trace.resid(layer, "mid"))
            pieces.base_p = base.logp[target_id].exp()
            rows = {piece: [] for piece in needs}
            for start in range(0, W_out.shape[0], chunk):
                u = lens.delta_logits(W_out[start:start + chunk])  # [k, V]
                m = coeff[start:start + chunk]
                if "imp" in needs:
                    rows["imp"].append(imp_of_scaled(base, u, m, target_id))
                if "logp" in needs:
                    rows["logp"].append(imp_of_scaled(zero, u, m, target_id) + zero_logp[target_id])
                if "inv_rank" in needs:
                    rows["inv_rank"].append(1.0 / _target_rank(u, target_id).float())
            for piece, parts in rows.items():
                setattr(pieces, piece, torch.cat(parts))
        for method in asked:
            out[method.name].append(method.score(pieces))
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
