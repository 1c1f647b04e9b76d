"""``visit ablate``: Yu & Ananiadou's Table 2 on a prompt file (zero each method's top-k, re-run)."""

from __future__ import annotations

import csv
import sys

from visit.attribution.evaluation import evaluate_methods, format_table
from visit.cli.options import add_model_options, load_from_args
from visit.errors import VisitError
from visit.prompts import default_prompt_file, load_prompt_file


def register(sub) -> None:
    p = sub.add_parser("ablate", help="zero the top-k components of each attribution method and compare "
                                      "MRR / probability / log-probability of the target (003 Table 2)")
    p.add_argument("--prompts", default=None,
                   help="prompt file: TSV 'prompt<TAB>target' or JSONL {\"prompt\",\"target\"} "
                        "(default: the shipped factual prompt set)")
    p.add_argument("--top", type=int, default=10, help="how many components each method zeroes (default 10)")
    p.add_argument("--kind", default="ffn", choices=["ffn", "head", "attn", "wo"],
                   help="ffn neurons (all eight methods), heads, attention neurons per source (attn) or "
                        "summed over sources (wo); the last three compare log-prob increase with random")
    p.add_argument("--limit", type=int, default=None, help="use only the first N prompts")
    p.add_argument("--seed", type=int, default=0, help="seed of the random baseline")
    p.add_argument("--csv", dest="csv_path", default=None, help="also write the table as CSV")
    add_model_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.top < 1:
        raise VisitError("--top must be at least 1")
    cases = load_prompt_file(args.prompts or default_prompt_file())
    if args.limit is not None:
        if args.limit < 1:
            raise VisitError("--limit must be at least 1")
        cases = cases[:args.limit]
    vm = load_from_args(args)

    def progress(done, total):
        print(f"\r{done}/{total} prompts", end="", file=sys.stderr, flush=True)

    rows = evaluate_methods(vm, cases, kind=args.kind, top=args.top, seed=args.seed, progress=progress)
    print(file=sys.stderr)
    print(f"model: {vm.name}   prompts: {len(cases)}   zeroed per method: top {args.top} {args.kind}")
    print(format_table(rows))
    if args.csv_path:
        try:
            with open(args.csv_path, "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        except OSError as exc:
            raise VisitError(f"cannot write {args.csv_path}: {exc.strerror}") from None
        print(f"wrote {args.csv_path}")
    return 0
