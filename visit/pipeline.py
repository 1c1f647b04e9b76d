"""Prompt -> :class:`Analysis` (trace, target, flow graph, figures): what the app and the CLI show.

- :func:`analyze` traces one prompt and builds the VISIT flow graph and its figure;
- :func:`node_details` is what a click on a node opens (raw strings: the UI escapes);
- :func:`graph_json` is the graph as plain data; :func:`export_html` the standalone offline report.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from html import escape
from pathlib import Path
from typing import Callable, Sequence

import networkx as nx
import plotly.graph_objects as go
import torch

from visit.curation import curate, forced_ids
from visit.errors import VisitError
from visit.graph import GraphSettings, build_graph
from visit.graph.groups import EMPTY, Curation
from visit.hooks import Intervention
from visit.hooks.names import hook_name
from visit.lens import LogitLens
from visit.models.overlay import weights_of
from visit.render import graph_figure, layout, strip_figure
from visit.report import render_report
from visit.summary import layer_summary, top_predictions
from visit.tokens import Target, display_token, resolve_target, target_from_id, token_string
from visit.tracer import Trace, trace as run_trace

DETAIL_K = 20


@dataclass
class Analysis:
    trace: Trace
    target: Target
    settings: GraphSettings
    top_predictions: list[dict]  # the model's own top-10 next tokens [{"token", "id", "prob"}]
    layer_strip: list[dict]  # visit.summary.layer_summary
    graph: nx.DiGraph
    figure: go.Figure
    notes: list[str]
    strip_figure: go.Figure | None = None
    vectors: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)  # node id -> d_model vector
    norm_inputs: dict[str, str] = field(default_factory=dict, repr=False)  # norm node -> its input node
    lens: LogitLens | None = field(default=None, repr=False)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    # results that panels computed for this analysis (e.g. "causal_trace": CausalTrace); report sections read them
    extras: dict[str, object] = field(default_factory=dict, repr=False)
    drawn_layers: tuple[int, int] | None = None  # the layers the graph covers (a first view: fewer than asked)
    # the user's pins, groups and labels (visit.curation): ``graph`` is drawn as it shows it, ``uncurated`` is the
    # graph as built (None when nothing is curated); every re-draw applies it again
    curation: Curation = EMPTY
    uncurated: nx.DiGraph | None = field(default=None, repr=False)

    @property
    def partial(self) -> bool:
        """True for a first view: the graph covers fewer layers than ``settings`` ask for (see :func:`complete`)."""
        if self.drawn_layers is None:
            return False
        layers = self.settings.layers(self.vm.dims.n_layers)
        return self.drawn_layers[0] > layers[0]

    @property
    def vm(self):
        return self.trace.vm

    @property
    def prompt(self) -> str:
        return self.trace.prompt


def check_finite(tr: Trace) -> None:
    """Raise :class:`VisitError` naming the first traced value (in forward order) holding NaN or inf.

    A model whose forward pass overflows (fp16 weights, a broken checkpoint) would otherwise fail deep in
    ranking code with an unrelated message, or draw a graph of garbage."""
    for name, value in tr.values.items():
        if not (isinstance(value, torch.Tensor) and value.is_floating_point()):
            continue
        if bool(torch.isfinite(value.sum())) or bool(torch.isfinite(value).all()):  # a sum is 20x cheaper
            continue
        kind = "NaN" if bool(torch.isnan(value).any()) else "infinite values"
        raise VisitError(f"the forward pass produced {kind} at {name}: this model's outputs cannot be "
                         f"analysed (a broken checkpoint, or a dtype too narrow: try --dtype float32)")


def pick_target(vm, target_text: str | None, top: list[dict], target_id: int | None = None) -> Target:
    """A target given by id, a typed target, or (neither) the model's top prediction."""
    if target_id is not None:
        return target_from_id(vm.tokenizer, target_id)
    if target_text is None or target_text == "":
        return Target(top[0]["id"], top[0]["token"], top[0]["token"], 1)
    return resolve_target(vm.tokenizer, target_text)


def analyze(vm, prompt: str, target_text: str | None = None, position: int | None = None,
            settings: GraphSettings | None = None, target_id: int | None = None,
            interventions: Sequence[Intervention] = (), first_view: int | None = None,
            tracer: Callable[..., Trace] | None = None) -> Analysis:
    """Trace ``prompt`` and build its flow graph at ``position`` (default: the last token) for the
    target (``target_id`` exactly, else ``target_text`` resolved, else the model's top prediction).

    ``interventions`` (hook-layer writes, :mod:`visit.hooks`) change the traced pass: the graph then shows the
    changed model (e.g. a head zeroed).

    ``first_view=N`` builds the graph of only the last ``N`` layers of the range (what the app shows first;
    about 1/8 of the work on a 30-layer model): ``analysis.partial`` is then True and :func:`complete` adds the
    rest without a new forward pass. Node positions are those of the whole graph either way.

    ``tracer`` (default :func:`visit.tracer.trace`, same signature) runs the forward pass: the app passes a
    :class:`visit.batching.TraceBatcher`'s ``trace``, so concurrent sessions share one padded pass."""
    settings = (settings or GraphSettings()).validated(vm.dims.n_layers)
    t0 = time.perf_counter()
    tr = (tracer or run_trace)(vm, prompt, position, interventions)  # on this thread's weights (its session's edits)
    check_finite(tr)
    with weights_of(tr):  # what follows reads the weights the trace was computed on (visit.models.overlay)
        return _analyze(vm, tr, t0, target_text, settings, target_id, first_view)


def _analyze(vm, tr, t0, target_text, settings, target_id, first_view) -> Analysis:
    t1 = time.perf_counter()
    top = top_predictions(tr, 10)
    target = pick_target(vm, target_text, top, target_id)
    notes = [target.note] if target.note else []
    lens = LogitLens.for_trace(tr)
    strip = layer_summary(tr, target.id, lens)
    strip_fig = strip_figure(strip, target.token, vm.dims.d_vocab)
    t2 = time.perf_counter()
    base = Analysis(tr, target, settings, top, strip, nx.DiGraph(), go.Figure(), notes, strip_fig, lens=lens,
                    timings={"trace": t1 - t0, "summary": t2 - t1})
    out = redraw(base, settings, first_view=first_view)
    out.timings["total"] = time.perf_counter() - t0
    return out


def redraw(analysis: Analysis, settings: GraphSettings | None = None, first_view: int | None = None) -> Analysis:
    """A new :class:`Analysis` of the same trace and target with other graph settings: no forward pass.

    Pruning knobs, the layer range, included, highlighted and flagged nodes all change only the graph; node
    lens rows are kept per trace (:mod:`visit.graph.builder`), so only nodes never drawn before are projected.
    ``first_view``: as in :func:`analyze`. Runs on the weights the trace was computed on."""
    with weights_of(analysis.trace):
        return _redraw(analysis, settings, first_view)


def _redraw(analysis: Analysis, settings: GraphSettings | None, first_view: int | None) -> Analysis:
    vm, tr, target = analysis.vm, analysis.trace, analysis.target
    settings = (settings or analysis.settings).validated(vm.dims.n_layers)
    layers = settings.layers(vm.dims.n_layers)
    drawn = settings
    if first_view and len(layers) > first_view:
        drawn = replace(settings, layer_start=layers[-first_view], layer_end=layers[-1])
    t2 = time.perf_counter()
    curation = analysis.curation
    if curation.changes_graph():  # pinned and grouped nodes stay drawn whatever the pruning keeps
        forced = forced_ids(curation, tr, drawn.layers(vm.dims.n_layers))
        drawn = replace(drawn, include=tuple(dict.fromkeys(drawn.include + forced))) if forced else drawn
    built = build_graph(tr, target.id, drawn, analysis.lens)
    notes = [n for n in analysis.notes if n == target.note] + built.notes
    t3 = time.perf_counter()
    positions = layout(built.graph, vm.parallel, first_layer=layers[0])
    for n, (x, y) in positions.items():
        built.graph.nodes[n].update(x=x, y=y)
    title = (f"<b>{escape(vm.name, quote=False)}</b> · "  # SVG text: plotly decodes &lt; &gt; &amp; only
             f"'{escape(display_token(tr.tokens[tr.position]), quote=False)}' (position {tr.position}) "
             f"→ target '{escape(display_token(target.token), quote=False)}'")
    figure = (go.Figure(layout=dict(title=dict(text=title))) if curation.changes_graph()  # drawn by curate below
              else graph_figure(built.graph, positions, target.token, vm.dims.d_vocab, title))
    out = Analysis(tr, target, settings, analysis.top_predictions, analysis.layer_strip, built.graph, figure,
                   notes, analysis.strip_figure, built.vectors, built.norm_inputs, analysis.lens, {},
                   dict(analysis.extras), drawn_layers=(drawn.layers(vm.dims.n_layers)[0], layers[-1]),
                   curation=curation)
    if curation.changes_graph():
        out = curate(out, curation)
    t4 = time.perf_counter()
    timings = {k: v for k, v in analysis.timings.items() if k in ("trace", "summary")}
    timings.update(graph=t3 - t2, render=t4 - t3, total=timings.get("trace", 0) + timings.get("summary", 0) + t4 - t2)
    out.timings = timings
    return out


def complete(analysis: Analysis) -> Analysis:
    """The whole graph of a first view (``analysis.partial``), without a new forward pass; else ``analysis``."""
    return redraw(analysis, analysis.settings) if analysis.partial else analysis


def _tokens(tokenizer, ids: list[int], probs: list[float]) -> list[dict]:
    return [{"token": token_string(tokenizer, t), "id": int(t), "prob": float(p)} for t, p in zip(ids, probs)]


def _lens_rows(analysis: Analysis, vectors: torch.Tensor) -> list[dict]:
    """Top and bottom 20 tokens, target probability and rank, entropy for each row of ``vectors``."""
    res = analysis.lens.project(vectors, mode="renorm", k=DETAIL_K, target=analysis.target.id)
    tok = analysis.vm.tokenizer
    return [{"top": _tokens(tok, res.top_ids[i].tolist(), res.top_probs[i].tolist()),
             "bottom": _tokens(tok, res.bottom_ids[i].tolist(), res.bottom_probs[i].tolist()),
             "entropy": float(res.entropy[i]), "target_prob": float(res.target_prob[i]),
             "target_rank": int(res.target_rank[i])} for i in range(len(res))]


def node_details(analysis: Analysis, node_id: str) -> dict:
    """Everything about one node (raw token strings; the UI escapes):

    ``{"id", "kind", "layer", ..., "location", "norm", "top", "bottom", "entropy", "target_prob",
    "target_rank"}``; norm nodes add ``"input"`` (the same lens of the norm's input); neurons and W_O
    neurons add ``"static"`` (their value vector's vocabulary projection); heads, queries, keys and
    memory values add ``"attention"`` (``[{"position", "token", "weight"}]`` over the source tokens).
    """
    if node_id not in analysis.graph:
        raise VisitError(f"there is no node {node_id!r} in this graph")
    with weights_of(analysis.trace):  # static projections read the weights the trace was computed on
        return _node_details(analysis, node_id)


def _node_details(analysis: Analysis, node_id: str) -> dict:
    g = analysis.graph
    a = g.nodes[node_id]
    out = {k: v for k, v in a.items() if k not in ("top",)}
    tr, vm = analysis.trace, analysis.vm
    vectors, names = [], []
    if node_id in analysis.vectors:
        vectors.append(analysis.vectors[node_id]), names.append("self")
    src = analysis.norm_inputs.get(node_id)
    if src is not None and src in analysis.vectors:
        vectors.append(analysis.vectors[src]), names.append("input")
    if a["kind"] == "neuron":
        vectors.append(vm.weights.W_out(a["layer"])[a["neuron"]]), names.append("static")
    elif a["kind"] == "wo_neuron":
        d = vm.dims
        W_O = vm.weights.W_O(a["layer"]).reshape(d.n_heads * d.d_head, d.d_model)
        vectors.append(W_O[a["neuron"]]), names.append("static")
    rows = _lens_rows(analysis, torch.stack([v.to(vm.weights.device) for v in vectors])) if vectors else []
    for name, row in zip(names, rows):
        if name == "self":
            out.update(row)
        else:
            out[name] = row
    if "top" not in out:
        out.update(top=[], bottom=[], entropy=None, target_prob=None, target_rank=None)
    if a.get("head") is not None and a["kind"] in ("head", "query", "key", "memory"):
        weights = tr[hook_name(a['layer'], "attn.hook_pattern")][a["head"], tr.position, :tr.position + 1].tolist()
        out["attention"] = [{"position": s, "token": tr.tokens[s], "weight": float(w)} for s, w in enumerate(weights)]
    return out


def _clean(value):
    """JSON-safe: NaN/inf -> None, tuples -> lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    return value


def graph_json(analysis: Analysis) -> dict:
    """``{"nodes": [...], "edges": [...], "settings": {...}}`` with every node and edge attribute, plus
    the model, prompt, tokens, position, target, top predictions, per-layer strip and notes."""
    analysis = complete(analysis)
    g, tr, t = analysis.graph, analysis.trace, analysis.target
    return _clean({
        "model": analysis.vm.name,
        "prompt": tr.prompt,
        "tokens": tr.tokens,
        "position": tr.position,
        "target": {"token": t.token, "id": t.id, "typed": t.typed, "n_tokens": t.n_tokens},
        "top_predictions": analysis.top_predictions,
        "layer_strip": analysis.layer_strip,
        "notes": analysis.notes,
        "graph": dict(g.graph),
        "settings": analysis.settings.as_dict(),
        "nodes": [dict(attrs) for _, attrs in g.nodes(data=True)],
        "edges": [{"source": u, "target": v, **e} for u, v, e in g.edges(data=True)],
    })


def export_html(analysis: Analysis, path: str | Path | None = None, link: str | None = None,
                app_url: str | None = None) -> str:
    """The standalone report (opens offline: plotly.js embedded once). Written to ``path`` if given. ``link``: the
    view's query string as the app's URL holds it (:mod:`visit.links`; default: built from the analysis);
    ``app_url``: the app's address, making the view a link."""
    html = render_report(complete(analysis), link, app_url)
    if path is not None:
        try:
            Path(path).write_text(html, encoding="utf-8")
        except OSError as exc:
            raise VisitError(f"cannot write the report to {path}: {exc.strerror or exc}") from None
    return html
