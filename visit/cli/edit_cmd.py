"""``visit edit "TEMPLATE {}" --subject S --new X``: apply one edit to a fresh model and show the top tokens before
and after, on the edit's prompt and on the prompts given."""

from __future__ import annotations

from visit.cli.options import add_model_options, load_from_args, progress_bar, write_json
from visit.editing import EditStack
from visit.editing.before_after import before_after, make_request
from visit.editing.editors import EDITORS
from visit.editing.request import check_against_model
from visit.errors import VisitError
from visit.tokens import display_token
from visit import limits
from visit.generation import edits as speak


def register(sub) -> None:
    p = sub.add_parser("edit", help="edit one fact (ROME, KN-E, CNE) and compare the top tokens before and after")
    p.add_argument("template", help="the prompt with {} where the subject goes, e.g. 'The capital of {} is' "
                                    "(a prompt without {} works when it contains the subject)")
    p.add_argument("--subject", required=True, help="the subject, e.g. 'France'")
    p.add_argument("--new", required=True, help="the new object, e.g. ' Rome' (a leading space is added if missing)")
    p.add_argument("--old", default=None, help="the old (true) object (KN-E/CNE need it; default: the model's "
                                                "top prediction)")
    p.add_argument("--method", default="rome", choices=sorted(EDITORS), help="editing method (default rome)")
    p.add_argument("--layer", type=int, default=None, help="edit layer (default: the model's shipped default)")
    p.add_argument("--key", default="averaged", choices=["averaged", "original"],
                   help="ROME's key handling: averaged (r-ROME, default) or original")
    p.add_argument("--prompts", nargs="*", default=[], help="more prompts to compare (paraphrases, neighbours)")
    p.add_argument("--top", type=int, default=5, help="top tokens shown per prompt (default 5)")
    p.add_argument("--generate", type=int, default=0, metavar="N",
                   help="also show the greedy continuation (N tokens) of each prompt before and after the edit")
    p.add_argument("--json", dest="json_path", default=None, help="write before/after as JSON to this file")
    add_model_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if not 1 <= args.top <= 100:
        raise VisitError("--top must be between 1 and 100")

    n_generate = limits.NEW_TOKENS.check(args.generate, "--generate tokens")
    request = make_request(args.template, args.subject, args.new, args.old)
    vm = load_from_args(args)
    if request.old is None:
        check_against_model(vm, request)
    bar, progress = progress_bar(f"{args.method} edit")
    stack = EditStack()
    options = {"layer": args.layer, "progress": progress}
    if args.method == "rome":
        options["key"] = args.key
    try:
        edit = stack.edit(vm, request, args.method, **options)
    finally:
        bar.close()
    rows = before_after(vm, request, args.prompts, before=None, after=stack.overlay(), k=args.top)
    print(f"model: {vm.name}")
    print(f"edit: {edit.label()}")
    info = edit.info
    print("info: " + ", ".join(f"{k}={v}" for k, v in info.items() if not isinstance(v, (list, dict))))
    for row in rows:
        b, a, pb, pa = row["before"]["top"], row["after"]["top"], row["before"]["objects"], row["after"]["objects"]
        print(f"\n{row['prompt']}")
        print(f"  {'before':<32}{'after':<32}")
        for x, y in zip(b, a):
            print(f"  {display_token(x['token'])[:20]:<22}{x['prob']:>8.4f}  {display_token(y['token'])[:20]:<22}"
                  f"{y['prob']:>8.4f}")
        print("  " + "   ".join(f"P({o}): {pb[o]:.4f} -> {pa[o]:.4f}" for o in pb))
    spoken = speak.continuations(vm, [r["prompt"] for r in rows], None, stack.overlay(), n_generate) \
        if n_generate else []
    for row in spoken:
        print(f"\n{row['prompt']}\n  before: {row['before'].text!r}\n  after:  {row['after'].text!r}")
    if args.json_path:
        write_json(args.json_path, {"model": vm.name, "edit": edit.to_json(),
                                    "prompts": [{"prompt": r["prompt"], "before": r["before"]["top"],
                                                 "after": r["after"]["top"], "objects_before": r["before"]["objects"],
                                                 "objects_after": r["after"]["objects"]} for r in rows],
                                    "continuations": speak.to_json(spoken)})
    return 0
