"""``visit edit "TEMPLATE {}" --subject S --new X``: apply one edit to a fresh model and show the top tokens before
and after, on the edit's prompt and on the prompts given. ``visit edit --batch FILE`` edits every request of a
CounterFact file (JSON list or JSONL) at once (MEMIT/AlphaEdit: one edit; the others: one edit each, computed on
the unedited model) or, with ``--sequential``, one after another, and shows each fact's objects before and
after."""

from __future__ import annotations

from visit import limits
from visit.cli.edit_eval_cmd import editor_options
from visit.cli.options import add_model_options, load_from_args, progress_bar, write_json
from visit.editing import EditStack
from visit.editing.before_after import before_after, make_request, object_probs
from visit.editing.counterfact import load_records
from visit.editing.editors import EDITORS
from visit.editing.modes import apply_batch, prepared_options
from visit.editing.request import check_against_model
from visit.errors import VisitError
from visit.generation import edits as speak
from visit.models.overlay import NONE, bind_session
from visit.tokens import display_token


def register(sub) -> None:
    p = sub.add_parser("edit", help="edit one fact (ROME, KN-E, CNE) and compare the top tokens before and after")
    p.add_argument("template", nargs="?", default=None,
                   help="the prompt with {} where the subject goes, e.g. 'The capital of {} is' "
                        "(a prompt without {} works when it contains the subject)")
    p.add_argument("--subject", default=None, help="the subject, e.g. 'France'")
    p.add_argument("--new", default=None, help="the new object, e.g. ' Rome' (a leading space is added if missing)")
    p.add_argument("--batch", default=None, help="edit every request of this CounterFact file (JSON list or JSONL) "
                                                 "instead of one")
    p.add_argument("--sequential", action="store_true", help="with --batch: edit the requests one after another, "
                                                             "each on top of the earlier ones")
    p.add_argument("--layers", default=None, help="MEMIT/AlphaEdit layer range, e.g. 1-5 (default: the model's)")
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
    if args.batch:
        return run_batch(args)
    if args.sequential:
        raise VisitError("--sequential is for --batch FILE")
    if args.template is None or args.subject is None or args.new is None:
        raise VisitError("give the template, --subject and --new (or --batch FILE)")
    n_generate = limits.NEW_TOKENS.check(args.generate, "--generate tokens")
    request = make_request(args.template, args.subject, args.new, args.old)
    options = {"layer": args.layer, **editor_options(args)}
    vm = load_from_args(args)
    if request.old is None:
        check_against_model(vm, request)
    bar, progress = progress_bar(f"{args.method} edit")
    stack = EditStack()
    options["progress"] = progress
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


def run_batch(args) -> int:
    """``--batch FILE``: every request of the file at once (or ``--sequential``), then each fact's objects."""

    if args.template is not None or args.subject is not None or args.new is not None or args.prompts:
        raise VisitError("--batch FILE takes the requests from the file: leave out the template, --subject, --new "
                         "and --prompts")
    requests = [r.request for r in load_records(args.batch)]
    options = editor_options(args)
    vm = load_from_args(args)
    bar, progress = progress_bar(f"{args.method} edits")
    stack = EditStack()
    try:
        options = prepared_options(vm, args.method, requests, layer=args.layer, progress=progress, **options)
        if args.sequential:
            for req in requests:
                stack.edit(vm, req, args.method, **options)
        else:
            apply_batch(vm, stack, requests, args.method, **options)
    finally:
        bar.close()
    print(f"model: {vm.name}")
    print(f"{len(requests)} requests, {'one after another' if args.sequential else 'at once'}: "
          f"{len(stack)} edit(s)")
    for e in stack:
        print(f"edit: {e.label()}")
    facts = []
    for req in requests:
        objects = [req.new] + ([req.old] if req.old else [])
        sides = {}
        for side, overlay in (("before", NONE), ("after", stack.overlay())):
            with bind_session(overlay):
                sides[side] = object_probs(vm, [req.prompt], objects)[0]
        facts.append({"request": req.to_json(), "prompt": req.prompt, **sides})
        print(f"\n{req.prompt}")
        print("  " + "   ".join(f"P({o}): {sides['before'][o]:.4f} -> {sides['after'][o]:.4f}"
                                for o in sides["before"]))
    if args.json_path:
        write_json(args.json_path, {"model": vm.name, "sequential": args.sequential,
                                    "edits": [e.to_json() for e in stack], "facts": facts})
    return 0
