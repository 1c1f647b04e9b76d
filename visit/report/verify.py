"""The Verify tool in the report: the session's knock-out checks, predicted against actual (a section in
:data:`visit.report.SECTIONS`)."""

from __future__ import annotations

from html import escape

from visit.render.verify import calibration_figure
from visit.report.page import ReportSection

RESULT_KEY = "verify"  # the panel keeps the session's checks for this analysis as analysis.extras[RESULT_KEY]


def checks_html(points: list[dict]) -> str:
    """The checks as a table, newest first (every label escaped)."""
    rows = "".join(
        f"<tr><td>{n}</td><td><code>{escape(p['label'])}</code></td><td>{escape(p['mode'])}</td>"
        f"<td>{p['predicted']:+.4f}</td><td>{p['actual']:+.4f}</td><td>{p['actual'] - p['predicted']:+.4f}</td></tr>"
        for n, p in reversed(list(enumerate(points, start=1))))
    return ("<p>Each check knocks the node(s) out in a real forward pass (zeroed, or replaced by the prompt-set "
            "mean) and sets the change of log p(target) it caused beside the change attribution predicted.</p>"
            "<table><tr><th>#</th><th>node(s)</th><th>mode</th><th>predicted</th><th>actual</th>"
            f"<th>actual − predicted</th></tr>{rows}</table>")


def report_sections(analysis) -> list:
    points = analysis.extras.get(RESULT_KEY)
    if not points:
        return []
    return [ReportSection("Verify: attribution against knock-outs", figure=calibration_figure(points),
                          html=checks_html(points))]
