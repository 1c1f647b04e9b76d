"""The Compare tool in the report: the difference between the traced view and another prompt, target or position
(:func:`visit.graph.diff.diff_graphs`; a section in :data:`visit.report.SECTIONS`)."""

from __future__ import annotations

from html import escape

from visit.render.diff_figure import diff_figure
from visit.report.page import ReportSection
from visit.tokens import display_token

RESULT_KEY = "compare"  # the panel keeps its last difference for this analysis as analysis.extras[RESULT_KEY]
LABELS = ("this view", "compared")
ROWS = 20


def _side(title: str, side: dict, final: dict | None) -> str:
    prob = "n/a" if not final or final.get("target_prob") is None else f"{100 * final['target_prob']:.3g}%"
    return (f"<tr><td>{escape(title)}</td><td>{escape(side['prompt'])}</td><td>{side['position']}</td>"
            f"<td><code>{escape(display_token(side['target']))}</code></td><td>{prob}</td></tr>")


def compare_html(diff: dict) -> str:
    """Both sides and the most changed nodes present on both (components by Δ attribution first)."""
    final = diff.get("final") or {}
    sides = (f"<table><tr><th></th><th>prompt</th><th>position</th><th>target</th><th>p(target), last drawn "
             f"residual</th></tr>{_side(LABELS[0], diff['before'], final.get('before'))}"
             f"{_side(LABELS[1], diff['after'], final.get('after'))}</table>")
    nodes = diff["nodes"]
    changed = sorted((n for n, d in nodes.items() if d["present"] == "both" and d["change"] > 0),
                     key=lambda n: -nodes[n]["change"])[:ROWS]

    def cell(value, fmt):
        return "" if value is None else format(value, fmt)

    rows = "".join(f"<tr><td><code>{escape(n)}</code></td><td>{escape(nodes[n]['kind'])}</td>"
                   f"<td>{cell(nodes[n]['delta']['attribution'], '+.4f')}</td>"
                   f"<td>{cell(nodes[n]['delta']['log_prob'], '+.4f')}</td></tr>" for n in changed)
    return (sides + f"<p>The {len(changed)} most changed nodes present in both graphs:</p><table><tr><th>node</th>"
            f"<th>kind</th><th>Δ attribution</th><th>Δ log p (lens)</th></tr>{rows}</table>")


def report_sections(analysis) -> list:
    diff = analysis.extras.get(RESULT_KEY)
    if not diff:
        return []
    return [ReportSection("Compare: this view against another", figure=diff_figure(diff, LABELS),
                          html=compare_html(diff))]
