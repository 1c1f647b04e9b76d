"""``visit causal-trace``: ROME's corrupt-and-restore grid for one prompt, or its averages over a prompt file."""

from __future__ import annotations

import numpy as np

from visit.cli.options import add_model_options, load_from_args, progress_bar, write_json, write_text
from visit.errors import VisitError
from visit.localization.causal_study import causal_study
from visit.localization.causal_trace import KINDS, causal_trace
from visit.prompts import load_prompt_file
from visit.report.causal_trace import study_page, trace_page
from visit.tokens import display_token

SHADES = " .:-=+*#%@"


def register(sub) -> None:
    p = sub.add_parser("causal-trace", help="causal tracing: which states carry the fact (ROME, seed 001 3.3)")
    p.add_argument("prompt", nargs="?", default=None)
    p.add_argument("--subject", default=None, help="the subject as it appears in the prompt (e.g. 'Eiffel Tower')")
    p.add_argument("--target", default=None, help="target token (default: the clean run's top prediction)")
    p.add_argument("--kind", default="all", choices=[*KINDS, "all"], help="which states to restore")
    p.add_argument("--samples", type=int, default=10, help="corrupted runs (noise samples)")
    p.add_argument("--noise", type=float, default=None,
                   help="noise scale (default: 3 x the std of the subjects' input embeddings)")
    p.add_argument("--window", type=int, default=10, help="layers restored together for mlp/attn")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompts", default=None, help="TSV/JSONL prompt file with a subject column: average curves")
    p.add_argument("--limit", type=int, default=None, help="use the first N prompts of the file")
    p.add_argument("--known-only", action="store_true", help="keep facts whose target is the top-1 prediction")
    p.add_argument("--json", dest="json_path", default=None)
    p.add_argument("--html", dest="html_path", default=None)
    add_model_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    kinds = KINDS if args.kind == "all" else (args.kind,)
    if args.prompts is None and (args.prompt is None or args.subject is None):
        raise VisitError("give a prompt and --subject, or --prompts FILE")
    vm = load_from_args(args)
    if args.prompts is not None:
        return _run_study(vm, args, kinds)

    bar, update = progress_bar("causal trace")
    try:
        ct = causal_trace(vm, args.prompt, args.subject, args.target, kinds, args.samples, args.noise,
                          args.window, args.seed, progress=update)
    finally:
        bar.close()
    print(f"model: {vm.name}   target: '{display_token(ct.target.token)}'   p(clean) = {ct.p_clean:.4f}   "
          f"p(corrupted) = {ct.p_corrupted:.4f}   noise = {ct.noise:.4f}   samples = {ct.samples}")
    for kind in kinds:
        print(grid_text(ct, kind))
    if args.json_path:
        write_json(args.json_path, ct.to_json())
    if args.html_path:
        write_text(args.html_path, trace_page(ct, vm.name))
    return 0


def grid_text(ct, kind: str) -> str:
    """A text heatmap of the indirect effect (one shade per layer) and the peak cell."""
    ie = ct.indirect_effect(kind)
    top = max(float(np.nanmax(ie)), 1e-12)
    s0, s1 = ct.subject_range
    width = max(len(display_token(t)) for t in ct.tokens) + 2
    lines = [f"{kind}: indirect effect by token (rows) and layer (columns), darkest = {top:.4f}"]
    for i, tok in enumerate(ct.tokens):
        shades = "".join(SHADES[min(len(SHADES) - 1, max(0, int(v / top * (len(SHADES) - 1) + 0.5)))]
                         for v in np.nan_to_num(ie[i]))
        mark = "*" if s0 <= i < s1 else " "
        lines.append(f"{display_token(tok)[:width]:>{width}}{mark} |{shades}|")
    t, l = np.unravel_index(int(np.nanargmax(ie)), ie.shape)
    lines.append(f"peak: token {t} '{display_token(ct.tokens[t])}', layer {l}: p = {ct.kinds[kind][t, l]:.4f} "
                 f"(IE {ie[t, l]:+.4f})")
    return "\n".join(lines)


def _run_study(vm, args, kinds) -> int:
    cases = load_prompt_file(args.prompts)[: args.limit]
    bar, update = progress_bar("prompts")
    try:
        study = causal_study(vm, cases, kinds, args.samples, args.noise, args.window, args.known_only, update)
    finally:
        bar.close()
    s = study.summary()
    if not s["n"]:
        raise VisitError("no prompt could be traced: " + "; ".join(x["reason"] for x in study.skipped[:3]))
    print(f"model: {vm.name}   facts: {s['n']} (skipped {len(study.skipped)})   "
          f"mean p(clean) = {s['p_clean']:.4f}   mean p(corrupted) = {s['p_corrupted']:.4f}")
    buckets = study.buckets()
    for kind in kinds:
        print(f"\n{kind}: average indirect effect per layer (mean [95% interval])")
        for bucket, st in buckets[kind].items():
            if not st["n"]:
                continue
            mean = np.array(st["mean"])
            peak = int(mean.argmax())
            print(f"  {bucket:24s} n={st['n']:3d}  peak layer {peak:2d}: {mean[peak]:+.4f} "
                  f"[{st['low'][peak]:+.4f}, {st['high'][peak]:+.4f}]  max over layers")
    if args.json_path:
        write_json(args.json_path, study.to_json())
    if args.html_path:
        write_text(args.html_path, study_page(study, vm.name))
    return 0

