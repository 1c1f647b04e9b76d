"""``visit study ln|alignment|regularization``: VISIT's analyses over a prompt set."""

from __future__ import annotations

from visit.analyses.regularization import strongest
from visit.analyses.study import run_study
from visit.cli.options import add_model_options, load_from_args
from visit.errors import VisitError
from visit.prompts import default_prompt_file, load_prompt_file
from visit.report.analyses import write_study_html, write_study_json
from visit.ids import neuron_id
from visit.tokens import display_token


def register(sub) -> None:
    p = sub.add_parser("study", help="run an analysis over a prompt set (layer norm, alignment, regularization)")
    p.add_argument("studies", nargs="+", choices=("ln", "alignment", "regularization"), metavar="STUDY",
                   help="ln, alignment and/or regularization")
    p.add_argument("--prompts", default=None,
                   help="TSV (prompt<TAB>target[<TAB>relation]) or JSONL file (default: the shipped factual set)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N prompts")
    p.add_argument("--all", dest="keep_all", action="store_true",
                   help="keep every prompt, not only those the model answers correctly")
    p.add_argument("--k", type=int, default=50, help="top-k size for sim_k (alignment; default 50)")
    p.add_argument("--top-n", type=int, default=100,
                   help="regularization: a layer's N most activated neurons (default 100)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="regularization: flag neurons in the top N on more than this share of prompts (0.5)")
    p.add_argument("--html", dest="html_path", default=None, help="write a standalone HTML report here")
    p.add_argument("--json", dest="json_path", default=None, help="write the results as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    path = args.prompts or default_prompt_file()
    cases = load_prompt_file(path)
    if args.limit is not None:
        if args.limit < 1:
            raise VisitError("--limit must be at least 1")
        cases = cases[:args.limit]
    if not 0 <= args.threshold < 1:
        raise VisitError("--threshold must be in [0, 1)")
    if args.k < 1 or args.top_n < 1:
        raise VisitError("--k and --top-n must be at least 1")
    vm = load_from_args(args)
    options = {"alignment": {"k": args.k}, "regularization": {"top_n": args.top_n, "threshold": args.threshold}}
    result = run_study(vm, cases, args.studies, keep_correct=not args.keep_all, progress=not args.quiet,
                       options=options, source=str(path))
    print(result.summary())
    for name in result.studies:
        print(format_result(name, result.results[name]))
    if args.json_path:
        print(f"wrote {write_study_json(result, args.json_path)}")
    if args.html_path:
        print(f"wrote {write_study_html(result, args.html_path)}")
    return 0


MAX_NEURONS_SHOWN = 30


def _tokens(items, n=8) -> str:
    return ", ".join(display_token(i["token"]) for i in items[:n])


def format_result(name: str, res: dict) -> str:
    lines = [""]
    if name == "ln":
        for mode in res["modes"]:
            kinds = res["by_mode"][mode]["kinds"]
            lines.append(f"layer norm filter (lens {mode}), mean over {res['n_prompts']} prompts and all layers:")
            for kind in ("ln1", "ln2", "final"):
                k = kinds[kind]
                lines.append(f"  {kind:<5} gains: {_tokens(k['gained'])}")
                lines.append(f"  {'':<5} loses: {_tokens(k['lost'])}")
                if "correlation_with_control" in k:
                    lines.append(f"  {'':<5} correlation with the random control: {k['correlation_with_control']:.2f}")
    elif name == "alignment":
        lines.append(f"alignment (sim_{res['k']}), mean over {res['n_prompts']} prompts:")
        lines.append(f"{'layer':>5} {'head~attn':>10} {'head~block':>11} {'head~final':>11} "
                     f"{'top head~attn':>14} {'mem1~head':>10} {'src prob':>10}")
        for l in res["layers"]:
            lines.append(f"{l:>5} {res['heads_vs']['attn'][l]:>10.3f} {res['heads_vs']['block'][l]:>11.3f} "
                         f"{res['heads_vs']['final'][l]:>11.3f} {res['by_norm_rank']['attn'][l][0]:>14.3f} "
                         f"{res['memory_vs_head'][l][0]:>10.3f} {res['source_token_prob'][l]:>10.2e}")
    elif name == "regularization":
        lines.append(f"regularization neurons (top {res['top_n']} by {res['by']} coefficient in more than "
                     f"{res['threshold']:.0%} of {res['n_prompts']} prompts): {len(res['neurons'])}; per layer "
                     + " ".join(str(c) for c in res["per_layer_count"]))
        shown = strongest(res["neurons"], min_share=0.0, per_layer=2)[:MAX_NEURONS_SHOWN]
        if len(shown) < len(res["neurons"]):
            lines.append(f"the {len(shown)} most consistent (at most 2 per layer; all of them in --json/--html):")
        for n in shown:
            lines.append(f"  {neuron_id(n['layer'], n['neuron']):<{9 + len(str(n['layer']))}} share {n['share']:.2f}  norm {n['norm']:.2f} "
                         f"(layer median {n['layer_median_norm']:.2f})  entropy {n['entropy']:.2f} "
                         f"(median {n['layer_median_entropy']:.2f})  top: "
                         + ", ".join(display_token(t) for t in n["top"][:6]))
    return "\n".join(lines)
