"""One traced forward pass -> the VISIT flow graph (A.1-A.5) as a networkx DiGraph.

Node attributes (plain data, raw token strings): ``kind, layer, head, neuron, source, source_token,
attention, coefficient, role, flag, highlighted, included, location, label, top [{token, id, prob}],
target_prob, target_rank, entropy, norm, projected``; norm nodes also ``in_label, in_target_prob,
in_target_rank, in_entropy`` (the lens of the norm's input). Query, key and qkv vectors live in d_head
space and are not projected (``projected=False``, lens fields None). Neurons of a mixture of experts also
have ``expert`` (None: the shared expert), ``expert_neuron`` and ``router_weight`` (:func:`visit.models.moe.neuron_info`);
only the experts the router chose at the position have neurons with nonzero coefficients.

Edge attributes: ``kind`` (residual|skip|norm|projection|attention|memory|coefficient|summation),
``role`` (accumulation|structural|coefficient|summation), ``score`` (>= 0: the coefficient's magnitude
or the added vector's norm; what pruning and widths use), ``coefficient`` (signed, coefficient edges),
``norm`` (summation and accumulation edges), ``entropy`` (accumulation edges: of the carried vector),
and ``rank_from``/``rank_to`` (the target's rank at both ends, when both are projected).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import torch

from visit.graph.nodes import NORM_KINDS, SPINE_KINDS, UNPROJECTED_KINDS, location, node_id
from visit.graph.selection import LayerSelection, circuit_selection, parse_includes, select
from visit.graph.settings import GraphSettings
from visit.hooks.names import hook_name
from visit.ids import NodeId, neuron_id, spine_id
from visit.lens import LogitLens
from visit.models import moe
from visit.tokens import token_string


@dataclass
class BuiltGraph:
    graph: nx.DiGraph
    vectors: dict[str, torch.Tensor]  # node id -> the d_model vector it stands for (projected nodes)
    norm_inputs: dict[str, str]  # norm node id -> the node id of its input
    notes: list[str] = field(default_factory=list)


class _Builder:
    def __init__(self, trace, settings: GraphSettings, target_id: int):
        self.trace, self.settings, self.target_id = trace, settings, target_id
        self.g = nx.DiGraph()
        self.vectors: dict[str, torch.Tensor] = {}
        self.norm_inputs: dict[str, str] = {}
        self.highlight = set(settings.highlight)
        self.include = set(settings.include)
        self.memory: dict[int, dict] = {}  # layer -> memory vectors, when computed for all layers at once

    # -- nodes and edges -------------------------------------------------------------------------
    def node(self, layer: int, kind: str, vector: torch.Tensor | None, head=None, index=None, **attrs) -> str:
        nid = node_id(layer, kind, head, index)
        neuron = index if kind in ("neuron", "wo_neuron") else None
        source = index if kind in ("key", "memory") else None
        data = dict(id=nid, kind=kind, layer=layer, head=head, neuron=neuron, source=source, source_token=None,
                    attention=None, coefficient=None, role=None, flag=None, highlighted=nid in self.highlight,
                    included=nid in self.include, norm=None)
        data.update(attrs)
        if source is not None:
            data["source_token"] = self.trace.tokens[source]
        data["location"] = location(data)
        if vector is not None:
            data["norm"] = float(vector.norm())
            if kind not in UNPROJECTED_KINDS:
                self.vectors[nid] = vector
        self.g.add_node(nid, **data)
        return nid

    def edge(self, u: str, v: str, kind: str, role: str, score: float, **attrs) -> None:
        self.g.add_edge(u, v, kind=kind, role=role, score=float(abs(score)), **attrs)

    def summation(self, u: str, v: str) -> None:
        norm = self.g.nodes[u]["norm"]
        self.edge(u, v, "summation", "summation", norm, norm=norm)

    def accumulation(self, u: str, v: str, kind: str = "residual") -> None:
        norm = self.g.nodes[u]["norm"]
        self.edge(u, v, kind, "accumulation", norm, norm=norm)

    # -- one block --------------------------------------------------------------------------------
    def block(self, layer: int, sel: LayerSelection, prev_post: str | None) -> str:
        tr, pos = self.trace, self.trace.position
        w, d = tr.vm.weights, tr.vm.dims
        pre = self.node(layer, "resid_pre", tr.resid(layer, "pre"))
        if prev_post is not None:
            self.accumulation(prev_post, pre)
        ln1 = self.node(layer, "ln1", tr[hook_name(layer, "ln1.hook_out")][pos])
        self.norm_inputs[ln1] = pre
        self.edge(pre, ln1, "norm", "structural", self.g.nodes[pre]["norm"])
        q_all = tr[hook_name(layer, "attn.hook_q")][pos]  # [H, dh]
        k_all = tr[hook_name(layer, "attn.hook_k")]  # [pos, H_kv, dh]
        kv_of = tr.kv_head_of.tolist()
        qkv = self.node(layer, "qkv", q_all.reshape(-1))
        self.edge(ln1, qkv, "projection", "structural", self.g.nodes[ln1]["norm"])
        concat = self.node(layer, "concat", tr[hook_name(layer, "hook_attn_out")][pos] - w.b_O(layer))
        pattern = tr[hook_name(layer, "attn.hook_pattern")]
        mems = self.memory[layer] if layer in self.memory else memory_vectors(tr, layer, sel.memory)
        for h in sel.heads:
            q = self.node(layer, "query", q_all[h], head=h)
            self.edge(qkv, q, "projection", "structural", self.g.nodes[q]["norm"])
            head = self.node(layer, "head", tr[hook_name(layer, "attn.hook_result")][h], head=h)
            for s in sel.memory[h]:
                mem_vec = mems[(h, s)]
                alpha = float(pattern[h, pos, s])
                key = self.node(layer, "key", k_all[s, kv_of[h]], head=h, index=s, attention=alpha)
                mem = self.node(layer, "memory", mem_vec, head=h, index=s, attention=alpha)
                self.edge(q, key, "attention", "coefficient", alpha, coefficient=alpha)
                self.edge(key, mem, "attention", "coefficient", alpha, coefficient=alpha)
                self.edge(mem, head, "memory", "coefficient", alpha, coefficient=alpha,
                          norm=self.g.nodes[mem]["norm"])
            self.summation(head, concat)
        attn_out = self.node(layer, "attn_out", tr[hook_name(layer, "hook_attn_out")][pos])
        z = tr[hook_name(layer, "attn.hook_z")][pos].reshape(-1)
        if sel.wo_neurons:
            for j, vec in zip(sel.wo_neurons, tr.wo_neuron_contributions(layer, sel.wo_neurons)):
                coeff = float(z[j])
                wo = self.node(layer, "wo_neuron", vec, head=j // d.d_head, index=j, coefficient=coeff)
                self.edge(concat, wo, "coefficient", "coefficient", coeff, coefficient=coeff)
                self.summation(wo, attn_out)
        else:
            self.summation(concat, attn_out)
        mid = self.node(layer, "resid_mid", tr.resid(layer, "mid"))
        self.summation(attn_out, mid)
        self.accumulation(pre, mid, "skip")
        ln2_in = pre if tr.vm.parallel else mid
        ln2 = self.node(layer, "ln2", tr[hook_name(layer, "ln2.hook_out")][pos])
        self.norm_inputs[ln2] = ln2_in
        self.edge(ln2_in, ln2, "norm", "structural", self.g.nodes[ln2_in]["norm"])
        mlp_out = self.node(layer, "mlp_out", tr[hook_name(layer, "hook_mlp_out")][pos])
        post_acts = tr[hook_name(layer, "mlp.hook_post")][pos]
        neurons = list(sel.neurons)
        flags = self.settings.flagged_neurons
        experts = tr[hook_name(layer, "mlp.hook_expert_weights")][pos] if tr.vm.adapter.moe else None  # the router's choice
        if neurons:
            for i, vec in zip(neurons, tr.neuron_contributions(layer, neurons)):
                coeff = float(post_acts[i])
                extra = {} if experts is None else moe.neuron_info(tr.vm.weights, i, experts)
                n = self.node(layer, "neuron", vec, index=i, coefficient=coeff, role=sel.neurons[i],
                              flag=flags.get((layer, i)), **extra)
                self.edge(ln2, n, "coefficient", "coefficient", coeff, coefficient=coeff)
                self.summation(n, mlp_out)
        else:
            self.edge(ln2, mlp_out, "projection", "structural", self.g.nodes[ln2]["norm"])
        post = self.node(layer, "resid_post", tr.resid(layer, "post"))
        self.summation(mlp_out, post)
        self.accumulation(mid, post, "skip")
        return post

    # -- pruning ----------------------------------------------------------------------------------
    def prune_edges(self, threshold: float) -> None:
        """Drop coefficient and summation edges scoring below ``threshold``, then every non-spine node
        left without an incoming or an outgoing edge (repeatedly), unless it was asked for."""
        if threshold <= 0:
            return
        weak = [(u, v) for u, v, e in self.g.edges(data=True)
                if e["role"] in ("coefficient", "summation") and e["score"] < threshold]
        self.g.remove_edges_from(weak)
        while True:
            dangling = [n for n, a in self.g.nodes(data=True)
                        if a["kind"] not in SPINE_KINDS and not a["included"] and a["flag"] is None
                        and (self.g.in_degree(n) == 0 or self.g.out_degree(n) == 0)]
            if not dangling:
                return
            self.g.remove_nodes_from(dangling)

    def bridge_norms(self) -> None:
        """``show_norms=False``: remove norm nodes, joining their input straight to what they feed."""
        for n in [n for n, a in self.g.nodes(data=True) if a["kind"] in NORM_KINDS]:
            preds, succs = list(self.g.predecessors(n)), list(self.g.successors(n))
            for u in preds:
                for v in succs:
                    attrs = dict(self.g.edges[n, v])
                    norm = self.g.nodes[n]
                    attrs.update(via=n, via_rank_in=norm.get("in_target_rank"), via_rank_out=norm.get("target_rank"))
                    self.g.add_edge(u, v, **attrs)
            self.g.remove_node(n)


def memory_vectors(trace, layer: int, memory: dict[int, list[int]]) -> dict[tuple[int, int], torch.Tensor]:
    """VISIT's memory values ``alpha[h, pos, s] * v[s, kv(h)] @ W_O[h]`` for the chosen (head, source)
    pairs only, in one batched product per layer: ``{(h, s): [d_model]}`` (same maths as
    :meth:`Trace.memory_values`, without the heads x sources cross product)."""
    return memory_vectors_all(trace, {layer: memory})[layer]


def memory_vectors_all(trace, memory: dict[int, dict[int, list[int]]]) -> dict[int, dict]:
    """:func:`memory_vectors` of several layers (``{layer: {head: sources}}``), the products through ``W_O``
    in one call (:meth:`visit.models.weights.ModelWeights.through_heads`: one request for a remote model)."""
    pairs = {layer: [(h, s) for h, srcs in mem.items() for s in srcs] for layer, mem in memory.items()}
    pos, dev, asks = trace.position, trace.vm.device, {}
    for layer, ps in pairs.items():
        if not ps:
            continue
        heads = torch.tensor([h for h, _ in ps], device=dev)
        srcs = torch.tensor([s for _, s in ps], device=dev)
        alpha = trace[hook_name(layer, "attn.hook_pattern")][heads, pos, srcs]  # [P]
        v = trace[hook_name(layer, "attn.hook_v")][srcs, trace.kv_head_of[heads]]  # [P, dh]
        alpha = alpha / trace.post_scale(layer, "attn")[pos]  # a post-norm's frozen scale (Gemma 2/3), else 1
        asks[layer] = (heads, alpha.unsqueeze(-1) * v)
    out = trace.vm.weights.through_heads(asks)  # {layer: [P, d_model]}
    return {layer: dict(zip(ps, out[layer])) if ps else {} for layer, ps in pairs.items()}


def build_graph(trace, target_id: int, settings: GraphSettings | None = None,
                lens: LogitLens | None = None) -> BuiltGraph:
    """The flow graph of ``trace`` at its position, pruned by ``settings``, every projected node's lens
    (final norm re-applied) computed in one batched call."""
    settings = (settings or GraphSettings()).validated(trace.n_layers)
    layers = settings.layers(trace.n_layers)
    forced = parse_includes(settings.include, trace)
    b = _Builder(trace, settings, target_id)
    notes = []
    outside = sorted({i for i in settings.include if _layer_of(i) not in layers and _layer_of(i) is not None}
                     | {neuron_id(l, n) for (l, n) in settings.flagged_neurons if l not in layers})
    if outside:
        notes.append(f"outside the layer range, not shown: {', '.join(outside)}")
    selection = select(trace, settings, target_id, layers, forced)
    if settings.prune_by == "circuit":
        heads, neurons, share = circuit_selection(trace, target_id, layers, settings.circuit_share)
        notes.append(f"circuit: {sum(map(len, heads.values()))} heads and {sum(map(len, neurons.values()))} MLP "
                     f"neurons carry {100 * share:.1f}% of the increase of log p(target) over "
                     f"layers {layers[0]}-{layers[-1]} (asked: {100 * settings.circuit_share:.0f}%)")
    b.memory = memory_vectors_all(trace, {layer: selection[layer].memory for layer in layers})
    trace.vm.weights.prefetch_rows({l: list(selection[l].neurons) for l in layers},
                                   {l: list(selection[l].wo_neurons) for l in layers})
    prev = None
    for layer in layers:
        prev = b.block(layer, selection[layer], prev)
    b.prune_edges(settings.min_edge_score)
    vectors = {n: v for n, v in b.vectors.items() if n in b.g}
    rows = _project(b.g, vectors, b.norm_inputs, trace, target_id, settings.top_k, lens)
    b.g.graph.update(model=trace.vm.name, prompt=trace.prompt, position=trace.position, target_id=target_id,
                     parallel=trace.vm.parallel, layer_start=layers[0], layer_end=layers[-1], projected_rows=rows)
    if not settings.show_norms:
        b.bridge_norms()
    _annotate_edges(b.g)
    return BuiltGraph(b.g, vectors, b.norm_inputs, notes)


def _layer_of(nid: str) -> int | None:
    node = NodeId.try_parse(nid)
    return None if node is None else node.layer


def _project(g: nx.DiGraph, vectors: dict, norm_inputs: dict, trace, target_id: int, k: int, lens) -> int:
    """One batched lens call for every distinct vector in the graph (shared residuals projected once);
    returns how many rows were projected."""
    lens = lens or LogitLens.for_trace(trace)
    ids, rows, index = list(vectors), [], {}
    for nid in ids:
        vec = vectors[nid]
        alias = _alias_of(g, nid, vectors)
        if alias is not None and alias in index and torch.equal(vectors[alias], vec):
            index[nid] = index[alias]
        else:
            index[nid] = len(rows)
            rows.append(vec)
    for nid, a in g.nodes(data=True):
        a.update(projected=False, label=None, top=[], target_prob=None, target_rank=None, entropy=None)
    if not rows:
        return 0
    # a node id names the same vector in every graph of one trace: lens rows are kept per trace, target and k,
    # so re-drawing with other settings projects only nodes never projected before
    cache = trace.memo(("node_lens", target_id, k), dict)
    missing = sorted({i for nid, i in index.items() if nid not in cache})
    if missing:
        res = lens.project(torch.stack([rows[i] for i in missing]), mode="renorm", k=k, target=target_id,
                           bottom=False)
        names = _TokenNames(trace.vm.tokenizer)
        top_ids, top_probs = res.top_ids.tolist(), res.top_probs.tolist()
        probs, ranks, entropy = res.target_prob.tolist(), res.target_rank.tolist(), res.entropy.tolist()
        fresh = {}
        for j, i in enumerate(missing):
            fresh[i] = dict(projected=True, label=names(top_ids[j][0]),
                            top=[{"token": names(t), "id": t, "prob": p} for t, p in zip(top_ids[j], top_probs[j])],
                            target_prob=probs[j], target_rank=ranks[j], entropy=entropy[j])
        for nid, i in index.items():
            if i in fresh:
                cache[nid] = fresh[i]
    for nid in ids:
        row = cache[nid]
        g.nodes[nid].update(row, top=list(row["top"]))
    for nid, src in norm_inputs.items():
        if nid in g and src in g:
            s = g.nodes[src]
            g.nodes[nid].update(in_label=s["label"], in_target_prob=s["target_prob"],
                                in_target_rank=s["target_rank"], in_entropy=s["entropy"])
    return len(rows)


def _alias_of(g: nx.DiGraph, nid: str, vectors: dict) -> str | None:
    """The earlier node holding the very same vector: a block's input is the previous block's output,
    and with no W_O bias the heads' concatenation through W_O is the attention output."""
    a = g.nodes[nid]
    if a["kind"] == "resid_pre":
        return spine_id(a["layer"] - 1, "resid_post") if a["layer"] > 0 else None
    if a["kind"] == "attn_out":
        return spine_id(a["layer"], "concat")
    return None


def _annotate_edges(g: nx.DiGraph) -> None:
    for u, v, e in g.edges(data=True):
        su, sv = g.nodes[u], g.nodes[v]
        if su.get("projected") and sv.get("projected"):
            e["rank_from"], e["rank_to"] = su["target_rank"], sv["target_rank"]
        if e["role"] == "accumulation":
            e["entropy"] = su.get("entropy")


class _TokenNames:
    """Token id -> raw string, decoded once per id."""

    def __init__(self, tokenizer):
        self.tokenizer, self.cache = tokenizer, {}

    def __call__(self, token_id: int) -> str:
        if token_id not in self.cache:
            self.cache[token_id] = token_string(self.tokenizer, token_id)
        return self.cache[token_id]
