"""``visit generate "PROMPT"``: what the model says next, greedy or sampled, optionally steered.

Prints the continuation and, per token, its probability and the top alternatives; ``--steer`` (repeatable, see
:mod:`visit.generation.steer`) also prints the unsteered continuation for comparison. ``--json FILE`` writes
``{"prompt", "tokens": [{"token", "id", "p", "top": [...]}], "text"}`` (with ``--steer``: also ``"steer"`` and
the unsteered generation as ``"original"``).
"""

from __future__ import annotations

from visit.cli.options import add_model_options, load_from_args, write_json
from visit.tokens import display_token
from visit.generation.generate import check_new_tokens, check_sampling, generate
from visit.generation.steer import steering
from visit.tracer import encode_prompt


def register(sub) -> None:
    p = sub.add_parser("generate", help="continue a prompt (greedy or sampled), optionally steering nodes")
    p.add_argument("prompt", help="the text to continue")
    p.add_argument("--max-new-tokens", type=int, default=32,
                   help="tokens to add (default 32; at most VISIT_MAX_NEW_TOKENS, default 64)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy; > 0: sample")
    p.add_argument("--top-p", type=float, default=1.0, help="sample from the smallest set of tokens with this "
                                                            "much probability (default 1: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling (default 0)")
    p.add_argument("--steer", action="append", default=[], metavar="SPEC",
                   help="steer a node while generating, e.g. L20.N123=x5, L7.H3=0, "
                        "'resid L12 += 4 * dir(L20.N123)', 'L7.H3=0 @ gen' (repeatable; docs/generation.md)")
    p.add_argument("--json", dest="json_path", default=None, help="write the generation as JSON to this file")
    add_model_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    check_sampling(args.temperature, args.top_p)
    vm = load_from_args(args)
    prompt_ids = encode_prompt(vm, args.prompt)[0].tolist()
    check_new_tokens(vm, len(prompt_ids), args.max_new_tokens)
    steer = steering(vm, args.steer, prompt_ids)  # every spec checked before anything runs
    options = dict(temperature=args.temperature, top_p=args.top_p, seed=args.seed)
    original = generate(vm, args.prompt, args.max_new_tokens, **options) if steer else None
    result = generate(vm, args.prompt, args.max_new_tokens, writes=steer.writes, **options)
    print(f"model: {vm.name}")
    if original is not None:
        print(f"original: {args.prompt}{original.text}")
        print(f"steered ({'; '.join(steer.specs)}): {args.prompt}{result.text}")
    else:
        print(f"{args.prompt}{result.text}")
    print(f"\n{'#':>3}  {'token':<20}{'p':>8}  top 5")
    for i, tok in enumerate(result.tokens):
        top = "  ".join(f"{display_token(t['token'])[:12]} {t['p']:.3f}" for t in tok.top)
        print(f"{i:>3}  {display_token(tok.token)[:20]:<20}{tok.p:>8.4f}  {top}")
    if args.json_path:
        data = result.to_json()
        if original is not None:
            data.update(steer=steer.specs, original=original.to_json())
        write_json(args.json_path, data)
    return 0
