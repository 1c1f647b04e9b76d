"""visit.render.diff_figure: the difference graph draws every aligned node where the before graph drew it, coloured
by its signed change, the most changed ringed, nodes of one graph only hollow."""

from __future__ import annotations

import pytest

from visit.graph.diff import diff_graphs
from visit.hooks import zero
from visit.pipeline import analyze
from visit.render.diff_figure import diff_figure, signed_change

PROMPT = "The capital of France is the city of"


def test_difference_graph_of_a_zeroed_head(tiny_factory):
    vm = tiny_factory("llama")
    before = analyze(vm, PROMPT)
    after = analyze(vm, PROMPT, target_id=before.target.id, interventions=[zero("blocks.1.attn.hook_z", index=(0,))])
    diff = diff_graphs(before, after)
    fig = diff_figure(diff, ("clean", "<b>ablated</b>"))
    drawn = {}
    for trace in fig.data[1:]:
        for (node_id, hover), x, y in zip(trace.customdata, trace.x, trace.y):
            drawn[node_id] = (x, y, hover)
    for n, d in diff["nodes"].items():
        assert drawn[n][:2] == (d["x"], d["y"])
    both = [t for t in fig.data[1:] if t.name != "in one graph only"]
    for trace in both:
        for (node_id, _), colour, width in zip(trace.customdata, trace.marker.color, trace.marker.line.width):
            node = diff["nodes"][node_id]
            assert colour == pytest.approx(signed_change(node) or 0.0)
            assert (width > 1) == node["top_changed"]
    assert any(abs(signed_change(diff["nodes"][n]) or 0) > 0 for n in diff["top_changed"])
    assert "&lt;b&gt;ablated" in fig.layout.title.text and "<b>ablated" not in fig.layout.title.text
