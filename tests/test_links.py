"""visit.links and visit.ui.url_state: a view (request, pins, groups, labels, selected node) as a query string."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from hostile import hostile_strings
from visit.graph import GraphSettings
from visit.graph.groups import EMPTY, Curation, Group, group_pins, set_label, toggle_pin
from visit.links import curation_from_query, parse_query, view_query
from visit.ui import pins
from visit.ui import url_state
from visit.ui.state import SessionState, TraceRequest


def curation() -> Curation:
    c = group_pins(toggle_pin(toggle_pin(EMPTY, "L1.H2"), "L3.N7"), "a|b, c=d&e")
    c = set_label(set_label(toggle_pin(c, "L2.resid_post"), "G1", "movers & co"), "L1.H0", "x|y")
    return Curation(c.pins, c.groups, c.labels, "L2.resid_post", True)


def test_url_state_round_trip_with_pins_groups_labels_and_the_selected_node():
    state = SessionState(model_name="default")
    state.request = TraceRequest("The capital of France is", " Paris", 3,
                                 GraphSettings(layer_start=1, layer_end=2, mlp_top=2, highlight=("L1.H2",)))
    state.curation = curation()
    search = url_state.encode(state)
    q = url_state.decode(search)
    assert (q["prompt"], q["target"], q["pos"], q["layers"], q["mlp_top"], q["hl"], q["model"]) == \
        ("The capital of France is", " Paris", "3", "1-2", "2", "L1.H2", "default")
    assert curation_from_query(parse_query(search)) == state.curation
    assert "pin=" in search and "grp=" in search and "lbl=" in search and "sel=" in search and "only=1" in search
    state.curation = EMPTY  # nothing curated: no curation keys
    assert not {"pin", "grp", "lbl", "sel", "only"} & set(parse_query(url_state.encode(state)))


def test_hostile_names_and_labels_come_back_as_the_same_text():
    for s in hostile_strings():
        text = " ".join(s.split())[:80]
        if not text:
            continue
        c = set_label(group_pins(toggle_pin(toggle_pin(EMPTY, "L0.H1"), "L0.H2"), text), "L0.N3", text)
        back = curation_from_query(parse_query(view_query("p", curation=c)))
        assert back == c, s


def test_malformed_entries_are_left_out_not_fatal():
    search = ("?prompt=p&pin=" + quote("L1.H2,<img src=x>,G1,,L99999999.H1") + "&grp=" + quote("G1|ok|L1.H2,L1.H3")
              + "&grp=" + quote("X9|bad id|L1.H2") + "&grp=" + quote("G2|no members|") + "&grp=" + quote("G1|dup|L2.H0")
              + "&lbl=" + quote("<script>|x") + "&lbl=" + quote("L1.H3|" + "y" * 300) + "&lbl=" + quote("L1.H2|fine")
              + "&sel=" + quote("javascript:alert(1)") + "&only=yes")
    c = curation_from_query(parse_query(search))
    assert c.pins == ("L1.H2", "G1")
    assert c.groups == (Group("G1", "ok", ("L1.H2", "L1.H3")),)
    assert c.labels == (("L1.H2", "fine"),) and c.selected is None and c.pinned_only is False
    assert curation_from_query(parse_query("?" + "&".join(f"lbl=L1.N{i}|x" for i in range(600)))) == EMPTY


def test_the_pin_bar_logic():
    c = pins.change(EMPTY, pins.ids.PIN_CLICK, node="L1.H2")
    c = pins.change(c, pins.PIN, selected="L1.H3")
    c = pins.change(c, pins.GROUP, group_name="pair")
    assert c.groups[0].members == ("L1.H2", "L1.H3") and c.pins == ("G1",)
    c = pins.change(c, pins.LABEL, selected="G1", label="the pair")
    assert c.label_map == {"G1": "the pair"}
    assert pins.change(c, pins.ONLY, only=True).pinned_only
    assert pins.change(c, pins.UNGROUP, selected="G1").groups == ()
    assert pins.change(c, pins.CLEAR) == EMPTY
    from visit.errors import VisitError

    with pytest.raises(VisitError, match="click a node first"):
        pins.change(c, pins.LABEL, selected=None, label="x")
    with pytest.raises(VisitError, match="at least two"):
        pins.change(EMPTY, pins.GROUP)
