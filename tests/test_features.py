"""The feature registry (:mod:`visit.features`) agrees with the app's panels, the CLI's commands and the report."""

from __future__ import annotations

from collections import Counter

import pytest

from visit.cli import COMMANDS, build_parser
from visit.features import FEATURES
from visit.pipeline import analyze
from visit.report import SECTIONS
from visit.ui.panels import PANELS


def _subcommands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return list(sub.choices)


def test_feature_keys_are_unique():
    assert len({f.key for f in FEATURES}) == len(FEATURES)


def test_every_panel_belongs_to_one_feature():
    panel_names = [p.__name__.rsplit(".", 1)[1] for p in PANELS]
    claimed = Counter(name for f in FEATURES for name in f.panels)
    assert sorted(claimed) == sorted(panel_names)  # no panel without a feature, no feature naming a missing panel
    assert max(claimed.values()) == 1


def test_every_command_belongs_to_one_feature():
    commands = _subcommands()
    assert len(commands) == len(COMMANDS)
    claimed = Counter(name for f in FEATURES for name in f.commands)
    assert sorted(claimed) == sorted(commands)
    assert max(claimed.values()) == 1


def test_the_report_shows_the_features_sections_in_order():
    assert [f.report for f in FEATURES if f.report is not None] == list(SECTIONS)


def test_a_feature_with_a_command_and_a_panel_has_a_report_section():
    """What the app and the CLI show of a prompt's analysis, the HTML report shows too (verify and compare draw
    views of their own, the flow graph is the report's first part)."""
    missing = [f.key for f in FEATURES if f.panels and f.commands and f.report is None and f.key != "graph"]
    assert missing == []


class _Probe:
    """A stored result that says when a report section reads it."""

    def __getattr__(self, name):
        raise LookupError(f"read .{name}")

    def __iter__(self):  # results kept as lists (verify's checks) or dicts (compare's difference)
        raise LookupError("read by iterating")

    def __getitem__(self, key):
        raise LookupError(f"read [{key!r}]")


@pytest.fixture(scope="module")
def analysis(tiny_factory):
    return analyze(tiny_factory("llama"), "The capital of France is")


@pytest.mark.parametrize("feature", [f for f in FEATURES if f.result_key], ids=lambda f: f.key)
def test_the_report_section_reads_the_result_key(analysis, feature):
    analysis.extras.pop(feature.result_key, None)
    assert feature.report(analysis) == []  # no result yet: no section
    analysis.extras[feature.result_key] = _Probe()
    try:
        with pytest.raises(LookupError, match="read"):
            feature.report(analysis)
    finally:
        del analysis.extras[feature.result_key]
