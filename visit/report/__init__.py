"""The standalone HTML report: graph, settings, top predictions, per-layer strip, then the features' sections.

Each function in :data:`SECTIONS` takes an :class:`~visit.pipeline.Analysis` and returns
``list[ReportSection]`` (:mod:`visit.report.page`); one module per feature holds it (``visit.report.attribution``,
...), and :data:`visit.features.FEATURES` names it with the feature's panel and CLI command. A section's ``title``
is escaped here; its ``html`` is inserted as given, so a section must ``html.escape`` every user string in it;
its ``figure`` is embedded without plotly.js (the report embeds plotly.js once, with the first figure).
"""

from __future__ import annotations

import json
import logging
from html import escape
from pathlib import Path
from typing import Callable

from visit.links import view_query
from visit.report import (analyses, attribution, causal_trace, compare, editing, generation, knowledge_neurons,
                          verify)
from visit.report.page import STYLE, ReportSection, standalone_page
from visit.tokens import display_token

log = logging.getLogger(__name__)

SECTIONS: tuple[Callable[..., list[ReportSection]], ...] = (
    analyses.report_sections,
    attribution.report_sections,
    causal_trace.report_sections,
    knowledge_neurons.report_sections,
    verify.report_sections,
    compare.report_sections,
    editing.report_sections,
    generation.report_sections,
)

__all__ = ["SECTIONS", "STYLE", "ReportSection", "provider_sections", "render_report", "standalone_page",
           "view_state"]


def _tok(text: str) -> str:
    return escape(display_token(text))


def provider_sections(analysis) -> list[ReportSection]:
    sections = []
    for func in SECTIONS:
        try:
            sections.extend(func(analysis))
        except Exception as exc:  # a broken section must not lose the rest of the report
            name = f"{func.__module__}:{func.__name__}"
            log.warning("report section %s failed: %s", name, exc)
            sections.append(ReportSection(f"{name} (failed)", html=f"<p>{escape(str(exc))}</p>"))
    return sections


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _summary(analysis) -> str:
    tr, t = analysis.trace, analysis.target
    tokens = " ".join(f"<span class='tok{' pos' if i == tr.position else ''}'>{_tok(s)}</span>"
                      for i, s in enumerate(tr.tokens))
    g = analysis.graph
    items = [("model", escape(analysis.vm.name)), ("prompt", f"<code>{escape(tr.prompt)}</code>"),
             ("tokens", tokens), ("position", f"{tr.position} ('{_tok(tr.tokens[tr.position])}')"),
             ("target", f"'{_tok(t.token)}' (id {t.id})"),
             ("graph", f"{g.number_of_nodes()} nodes, {g.number_of_edges()} edges")]
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in items)
    notes = "".join(f"<li>{escape(n)}</li>" for n in analysis.notes)
    return f"<table class='kv'>{rows}</table>" + (f"<ul class='notes'>{notes}</ul>" if notes else "")


def _settings(analysis) -> str:
    rows = [[escape(k), escape(str(v))] for k, v in analysis.settings.as_dict().items()]
    return _table(["setting", "value"], rows)


def _top(analysis) -> str:
    rows = [[str(i + 1), f"'{_tok(p['token'])}'", f"{p['prob']:.4f}"] for i, p in enumerate(analysis.top_predictions)]
    return _table(["#", "token", "probability"], rows)


def _strip_table(analysis) -> str:
    rows = [[str(r["layer"]), f"'{_tok(r['attn']['top_token'])}'", str(r["attn"]["target_rank"]),
             f"'{_tok(r['mlp']['top_token'])}'", str(r["mlp"]["target_rank"])] for r in analysis.layer_strip]
    return _table(["layer", "after attention", "target rank", "after MLP", "target rank"], rows)


READING_GUIDE = (
    "<p class='guide'>Computation flows left to right, one repeating block per layer (VISIT, Appendix A). "
    "Each node is labelled with its logit-lens top token and coloured by the target's rank in its projection "
    "(green = rank 1, red = far down). Hover a node for its location (\"10) attn-input\"), top tokens, the "
    "target's probability and rank, norm and entropy; hover an edge's midpoint for its coefficient or norm "
    "and the target's rank change. Blue/red edges: positive/negative coefficients (attention weights, "
    "activations); orange: summations (width = norm); grey: the residual stream, darker for lower entropy. "
    "Query and key nodes live in d_head space and are not projected (grey). Scroll to zoom, drag to pan.</p>"
)

def label_script() -> str:
    """The app's label placement (``assets/labels.js``: labels never overlap, the rest on hover), inlined."""
    path = Path(__file__).resolve().parents[1] / "assets" / "labels.js"
    return f"<script>{path.read_text(encoding='utf-8')}</script>" if path.is_file() else ""


def view_state(analysis, link: str | None = None, app_url: str | None = None) -> str:
    """The view as the app's URL holds it (:mod:`visit.links`): the query string to append to the app's address,
    the pins, groups (with their combined contribution) and labels as tables, and the same state as JSON in a
    ``<script type="application/json" id="visit-view-state">`` block (``<`` written as ``\\u003c``). ``app_url``:
    the app's address (``http://host:port/``, known when the app exports), making the view a link that opens it."""
    c = analysis.curation
    tr, t = analysis.trace, analysis.target
    link = link or view_query(tr.prompt, target_id=t.id, position=tr.position, settings=analysis.settings,
                              curation=c)
    g = analysis.graph
    if app_url and app_url.startswith(("http://", "https://")):
        href = app_url.rstrip("/") + "/" + link
        parts = [f"<p>Open this view in the app: <a class='view-link' href='{escape(href)}'>{escape(href)}</a></p>"]
    else:
        parts = [f"<p>Open this view in the app: its address followed by <code class='view-link'>{escape(link)}</code>"
                 "</p>"]
    if c.pins:
        parts.append(f"<p>pinned: {', '.join(f'<code>{escape(p)}</code>' for p in c.pins)}"
                     f"{' (shown alone)' if c.pinned_only else ''}</p>")
    if c.groups:
        rows = []
        for grp in c.groups:
            contribution = g.nodes[grp.id].get("attribution") if grp.id in g else None
            rows.append([escape(grp.id), escape(grp.name), escape(", ".join(grp.members)),
                         "n/a" if contribution is None else f"{contribution:+.4f}"])
        parts.append(_table(["group", "name", "members", "contribution (Δ log p target)"], rows))
    if c.labels:
        parts.append(_table(["node", "label"], [[escape(k), escape(v)] for k, v in c.labels]))
    if c.selected:
        parts.append(f"<p>selected: <code>{escape(c.selected)}</code></p>")
    state = {"model": analysis.vm.name, "prompt": tr.prompt, "target_id": t.id, "position": tr.position,
             "settings": analysis.settings.as_dict(), "curation": c.as_dict(), "query": link}
    blob = json.dumps(state, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    parts.append(f"<script type='application/json' id='visit-view-state'>{blob}</script>")
    return "".join(parts)


def render_report(analysis, link: str | None = None, app_url: str | None = None) -> str:
    """The whole report as one HTML document (plotly.js inlined once: opens offline). ``link``: the view's query
    string as the app's URL holds it (default: built from the analysis, without the model box's text);
    ``app_url``: the app's address, so the view is a link (:func:`view_state`)."""
    parts = [("Summary", _summary(analysis)),
             ("Flow graph", READING_GUIDE + analysis.figure.to_html(
                 full_html=False, include_plotlyjs=True, config={"scrollZoom": True, "displaylogo": False})
              + label_script()),
             ("Top predictions", _top(analysis))]
    if analysis.strip_figure is not None:
        parts.append(("Per layer", analysis.strip_figure.to_html(full_html=False, include_plotlyjs=False)
                      + f"<details><summary>table</summary>{_strip_table(analysis)}</details>"))
    parts.append(("Settings", _settings(analysis)))
    parts.append(("View: link, pins, groups, labels", view_state(analysis, link, app_url)))
    for section in provider_sections(analysis):
        body = ""
        if section.figure is not None:
            body += section.figure.to_html(full_html=False, include_plotlyjs=False)
        if section.html:
            body += section.html
        parts.append((escape(section.title), body))
    return standalone_page(f"visit: {analysis.trace.prompt}", "visit flow graph", parts)
