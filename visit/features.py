"""Every feature of visit as one record: its panels in the app, its CLI commands, its report section and the key
its result is kept under.

The app (:data:`visit.ui.panels.PANELS`), the command line (:data:`visit.cli.COMMANDS`) and the report
(:data:`visit.report.SECTIONS`) each keep their own list of what they import; ``tests/test_features.py`` checks
that those lists and this one agree, so a feature never ships with a panel but no report section by accident.
The panels and commands are named, not imported: they live in the layers above this one (:mod:`visit.layers`),
which import this module.

A new feature: its library modules (a method package), its figures (:mod:`visit.render`), its report section
(:mod:`visit.report`), its panel (:mod:`visit.ui.panels`), its command (:mod:`visit.cli`), and a record here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from visit.report import (analyses, attribution, causal_trace, compare, editing, generation, knowledge_neurons,
                          verify)
from visit.report.page import ReportSection

ReportSections = Callable[..., list[ReportSection]]


@dataclass(frozen=True)
class Feature:
    """One feature. ``panels``: module names under ``visit.ui.panels``; ``commands``: CLI subcommands;
    ``report``: the function adding its sections to the HTML report (None: the report's own parts show it, or
    nothing does); ``result_key``: where a panel keeps its result on the analysis for the report
    (``analysis.extras[result_key]``; None when the result lives elsewhere, e.g. a memo on the trace)."""

    key: str
    title: str
    panels: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    report: ReportSections | None = None
    result_key: str | None = None


GRAPH = Feature("graph", "Flow graph and node details", panels=("details",), commands=("trace", "graph"))
ANALYSES = Feature("analyses", "Layer norm, alignment and regularization neurons",
                   panels=("layer_norm", "alignment", "regularization"), commands=("study",),
                   report=analyses.report_sections)
ATTRIBUTION = Feature("attribution", "Attribution (log-probability increase)", panels=("attribution",),
                      commands=("attribute", "ablate"), report=attribution.report_sections)
CAUSAL_TRACE = Feature("causal_trace", "Causal tracing", panels=("causal_trace",), commands=("causal-trace",),
                       report=causal_trace.report_sections, result_key=causal_trace.RESULT_KEY)
KNOWLEDGE_NEURONS = Feature("knowledge_neurons", "Knowledge neurons", panels=("knowledge_neurons",),
                            commands=("knowledge-neurons",), report=knowledge_neurons.report_sections,
                            result_key=knowledge_neurons.RESULT_KEY)
VERIFY = Feature("verify", "Verify the graph against the model", panels=("verify",), report=verify.report_sections,
                 result_key=verify.RESULT_KEY)
COMPARE = Feature("compare", "Compare two prompts' graphs", panels=("compare",), report=compare.report_sections,
                  result_key=compare.RESULT_KEY)
EDITING = Feature("editing", "Knowledge editing", panels=("editing",), commands=("edit", "edit-eval"),
                  report=editing.report_sections)

GENERATION = Feature("generation", "Generation and steering", panels=("generate",), commands=("generate",),
                      report=generation.report_sections, result_key=generation.RESULT_KEY)

FEATURES: tuple[Feature, ...] = (GRAPH, ANALYSES, ATTRIBUTION, CAUSAL_TRACE, KNOWLEDGE_NEURONS, VERIFY, COMPARE,
                                 EDITING, GENERATION)

__all__ = ["FEATURES", "Feature"]
