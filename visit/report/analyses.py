"""HTML for the analyses: sections of the flow-graph report, and the standalone study report.

``report_sections`` is in :data:`visit.report.SECTIONS`. The study
report embeds plotly.js once (with the first figure) so it opens offline; every user string is
escaped (titles here, table cells in :meth:`visit.render.analyses.Table.to_html`).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from visit.analyses.alignment import attention_alignment
from visit.analyses.ln_filter import layer_norm_filter
from visit.hooks.names import hook_name
from visit.ids import neuron_id
from visit.render import analyses as figures
from visit.report.page import ReportSection


def trace_ln_filter(trace, target_id):
    return trace.memo(("ln_filter", target_id), lambda: layer_norm_filter(trace, target_id))


def trace_alignment(trace):
    return trace.memo("alignment", lambda: attention_alignment(trace))


def report_sections(analysis) -> list:
    """Layer-norm filter, alignment and flagged neurons for the analysed prompt."""
    trace, target = analysis.trace, analysis.target
    rows = trace_ln_filter(trace, target.id)
    sections = [
        ReportSection("Layer norm as a filter", figure=figures.ln_filter_figure(rows, target.token),
                      html="<details><summary>tokens gained and lost at each norm</summary>"
                           + figures.ln_filter_table(rows).to_html() + "</details>"),
        ReportSection("Semantic alignment (sim_k)", figure=figures.alignment_trace_figure(trace_alignment(trace))),
    ]
    flagged = getattr(analysis.settings, "flagged_neurons", None) or {}
    if flagged:
        sections.append(ReportSection("Flagged neurons", html=flagged_neurons_table(trace, flagged)))
    return sections


def flagged_neurons_table(trace, flagged: dict) -> str:
    """The flagged neurons' coefficients at the traced position and their rank in their layer."""
    rows = []
    for (layer, neuron), label in sorted(flagged.items()):
        if not 0 <= layer < trace.n_layers:
            continue
        coeff = trace[hook_name(layer, "mlp.hook_post")][trace.position]
        if not 0 <= neuron < coeff.shape[0]:
            continue
        rank = int((coeff.abs() > coeff[neuron].abs()).sum()) + 1
        rows.append([neuron_id(layer, neuron), label, float(coeff[neuron]), rank])
    return figures.html_table(["neuron", "flag", "coefficient here", "rank by |coefficient| in its layer"], rows)


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1300px}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0} td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
td{white-space:pre-wrap} caption{text-align:left;font-weight:bold}
"""


def study_html(result) -> str:
    """A study result (:class:`~visit.analyses.study.StudyResult`) as one offline HTML document."""
    parts = [f"<p>{html.escape(result.summary())}. Prompts from {html.escape(result.source or 'a list')}; "
             f"{result.elapsed_s:.0f} s.</p>"]
    plotly_included = False
    for name in result.studies:
        parts.append(f"<h2>{html.escape(STUDY_TITLES.get(name, name))}</h2>")
        for title, fig, table in figures.STUDY_FIGURES[name](result.results[name]):
            parts.append(f"<h3>{html.escape(title)}</h3>")
            if fig is not None:
                parts.append(fig.to_html(full_html=False, include_plotlyjs=not plotly_included,
                                         config={"displaylogo": False}))
                plotly_included = True
            if table is not None:  # under a figure the table is the detail; alone it is the content
                parts.append(f"<details><summary>table</summary>{table.to_html()}</details>" if fig is not None
                             else table.to_html())
    parts.append("<h2>Prompts</h2><details><summary>every prompt, its target and the model's answer</summary>"
                 + figures.cases_table(result.cases).to_html() + "</details>")
    title = html.escape(f"visit study: {', '.join(result.studies)} ({result.model})")
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{STYLE}</style></head><body><h1>{title}</h1>\n" + "\n".join(parts) + "\n</body></html>\n")


STUDY_TITLES = {"ln": "Layer norm as a semantic filter (VISIT 5.2, App. E)",
                "alignment": "Semantic alignment in the attention blocks (VISIT 3, App. D)",
                "regularization": "Regularization neurons (VISIT 5.3)"}


def write_study_html(result, path) -> Path:
    path = Path(path)
    path.write_text(study_html(result), encoding="utf-8")
    return path


def write_study_json(result, path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(result.as_dict(), indent=1), encoding="utf-8")
    return path
