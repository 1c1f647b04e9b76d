"""Server-side layered layout: computation order left to right, one repeating column pattern per block.

Sequential blocks: attention columns, then MLP columns. Parallel blocks (GPT-NeoX): the MLP branch
shares the attention branch's columns, drawn below it, both starting from the block input.
"""

from __future__ import annotations

import networkx as nx

# column of each kind inside a block
ATTN_COLUMNS = {"resid_pre": 0, "ln1": 1, "qkv": 2, "query": 3, "key": 4, "memory": 5, "head": 6, "concat": 7,
                "wo_neuron": 8, "attn_out": 9, "resid_mid": 10}
SEQUENTIAL_MLP = {"ln2": 11, "neuron": 12, "mlp_out": 13, "resid_post": 14}
PARALLEL_MLP = {"ln2": 1, "neuron": 5, "mlp_out": 9, "resid_post": 11}

ROW = 1.0  # vertical distance between fanned-out nodes
MEMORY_ROW = 0.45  # between the memory values (and keys) of one head


def layout(g: nx.DiGraph, parallel: bool, first_layer: int | None = None) -> dict[str, tuple[float, float]]:
    """Node id -> (x, y). ``first_layer`` is the layer drawn at x = 0 (default: the graph's first), so a
    graph of a few layers drawn first lands where the same layers sit in the whole graph."""
    columns = {**ATTN_COLUMNS, **(PARALLEL_MLP if parallel else SEQUENTIAL_MLP)}
    width = max(columns.values()) + 1
    by_layer: dict[int, list[str]] = {}
    for n, a in g.nodes(data=True):
        by_layer.setdefault(a["layer"], []).append(n)
    first = min(by_layer, default=0) if first_layer is None else first_layer
    pos: dict[str, tuple[float, float]] = {}
    for layer, nodes in by_layer.items():
        x0 = (layer - first) * width
        ys = _block_rows(g, nodes, parallel)
        for n in nodes:
            pos[n] = (float(x0 + columns[g.nodes[n]["kind"]]), ys.get(n, 0.0))
    return pos


def _spread(items: list, step: float, centre: float = 0.0) -> dict:
    return {item: centre + (i - (len(items) - 1) / 2) * step for i, item in enumerate(items)}


def _block_rows(g: nx.DiGraph, nodes: list[str], parallel: bool) -> dict[str, float]:
    kinds: dict[str, list[str]] = {}
    for n in nodes:
        kinds.setdefault(g.nodes[n]["kind"], []).append(n)
    heads = sorted({g.nodes[n]["head"] for n in kinds.get("query", []) + kinds.get("head", [])})
    per_head = {h: sorted((g.nodes[n]["source"] for n in kinds.get("memory", []) if g.nodes[n]["head"] == h))
                for h in heads}
    band = [max(ROW, len(per_head[h]) * MEMORY_ROW) for h in heads]
    centres, top = {}, sum(band) / 2
    for h, b in zip(heads, band):
        centres[h] = -(top - b / 2)  # heads top to bottom in index order
        top -= b
    ys: dict[str, float] = {}
    for kind in ("query", "head"):
        for n in kinds.get(kind, []):
            ys[n] = centres[g.nodes[n]["head"]]
    for kind in ("key", "memory"):
        for n in kinds.get(kind, []):
            a = g.nodes[n]
            srcs = per_head[a["head"]] if kind == "memory" else sorted(
                g.nodes[m]["source"] for m in kinds.get("key", []) if g.nodes[m]["head"] == a["head"])
            ys[n] = _spread(srcs, MEMORY_ROW, centres[a["head"]])[a["source"]]
    ys.update(_spread(sorted(kinds.get("wo_neuron", []), key=lambda n: g.nodes[n]["neuron"]), ROW))
    neurons = sorted(kinds.get("neuron", []), key=lambda n: -(g.nodes[n]["coefficient"] or 0.0))
    mlp_centre = 0.0
    if parallel:  # the MLP branch below the attention branch
        attn_half = max(sum(band), len(kinds.get("wo_neuron", [])) * ROW) / 2
        mlp_centre = -(attn_half + len(neurons) * ROW / 2 + 2 * ROW)
        for kind in ("ln2", "mlp_out"):
            for n in kinds.get(kind, []):
                ys[n] = mlp_centre
    ys.update(_spread(neurons, ROW, mlp_centre))
    return ys
