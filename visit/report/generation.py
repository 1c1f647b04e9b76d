"""Generation and steering in the HTML report (a section provider registered in
:data:`visit.report.REPORT_SECTION_PROVIDERS`).

The app's Generate panel stores what it produced on the session's analysis: ``analysis.extras[RESULT_KEY]``
(a :class:`visit.generation.generate.Generation` of the traced prompt) and ``analysis.extras["steering"]``
(``{"specs", "original", "steered"}``: two generations, and ``"diff"``, the steered pass's graph against the
original's, :func:`visit.graph.diff.diff_graphs`, when it was computed). Every token and prompt is escaped.
"""

from __future__ import annotations

from html import escape

from visit.generation.steer import differing
from visit.render.diff_figure import diff_figure
from visit.report.page import ReportSection
from visit.tokens import display_token

RESULT_KEY = "generation"  # the panel keeps its last generation as analysis.extras[RESULT_KEY]
STEERING_KEY = "steering"  # and its last steering comparison as analysis.extras[STEERING_KEY]

TOP_SHOWN = 5


def _tokens(gen, marks=None) -> str:
    spans = []
    for i, t in enumerate(gen.tokens):
        top = ", ".join(f"{display_token(a['token'])} {a['p']:.3f}" for a in t.top[:TOP_SHOWN])
        cls = "tok gen-diff" if marks and marks[i] else "tok"
        tag = "mark" if marks and marks[i] else "span"
        spans.append(f"<{tag} class='{cls}' title='{escape(f'p={t.p:.4f}; top: {top}')}'>"
                     f"{escape(display_token(t.token))}</{tag}>")
    return " ".join(spans)


def _token_table(gen) -> str:
    rows = "".join(
        f"<tr><td>{i}</td><td>{escape(display_token(t.token))}</td><td>{t.p:.4f}</td><td>"
        + escape(", ".join(f"{display_token(a['token'])} ({a['p']:.3f})" for a in t.top[:TOP_SHOWN])) + "</td></tr>"
        for i, t in enumerate(gen.tokens))
    return ("<table><thead><tr><th>#</th><th>token</th><th>p</th><th>top 5</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def generation_html(gen) -> str:
    """The prompt, the continuation's text and one row per generated token (p and top 5)."""
    return (f"<p><code>{escape(gen.prompt)}</code><b>{escape(gen.text)}</b></p>"
            f"<p>{_tokens(gen)}</p>{_token_table(gen)}")


def steering_html(steering: dict) -> str:
    """The specs, then the original and steered continuations side by side, steered tokens that differ marked."""
    original, steered = steering["original"], steering["steered"]
    marks = differing(original.ids, steered.ids)
    specs = "".join(f"<li><code>{escape(s)}</code></li>" for s in steering["specs"])
    return (f"<p>steering:</p><ul>{specs}</ul><table><thead><tr><th>original</th><th>steered</th></tr></thead>"
            f"<tbody><tr><td>{_tokens(original)}</td><td>{_tokens(steered, marks)}</td></tr></tbody></table>"
            f"<p>{sum(marks)} of {len(marks)} steered tokens differ from the original's (marked).</p>")


def report_sections(analysis) -> list:

    extras = getattr(analysis, "extras", None) or {}
    sections = []
    if extras.get(RESULT_KEY) is not None:
        sections.append(ReportSection("Generation", html=generation_html(extras[RESULT_KEY])))
    steering = extras.get(STEERING_KEY)
    if steering is not None:
        sections.append(ReportSection("Steering", html=steering_html(steering)))
        if steering.get("diff") is not None:
            sections.append(ReportSection("Steering: the steered pass's graph against the original",
                                          figure=diff_figure(steering["diff"], ("original", "steered"))))
    return sections
