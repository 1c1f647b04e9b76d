"""Knowledge neurons over a prompt set: per fact, and shared by the facts of one relation (seed 001 Figures 3-5,
Table 2).

For every fact (``prompt -> target``; a multi-token target uses its first token, as the prompt files say):

1. the coarse set of its prompt (:func:`visit.localization.knowledge_neurons.coarse_set` of the integrated
   gradients at the last position);
2. suppress (x0) and enhance (x2) that set and measure the correct answer's probability on the fact's prompt and
   on ``n_unrelated`` facts of other relations (each with its own answer).

Per relation: the neurons in the coarse sets of more than ``share`` of its facts (``shared``, with their share,
like Table 2's ``n_9^(831) (90%)``), the most shared neurons whatever their share (``top_shared``), the layer
histogram of all coarse-set neurons (Figure 5) and of the shared ones, and the mean probability changes
(Figures 3-4). Facts the model does not answer (target not its top-1) are skipped unless ``keep_correct=False``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

from visit import hooks
from visit.errors import VisitError
from visit.localization.integrated_gradients import Progress, check_steps, encode, integrated_gradients
from visit.localization.knowledge_neurons import NeuronScore, coarse_set, manipulate
from visit.tokens import resolve_target, token_string


@dataclass
class FactResult:
    prompt: str
    target: str
    relation: str
    prob: float
    correct: bool
    kept: bool
    coarse: list[NeuronScore] = field(default_factory=list)
    effects: dict = field(default_factory=dict)  # {"suppress"|"enhance": {"related", "unrelated"(, "_relative")}}


@dataclass
class RelationResult:
    relation: str
    n_facts: int
    shared: list[dict]  # [{"layer", "neuron", "share"}], share > the threshold, most shared first
    top_shared: list[dict]  # the 5 most shared neurons, whatever their share
    histogram: list[int]  # coarse-set neurons per layer, summed over the facts
    shared_histogram: list[int]
    effects: dict  # mean over the facts of FactResult.effects


def _effects(vm, neurons, case, unrelated) -> dict:
    rel = manipulate(vm, neurons, [case])
    unrel = manipulate(vm, neurons, unrelated) if unrelated else [{"mean_change": 0.0, "mean_relative_change": 0.0}] * 2
    return {name: {"related": r["mean_change"], "unrelated": u["mean_change"],
                   "related_relative": r["mean_relative_change"], "unrelated_relative": u["mean_relative_change"]}
            for name, r, u in zip(("suppress", "enhance"), rel, unrel)}


def _unrelated_for(relation: str, pool: dict[str, list[tuple[str, int]]], n: int) -> list[tuple[str, int]]:
    """The first fact of each other relation, round robin, ``n`` in all."""
    others = [facts for name, facts in pool.items() if name != relation]
    picked, depth = [], 0
    while len(picked) < n and any(len(f) > depth for f in others):
        for facts in others:
            if len(facts) > depth and len(picked) < n:
                picked.append(facts[depth])
        depth += 1
    return picked


def relation_study(vm, cases: Sequence, steps: int = 20, threshold: float = 0.3, share: float = 0.5,
                   keep_correct: bool = True, n_unrelated: int = 5, progress: Progress | None = None) -> dict:
    """Knowledge neurons of every fact in ``cases`` (:class:`visit.prompts.PromptCase`) and per relation.

    Returns ``{"model", "steps", "threshold", "share", "n_facts", "n_kept", "elapsed_s", "facts": [...],
    "relations": [...]}`` (plain data; ``progress(done, total, note)`` after each fact, may raise to cancel).
    """
    steps = check_steps(steps)
    if not cases:
        raise VisitError("no prompts to study")
    start = time.perf_counter()
    facts: list[FactResult] = []
    resolved = []
    for case in cases:
        tid = resolve_target(vm.tokenizer, case.target).id
        resolved.append((case, tid))
    pool: dict[str, list[tuple[str, int]]] = {}
    for case, tid in resolved:
        pool.setdefault(case.relation or "(none)", []).append((case.prompt, tid))
    for done, (case, tid) in enumerate(resolved, start=1):
        relation = case.relation or "(none)"
        ids, p = encode(vm, case.prompt, None)
        logits, _ = hooks.run(vm, ids)
        probs = logits[0, p].float().softmax(-1)
        correct = int(probs.argmax()) == tid
        fact = FactResult(case.prompt, token_string(vm.tokenizer, tid), relation, float(probs[tid]), correct,
                          correct or not keep_correct)
        if fact.kept:
            attr = integrated_gradients(vm, case.prompt, tid, steps=steps)
            fact.coarse = coarse_set(attr, threshold)
            fact.effects = _effects(vm, fact.coarse, (case.prompt, tid), _unrelated_for(relation, pool, n_unrelated))
        facts.append(fact)
        if progress is not None:
            progress(done, len(resolved), f"{relation}: {case.prompt[:40]}")
    kept = [f for f in facts if f.kept]
    if not kept:
        raise VisitError(f"none of the {len(facts)} prompts was answered correctly by {vm.name}; nothing to study "
                         "(keep every prompt to study them anyway)")
    relations = [_relation(name, [f for f in kept if f.relation == name], share, vm.dims.n_layers)
                 for name in dict.fromkeys(f.relation for f in kept)]
    return {"model": vm.name, "steps": steps, "threshold": threshold, "share": share, "n_facts": len(facts),
            "n_kept": len(kept), "elapsed_s": time.perf_counter() - start,
            "facts": [asdict(f) for f in facts], "relations": [asdict(r) for r in relations]}


def _relation(name: str, facts: list[FactResult], share: float, n_layers: int) -> RelationResult:
    counts: dict[tuple[int, int], int] = {}
    histogram = [0] * n_layers
    for f in facts:
        for n in f.coarse:
            counts[n.key] = counts.get(n.key, 0) + 1
            histogram[n.layer] += 1
    total = len(facts)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    entry = [{"layer": l, "neuron": i, "share": c / total} for (l, i), c in ranked]
    shared = [e for e in entry if e["share"] > share]
    shared_histogram = [0] * n_layers
    for e in shared:
        shared_histogram[e["layer"]] += 1
    sides = ("related", "unrelated", "related_relative", "unrelated_relative")
    effects = {kind: {side: sum(f.effects[kind][side] for f in facts) / total for side in sides}
               for kind in ("suppress", "enhance")}
    return RelationResult(name, total, shared, entry[:5], histogram, shared_histogram, effects)
