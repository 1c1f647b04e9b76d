"""Server-side caps (visit/limits.py): one place, env overrides, one clear message; the app applies them."""

from __future__ import annotations

import pytest

from visit import limits
from visit.errors import VisitError
from visit.graph.settings import GraphSettings
from visit.ui.controls import build_settings, make_request, parse_prompt, parse_target


def test_limit_check_and_env_override(monkeypatch):
    assert limits.SAMPLES.check(10) == 10 and limits.SAMPLES.check(10.0) == 10 and limits.SAMPLES.check("7") == 7
    with pytest.raises(VisitError, match=r"noise samples: 51 asked, this server allows at most 50 \(set VISIT_MAX_SAMPLES"):
        limits.SAMPLES.check(51, "noise samples")
    for bad in (None, True, "x", 1.5, float("nan"), float("inf")):
        with pytest.raises(VisitError, match="whole number"):
            limits.STEPS.check(bad)
    with pytest.raises(VisitError, match="at least 0"):
        limits.STEPS.check(-1)
    monkeypatch.setenv("VISIT_MAX_STEPS", "3")
    assert limits.STEPS.value() == 3
    with pytest.raises(VisitError, match="at most 3"):
        limits.STEPS.check(4)
    monkeypatch.setenv("VISIT_MAX_STEPS", "lots")
    with pytest.raises(VisitError, match="VISIT_MAX_STEPS must be a whole number"):
        limits.STEPS.value()


def test_every_cap_is_listed_once_and_documented():
    names = [lim.name for lim in limits.ALL]
    assert len(names) == len(set(names)) == len({lim.env for lim in limits.ALL})
    for lim in limits.ALL:
        assert getattr(limits, lim.name) is lim
        assert f"``{lim.name}``" in limits.__doc__ and f"``{lim.env}``" in limits.__doc__
    assert {row["name"] for row in limits.table()} == set(names)


def test_graph_settings_caps():
    limits.check_graph_settings(GraphSettings())  # the defaults pass
    with pytest.raises(VisitError, match="top MLP neurons: 100,000 asked"):
        limits.check_graph_settings(GraphSettings(mlp_top=100_000))
    with pytest.raises(VisitError, match="included, highlighted and flagged"):
        limits.check_graph_settings(GraphSettings(include=tuple(f"L0.N{i}" for i in range(300))))
    limits.check_graph_settings(GraphSettings(heads_per_layer=None))  # None = all heads: the model bounds it


def test_controls_apply_the_caps(tiny_factory, monkeypatch):
    vm = tiny_factory("gpt2")
    knobs = {"mlp_top": 10**9}
    with pytest.raises(VisitError, match="at most 64"):
        make_request(vm, prompt="Hello", target=None, position=None, layer_start=None, layer_end=None, knobs=knobs,
                     prune_by=None, show_norms=None, marks={})
    monkeypatch.setenv("VISIT_MAX_PROMPT_CHARS", "10")
    with pytest.raises(VisitError, match="11 characters long; this server allows at most 10"):
        parse_prompt("a" * 11)
    with pytest.raises(VisitError, match="target is 201 characters"):
        parse_target("x" * 201)
    # marks a panel sets count too
    settings = build_settings(GraphSettings(), marks={"highlight": tuple(f"L0.H{i}" for i in range(300))})
    with pytest.raises(VisitError, match="flagged nodes"):
        limits.check_graph_settings(settings)
