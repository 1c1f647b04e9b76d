"""Causal tracing over a prompt set: the average indirect effect per layer by position bucket (seed 001 Fig. 6,
ROME Fig. 2).

Every prompt's token positions fall into one bucket each, checked in this order: the **last token**; the **last
subject token**; the **first subject token** (when the subject has more than one token); **middle subject
tokens**; the **first subsequent token** (the token after the subject); **further tokens**. A prompt contributes
to a bucket the mean indirect effect of its positions there (one value per layer), and a bucket's curve is the
mean over prompts with a 95% interval of 1.96 standard deviations over the square root of the count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from visit.errors import VisitError
from visit.localization.causal_trace import KINDS, CausalTrace, causal_trace
from visit.prompts import PromptCase
from visit.tokens import resolve_target

BUCKETS = ("first subject token", "middle subject tokens", "last subject token", "first subsequent token",
           "further tokens", "last token")


def bucket_of(position: int, subject_range: tuple[int, int], n_tokens: int) -> str:
    s0, s1 = subject_range
    if position == n_tokens - 1:
        return "last token"
    if position == s1 - 1:
        return "last subject token"
    if position == s0:
        return "first subject token"
    if s0 < position < s1 - 1:
        return "middle subject tokens"
    if position == s1:
        return "first subsequent token"
    return "further tokens" if position > s1 else "before subject"


@dataclass
class CausalStudy:
    traces: list[CausalTrace]
    skipped: list[dict] = field(default_factory=list)  # {"prompt", "reason"}
    kinds: tuple[str, ...] = KINDS

    def buckets(self) -> dict[str, dict[str, dict]]:
        """``[kind][bucket]`` -> ``{"mean", "low", "high": [n_layers], "n": prompts}``."""
        out: dict[str, dict[str, dict]] = {}
        for kind in self.kinds:
            per_bucket: dict[str, list[np.ndarray]] = {b: [] for b in BUCKETS}
            for tr in self.traces:
                ie = tr.indirect_effect(kind)
                groups: dict[str, list[np.ndarray]] = {}
                for pos in range(len(tr.tokens)):
                    b = bucket_of(pos, tr.subject_range, len(tr.tokens))
                    if b in per_bucket:
                        groups.setdefault(b, []).append(ie[pos])
                for b, rows in groups.items():
                    per_bucket[b].append(np.mean(rows, axis=0))
            out[kind] = {b: _mean_ci(rows) for b, rows in per_bucket.items()}
        return out

    def summary(self) -> dict:
        n = len(self.traces)
        return {"n": n, "skipped": self.skipped,
                "p_clean": float(np.mean([t.p_clean for t in self.traces])) if n else None,
                "p_corrupted": float(np.mean([t.p_corrupted for t in self.traces])) if n else None}

    def to_json(self) -> dict:
        buckets = self.buckets()
        return {**self.summary(),
                "buckets": {k: {b: {"mean": s["mean"], "low": s["low"], "high": s["high"], "n": s["n"]}
                                for b, s in v.items()} for k, v in buckets.items()},
                "traces": [t.to_json() for t in self.traces]}


def _mean_ci(rows: list[np.ndarray]) -> dict:
    if not rows:
        return {"mean": [], "low": [], "high": [], "n": 0}
    a = np.stack(rows)
    mean = a.mean(0)
    half = 1.96 * a.std(0, ddof=1) / np.sqrt(len(a)) if len(a) > 1 else np.zeros_like(mean)
    return {"mean": mean.tolist(), "low": (mean - half).tolist(), "high": (mean + half).tolist(), "n": len(a)}


def causal_study(vm, cases: Sequence[PromptCase], kinds: Sequence[str] = KINDS, samples: int = 10,
                 noise: float | None = None, window: int = 10, known_only: bool = False,
                 progress: Callable[[int, int, str], None] | None = None) -> CausalStudy:
    """Trace every case that names a subject; the file's target (its first token) is the target.

    ``known_only`` keeps only the facts whose target is the model's top-1 prediction (as ROME does).
    """
    with_subject = [c for c in cases if c.subject]
    if not with_subject:
        raise VisitError("no prompt in the file names a subject (TSV: prompt<TAB>target<TAB>relation<TAB>subject)")
    study = CausalStudy([], [], tuple(kinds))
    for i, case in enumerate(with_subject):
        target = resolve_target(vm.tokenizer, case.target).id if case.target else None
        try:
            tr = causal_trace(vm, case.prompt, case.subject, target, kinds, samples, noise, window)
        except VisitError as exc:
            study.skipped.append({"prompt": case.prompt, "reason": str(exc)})
            continue
        if known_only and not tr.known:
            study.skipped.append({"prompt": case.prompt, "reason": "the target is not the top-1 prediction"})
        else:
            study.traces.append(tr)
        if progress is not None:
            progress(i + 1, len(with_subject), case.prompt[:40])
    return study

