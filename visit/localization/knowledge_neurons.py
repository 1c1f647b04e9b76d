"""Knowledge neurons (Dai et al. 2022, seed 001 section 3.1): which MLP neurons express a fact.

For each prompt of a fact (the prompt and its paraphrases), :func:`integrated_gradients` attributes the target's
probability at the last position to every MLP neuron of every layer (its coefficient ``mlp.hook_post``; see
:mod:`visit.localization.integrated_gradients` for the exact variant). Then:

- **coarse set** of a prompt: the neurons whose attribution is at least ``threshold`` x the prompt's maximum
  (seed 001: ``t = 0.3``; Dai et al.'s code: 0.2);
- **refined set**: the neurons in the coarse sets of *more than* ``share`` of the prompts (seed 001: 0.5;
  Dai et al.: 0.7). With one prompt the refined set is its coarse set. A refined neuron's score is its mean
  attribution over the prompts, ``shares`` its fraction of coarse sets;
- **suppress / enhance** (seed 001 Figures 3-4): the refined neurons' coefficients multiplied by 0 and by 2 at
  the last position of each prompt (hook-layer writes; the weights are never touched), and the change of the
  correct token's probability on the fact's own prompts and on unrelated facts (default: facts of the shipped
  prompt set with other answers, each with its own answer);
- **comparison** with the project's log-probability-increase ranking of FFN neurons
  (:func:`visit.attribution.ffn_neuron_logprob_increase`): overlap with its top ``k`` and both sets' layer
  histograms.

::

    kn = knowledge_neurons(vm, "The capital of France is", " Paris",
                           paraphrases=["France's capital city is", "Paris is the capital of"])
    kn.refined            # [NeuronScore(layer=…, neuron=…, score=…), …], best first
    kn.suppress["related"]["mean_change"]
    kn.to_json()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from visit import hooks
from visit.attribution import ffn_neuron_logprob_increase
from visit.errors import VisitError
from visit.lens import LogitLens
from visit.hooks.names import hook_name
from visit.ids import neuron_id
from visit.localization.integrated_gradients import Progress, check_steps, encode, integrated_gradients
from visit.prompts import default_prompt_file, load_prompt_file
from visit.tokens import Target, display_token, resolve_target, target_from_id, token_string
from visit.tracer import trace

__all__ = ["NeuronScore", "KnowledgeNeurons", "integrated_gradients", "knowledge_neurons", "coarse_set", "refine",
           "manipulate", "manipulation_writes", "compare_with_logprob", "static_tokens", "one_token_target", "default_unrelated"]

N_UNRELATED = 8  # unrelated facts taken from the shipped prompt set by default
N_TOKENS = 100  # refined neurons whose static lens tokens are computed


@dataclass(frozen=True)
class NeuronScore:
    layer: int
    neuron: int
    score: float

    @property
    def key(self) -> tuple[int, int]:
        return (self.layer, self.neuron)

    @property
    def node(self) -> str:
        """The flow graph's node id of this neuron (:class:`visit.ids.NodeId`)."""
        return neuron_id(self.layer, self.neuron)

    def as_dict(self) -> dict:
        return {"layer": self.layer, "neuron": self.neuron, "score": self.score}


@dataclass
class KnowledgeNeurons:
    """The knowledge neurons of one fact. ``coarse[i]`` belongs to ``prompts[i]`` (``prompts[0]`` is the
    prompt, the rest its paraphrases); ``attributions[i]`` is its ``[n_layers, d_mlp]`` attribution."""

    target: Target
    prompts: list[str]
    coarse: list[list[NeuronScore]]
    refined: list[NeuronScore]
    suppress: dict
    enhance: dict
    steps: int = 20
    threshold: float = 0.3
    share: float = 0.5
    shares: dict[tuple[int, int], float] = field(default_factory=dict)  # refined neuron -> share of coarse sets
    probs: list[float] = field(default_factory=list)  # the target's clean probability per prompt
    attributions: list[torch.Tensor] = field(default_factory=list, repr=False)
    comparison: dict | None = None
    notes: list[str] = field(default_factory=list)
    tokens: dict[tuple[int, int], list[str]] = field(default_factory=dict)  # refined -> static lens top tokens

    def layer_histogram(self, neurons: Sequence[NeuronScore] | None = None) -> list[int]:
        """How many of ``neurons`` (default the refined set) sit in each layer: ``[n_layers]``."""
        n_layers = self.attributions[0].shape[0] if self.attributions else 0
        neurons = self.refined if neurons is None else neurons
        counts = [0] * max(n_layers, 1 + max((n.layer for n in neurons), default=-1))
        for n in neurons:
            counts[n.layer] += 1
        return counts

    def to_json(self) -> dict:
        """``{"target", "prompts", "steps", "threshold", "share", "probs", "coarse" (of the first prompt),
        "coarse_per_prompt", "refined" (with "share"), "layer_histogram", "suppress", "enhance",
        "comparison", "notes"}``."""
        def scores(ns):
            return [n.as_dict() for n in ns]

        return {
            "target": {"token": self.target.token, "id": self.target.id},
            "prompts": list(self.prompts), "steps": self.steps, "threshold": self.threshold, "share": self.share,
            "probs": list(self.probs),
            "coarse": scores(self.coarse[0]) if self.coarse else [],
            "coarse_per_prompt": [scores(c) for c in self.coarse],
            "refined": [{**n.as_dict(), "share": self.shares.get(n.key, 1.0), "top_tokens": self.tokens.get(n.key, [])}
                        for n in self.refined],
            "layer_histogram": self.layer_histogram(),
            "suppress": self.suppress, "enhance": self.enhance,
            "comparison": self.comparison, "notes": list(self.notes),
        }


def one_token_target(tokenizer, text: str) -> Target:
    """A typed target that must be exactly one token (integrated gradients attribute one token's probability)."""
    target = resolve_target(tokenizer, text)
    if target.n_tokens > 1:
        raise VisitError(f"the target '{text}' is {target.n_tokens} tokens; knowledge neurons attribute one "
                         f"token's probability: type a one-token target (its first token is "
                         f"'{display_token(target.token)}')")
    return target


def coarse_set(attr: torch.Tensor, threshold: float = 0.3) -> list[NeuronScore]:
    """Neurons with ``attr >= threshold * attr.max()``, best first (empty when no attribution is positive).

    ``attr``: ``[n_layers, d_mlp]``."""
    top = float(attr.max())
    if not top > 0:
        return []
    layers, neurons = torch.nonzero(attr >= threshold * top, as_tuple=True)
    found = [NeuronScore(int(l), int(i), float(attr[l, i])) for l, i in zip(layers.tolist(), neurons.tolist())]
    return sorted(found, key=lambda n: -n.score)


def refine(attributions: Sequence[torch.Tensor], coarse: Sequence[Sequence[NeuronScore]], share: float = 0.5
           ) -> tuple[list[NeuronScore], dict[tuple[int, int], float]]:
    """Neurons in the coarse sets of more than ``share`` of the prompts, scored by their mean attribution,
    best first; and each one's fraction of coarse sets."""
    counts: dict[tuple[int, int], int] = {}
    for c in coarse:
        for n in c:
            counts[n.key] = counts.get(n.key, 0) + 1
    total = len(coarse)
    mean = torch.stack(list(attributions)).mean(0) if attributions else None
    keep = {k: v / total for k, v in counts.items() if v > share * total}
    refined = [NeuronScore(l, i, float(mean[l, i])) for (l, i) in keep]
    return sorted(refined, key=lambda n: (-keep[n.key], -n.score)), keep


def _cases(vm, items) -> list[tuple[str, int]]:
    """``(prompt, target id)`` pairs from strings (answer = the model's top prediction), ``(prompt, target)``
    pairs or :class:`visit.prompts.PromptCase` objects (a multi-token target uses its first token)."""
    out = []
    for item in items:
        if isinstance(item, str):
            ids, p = encode(vm, item, None)
            logits, _ = hooks.run(vm, ids)
            out.append((item, int(logits[0, p].argmax())))
            continue
        prompt, target = (item.prompt, item.target) if hasattr(item, "prompt") else item
        tid = target if isinstance(target, int) else resolve_target(vm.tokenizer, target).id
        out.append((prompt, int(tid)))
    return out


def default_unrelated(target_id: int, exclude: Sequence[str] = (), n: int = N_UNRELATED, tokenizer=None
                      ) -> list:
    """``n`` facts of the shipped prompt set whose answer differs from ``target_id``, one relation after
    another (round robin), excluding the prompts in ``exclude``."""
    by_relation: dict[str, list] = {}
    for case in load_prompt_file(default_prompt_file()):
        if case.prompt in exclude:
            continue
        if tokenizer is not None and resolve_target(tokenizer, case.target).id == target_id:
            continue
        by_relation.setdefault(case.relation or "", []).append(case)
    picked, depth = [], 0
    while len(picked) < n and any(len(v) > depth for v in by_relation.values()):
        for cases in by_relation.values():
            if len(cases) > depth and len(picked) < n:
                picked.append(cases[depth])
        depth += 1
    return picked


def manipulation_writes(neurons: Sequence[NeuronScore], factor: float, position: int, row: int | None = None
                        ) -> list[hooks.Intervention]:
    """Hook-layer writes that multiply ``neurons``' coefficients by ``factor`` at ``position`` (of batch
    ``row``; ``None``: every row): one ``scale`` per layer, nothing else."""
    by_layer: dict[int, list[int]] = {}
    for n in neurons:
        by_layer.setdefault(n.layer, []).append(n.neuron)
    rows = None if row is None else [row]
    return [hooks.scale(hook_name(l, "mlp.hook_post"), float(factor), rows=rows, positions=[position], index=(idx,))
            for l, idx in sorted(by_layer.items())]


def manipulate(vm, neurons: Sequence[NeuronScore], cases, factors: Sequence[float] = (0.0, 2.0)) -> list[dict]:
    """The correct answer's probability at each prompt's last position with ``neurons``' coefficients there
    multiplied by each factor (one pass per prompt: row 0 clean, then a row per factor).

    ``cases``: ``(prompt, target id)`` pairs. Returns per factor ``{"factor", "prompts": [{"prompt", "target",
    "before", "after", "change"}], "mean_before", "mean_after", "mean_change", "mean_relative_change"}``
    (``change = after - before``; the relative change averages ``change / before``)."""
    rows = [[] for _ in factors]
    for prompt, tid in cases:
        ids, p = encode(vm, prompt, None)
        batch = ids.reshape(1, -1).expand(1 + len(factors), -1)
        writes = [w for r, f in enumerate(factors) for w in manipulation_writes(neurons, f, p, row=r + 1)]
        logits, _ = hooks.run(vm, batch, write=writes)
        probs = torch.softmax(logits[:, p].float(), dim=-1)[:, tid].tolist()
        token = token_string(vm.tokenizer, tid)
        for r in range(len(factors)):
            rows[r].append({"prompt": prompt, "target": token, "before": probs[0], "after": probs[r + 1],
                            "change": probs[r + 1] - probs[0]})
    out = []
    for f, entries in zip(factors, rows):
        n = max(len(entries), 1)
        out.append({"factor": float(f), "prompts": entries,
                    "mean_before": sum(e["before"] for e in entries) / n,
                    "mean_after": sum(e["after"] for e in entries) / n,
                    "mean_change": sum(e["change"] for e in entries) / n,
                    "mean_relative_change": sum(e["change"] / e["before"] for e in entries if e["before"] > 0) / n})
    return out


def static_tokens(vm, neurons: Sequence[NeuronScore], k: int = 5) -> list[list[str]]:
    """The ``k`` tokens each neuron's output weight row (its value vector) raises most under the logit lens
    (``renorm``: the static projection the graph's neuron details show). Raw token strings."""
    if not neurons:
        return []
    rows = torch.stack([vm.weights.W_out(n.layer)[n.neuron] for n in neurons])
    res = LogitLens(vm).project(rows, mode="renorm", k=k, bottom=False)
    return [[token_string(vm.tokenizer, int(i)) for i in ids] for ids in res.top_ids]


def compare_with_logprob(vm, prompt: str, target_id: int, neurons: Sequence[NeuronScore], top: int | None = None
                         ) -> dict:
    """The knowledge neurons against the top ``top`` (default: as many) FFN neurons by log-probability
    increase at the prompt's last position: ``{"top", "logprob": [{"layer","neuron","score"}], "overlap":
    [[layer, neuron]], "jaccard", "in_top_100", "histogram": {"knowledge": [...], "logprob": [...]}}``."""
    tr = trace(vm, prompt)
    scores = ffn_neuron_logprob_increase(tr, int(target_id))  # [n_layers, d_mlp]
    k = max(1, int(top if top is not None else len(neurons)))
    d_mlp = scores.shape[1]
    order = scores.reshape(-1).topk(max(k, 100)).indices.tolist()
    ranked = [divmod(i, d_mlp) for i in order]
    best = [NeuronScore(l, i, float(scores[l, i])) for l, i in ranked[:k]]
    kn = {n.key for n in neurons}
    lp = {n.key for n in best}
    both = sorted(kn & lp)
    hist = {"knowledge": [0] * scores.shape[0], "logprob": [0] * scores.shape[0]}
    for key in kn:
        hist["knowledge"][key[0]] += 1
    for key in lp:
        hist["logprob"][key[0]] += 1
    return {"top": k, "logprob": [n.as_dict() for n in best], "overlap": [list(x) for x in both],
            "jaccard": len(both) / len(kn | lp) if kn | lp else 0.0,
            "in_top_100": len(kn & set(ranked[:100])), "histogram": hist}


def knowledge_neurons(vm, prompt: str, target: str | Target | None, paraphrases: Sequence[str] = (), steps: int = 20,
                      threshold: float = 0.3, share: float = 0.5, unrelated=None,
                      progress: Progress | None = None, compare: bool = True) -> KnowledgeNeurons:
    """The knowledge neurons of the fact ``prompt`` -> ``target`` (typed text that must be one token, a
    :class:`~visit.tokens.Target` such as an analysis's, or ``None``: the model's top prediction).

    ``paraphrases``: other prompts of the same fact (the refined set needs them); ``unrelated``: prompts of
    other facts for the suppress/enhance check (strings, ``(prompt, target)`` pairs or ``PromptCase``; default
    :func:`default_unrelated`; ``()`` for none); ``progress(done, total, note)`` after each pass of each prompt
    (it may raise to cancel). ``compare``: also rank the FFN neurons by log-probability increase.
    """
    steps = check_steps(steps)
    for name, value in (("threshold", threshold), ("share", share)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise VisitError(f"the {name} must be a number between 0 and 1, not {value!r}")
    prompts = [prompt, *paraphrases]
    for text in prompts:
        if not isinstance(text, str) or not text.strip():
            raise VisitError("a prompt is empty; type the fact's prompt (and non-empty paraphrases)")
    if target is None or target == "":
        ids, p = encode(vm, prompt, None)
        logits, _ = hooks.run(vm, ids)
        tgt = target_from_id(vm.tokenizer, int(logits[0, p].argmax()))
    elif isinstance(target, Target):
        tgt = target_from_id(vm.tokenizer, target.id)
    else:
        tgt = one_token_target(vm.tokenizer, target)
    for text in prompts:  # every prompt's length is checked before any long work starts
        encode(vm, text, None)

    def report(i):
        if progress is None:
            return None
        return lambda done, total, note: progress(i * total + done, len(prompts) * total,
                                                  f"prompt {i + 1}/{len(prompts)}, {note}")

    attributions, coarse = [], []
    for i, text in enumerate(prompts):
        attr = integrated_gradients(vm, text, tgt.id, steps=steps, progress=report(i))
        attributions.append(attr)
        coarse.append(coarse_set(attr, threshold))
    refined, shares = refine(attributions, coarse, share)
    related = [(text, tgt.id) for text in prompts]
    if unrelated is None:
        unrelated = default_unrelated(tgt.id, exclude=prompts, tokenizer=vm.tokenizer)
    others = _cases(vm, unrelated)
    rel = manipulate(vm, refined, related)
    unrel = manipulate(vm, refined, others) if others else [None, None]
    probs = [e["before"] for e in rel[0]["prompts"]]

    def effect(r, u, factor):
        return {"factor": factor, "neurons": len(refined), "related": r, "unrelated": u}

    kn = KnowledgeNeurons(tgt, prompts, coarse, refined, effect(rel[0], unrel[0], 0.0),
                          effect(rel[1], unrel[1], 2.0), steps, float(threshold), float(share), shares, probs,
                          attributions)
    if tgt.note:
        kn.notes.append(tgt.note)
    if not refined:
        kn.notes.append("no neuron is in the coarse sets of more than "
                        f"{share:.0%} of the prompts: nothing to suppress or enhance")
    kn.tokens = {n.key: toks for n, toks in zip(refined[:N_TOKENS], static_tokens(vm, refined[:N_TOKENS]))}
    if compare:
        kn.comparison = compare_with_logprob(vm, prompt, tgt.id, refined or coarse[0])
    return kn



def compare_with_causal_neuron(kn: KnowledgeNeurons, cn) -> dict:
    """Where the fact's knowledge neurons and log-prob-increase neurons sit relative to its causal neuron
    (:func:`visit.localization.causal_trace.causal_neuron`: the MLP state, token x layer, whose restoration
    brings the answer back most): ``{"token", "layer", "effect", "knowledge_in_layer", "logprob_in_layer",
    "knowledge_layers", "at_last_token"}``. Knowledge neurons are read at the last token, so they can meet the
    causal neuron only when it is at the last token too."""
    hist = (kn.comparison or {}).get("histogram", {})
    last = len(cn.trace.tokens) - 1
    return {"token": cn.token, "layer": cn.layer, "effect": cn.effect, "at_last_token": cn.token == last,
            "knowledge_in_layer": sum(1 for n in kn.refined if n.layer == cn.layer),
            "logprob_in_layer": hist.get("logprob", [0] * (cn.layer + 1))[cn.layer] if hist else None,
            "knowledge_layers": sorted({n.layer for n in kn.refined})}
