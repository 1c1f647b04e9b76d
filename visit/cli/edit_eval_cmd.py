"""``visit edit-eval --records FILE --method rome|kn|cne|memit|alphaedit [--mode independent|batch|sequential]``:
seed 001 Table 3 (CounterFact metrics) for one editor and the unedited model; in sequential mode also the health
curve (the metrics after every k-th edit; :mod:`visit.editing.modes`)."""

from __future__ import annotations

import csv

from visit import limits

from visit.cli.options import add_model_options, load_from_args, progress_bar, write_json, write_text
from visit.editing.counterfact import METRICS, format_table, load_records
from visit.editing.editors import EDITORS, editor
from visit.editing.modes import evaluate_mode, format_curve
from visit.errors import VisitError
from visit.generation.fluency import records_fluency
from visit.report.edit_eval import edit_eval_html


def register(sub) -> None:
    p = sub.add_parser("edit-eval", help="CounterFact evaluation of an editor (ES/EM/PS/PM/NS/NM/S, seed 001 "
                                         "Table 3)")
    p.add_argument("--records", default=None, help="CounterFact JSON (official counterfact.json format; default: "
                                                   "the shipped visit/data/counterfact_visit.json)")
    p.add_argument("--method", default="rome", choices=sorted(EDITORS))
    p.add_argument("--layer", type=int, default=None, help="edit layer (default: the model's shipped default)")
    p.add_argument("--key", default="averaged", choices=["averaged", "original"], help="ROME's key handling")
    p.add_argument("--layers", default=None, help="MEMIT/AlphaEdit layer range, e.g. 1-5 (default: the model's)")
    p.add_argument("--mode", default="independent", choices=["independent", "batch", "sequential"],
                   help="independent: each record edited, scored, restored (default); batch: all records edited "
                        "at once, then scored; sequential: edited one after another, scored every --every edits")
    p.add_argument("--every", type=int, default=None, help="sequential mode: score after every K edits (default: "
                                                           "about ten points) and after the last")
    p.add_argument("--html", dest="html_path", default=None, help="write the tables (and the health curve) as HTML")
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


def editor_options(args) -> dict:
    """The method-specific options the command line gives (ROME's key, MEMIT/AlphaEdit's layers)."""
    batched = getattr(editor(args.method), "batched", False)
    if args.layers and not batched:
        raise VisitError(f"--layers is for memit and alphaedit; {args.method} takes --layer")
    if args.method == "rome":
        return {"key": args.key}
    return {"layers": args.layers} if args.layers else {}


def run(args) -> int:
    fluency_tokens = limits.NEW_TOKENS.check(args.fluency, "--fluency tokens")
    if args.every is not None and args.mode != "sequential":
        raise VisitError("--every is for --mode sequential")
    if args.every is not None and args.every < 1:
        raise VisitError(f"--every must be at least 1, not {args.every}")
    records = load_records(args.records, args.limit)
    options = editor_options(args)
    vm = load_from_args(args)
    fluency = (lambda vm_, recs: records_fluency(vm_, recs, fluency_tokens)) if fluency_tokens else None
    bar, progress = progress_bar("records")
    try:
        result = evaluate_mode(vm, records, args.method, args.mode, layer=args.layer, every=args.every,
                               progress=progress, fluency=fluency, **options)
    finally:
        bar.close()
    name = args.method + (f" ({args.key} key)" if args.method == "rome" else "") + \
        ("" if args.mode == "independent" else f", {args.mode}")
    print(f"model: {vm.name}   records: {result.n}   layer: {result.layer}   mode: {args.mode}")
    print(format_table([(vm.name + " (unedited)", result.unedited, result.unedited_intervals),
                        (name, result.metrics, result.intervals)]))
    if fluency is not None and result.metrics.get("GE") is not None:
        print(f"fluency GE ({fluency_tokens} tokens per generation prompt, bits): unedited "
              f"{result.unedited['GE']:.3f}, edited {result.metrics['GE']:.3f}")
    if args.mode == "independent":
        print(f"time per record: edit {result.seconds['edit_per_record']:.2f} s, "
              f"evaluation {result.seconds['eval_per_record']:.2f} s")
    else:
        print(f"editing: {result.seconds['edit_total']:.1f} s ({result.seconds['edit_per_record']:.2f} s per "
              f"record); whole run {result.seconds['total']:.1f} s")
    if args.mode == "sequential":
        print("health curve (records edited so far, scored on the model after that many edits):")
        print(format_curve(result.curve))
    if args.json_path:
        data = result.to_json()
        data["model"] = vm.name
        data["key"] = args.key if args.method == "rome" else None
        write_json(args.json_path, data)
    if args.csv_path:
        write_csv(args.csv_path, result)
    if args.html_path:

        write_text(args.html_path, edit_eval_html(result.to_json(), vm.name))
    return 0
