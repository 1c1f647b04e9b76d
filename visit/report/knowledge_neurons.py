"""Knowledge neurons in the HTML report (in :data:`visit.report.SECTIONS`): the panel's last result for the
analysis (``analysis.extras[RESULT_KEY]``), as a small table and the suppress/enhance effects."""

from __future__ import annotations

from html import escape

from visit.report.page import ReportSection
from visit.tokens import display_token

MAX_ROWS = 30
RESULT_KEY = "knowledge_neurons"  # the panel keeps its last result as analysis.extras[RESULT_KEY]


def _tok(text: str) -> str:
    return escape(display_token(text))


def kn_html(kn) -> str:
    """Summary, effects and the refined neurons (every user string escaped)."""
    prompts = "".join(f"<li><code>{escape(p)}</code> p = {prob:.4f}, coarse {len(c)}</li>"
                      for p, prob, c in zip(kn.prompts, kn.probs, kn.coarse))
    effects = []
    for name, eff in (("suppress ×0", kn.suppress), ("enhance ×2", kn.enhance)):
        for side in ("related", "unrelated"):
            e = eff.get(side)
            if e:
                effects.append(f"<tr><td>{name}</td><td>{side}</td><td>{e['mean_before']:.4f}</td>"
                               f"<td>{e['mean_after']:.4f}</td><td>{e['mean_relative_change']:+.1%}</td></tr>")
    rows = "".join(
        f"<tr><td>{n.node}</td><td>{n.score:.4f}</td><td>{kn.shares.get(n.key, 1.0):.0%}</td>"
        f"<td>{', '.join(_tok(t) for t in kn.tokens.get(n.key, [])[:5])}</td></tr>" for n in kn.refined[:MAX_ROWS])
    notes = "".join(f"<li>{escape(n)}</li>" for n in kn.notes)
    return (f"<p>Target '<code>{_tok(kn.target.token)}</code>', m = {kn.steps}, t = {kn.threshold}, "
            f"p = {kn.share}; {len(kn.refined)} refined neurons.</p><ul>{prompts}</ul>"
            "<table><thead><tr><th>manipulation</th><th>prompts</th><th>p before</th><th>p after</th>"
            f"<th>relative change</th></tr></thead><tbody>{''.join(effects)}</tbody></table>"
            "<table><thead><tr><th>neuron</th><th>attribution</th><th>share</th><th>promotes</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>" + (f"<ul class='notes'>{notes}</ul>" if notes else ""))


def report_sections(analysis) -> list:
    """The knowledge neurons, when the panel computed them for this analysis."""
    kn = analysis.extras.get(RESULT_KEY)
    if kn is None:
        return []
    return [ReportSection("Knowledge neurons (integrated gradients)", html=kn_html(kn))]
