"""Yu & Ananiadou's Table 2 on a prompt set: zero each method's top-k components, re-run, measure.

For every prompt: the unedited run, one run per method with its top-k components zeroed (at the
predicted position), and one run with k random components of the same kind. Reported per row:
MRR of the target, its mean probability (%), and its mean log-probability.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from visit.attribution.fast import attn_neuron_scores, ffn_neuron_scores
from visit.attribution.baselines import METHODS, REGISTRY, ffn_method_scores, top_neurons
from visit.attribution.intervention import Component, final_log_probs, metrics_of, random_components
from visit.attribution.logprob import head_logprob_increase
from visit.errors import VisitError
from visit.tokens import resolve_target
from visit.tracer import trace as run_trace

KIND_METHODS = {"ffn": METHODS, "head": ("logp_increase",), "wo": ("logp_increase",), "attn": ("logp_increase",)}


@dataclass
class MethodRow:
    name: str  # "unedited", a method name, or "random"
    label: str
    reciprocal_ranks: list[float] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    logps: list[float] = field(default_factory=list)

    def add(self, m) -> None:
        self.reciprocal_ranks.append(m.reciprocal_rank)
        self.probs.append(m.prob)
        self.logps.append(m.logp)

    def summary(self) -> dict:
        n = max(len(self.probs), 1)
        return {"method": self.name, "label": self.label, "n": len(self.probs),
                "mrr": sum(self.reciprocal_ranks) / n, "prob_pct": 100 * sum(self.probs) / n,
                "logp": sum(self.logps) / n}


def top_components(trace, target_id: int, kind: str, method: str, k: int, ffn_scores=None) -> list[Component]:
    """The top-``k`` components of one kind by one method (FFN kinds accept every Table 2 method)."""
    if kind == "ffn":
        if method == "logp_increase":
            scores = ffn_neuron_scores(trace, target_id, k=k).scores
        else:
            scores = (ffn_scores or ffn_method_scores(trace, target_id, methods=(method,)))[method]
        return [Component("ffn", layer, i) for layer, i in top_neurons(scores, k)]
    if method != "logp_increase":
        raise VisitError(f"method '{method}' applies to FFN neurons only; use --kind ffn")
    if kind == "head":
        scores = head_logprob_increase(trace, target_id)
        return [Component("head", layer, h) for layer, h in top_neurons(scores, k)]
    per_source = kind == "attn"
    scores = attn_neuron_scores(trace, target_id, per_source=per_source, k=k).scores
    idx = scores.reshape(-1).topk(min(k, scores.numel())).indices
    out = []
    for flat in idx.tolist():
        coords = torch.unravel_index(torch.tensor(flat), scores.shape)
        c = [int(x) for x in coords]
        out.append(Component(kind, c[0], c[1], c[2], c[3] if per_source else None))
    return out


def evaluate_methods(vm, cases, kind: str = "ffn", top: int = 10, seed: int = 0, progress=None) -> list[dict]:
    """Table 2 rows (``unedited``, each method, ``random``) averaged over ``cases`` (PromptCase list)."""
    if kind not in KIND_METHODS:
        raise VisitError(f"unknown kind '{kind}'; choose one of {', '.join(KIND_METHODS)}")
    methods = KIND_METHODS[kind]
    rows = {"unedited": MethodRow("unedited", "o) unedited")}
    for m in methods:
        rows[m] = MethodRow(m, REGISTRY.title(m))
    rows["random"] = MethodRow("random", f"random {kind} x{top}")
    gen = torch.Generator().manual_seed(seed)
    for n, case in enumerate(cases):
        tr = run_trace(vm, case.prompt)
        target = resolve_target(vm.tokenizer, case.target).id
        pos = tr.position
        rows["unedited"].add(metrics_of(tr["logits"][pos].log_softmax(-1), target))
        ffn_scores = ffn_method_scores(tr, target) if kind == "ffn" and len(methods) > 1 else None
        for m in methods:
            comps = top_components(tr, target, kind, m, top, ffn_scores)
            rows[m].add(metrics_of(final_log_probs(vm, tr.input_ids, pos, comps, tr), target))
        comps = random_components(vm, kind, top, gen, pos)
        rows["random"].add(metrics_of(final_log_probs(vm, tr.input_ids, pos, comps, tr), target))
        if progress:
            progress(n + 1, len(cases))
    return [r.summary() for r in rows.values()]


def format_table(rows: list[dict]) -> str:
    lines = [f"{'method':<24}{'MRR':>8}{'prob %':>9}{'logp':>9}"]
    for r in rows:
        lines.append(f"{r['label']:<24}{r['mrr']:>8.3f}{r['prob_pct']:>9.2f}{r['logp']:>9.2f}")
    return "\n".join(lines)
