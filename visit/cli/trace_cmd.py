"""``visit trace PROMPT``: the top next tokens and what each layer says about the target."""

from __future__ import annotations


from visit.cli.options import add_model_options, load_from_args, write_json
from visit.errors import VisitError
from visit.summary import layer_summary, top_predictions
from visit.tokens import display_token, resolve_target
from visit.tracer import trace


def register(sub) -> None:
    p = sub.add_parser("trace", help="trace one prompt: top tokens and the per-layer logit lens")
    p.add_argument("prompt")
    p.add_argument("--target", default=None, help='target token, e.g. " Paris" (default: the top prediction)')
    p.add_argument("--position", type=int, default=None, help="token position to read (default: the last)")
    p.add_argument("--json", dest="json_path", default=None, help="write the summary as JSON to this file")
    add_model_options(p)
    p.set_defaults(func=run)


def trace_summary(vm, prompt: str, target_text: str | None = None, position: int | None = None) -> dict:
    """The summary ``visit trace`` prints and writes (schema in the README)."""
    tr = trace(vm, prompt, position)
    top = top_predictions(tr, 5)
    if target_text is None:
        target_id, target_token, note = top[0]["id"], top[0]["token"], None
    else:
        target = resolve_target(vm.tokenizer, target_text)
        target_id, target_token, note = target.id, target.token, target.note
    return {
        "model": vm.name,
        "prompt": prompt,
        "tokens": tr.tokens,
        "position": tr.position,
        "target": {"token": target_token, "id": target_id, **({"note": note} if note else {})},
        "top": [{"token": t["token"], "id": t["id"], "prob": t["prob"]} for t in top],
        "layers": layer_summary(tr, target_id),
    }


def format_summary(s: dict) -> str:
    lines = [f"model: {s['model']}", "tokens: " + " | ".join(display_token(t) for t in s["tokens"]),
             f"position: {s['position']} ({display_token(s['tokens'][s['position']])})", "", "top next tokens:"]
    lines += [f"  {i + 1}. {display_token(t['token']):<16} {t['prob']:.4f}" for i, t in enumerate(s["top"])]
    target = s["target"]
    lines += ["", f"target: {display_token(target['token'])} (id {target['id']})"]
    if target.get("note"):
        lines.append(f"note: {target['note']}")
    lines += ["", f"{'layer':>5}  {'after attention: top token':<28}{'rank':>7}{'prob':>10}"
                  f"   {'after MLP: top token':<22}{'rank':>7}{'prob':>10}"]
    for row in s["layers"]:
        a, m = row["attn"], row["mlp"]
        lines.append(f"{row['layer']:>5}  {display_token(a['top_token'])[:26]:<28}{a['target_rank']:>7}"
                     f"{a['target_prob']:>10.4f}   {display_token(m['top_token'])[:20]:<22}"
                     f"{m['target_rank']:>7}{m['target_prob']:>10.4f}")
    return "\n".join(lines)


def run(args) -> int:
    if not args.prompt.strip():
        raise VisitError("the prompt is empty; type some text to trace")
    vm = load_from_args(args)
    summary = trace_summary(vm, args.prompt, args.target, args.position)
    print(format_summary(summary))
    if args.json_path:
        write_json(args.json_path, summary)
    return 0
