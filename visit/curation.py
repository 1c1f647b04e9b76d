"""A user's pins, groups and labels applied to an :class:`~visit.pipeline.Analysis`: no forward pass.

:func:`curate` takes the analysis's built graph (kept as ``analysis.uncurated`` once curated, so curating
again starts from it), applies :func:`visit.graph.groups.curate` with the analysis's node vectors, the nodes'
log-probability increases (:func:`visit.graph.attribution.node_attribution`) and its logit lens (one
projection per group), and re-renders the figure from the result in the same VISIT layout (node positions
are kept; a group sits at its members' mean). :func:`visit.pipeline.redraw` re-applies ``analysis.curation``
after every re-draw, so pruning knobs, layer ranges and the completion of a first view keep it.

Cost: the curated graph's copy and its figure (a few hundred milliseconds for a whole 30-layer graph, tens
for the first view); nothing is traced or projected again except one lens row per group.
"""

from __future__ import annotations

from dataclasses import replace

from visit.errors import VisitError
from visit.graph.attribution import node_attribution
from visit.graph.groups import EMPTY, Curation, curate as curate_graph
from visit.graph.selection import parse_includes
from visit.models.overlay import weights_of
from visit.render import graph_figure
from visit.tokens import token_string
from visit.ids import NodeId


def curate(analysis, curation: Curation | None):
    """A new Analysis drawing ``analysis``'s graph as ``curation`` shows it (``None`` or empty: the built graph
    as it is). ``analysis.graph`` is then the curated graph (groups as nodes with their summed vector in
    ``analysis.vectors``), ``analysis.uncurated`` the built one."""
    curation = curation or EMPTY
    base = analysis.uncurated if analysis.uncurated is not None else analysis.graph
    base_vectors = {k: v for k, v in analysis.vectors.items() if k in base}
    built = replace(analysis, graph=base, vectors=base_vectors, uncurated=None, curation=EMPTY)
    if not curation.changes_graph():
        if analysis.uncurated is None:
            return replace(analysis, curation=curation)
        figure = graph_figure(base, _positions(base), analysis.target.token, analysis.vm.dims.d_vocab, _title(analysis))
        return replace(built, figure=figure, curation=curation)
    members = [m for g in curation.groups for m in g.members if m in base]
    if members:  # attribution and the groups' lens read the weights: those the trace was computed on
        with weights_of(analysis.trace):
            attribution = node_attribution(built, members)
            view, sums = curate_graph(base, curation, base_vectors, attribution, _projector(analysis))
    else:
        view, sums = curate_graph(base, curation, base_vectors, {}, None)
    figure = graph_figure(view, _positions(view), analysis.target.token, analysis.vm.dims.d_vocab, _title(analysis))
    return replace(analysis, graph=view, figure=figure, vectors={**base_vectors, **sums}, uncurated=base,
                   curation=curation)


def _positions(g) -> dict:
    return {n: (a.get("x", 0.0), a.get("y", 0.0)) for n, a in g.nodes(data=True)}


def _title(analysis) -> str:
    title = analysis.figure.layout.title
    return (title.text if title is not None else None) or ""


def _projector(analysis):
    """``vector -> lens fields`` as the graph builder stores them (top tokens, target's probability and rank)."""
    lens, target, k = analysis.lens, analysis.target.id, analysis.settings.top_k
    tokenizer = analysis.vm.tokenizer
    if lens is None:
        return None

    def project(vector) -> dict:
        res = lens.project(vector.unsqueeze(0), mode="renorm", k=k, target=target, bottom=False)
        ids, probs = res.top_ids[0].tolist(), res.top_probs[0].tolist()
        return dict(label=token_string(tokenizer, ids[0]),
                    top=[{"token": token_string(tokenizer, t), "id": t, "prob": p} for t, p in zip(ids, probs)],
                    target_prob=float(res.target_prob[0]), target_rank=int(res.target_rank[0]),
                    entropy=float(res.entropy[0]))

    return project


def forced_ids(curation: Curation, trace, layers: range) -> tuple[str, ...]:
    """The curation's node ids (pins, group members) a re-draw should force in: those inside ``layers`` that name
    a component of this model (an id from another model or an old link is left out, not an error)."""
    out = []
    for node_id in curation.node_ids():
        node = NodeId.try_parse(node_id)
        if node is None or node.layer is None or node.layer not in layers:
            continue
        try:
            parse_includes([node_id], trace)
        except VisitError:
            continue
        out.append(node_id)
    return tuple(out)
