"""Knowledge edits in the HTML report (a section in :data:`visit.report.SECTIONS`).

A trace knows the edits it was computed with (``trace.overlay.edits``, :mod:`visit.models.overlay`); the editing
panel stores on each edit what it measured (``edit.info["before_after"]``: the objects' probabilities on the
prompts, before and after; ``edit.info["difference"]``: :func:`compact_difference` of the graphs before and
after; ``edit.info["difference_graph"]``: the whole difference, drawn as the difference graph). The section lists
the edits in order with those numbers and the most changed nodes, then each edit's difference graph.
"""

from __future__ import annotations

from html import escape

from visit.render.diff_figure import diff_figure
from visit.render.hover import optional_number
from visit.report.page import ReportSection
from visit.tokens import display_token

TOP_ROWS = 10


def compact_difference(diff: dict, rows: int = TOP_ROWS) -> dict:
    """What the report and the edit list keep of :func:`visit.graph.diff.diff_graphs`' result: the final node's
    change and the ``rows`` most changed nodes with their deltas (plain JSON)."""
    nodes = diff["nodes"]
    return {"final": diff.get("final"), "same_target": diff.get("same_target"),
            "top_changed": [{"id": n, "kind": nodes[n]["kind"], "layer": nodes[n]["layer"], **nodes[n]["delta"]}
                            for n in diff["top_changed"][:rows]]}


def percent(p: float) -> str:
    """A probability as a percentage that stays readable when tiny (3 significant digits)."""
    return f"{100 * p:.3g}%"


def _objects_table(rows: list[dict]) -> str:
    objects = list(rows[0]["before"]["objects"]) if rows else []
    head = "<th>prompt</th>" + "".join(f"<th>P({escape(o)}) before → after</th>" for o in objects) + \
        "<th>top token before → after</th>"
    body = []
    for r in rows:
        cells = [f"<td>{escape(r['prompt'])}</td>"]
        for o in objects:
            cells.append(f"<td>{percent(r['before']['objects'][o])} → {percent(r['after']['objects'][o])}</td>")
        tb, ta = r["before"]["top"][0]["token"], r["after"]["top"][0]["token"]
        cells.append(f"<td><code>{escape(display_token(tb))}</code> → <code>{escape(display_token(ta))}</code></td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _difference_table(diff: dict) -> str:
    rows = "".join(
        f"<tr><td><code>{escape(d['id'])}</code></td><td>{optional_number(d['target_rank'], '+d')}</td>"
        f"<td>{optional_number(None if d['target_prob'] is None else 100 * d['target_prob'], '+.2f')}%</td>"
        f"<td>{optional_number(d['attribution'], '+.3f')}</td></tr>" for d in diff["top_changed"])
    return ("<p>Most changed nodes of the flow graph (after − before; node ids as in the graph):</p>"
            "<table><thead><tr><th>node</th><th>Δ target rank</th><th>Δ p(target)</th><th>Δ attribution</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>")


def edit_html(edit) -> str:
    """One edit: what was asked, how, and what it changed (every user string escaped)."""
    r = edit.request
    parts = [f"<h3>{escape(edit.method)} edit #{edit.id}"
             f"{'' if edit.layer is None else f' at layer {edit.layer}'}</h3>",
             f"<p><code>{escape(r.prompt)}</code>: <code>{escape(r.old.strip()) if r.old else '?'}</code> → "
             f"<code>{escape(r.new.strip())}</code> (subject <code>{escape(r.subject)}</code>)</p>"]
    if edit.info.get("before_after"):
        parts.append(_objects_table(edit.info["before_after"]))
    if edit.info.get("difference"):
        parts.append(_difference_table(edit.info["difference"]))
    return "".join(parts)


def report_sections(analysis) -> list:
    """The edits the analysis's trace was computed with, in the order applied."""
    edits = getattr(getattr(analysis.trace, "overlay", None), "edits", ())
    if not edits:
        return []
    intro = (f"<p>This graph was computed on the model with {len(edits)} knowledge edit(s) applied, in this order "
             f"(the weights at rest are unchanged; other sessions never see these edits).</p>")
    sections = [ReportSection("Knowledge edits", html=intro + "".join(edit_html(e) for e in edits))]
    for e in edits:
        if e.info.get("difference_graph"):
            sections.append(ReportSection(f"Difference graph of edit #{e.id} (after − before)",
                                          figure=diff_figure(e.info["difference_graph"], ("before", "after"))))
    return sections
