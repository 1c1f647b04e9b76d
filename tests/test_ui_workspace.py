"""The workspace's tool bar and panes (visit/ui/workspace.py), the registry's groups (visit/ui/panels) and the first
minute's examples (visit/ui/welcome.py), built without a browser."""

from __future__ import annotations

import types

from dash import dcc, html

from visit.prompts import default_prompt_file, load_prompt_file
from visit.ui import ids
from visit.ui.panels import DEFAULT_GROUP, GROUPS, grouped, load_panels, pane_width, tool_key
from visit.ui.welcome import example_prompts
from visit.ui.workspace import TOOL, TOOL_PANE, workspace


def walk(component):
    yield component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if child is not None and not isinstance(child, (str, int, float)):
            yield from walk(child)


def test_every_built_in_tool_has_a_group_a_description_and_a_width():
    panels = load_panels()
    for panel in panels:
        assert panel.GROUP in GROUPS
        assert panel.DESCRIPTION and "\n" not in panel.DESCRIPTION
        assert 0.2 <= pane_width(panel) <= 1.0
    names = {g: [tool_key(p) for p in members] for g, members in grouped(panels)}
    assert names["Inspect"] == ["details", "attribution", "verify"]
    assert names["Localize"] == ["causal_trace", "knowledge_neurons"]
    assert names["Analyses"] == ["layer_norm", "alignment", "regularization"]
    assert list(names)[:5] == ["Inspect", "Localize", "Edit", "Compare", "Analyses"]


def test_a_panel_without_a_group_comes_last_in_its_own():
    extra = types.ModuleType("visit_test_panel")
    extra.TITLE, extra.layout, extra.register_callbacks = "Extra", lambda: html.Div(), lambda app, ctx: None
    groups = grouped(load_panels((extra, *load_panels())))
    assert groups[-1][0] == DEFAULT_GROUP and groups[-1][1] == [extra]
    assert pane_width(types.SimpleNamespace(WIDTH=5)) == 1.0 and pane_width(extra) == 0.4


def test_the_workspace_has_one_button_and_one_pane_per_tool_and_opens_on_the_first():
    panels = load_panels()
    page = list(walk(workspace(html.Div(id="graph-area"), panels)))
    buttons = [c for c in page if isinstance(getattr(c, "id", None), dict) and c.id["type"] == TOOL]
    panes = [c for c in page if isinstance(getattr(c, "id", None), dict) and c.id["type"] == TOOL_PANE]
    assert sorted(b.children for b in buttons) == sorted(p.TITLE for p in panels)
    assert all("tab" in b.className.split() for b in buttons)
    assert [p.id["index"] for p in panes] == [tool_key(p) for p in panels]
    assert [p.id["index"] for p in panes if "tool-open" in p.className] == ["details"]
    tabs = next(c for c in page if getattr(c, "id", None) == ids.TABS)
    assert isinstance(tabs, dcc.Input) and tabs.type == "hidden" and tabs.value == "details"


def test_example_prompts_are_one_shipped_fact_per_relation():
    cases = load_prompt_file(default_prompt_file())
    examples = example_prompts()
    assert 1 < len(examples) <= 6
    relations = [next(c.relation for c in cases if c.prompt == e) for e in examples]
    assert len(set(relations)) == len(relations)
    for e, relation in zip(examples, relations):
        assert e == next(c.prompt for c in cases if c.relation == relation)  # the relation's first fact
