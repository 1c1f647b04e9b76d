"""``visit attribute PROMPT --target TOKEN``: the components that raise the target's log-probability most."""

from __future__ import annotations


from visit.attribution.baselines import METHODS
from visit.attribution.contrast import contrast
from visit.attribution.query import parse_neuron_spec, query_scores
from visit.attribution.query_attn import attn_query_ffn_neurons, attn_query_scores, top_attn_value_neurons
from visit.attribution.ranking import KINDS, ranked_components
from visit.cli.options import add_model_options, load_from_args, write_json
from visit.errors import VisitError
from visit.summary import top_predictions
from visit.ids import head_id, neuron_id, node_id
from visit.tokens import display_token, resolve_target
from visit.tracer import trace


def register(sub) -> None:
    p = sub.add_parser("attribute", help="log-probability increase of layers, heads and neurons for a target")
    p.add_argument("prompt")
    p.add_argument("--target", default=None, help='target token, e.g. " Paris" (default: the top prediction)')
    p.add_argument("--kind", default="ffn", choices=KINDS,
                   help="layer, head, ffn (neurons), attn (attention neurons per source position) or "
                        "wo (attention neurons summed over sources); default ffn")
    p.add_argument("--method", default="logp_increase", choices=METHODS,
                   help="scoring method; the baselines of 003 Table 2 apply to --kind ffn (default logp_increase)")
    p.add_argument("--top", type=int, default=20, help="how many components to list (default 20)")
    p.add_argument("--bottom", action="store_true", help="list the most negative scores instead")
    p.add_argument("--position", type=int, default=None, help="token position to attribute (default: the last)")
    p.add_argument("--json", dest="json_path", default=None, help="write the ranked list as JSON to this file")
    p.add_argument("--competitor", default=None,
                   help='also compare bs-values with this token (e.g. " London"): which sub-blocks separate them')
    p.add_argument("--query", default=None, metavar="NEURON",
                   help="also list what activates this neuron: an FFN neuron LAYER.NEURON (e.g. 27.846) or an "
                        "attention neuron LAYER.HEAD.dDIM (e.g. 20.3.d17): query layers, sources, neurons, heads")
    p.add_argument("--query-attn-top", type=int, default=None, metavar="N",
                   help="also list the FFN query neurons (per source position) of the target's top N attention "
                        "value neurons (003 section 4.2 uses 200), and the query layers")
    p.add_argument("--subkey", default="gate", choices=["gate", "up"],
                   help="for gated MLPs: score against the gate row (default) or the up row")
    add_model_options(p)
    p.set_defaults(func=run)


def format_entries(entries: list[dict]) -> str:
    lines = [f"{'#':>4}  {'component':<22}{'score':>11}  top tokens"]
    for n, e in enumerate(entries, start=1):
        name = e["node"]
        if e["kind"] in ("attn_neuron", "wo_neuron"):
            name = node_id(e["layer"], "head_dim", e["head"], e["index"]) + (f"@{e['position']}" if "position" in e else "")
        elif e["kind"] == "attn_layer":
            name = f"L{e['layer']} attention"
        elif e["kind"] == "ffn_layer":
            name = f"L{e['layer']} FFN"
        toks = ", ".join(display_token(t) for t in e["top_tokens"][:6])
        lines.append(f"{n:>4}  {name:<22}{e['score']:>11.4f}  {toks}")
    return "\n".join(lines)


def format_contrast(tr, target_id: int, target_token: str, competitor_text: str, top: int = 8) -> str:
    other = resolve_target(tr.vm.tokenizer, competitor_text)
    c = contrast(tr, target_id, other.id)
    t, k = display_token(target_token), display_token(other.token)
    lines = [f"bs({t}) - bs({k}): embedding {c['target'][0] - c['competitor'][0]:+.3f}, "
             f"final {c['log_odds']:+.3f}; the sub-blocks that move it most:"]
    order = sorted(range(len(c["block_diff"])), key=lambda i: -abs(c["block_diff"][i]))[:top]
    lines += [f"  {c['block_labels'][i]:<12}{c['block_diff'][i]:+9.3f}" for i in order]
    return "\n".join(lines)


def _source(tr, s) -> str:
    return f"@{s}({display_token(tr.tokens[s])})"


def format_query(tr, spec: str, which: str, top: int = 8) -> str:
    parsed = parse_neuron_spec(spec)
    if parsed[0] == "attn":
        return format_attn_query(tr, *parsed[1:], top=top)
    layer, neuron = parsed[1:]
    q = query_scores(tr, layer, neuron, which=which, top=top)
    lines = [f"query scores of {neuron_id(layer, neuron)} ({which} subkey; pre-activation {q['pre_activation']:.3f}):",
             "  layers:  " + ", ".join(f"{_part(e)} {e['score']:+.3f}" for e in q["layers"][:top]),
             "  FFN neurons:  " + ", ".join(f"{neuron_id(e['layer'], e['index'])} {e['score']:+.3f}" for e in q["ffn_neurons"]),
             "  attention subvalues:  " + ", ".join(
                 f"{head_id(e['layer'], e['head'])}@{e['position']}({display_token(tr.tokens[e['position']])}) {e['score']:+.3f}"
                 for e in q["attn_subvalues"])]
    return "\n".join(lines)


def _part(e) -> str:
    return "embedding" if e["part"] == "embedding" else f"{e['part']}{e['layer']}"


def format_attn_query(tr, layer: int, head: int, dim: int, top: int = 8) -> str:
    q = attn_query_scores(tr, layer, head, dim, top=top)
    lines = [f"query scores of attention neuron {node_id(layer, 'head_dim', head, dim)} (kv head {q['kv_head']}; z = {q['z']:+.4f}; "
             f"scores x sign(z), so + raises |z|; raw scores + constant {q['constant']:+.4f} = z):",
             "  layers:  " + ", ".join(f"{_part(e)} {e['score']:+.3f}" for e in q["layers"][:top]),
             "  sources:  " + ", ".join(f"{_source(tr, s)[1:]} {v:+.3f}" for s, v in enumerate(q["sources"])),
             "  FFN neurons (summed over sources; best source):  " + ", ".join(
                 f"{neuron_id(e['layer'], e['index'])} {e['score']:+.3f}{_source(tr, e['best_source'])}"
                 for e in q["ffn_neurons"]),
             "  heads (at the sources; best source):  " + ", ".join(
                 f"{head_id(e['layer'], e['head'])} {e['score']:+.3f}{_source(tr, e['best_source'])}"
                 for e in q["attn_heads"])]
    return "\n".join(lines)


def format_attn_query_top(tr, target_id: int, n_value: int, top: int = 20) -> str:
    if n_value < 1:
        raise VisitError(f"--query-attn-top wants a positive number of attention neurons, not {n_value}")
    neurons, weights = top_attn_value_neurons(tr, target_id, n_value)
    scores, info = attn_query_ffn_neurons(tr, neurons, weights, per_source=True, with_layers=True)
    d, S = tr.vm.dims, scores.shape[-1]
    vals, idx = scores.reshape(-1).topk(min(top, scores.numel()))
    lines = [f"FFN query neurons of the top {len(neurons)} attention value neurons (share of each value neuron's "
             f"log-prob increase, total {float(weights.sum()):+.3f}):",
             "  query layers:  " + ", ".join(f"{_part(e)} {e['score']:+.3f}" for e in info["layers"][:10]),
             f"  {'#':>4}  {'neuron':<14}{'source':<18}{'score':>9}"]
    for n, (v, i) in enumerate(zip(vals.tolist(), idx.tolist()), start=1):
        rest, s = divmod(i, S)
        layer, index = divmod(rest, d.d_mlp)
        lines.append(f"  {n:>4}  {neuron_id(layer, index):<14}{_source(tr, s)[1:]:<18}{v:>+9.4f}")
    return "\n".join(lines)


def run(args) -> int:
    if not args.prompt.strip():
        raise VisitError("the prompt is empty; type some text to attribute")
    if args.query:
        parse_neuron_spec(args.query)  # a bad spec fails before the model loads
    if args.query_attn_top is not None and args.query_attn_top < 1:
        raise VisitError(f"--query-attn-top wants a positive number of attention neurons, not {args.query_attn_top}")
    vm = load_from_args(args)
    tr = trace(vm, args.prompt, args.position)
    if args.target is None:
        top = top_predictions(tr, 1)[0]
        target_id, target_token, note = top["id"], top["token"], None
    else:
        target = resolve_target(vm.tokenizer, args.target)
        target_id, target_token, note = target.id, target.token, target.note
    entries = ranked_components(tr, target_id, args.kind, args.method, args.top, bottom=args.bottom)
    p = float(tr["logits"][tr.position].softmax(-1)[target_id])
    print(f"model: {vm.name}   position: {tr.position} ({display_token(tr.tokens[tr.position])})   "
          f"target: {display_token(target_token)} (id {target_id}, p={p:.4f})")
    if note:
        print(f"note: {note}")
    print(f"kind: {args.kind}   method: {args.method}\n")
    print(format_entries(entries))
    if args.competitor:
        print("\n" + format_contrast(tr, target_id, target_token, args.competitor))
    if args.query:
        print("\n" + format_query(tr, args.query, args.subkey))
    if args.query_attn_top is not None:
        print("\n" + format_attn_query_top(tr, target_id, args.query_attn_top, args.top))
    if args.json_path:
        write_json(args.json_path, entries)
    return 0
