"""Attribution in the standalone HTML report (a section in :data:`visit.report.SECTIONS`)."""

from __future__ import annotations

from visit.attribution.ranking import head_scores, layer_scores, ranked
from visit.render import attribution as figures
from visit.report.page import ReportSection
from visit.tokens import display_token


def report_sections(analysis) -> list:
    """Layer bars, head heatmap, and the top FFN and attention neurons for the analysed target."""
    tr, target = analysis.trace, analysis.target
    t = display_token(target.token)  # titles are escaped by visit.report
    ffn = ranked(tr, target.id, "ffn")
    attn = ranked(tr, target.id, "attn")
    return [
        ReportSection(f"Attribution: log-probability increase of {t} per layer",
                      figure=figures.layer_bars(layer_scores(tr, target.id))),
        ReportSection("Attribution: heads", figure=figures.head_heatmap(head_scores(tr, target.id))),
        ReportSection("Attribution: top FFN neurons",
                      html=figures.ranked_table_html(ffn, tr.tokens)),
        ReportSection("Attribution: top attention neurons (per source position)",
                      html=figures.ranked_table_html(attn, tr.tokens)),
    ]
