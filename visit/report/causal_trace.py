"""Causal tracing in HTML: a report section (in :data:`visit.report.SECTIONS`) and standalone pages for the CLI."""

from __future__ import annotations

from html import escape

import plotly.offline

from visit.localization.causal_trace import CausalTrace
from visit.render import causal_trace as figures
from visit.report.page import ReportSection, standalone_page
from visit.tokens import display_token

RESULT_KEY = "causal_trace"  # the panel keeps its last causal trace as analysis.extras[RESULT_KEY]


def _summary_html(ct: CausalTrace) -> str:
    s0, s1 = ct.subject_range
    subject = "".join(ct.tokens[s0:s1])
    return (f"<p>Subject <code>{escape(subject)}</code> (tokens {s0}..{s1 - 1}, marked *), target "
            f"'<code>{escape(display_token(ct.target.token))}</code>': p(clean) = {ct.p_clean:.4f}, "
            f"p(corrupted) = {ct.p_corrupted:.4f} ({ct.samples} samples, noise {ct.noise:.4f}, window "
            f"{ct.window}). Each cell: the target's probability when that state is restored in the corrupted "
            f"runs.</p>")


def trace_sections(ct: CausalTrace) -> list[tuple[str, str]]:
    """``(escaped title, html)`` parts: the summary and one heatmap per kind (without plotly.js)."""
    parts = [("Causal trace", _summary_html(ct))]
    for kind in ct.kinds:
        parts.append((escape(f"Causal trace: {figures.TITLES.get(kind, kind)}"),
                      figures.heatmap(ct, kind).to_html(full_html=False, include_plotlyjs=False)))
    return parts


def report_sections(analysis) -> list:
    """The session's causal trace, when the Causal trace panel computed one for this analysis."""
    ct = analysis.extras.get(RESULT_KEY)
    if ct is None:
        return []
    sections = [ReportSection("Causal trace", html=_summary_html(ct))]
    for kind in ct.kinds:
        sections.append(ReportSection(f"Causal trace: {figures.TITLES.get(kind, kind)}",
                                      figure=figures.heatmap(ct, kind)))
    return sections


def _with_plotlyjs(parts: list[tuple[str, str]]) -> list[tuple[str, str]]:
    script = f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script>"
    return [(parts[0][0], script + parts[0][1])] + parts[1:] if parts else parts


def trace_page(ct: CausalTrace, model_name: str) -> str:
    """A standalone offline page with the three heatmaps."""
    return standalone_page(f"visit causal trace: {ct.prompt}", f"Causal trace ({model_name})",
                           _with_plotlyjs(trace_sections(ct)))


def study_page(study, model_name: str) -> str:
    """A standalone offline page with the averaged curves per kind."""
    s = study.summary()
    buckets = study.buckets()
    parts = [("Summary", f"<p>{s['n']} facts (skipped {len(s['skipped'])}); mean p(clean) = {s['p_clean']:.4f}, "
                         f"mean p(corrupted) = {s['p_corrupted']:.4f}.</p>")]
    for kind in study.kinds:
        parts.append((escape(figures.TITLES.get(kind, kind)),
                      figures.average_curves(buckets, kind).to_html(full_html=False, include_plotlyjs=False)))
    return standalone_page("visit causal tracing over a prompt set", f"Average causal traces ({model_name})",
                           _with_plotlyjs(parts))
