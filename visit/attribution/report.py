"""Report sections for the standalone HTML report (registered in ``visit.report``)."""

from __future__ import annotations

from visit.attribution import figures
from visit.tokens import display_token


def layer_scores(trace, target_id):
    from visit.attribution.logprob import layer_logprob_increase

    return trace.memo(("layers", target_id), lambda: layer_logprob_increase(trace, target_id))


def head_scores(trace, target_id):
    from visit.attribution.logprob import head_logprob_increase

    return trace.memo(("heads", target_id), lambda: head_logprob_increase(trace, target_id))


def ranked(trace, target_id, kind: str, method: str = "logp_increase", top: int = 20):
    from visit.attribution.ranking import ranked_components

    return trace.memo(("ranked", target_id, kind, method, top),
                      lambda: ranked_components(trace, target_id, kind, method, top))


def report_sections(analysis) -> list:
    """Layer bars, head heatmap, and the top FFN and attention neurons for the analysed target."""
    from visit.report import ReportSection

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
