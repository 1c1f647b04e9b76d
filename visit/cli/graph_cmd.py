"""``visit graph PROMPT``: build the VISIT flow graph; write the offline HTML report and/or the JSON."""

from __future__ import annotations

from pathlib import Path

from visit.cli.options import add_model_options, load_from_args, write_json
from visit.errors import VisitError
from visit.graph.settings import GraphSettings, parse_layers, normalise_flags
from visit.pipeline import analyze, export_html, graph_json
from visit.ids import spine_id
from visit.tokens import display_token


def register(sub) -> None:
    p = sub.add_parser("graph", help="the VISIT flow graph of one prompt (HTML report, JSON)")
    p.add_argument("prompt")
    p.add_argument("--target", default=None, help='target token, e.g. " Paris" (default: the top prediction)')
    p.add_argument("--position", type=int, default=None, help="token position to read (default: the last)")
    p.add_argument("--layers", default=None, help="inclusive layer range, e.g. 20-29 (default: all)")
    p.add_argument("--heads", type=int, default=None, help="heads per layer, by output norm or attribution (default: all)")
    p.add_argument("--memory", type=int, default=3, help="memory values per head, by attention (default 3)")
    p.add_argument("--wo", type=int, default=5, help="W_O neurons per layer, by |z| (default 5)")
    p.add_argument("--mlp-top", type=int, default=5, help="top MLP neurons per layer (default 5)")
    p.add_argument("--mlp-bottom", type=int, default=5, help="bottom MLP neurons per layer (default 5)")
    p.add_argument("--min-edge-score", type=float, default=0.0, help="drop weaker coefficient/summation edges")
    p.add_argument("--no-norms", action="store_true", help="hide the layer-norm nodes (edges bridged)")
    p.add_argument("--prune-by", choices=("activation", "attribution"), default="activation",
                   help="rank heads and MLP neurons by activation (VISIT; default) or by the exact increase "
                        "of the target's log-probability")
    p.add_argument("--include", action="append", default=[], metavar="NODE_ID",
                   help="force a node in, e.g. L5.N123 or L5.H3.mem2 (repeatable)")
    p.add_argument("--highlight", action="append", default=[], metavar="NODE_ID", help="mark a node (repeatable)")
    p.add_argument("--flag", action="append", default=[], metavar="L5.N12=label",
                   help="flag an MLP neuron with a label, drawn with its own marker (repeatable)")
    p.add_argument("--html", dest="html_path", default=None, help="write the standalone HTML report here")
    p.add_argument("--json", dest="json_path", default=None, help="write the graph as JSON here")
    add_model_options(p)
    p.set_defaults(func=run)


def settings_from_args(args) -> GraphSettings:
    start, end = parse_layers(args.layers)
    flags = {}
    for item in args.flag:
        key, sep, label = item.partition("=")
        flags[key] = label if sep else "flagged"
    return GraphSettings(layer_start=start, layer_end=end, heads_per_layer=args.heads, memory_per_head=args.memory,
                         wo_neurons=args.wo, mlp_top=args.mlp_top, mlp_bottom=args.mlp_bottom,
                         min_edge_score=args.min_edge_score, show_norms=not args.no_norms, prune_by=args.prune_by,
                         include=tuple(args.include), highlight=tuple(args.highlight),
                         flagged_neurons=normalise_flags(flags))


def _check_writable(path: str | None) -> None:
    if path is not None and not Path(path).expanduser().resolve().parent.is_dir():
        raise VisitError(f"cannot write {path}: the folder does not exist")


def run(args) -> int:
    settings = settings_from_args(args)
    for path in (args.html_path, args.json_path):
        _check_writable(path)
    vm = load_from_args(args)
    analysis = analyze(vm, args.prompt, args.target, args.position, settings)
    g, tr = analysis.graph, analysis.trace
    layers = settings.layers(vm.dims.n_layers)
    last = g.nodes.get(spine_id(layers[-1], "resid_post"), {})
    print(f"model: {vm.name}")
    print(f"position: {tr.position} ('{display_token(tr.tokens[tr.position])}'), "
          f"target: '{display_token(analysis.target.token)}' (id {analysis.target.id})")
    print(f"layers {layers[0]}-{layers[-1]}: {g.number_of_nodes()} nodes, {g.number_of_edges()} edges")
    if last.get("label") is not None:
        print(f"last node {spine_id(layers[-1], 'resid_post')} says '{display_token(last['label'])}'; "
              f"target rank {last['target_rank']}, p={last['target_prob']:.4f}")
    for note in analysis.notes:
        print(f"note: {note}")
    if args.html_path:
        export_html(analysis, args.html_path)
        print(f"wrote {args.html_path}")
    if args.json_path:
        write_json(args.json_path, graph_json(analysis), indent=None)
    return 0
