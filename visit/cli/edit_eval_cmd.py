"""``visit edit-eval --records FILE --method rome|kn|cne``: seed 001 Table 3 (CounterFact metrics) for one editor
and the unedited model."""

from __future__ import annotations

from visit import limits

import csv

from visit.cli.options import add_model_options, load_from_args, progress_bar, write_json
from visit.editing.counterfact import METRICS, evaluate, format_table, load_records
from visit.editing.editors import EDITORS
from visit.errors import VisitError
from visit.generation.fluency import records_fluency


def register(sub) -> None:
    p = sub.add_parser("edit-eval", help="CounterFact evaluation of an editor (ES/EM/PS/PM/NS/NM/S, seed 001 "
                                         "Table 3)")
    p.add_argument("--records", default=None, help="CounterFact JSON (official counterfact.json format; default: "
                                                   "the shipped visit/data/counterfact_visit.json)")
    p.add_argument("--method", default="rome", choices=sorted(EDITORS))
    p.add_argument("--layer", type=int, default=None, help="edit layer (default: the model's shipped default)")
    p.add_argument("--key", default="averaged", choices=["averaged", "original"], help="ROME's key handling")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N records")
    p.add_argument("--fluency", type=int, default=0, metavar="N",
                   help="also score fluency (GE, CounterFact's generation entropy) on N greedy tokens per "
                        "generation prompt, before and after each edit (0, the default: off; ROME uses 100)")
    p.add_argument("--json", dest="json_path", default=None, help="write the result as JSON to this file")
    p.add_argument("--csv", dest="csv_path", default=None, help="write one row per record as CSV to this file")
    add_model_options(p)
    p.set_defaults(func=run)


def write_csv(path: str, evaluation) -> None:
    names = list(METRICS[1:])
    try:
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["case_id", "prompt", "subject", "old", "new", "layer"] + names +
                       [f"unedited_{m}" for m in names])
            for r in evaluation.records:
                q = r["request"]
                w.writerow([r["case_id"], q["template"], q["subject"], q["old"], q["new"], r["layer"]] +
                           [r["metrics"].get(m) for m in names] + [r["unedited"].get(m) for m in names])
    except OSError as exc:
        raise VisitError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"wrote {path}")


def run(args) -> int:
    fluency_tokens = limits.NEW_TOKENS.check(args.fluency, "--fluency tokens")
    records = load_records(args.records, args.limit)
    vm = load_from_args(args)
    fluency = (lambda vm_, recs: records_fluency(vm_, recs, fluency_tokens)) if fluency_tokens else None
    bar, progress = progress_bar("records")
    options = {"key": args.key} if args.method == "rome" else {}
    try:
        result = evaluate(vm, records, args.method, layer=args.layer, progress=progress, fluency=fluency,
                          **options)
    finally:
        bar.close()
    name = args.method + (f" ({args.key} key)" if args.method == "rome" else "")
    print(f"model: {vm.name}   records: {result.n}   layer: {result.layer}")
    print(format_table([(vm.name + " (unedited)", result.unedited, result.unedited_intervals),
                        (name, result.metrics, result.intervals)]))
    if fluency is not None:
        print(f"fluency GE ({fluency_tokens} tokens per generation prompt, bits): unedited "
              f"{result.unedited['GE']:.3f}, edited {result.metrics['GE']:.3f}")
    print(f"time per record: edit {result.seconds['edit_per_record']:.2f} s, "
          f"evaluation {result.seconds['eval_per_record']:.2f} s")
    if args.json_path:
        data = result.to_json()
        data["model"] = vm.name
        data["key"] = args.key if args.method == "rome" else None
        write_json(args.json_path, data)
    if args.csv_path:
        write_csv(args.csv_path, result)
    return 0
