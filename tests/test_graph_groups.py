"""visit.graph.groups and visit.curation: pins, groups (supernodes) and labels as data, applied to a graph."""

from __future__ import annotations

import json

import pytest
import torch

from hostile import hostile_strings
from visit.curation import curate
from visit.errors import VisitError
from visit.graph import GraphSettings
from visit.graph.attribution import node_attribution
from visit.graph.groups import (EMPTY, Curation, apply_groups, group_pins, merge_edges, pinned_subgraph, set_label,
                                toggle_pin, ungroup)
from visit.pipeline import analyze, export_html, graph_json, node_details, redraw
from visit.render.hover import node_hover, node_label

PROMPT = "The capital of France is the city of"


@pytest.fixture(scope="module")
def analysis(tiny_factory):
    return analyze(tiny_factory("llama"), PROMPT)


def heads_of(analysis, layer=None, n=3) -> list[str]:
    return [h for h, a in analysis.graph.nodes(data=True) if a["kind"] == "head"
            and (layer is None or a["layer"] == layer)][:n]


def grouped(analysis, members, name="movers"):
    c = EMPTY
    for m in members:
        c = toggle_pin(c, m)
    return group_pins(c, name)


def test_pins_toggle_and_grouping_replaces_members_by_the_group():
    c = toggle_pin(toggle_pin(toggle_pin(EMPTY, "L1.H2"), "L1.H3"), "L0.N5")
    assert c.pins == ("L1.H2", "L1.H3", "L0.N5")
    assert toggle_pin(c, "L1.H3").pins == ("L1.H2", "L0.N5")
    g = group_pins(c, "  a   name ")
    assert g.pins == ("G1",) and g.groups[0].members == ("L1.H2", "L1.H3", "L0.N5") and g.groups[0].name == "a name"
    g2 = group_pins(toggle_pin(toggle_pin(g, "L2.H0"), "L1.H2"), "")  # L1.H2 moves to the new group
    assert [x.id for x in g2.groups] == ["G1", "G2"] and g2.groups[1].name == "group 2"
    assert g2.groups[0].members == ("L1.H3", "L0.N5") and g2.pins == ("G1", "G2")
    back = ungroup(set_label(g2, "G2", "x"), "G2")
    assert [x.id for x in back.groups] == ["G1"] and set(back.pins) == {"G1", "L2.H0", "L1.H2"} and not back.labels
    with pytest.raises(VisitError, match="at least two"):
        group_pins(toggle_pin(EMPTY, "L1.H2"))
    with pytest.raises(VisitError, match="not a node id"):
        toggle_pin(EMPTY, "<script>")


def test_a_groups_contribution_is_the_sum_of_its_members(analysis):
    members = heads_of(analysis, n=3) + [n for n, a in analysis.graph.nodes(data=True) if a["kind"] == "neuron"][:2]
    view = curate(analysis, grouped(analysis, members))
    g = view.graph.nodes["G1"]
    attr = node_attribution(analysis, members)
    assert g["kind"] == "group" and g["members"] == members
    assert g["attribution"] == pytest.approx(sum(attr.values()), abs=1e-6)
    assert node_attribution(view, ["G1"])["G1"] == g["attribution"]  # diffs and verify read the same number
    summed = sum(analysis.vectors[m] for m in members)
    assert torch.allclose(view.vectors["G1"], summed) and g["norm"] == pytest.approx(float(summed.norm()), rel=1e-5)
    # its lens is the lens of the summed vector: what the group adds to the residual stream
    res = analysis.lens.project(summed.unsqueeze(0), mode="renorm", k=5, target=analysis.target.id)
    assert g["target_rank"] == int(res.target_rank[0]) and g["top"][0]["id"] == int(res.top_ids[0, 0])
    assert g["x"] == pytest.approx(sum(analysis.graph.nodes[m]["x"] for m in members) / len(members))
    details = node_details(view, "G1")  # the details panel's top/bottom 20 of the summed vector
    assert len(details["top"]) == 20 and details["members"] == members
    for m in members:
        assert m not in view.graph


def test_a_groups_edges_are_the_union_of_its_members_with_weights_summed(analysis):
    members = heads_of(analysis, layer=0, n=3)
    g = analysis.graph
    view, _ = apply_groups(g, grouped(analysis, members).groups)
    outside = {(u if u not in members else "G1", v if v not in members else "G1")
               for u, v in g.edges if (u in members) != (v in members)}
    assert {(u, v) for u, v in view.edges if "G1" in (u, v)} == outside
    concat = "L0.concat"  # every head sums into the concatenation: one merged edge
    e = view.edges["G1", concat]
    assert e["merged"] == len(members)
    assert e["score"] == pytest.approx(sum(g.edges[m, concat]["score"] for m in members))
    assert e["norm"] == pytest.approx(sum(g.edges[m, concat]["norm"] for m in members))
    assert not any(u in members or v in members for u, v in view.edges)
    assert set(g) - set(members) <= set(view)  # nothing else lost; the input graph is unchanged
    assert all(m in g for m in members)
    internal = merge_edges([{"kind": "a", "role": "r", "score": 1.0, "coefficient": 0.5},
                            {"kind": "b", "role": "s", "score": 2.0, "coefficient": None}])
    assert internal["kind"] == "b" and internal["score"] == 3.0 and internal["coefficient"] is None


def test_pinned_only_keeps_pins_and_the_edges_between_them(analysis):
    h = heads_of(analysis, layer=0, n=1)[0]
    pins = [h, "L0.concat", "L0.attn_out", "L1.resid_post"]
    sub = pinned_subgraph(analysis.graph, pins)
    assert set(sub) == set(pins)
    assert set(sub.edges) == {(u, v) for u, v in analysis.graph.edges if u in pins and v in pins}
    c = Curation(pins=tuple(pins), pinned_only=True)
    view = curate(analysis, c)
    assert set(view.graph) == set(pins)
    assert all(view.graph.nodes[n]["x"] == analysis.graph.nodes[n]["x"] for n in pins)  # the same layout
    assert all(view.graph.nodes[n]["pinned"] for n in pins)
    assert [t.name for t in view.figure.data][-2:] == ["pinned", "highlighted"]


def test_labels_are_shown_instead_of_the_lens_and_stay_text(analysis):
    strings = hostile_strings()[:12]
    node = "L1.resid_post"
    for s in strings:
        text = " ".join(s.split())[:80]
        if not text:
            continue
        view = curate(analysis, set_label(EMPTY, node, text))
        a = view.graph.nodes[node]
        assert a["user_label"] == text and a["label"] == analysis.graph.nodes[node]["label"]
        for shown in (node_label(a, width=200), node_hover(a, analysis.target.token)):
            assert "<img" not in shown and "<script" not in shown.lower()
    labelled = curate(analysis, set_label(EMPTY, node, "<b>mover</b>"))
    assert node_label(labelled.graph.nodes[node]) == "&lt;b&gt;mover&lt;/b&gt;"


def test_curation_survives_redraws_and_is_exported(analysis):
    members = heads_of(analysis, n=2)
    c = set_label(grouped(analysis, members, "my <group>"), "L1.resid_post", "final")
    view = curate(analysis, c)
    smaller = redraw(view, GraphSettings(heads_per_layer=0))  # the pruning would drop every head
    assert "G1" in smaller.graph and smaller.curation == c and smaller.uncurated is not None
    assert smaller.graph.nodes["L1.resid_post"]["user_label"] == "final"
    data = graph_json(view)
    json.dumps(data)
    assert Curation.from_dict(data["graph"]["curation"]) == c
    assert next(n for n in data["nodes"] if n["id"] == "G1")["attribution"] is not None
    page = export_html(view)
    assert "my &lt;group&gt;" in page and "my <group>" not in page.split("visit-view-state")[0]
    assert "grp=G1" in page  # the link that reproduces the view
    plain = curate(view, EMPTY)  # un-curating returns the graph as built
    assert set(plain.graph) == set(analysis.graph) and plain.uncurated is None


def test_curation_data_round_trip_and_checks():
    c = set_label(grouped(None, ["L1.H2", "L3.N7"], "n|a,m=e&"), "G1", "x y")
    c = Curation(c.pins, c.groups, c.labels, "L1.H2", True)
    assert Curation.from_dict(json.loads(json.dumps(c.as_dict()))) == c
    for bad in ({"pins": ["L1.H2", "javascript:x"]}, {"groups": [{"id": "X", "name": "", "members": []}]},
                {"labels": {"L1.H2": "x" * 200}}, {"pins": "L1.H2"}):
        with pytest.raises(VisitError):
            Curation.from_dict(bad)
