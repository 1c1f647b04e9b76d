"""Layer norm as a semantic filter (VISIT 5.2, App. E).

For every norm of the model (each block's ln1 and ln2, and the final norm) we project the norm's
input and its output to the vocabulary and compare the two distributions: which tokens gain and
lose probability, and what happens to the target's probability and rank.

How the two sides are projected (the lens ``mode``):

- ``"renorm"`` (default, VISIT's logit lens): both the input and the output of ln1/ln2 go through
  the final norm and the unembedding. The final norm removes scale, so what remains is the norm's
  own elementwise weight (and bias): exactly the "filter" part.
- ``"raw"``: both sides through the unembedding alone, "the projection without the final norm"
  of VISIT Figure 23 / Table 6.
- The final norm is always compared raw: its input through the bare unembedding against its output
  through the unembedding, which is the model's own next-token distribution. Re-applying the final
  norm to its own output would compare a vector with itself.

A control uses random Gaussian vectors scaled to the norm of the real input and passed through the
same norm weights: if the real input's change looked like the random one, the norm would not be
filtering anything specific to the hidden state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from visit.hooks.names import hook_name
from visit.ids import spine_id
from visit.lens import LensResult, LogitLens
from visit.models.weights import NormParams
from visit.tokens import token_string

LENS_MODES = ("renorm", "raw")


@dataclass(frozen=True)
class NormSite:
    key: str  # "L3.ln1", "L3.ln2" or "final" (graph node ids use "L3.ln1" too)
    hook: str  # trace name prefix: "blocks.3.ln1" or "ln_final"
    layer: int | None
    kind: str  # "ln1" | "ln2" | "final"

    def params(self, weights) -> NormParams:
        if self.kind == "final":
            return weights.final_norm
        return getattr(weights, self.kind)(self.layer)

    def lens_mode(self, mode: str) -> str:
        return "raw" if self.kind == "final" else mode


def norm_sites(n_layers: int) -> list[NormSite]:
    """Every norm in forward order: ln1, ln2 of each layer, then the final norm."""
    sites = []
    for layer in range(n_layers):
        for kind in ("ln1", "ln2"):
            sites.append(NormSite(spine_id(layer, kind), hook_name(layer, kind), layer, kind))
    sites.append(NormSite("final", "ln_final", None, "final"))
    return sites


def site_vectors(trace, sites: list[NormSite]) -> tuple[torch.Tensor, torch.Tensor]:
    """The traced norm inputs and outputs at the position: two ``[n_sites, d_model]`` tensors."""
    p = trace.position
    x_in = torch.stack([trace[f"{s.hook}.hook_in"][p] for s in sites])
    x_out = torch.stack([trace[f"{s.hook}.hook_out"][p] for s in sites])
    return x_in, x_out


def random_like_norms(x_in: torch.Tensor, sites: list[NormSite], weights,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Control vectors: Gaussian directions scaled to each real input's norm, and their norm outputs.

    ``x_in [n, d_model]`` -> (random inputs ``[n, d_model]``, their outputs ``[n, d_model]``).
    """
    noise = torch.randn(x_in.shape, generator=generator, dtype=torch.float32).to(x_in.device)
    rand_in = noise / noise.norm(dim=-1, keepdim=True) * x_in.norm(dim=-1, keepdim=True)
    rand_out = torch.stack([s.params(weights).apply(v) for s, v in zip(sites, rand_in)])
    return rand_in, rand_out


def site_probs(lens: LogitLens, vectors: torch.Tensor, sites: list[NormSite], mode: str) -> torch.Tensor:
    """Lens probabilities of one vector per site, each site with its own lens mode: ``[n, d_vocab]``."""
    out = torch.empty(len(sites), lens.W_U.shape[1], device=lens.W_U.device)
    for site_mode in set(s.lens_mode(mode) for s in sites):
        rows = [i for i, s in enumerate(sites) if s.lens_mode(mode) == site_mode]
        out[rows] = lens.logits(vectors[rows], site_mode).softmax(-1)
    return out


@dataclass
class NormFilterRow:
    """One norm's effect at the traced position (token strings raw: escape them at the page)."""

    site: NormSite
    lens_mode: str
    before: dict  # LogitLens.describe of the input's projection
    after: dict  # ... of the output's projection
    gained: list[dict]  # [{"token", "id", "delta", "before", "after"}], largest gain first
    lost: list[dict]  # largest loss first
    total_change: float  # total variation distance between the two distributions (0..1)
    control_total_change: float  # the same for random vectors of the same norm (mean over draws)
    control_gained: list[dict]
    control_lost: list[dict]
    target: dict | None  # {"prob_before", "prob_after", "rank_before", "rank_after"}; control_* too

    def as_dict(self) -> dict:
        return {
            "site": self.site.key, "layer": self.site.layer, "kind": self.site.kind, "lens_mode": self.lens_mode,
            "before": self.before, "after": self.after, "gained": self.gained, "lost": self.lost,
            "total_change": self.total_change, "control_total_change": self.control_total_change,
            "control_gained": self.control_gained, "control_lost": self.control_lost, "target": self.target,
        }


def layer_norm_filter(trace, target_id: int | None = None, mode: str = "renorm", k: int = 10,
                      n_random: int = 2, seed: int = 0) -> list[NormFilterRow]:
    """The filter view for every norm at the traced position, in forward order."""
    if mode not in LENS_MODES:
        raise ValueError(f"unknown lens mode {mode!r}; choose one of {LENS_MODES}")
    vm = trace.vm
    sites = norm_sites(trace.n_layers)
    lens = LogitLens(vm)
    x_in, x_out = site_vectors(trace, sites)
    before = _project_per_site(lens, x_in, sites, mode, k, target_id)
    after = _project_per_site(lens, x_out, sites, mode, k, target_id)
    p_in, p_out = site_probs(lens, x_in, sites, mode), site_probs(lens, x_out, sites, mode)  # [n, V]
    control = _control(lens, x_in, sites, mode, n_random, seed, target_id)

    tok = vm.tokenizer
    rows = []
    for i, site in enumerate(sites):
        b, a = lens.describe(before, i), lens.describe(after, i)
        target = None
        if target_id is not None:
            target = {"prob_before": b["target_prob"], "prob_after": a["target_prob"],
                      "rank_before": b["target_rank"], "rank_after": a["target_rank"],
                      "control_prob_before": float(control["target"][i, 0]),
                      "control_prob_after": float(control["target"][i, 1])}
        delta = p_out[i] - p_in[i]
        rows.append(NormFilterRow(
            site=site, lens_mode=site.lens_mode(mode), before=b, after=a,
            gained=_movers(tok, delta, k, True, p_in[i], p_out[i]),
            lost=_movers(tok, delta, k, False, p_in[i], p_out[i]),
            total_change=float(0.5 * delta.abs().sum()), control_total_change=float(control["tv"][i]),
            control_gained=_movers(tok, control["delta"][i], k, True),
            control_lost=_movers(tok, control["delta"][i], k, False), target=target,
        ))
    return rows


def _control(lens, x_in, sites, mode, n_random, seed, target_id) -> dict:
    """Mean probability change, total variation and target probabilities over random draws."""
    generator = torch.Generator().manual_seed(seed)
    n, device = len(sites), lens.W_U.device
    delta = torch.zeros(n, lens.W_U.shape[1], device=device)
    tv = torch.zeros(n, device=device)
    target = torch.zeros(n, 2, device=device)
    for _ in range(max(1, n_random)):
        r_in, r_out = random_like_norms(x_in, sites, lens.vm.weights, generator)
        p_in, p_out = site_probs(lens, r_in, sites, mode), site_probs(lens, r_out, sites, mode)
        delta += p_out - p_in
        tv += 0.5 * (p_out - p_in).abs().sum(-1)
        if target_id is not None:
            target += torch.stack([p_in[:, target_id], p_out[:, target_id]], -1)
    draws = max(1, n_random)
    return {"delta": delta / draws, "tv": tv / draws, "target": target / draws}


def _project_per_site(lens: LogitLens, vectors, sites, mode, k, target_id):
    """``LogitLens.project`` per site with each site's lens mode, merged back in site order."""
    results = {}
    for site_mode in set(s.lens_mode(mode) for s in sites):
        rows = [i for i, s in enumerate(sites) if s.lens_mode(mode) == site_mode]
        results[site_mode] = (rows, lens.project(vectors[rows], mode=site_mode, k=k, target=target_id))
    fields = ("top_ids", "top_probs", "bottom_ids", "bottom_probs", "entropy", "target_prob", "target_rank",
              "target_logit")
    merged = {}
    for name in fields:
        parts = [(rows, getattr(res, name)) for rows, res in results.values()]
        if parts[0][1] is None:
            merged[name] = None
            continue
        out = torch.empty((len(sites),) + tuple(parts[0][1].shape[1:]), dtype=parts[0][1].dtype,
                          device=parts[0][1].device)
        for rows, value in parts:
            out[rows] = value
        merged[name] = out
    return LensResult(**merged)


def _movers(tokenizer, delta: torch.Tensor, k: int, largest: bool, p_before=None, p_after=None) -> list[dict]:
    values, ids = delta.topk(min(k, delta.shape[-1]), largest=largest)
    rows = []
    for v, i in zip(values.tolist(), ids.tolist()):
        row = {"token": token_string(tokenizer, i), "id": int(i), "delta": float(v)}
        if p_before is not None:
            row["before"], row["after"] = float(p_before[i]), float(p_after[i])
        rows.append(row)
    return rows
