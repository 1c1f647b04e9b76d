"""Node ids (visit.ids) and hook names (visit.hooks.names): round trips for every kind, the kind records are
complete, every id a real graph holds parses back to its node, bad ids give one clear VisitError."""

from __future__ import annotations

import pytest

from visit.errors import VisitError
from visit.graph import build_graph
from visit.graph.nodes import DRAWN_KINDS, KINDS, node_id, node_of
from visit.hooks import hook_point, known_names
from visit.hooks.names import block_name, hook_name, parse_hook_name
from visit.ids import COMPONENT_KINDS, GRAPH_KINDS, NodeId, head_id, is_node_id, neuron_id, spine_id
from visit.tokens import display_token
from visit.tracer import trace

PROMPT = "The capital of France is the city of"
TARGET = 7042

# one id of every kind, written by hand: the strings URLs, JSON and reports hold must never change
EXPECTED = {
    "L5.resid_pre": NodeId(5, "resid_pre"), "L5.ln1": NodeId(5, "ln1"), "L5.qkv": NodeId(5, "qkv"),
    "L5.H3.q": NodeId(5, "query", head=3), "L5.H3.key2": NodeId(5, "key", head=3, source=2),
    "L5.H3.mem2": NodeId(5, "memory", head=3, source=2), "L5.H3": NodeId(5, "head", head=3),
    "L5.concat": NodeId(5, "concat"), "L5.WO17": NodeId(5, "wo_neuron", index=17),
    "L5.attn_out": NodeId(5, "attn_out"), "L5.resid_mid": NodeId(5, "resid_mid"), "L5.ln2": NodeId(5, "ln2"),
    "L5.N123": NodeId(5, "neuron", index=123), "L5.N123@4": NodeId(5, "neuron", index=123, source=4),
    "L5.mlp_out": NodeId(5, "mlp_out"), "L5.resid_post": NodeId(5, "resid_post"),
    "L5.H3.d7": NodeId(5, "head_dim", head=3, index=7),
    "L5.H3.d7.s2": NodeId(5, "attn_neuron", head=3, index=7, source=2), "G12": NodeId(None, "group", index=12),
}


@pytest.fixture(scope="module")
def traced(tiny_factory):
    return trace(tiny_factory("llama"), PROMPT)


@pytest.mark.parametrize("text", sorted(EXPECTED))
def test_round_trip(text):
    node = NodeId.parse(text)
    assert node == EXPECTED[text]
    assert str(node) == text
    assert NodeId.parse(f"  {text} ") == node  # pasted ids keep working
    assert is_node_id(text)


def test_every_kind_has_an_id_that_round_trips():
    assert {n.kind for n in EXPECTED.values()} == set(COMPONENT_KINDS)
    for kind in COMPONENT_KINDS.values():
        assert NodeId.parse(kind.example).kind == kind.name
        assert str(NodeId.parse(kind.example)) == kind.example


def test_helpers_spell_the_same_ids():
    assert neuron_id(27, 846) == "L27.N846" == str(NodeId(27, "neuron", index=846))
    assert head_id(5, 3) == "L5.H3"
    assert spine_id(0, "resid_post") == "L0.resid_post"
    assert node_id(3, "key", head=2, index=4) == "L3.H2.key4"  # the graph passes a key's source as its index
    assert node_id(3, "wo_neuron", head=1, index=9) == "L3.WO9"  # the head of a W_O neuron is not in its id
    assert node_id(3, "resid_mid") == "L3.resid_mid"


@pytest.mark.parametrize("bad", ["", "L", "L5", "L5.", "L5.H", "L1.Q3", "H3", "L5.H3.mem", "L5.N-1", "L5.N1.2",
                                 "Lx.H3", "L5.resid", "L5.H3.q2", "G", "G1.2", "l5.h3", "L5.N12@", "<b>L5.H3</b>"])
def test_bad_ids_give_one_clear_error(bad):
    assert not is_node_id(bad)
    with pytest.raises(VisitError, match="is not a node id: expected one like L5.H3") as info:
        NodeId.parse(bad)
    assert "\n" not in str(info.value)


def test_bad_fields_give_one_clear_error():
    with pytest.raises(VisitError, match="unknown component kind 'attention'"):
        NodeId(5, "attention")
    with pytest.raises(VisitError, match="a head id needs its head"):
        NodeId(5, "head")
    with pytest.raises(VisitError, match="a resid_post id has no head"):
        NodeId(5, "resid_post", head=1)
    for bad in (-1, 1.5, "3", None, True):
        with pytest.raises(VisitError, match="whole number >= 0"):
            NodeId(bad if bad is not None else [], "head", head=0)
    assert NodeId(2.0, "head", head=1) == NodeId(2, "head", head=1)  # integral numbers (e.g. from JSON) are fine
    with pytest.raises(VisitError, match="not a spine kind"):
        spine_id(1, "head")


def test_kind_records_are_complete():
    assert GRAPH_KINDS == KINDS
    for kind in COMPONENT_KINDS.values():
        assert kind.label and kind.fields and kind.template
        for field in kind.fields:  # the template spells every field it needs, and only those
            assert "{" + field + "}" in kind.template
        assert kind.ablate in (None, "zero", "subtract")
        assert kind.ablate is None or kind.hook is not None
        if kind.name in GRAPH_KINDS:
            assert kind.location and kind.hook
    from visit.render.figure import SYMBOLS
    from visit.render.layout import ATTN_COLUMNS, PARALLEL_MLP, SEQUENTIAL_MLP

    assert set(DRAWN_KINDS) <= set(SYMBOLS)  # every drawn kind has a marker and a column
    assert set(KINDS) == set(ATTN_COLUMNS) | set(SEQUENTIAL_MLP) == set(ATTN_COLUMNS) | set(PARALLEL_MLP)


def test_every_graph_node_parses_back_to_itself(traced):
    g = build_graph(traced, TARGET).graph
    assert {a["kind"] for _, a in g.nodes(data=True)} == set(KINDS)
    for n, a in g.nodes(data=True):
        node = NodeId.parse(n)
        assert node == node_of(a) and node.kind == a["kind"] and node.layer == a["layer"]
        assert str(node) == n
        assert a["location"] == f"{a['layer']}) {COMPONENT_KINDS[a['kind']].location}" + _old_detail(a)


def _old_detail(a: dict) -> str:
    """What the location text said after the kind before the kind records held it (behaviour unchanged)."""
    kind = a["kind"]
    if kind in ("query", "head"):
        return f" h{a['head']}"
    if kind in ("key", "memory"):
        return f" h{a['head']} <- '{display_token(a['source_token'])}'@{a['source']}"
    if kind == "wo_neuron":
        return f" {a['neuron']} (h{a['head']})"
    return f" {a['neuron']}" if kind == "neuron" else ""


def test_hook_name_and_features_hold_the_component(traced):
    """Each kind's hook is a value of the trace, and its feature index reads the value the component has."""
    d = traced.vm.dims
    for kind in COMPONENT_KINDS.values():
        if kind.hook is None:
            continue
        node = NodeId.parse(kind.example.replace("L5.", "L1.").replace("N123", "N3").replace("WO17", "WO5"))
        assert node.hook_name in traced
        value = traced[node.hook_name][traced.position]
        value[node.features(d.d_head)]  # a valid index into the features
        if kind.ablate is not None:
            assert hook_point(traced.vm, node.hook_name).writable
    z = traced[hook_name(1, "attn.hook_z")][traced.position]
    wo = NodeId(1, "wo_neuron", index=d.d_head + 2)
    assert wo.features(d.d_head) == (1, 2)
    assert z[wo.features(d.d_head)] == z.reshape(-1)[d.d_head + 2]


def test_hook_names_round_trip(traced):
    assert hook_name(3, "mlp.hook_post") == "blocks.3.mlp.hook_post"
    assert block_name(3) == "blocks.3"
    assert parse_hook_name("blocks.12.attn.hook_z") == (12, "attn.hook_z")
    assert parse_hook_name("ln_final.hook_in") == (None, "ln_final.hook_in")
    for name in known_names(traced.n_layers, traced.vm.adapter):
        layer, suffix = parse_hook_name(name)
        assert (name if layer is None else hook_name(layer, suffix)) == name
