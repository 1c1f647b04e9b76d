"""``visit knowledge-neurons``: integrated-gradients knowledge neurons of one fact, or shared by a relation's facts.

One fact::

    visit knowledge-neurons "The capital of France is" --target " Paris" \\
        --paraphrases "France's capital city is" "The French capital is" [--steps 20] [--json kn.json]

A prompt file (TSV/JSONL with a relation column): the neurons shared by each relation's facts and their layer
histogram (seed 001 Figure 5, Table 2)::

    visit knowledge-neurons --prompts visit/data/factual_prompts.tsv [--limit-per-relation 5] [--json out.json]
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

from visit.cli.options import add_model_options, load_from_args, write_json
from visit.errors import VisitError
from visit.localization.causal_trace import causal_neuron
from visit.localization.integrated_gradients import check_steps
from visit.localization.kn_relations import relation_study
from visit.localization.knowledge_neurons import compare_with_causal_neuron, knowledge_neurons
from visit.prompts import load_prompt_file
from visit.ids import neuron_id
from visit.tokens import display_token


def register(sub) -> None:
    p = sub.add_parser("knowledge-neurons", help="knowledge neurons (integrated gradients over MLP neurons) of a "
                                                 "fact, or shared by the facts of each relation in a prompt file")
    p.add_argument("prompt", nargs="?", default=None, help="the fact's prompt (omit with --prompts)")
    p.add_argument("--target", default=None, help='the answer, one token (e.g. " Paris"; default: the top prediction)')
    p.add_argument("--paraphrases", nargs="*", default=[], metavar="P",
                   help="other prompts of the same fact (the refined set keeps neurons shared by them)")
    p.add_argument("--steps", type=int, default=20, help="integration steps m (default 20)")
    p.add_argument("--threshold", type=float, default=0.3, help="coarse set: attribution >= t x max (default 0.3)")
    p.add_argument("--share", type=float, default=0.5,
                   help="refined set: in the coarse sets of more than this share of the prompts (default 0.5)")
    p.add_argument("--top", type=int, default=20, help="how many neurons to print (default 20)")
    p.add_argument("--prompts", default=None, metavar="FILE",
                   help="study a prompt file (TSV 'prompt<TAB>target<TAB>relation' or JSONL) instead of one fact")
    p.add_argument("--limit-per-relation", type=int, default=None, metavar="N",
                   help="with --prompts: use only the first N facts of each relation")
    p.add_argument("--all", dest="keep_all", action="store_true",
                   help="with --prompts: keep facts the model does not answer (default: only its top-1 answers)")
    p.add_argument("--subject", default=None,
                   help="the subject in the prompt: also find the causal neuron (seed 001 3.3) and compare")
    p.add_argument("--json", dest="json_path", default=None, help="write the result as JSON to this file")
    add_model_options(p)
    p.set_defaults(func=run)


def _bar(desc: str):
    bar = tqdm(total=0, desc=desc, file=sys.stderr, leave=False)

    def progress(done, total, note=""):
        if bar.total != total:
            bar.total = total
        bar.n = done
        bar.set_postfix_str(note[:50], refresh=False)
        bar.refresh()

    return bar, progress


def _neuron(n) -> str:
    return neuron_id(n.layer, n.neuron) if hasattr(n, "layer") else neuron_id(n["layer"], n["neuron"])


def histogram_text(counts: list[int], width: int = 30) -> str:
    """One line per non-empty layer: ``L12  ####  4``."""
    top = max(counts, default=0)
    lines = [f"  L{l:<3}{'#' * max(1, round(width * c / top)):<{width}} {c}" for l, c in enumerate(counts) if c]
    return "\n".join(lines) if lines else "  (none)"


def format_fact(vm, kn, top: int) -> str:
    lines = [f"target '{display_token(kn.target.token)}' (id {kn.target.id}); "
             f"{len(kn.prompts)} prompt(s), m = {kn.steps}, t = {kn.threshold}, p = {kn.share}"]
    for text, prob, c in zip(kn.prompts, kn.probs, kn.coarse):
        lines.append(f"  p = {prob:.4f}  coarse {len(c):>3}  {text}")
    lines.append(f"refined knowledge neurons: {len(kn.refined)}")
    shown = kn.refined[:top]
    for n in shown:
        toks = kn.tokens.get(n.key, [])
        share = kn.shares.get(n.key, 1.0)
        lines.append(f"  {_neuron(n):<12}{n.score:>10.5f}  {share:>4.0%}  "
                     + ", ".join(display_token(t) for t in toks))
    if len(kn.refined) > top:
        lines.append(f"  ... {len(kn.refined) - top} more")
    lines.append("layers of the refined neurons:")
    lines.append(histogram_text(kn.layer_histogram()))
    for name, eff in (("suppress (x0)", kn.suppress), ("enhance (x2)", kn.enhance)):
        parts = []
        for side in ("related", "unrelated"):
            e = eff[side]
            if e:
                parts.append(f"{side} {e['mean_before']:.4f} -> {e['mean_after']:.4f} "
                             f"({e['mean_change']:+.4f}, {e['mean_relative_change']:+.1%})")
        lines.append(f"{name}: " + "; ".join(parts))
    c = kn.comparison
    if c:
        lines.append(f"vs the top {c['top']} FFN neurons by log-probability increase: {len(c['overlap'])} shared "
                     f"(Jaccard {c['jaccard']:.2f}); {c['in_top_100']} of the knowledge neurons in its top 100")
        lines.append("  log-prob-increase neurons per layer:")
        lines.append(histogram_text(c["histogram"]["logprob"]))
    lines += [f"note: {n}" for n in kn.notes]
    return "\n".join(lines)


def format_relations(result: dict) -> str:
    lines = [f"model {result['model']}: {result['n_kept']} of {result['n_facts']} facts studied, "
             f"m = {result['steps']}, t = {result['threshold']}, p = {result['share']} "
             f"({result['elapsed_s']:.0f} s)"]
    for r in result["relations"]:
        eff = r["effects"]
        lines.append(f"\n{r['relation']}: {r['n_facts']} facts; suppress related {eff['suppress']['related']:+.4f} "
                     f"unrelated {eff['suppress']['unrelated']:+.4f}; enhance related "
                     f"{eff['enhance']['related']:+.4f} unrelated {eff['enhance']['unrelated']:+.4f}")
        shared = ", ".join(f"{_neuron(e)} ({e['share']:.0%})" for e in r["shared"][:10]) or "none"
        lines.append(f"  shared by more than {result['share']:.0%} of the facts: {shared}")
        lines.append("  most shared: " + ", ".join(f"{_neuron(e)} ({e['share']:.0%})" for e in r["top_shared"]))
        lines.append("  coarse-set neurons per layer:")
        lines.append(histogram_text(r["histogram"]))
    return "\n".join(lines)


def _cases(args):
    cases = load_prompt_file(args.prompts)
    if args.limit_per_relation is not None:
        if args.limit_per_relation < 1:
            raise VisitError("--limit-per-relation must be at least 1")
        seen: dict = {}
        kept = []
        for case in cases:
            seen[case.relation] = seen.get(case.relation, 0) + 1
            if seen[case.relation] <= args.limit_per_relation:
                kept.append(case)
        cases = kept
    return cases


def _causal_neuron(vm, args, kn) -> dict:
    bar, progress = _bar("causal neuron")
    try:
        cn = causal_neuron(vm, args.prompt, args.subject, kn.target.id, progress=progress)
    finally:
        bar.close()
    c = compare_with_causal_neuron(kn, cn)
    print(f"causal neuron (the MLP state whose restoration helps most): token {c['token']} "
          f"'{display_token(cn.trace.tokens[c['token']])}', layer {c['layer']}, indirect effect {c['effect']:+.4f}; "
          f"knowledge neurons in that layer: {c['knowledge_in_layer']} (their layers: {c['knowledge_layers']}); "
          f"log-prob-increase neurons there: {c['logprob_in_layer']}")
    return c


def run(args) -> int:
    check_steps(args.steps)
    if args.top < 1:
        raise VisitError("--top must be at least 1")
    if args.prompts is None and args.prompt is None:
        raise VisitError("give a prompt (and --target), or --prompts FILE")
    if args.prompts is not None and args.prompt is not None:
        raise VisitError("give either a prompt or --prompts FILE, not both")
    cases = _cases(args) if args.prompts else None
    vm = load_from_args(args)
    if cases is not None:
        bar, progress = _bar("facts")
        try:
            result = relation_study(vm, cases, steps=args.steps, threshold=args.threshold, share=args.share,
                                    keep_correct=not args.keep_all, progress=progress)
        finally:
            bar.close()
        print(format_relations(result))
        data = result
    else:
        bar, progress = _bar("integrated gradients")
        try:
            kn = knowledge_neurons(vm, args.prompt, args.target, paraphrases=args.paraphrases, steps=args.steps,
                                   threshold=args.threshold, share=args.share, progress=progress)
        finally:
            bar.close()
        print(format_fact(vm, kn, args.top))
        data = kn.to_json()
        if args.subject:
            data["causal_neuron"] = _causal_neuron(vm, args, kn)
    if args.json_path:
        write_json(args.json_path, data)
    return 0
