"""``visit edit-eval --html``: the CounterFact table of a run and, for sequential editing, its health curve (ES, PS,
NS, S and GE against the number of edits) as a table and a plotly figure, in one offline HTML page.

Built from the run's JSON alone (:meth:`visit.editing.modes.ModeEvaluation.to_json` or the independent
:class:`visit.editing.counterfact.Evaluation`); every string from the records is escaped.
"""

from __future__ import annotations

from html import escape

import plotly.graph_objects as go

from visit.report.page import standalone_page

METRICS = ("S", "ES", "EM", "PS", "PM", "NS", "NM")
CURVE = (("ES", "#2166ac"), ("PS", "#67a9cf"), ("NS", "#b2182b"), ("S", "#333333"))
GE_COLOR = "#1b7837"


def _cell(x, fmt: str = ".1f") -> str:
    return "-" if x is None else format(x, fmt)


def _table(head: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{c}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"


def health_figure(curve: list[dict], title: str = "") -> go.Figure:
    """ES/PS/NS/S (percent, left axis) and GE (right axis, when measured) against the number of edits."""
    fig = go.Figure()
    x = [p["edits"] for p in curve]
    for name, color in CURVE:
        fig.add_trace(go.Scatter(x=x, y=[p.get(name) for p in curve], name=name, mode="lines+markers",
                                 line={"color": color, "width": 3 if name == "S" else 2}))
    if any(p.get("GE") is not None for p in curve):
        fig.add_trace(go.Scatter(x=x, y=[p.get("GE") for p in curve], name="GE", mode="lines+markers",
                                 yaxis="y2", line={"color": GE_COLOR, "dash": "dot"}))
    fig.update_layout(title=escape(title), xaxis_title="number of edits", yaxis={"title": "percent",
                      "range": [0, 105]}, yaxis2={"title": "GE (fluency)", "overlaying": "y", "side": "right"},
                      template="plotly_white", height=420, margin={"l": 60, "r": 60, "t": 50, "b": 50})
    return fig


def curve_table(curve: list[dict]) -> str:
    return _table(["edits", "ES", "PS", "NS", "S", "GE", "seconds"],
                  [[str(p["edits"])] + [_cell(p.get(m)) for m in ("ES", "PS", "NS", "S")] +
                   [_cell(p.get("GE"), ".3f"), _cell(p.get("seconds"))] for p in curve])


def edit_eval_html(result: dict, model: str) -> str:
    """The page for one run (``result``: the run's JSON)."""
    mode = result.get("mode", "independent")
    name = f"{result['method']} ({mode})"
    rows = []
    for label, metrics, intervals in (("unedited", result["unedited"], result["unedited_intervals"]),
                                      (name, result["metrics"], result["intervals"])):
        rows.append([escape(label)] + [_cell(metrics.get(m)) + (f" ({intervals[m]:.1f})" if intervals.get(m)
                                                                   is not None else "") for m in METRICS])
    parts = [("Summary", f"<p>model <code>{escape(model)}</code>, {result['n']} records, method "
                         f"<code>{escape(result['method'])}</code>, mode <code>{escape(mode)}</code>; metrics in "
                         f"percent (95% intervals of the mean over records)</p>" +
              _table(["editor"] + list(METRICS), rows))]
    curve = result.get("curve") or []
    if mode == "sequential" and curve:
        fig = health_figure(curve, f"{result['method']}: sequential editing, {result['n']} records")
        parts.append(("Health curve", fig.to_html(full_html=False, include_plotlyjs=True) + curve_table(curve)))
    records = [[escape(str(r["case_id"])), escape(r["request"]["template"].replace("{}", r["request"]["subject"])),
                escape(str(r["request"]["old"])), escape(r["request"]["new"])] +
               [_cell(None if r["metrics"].get(m) is None else 100 * r["metrics"][m]) for m in ("ES", "PS", "NS")]
               for r in result.get("records", [])]
    parts.append(("Records", _table(["case", "prompt", "old", "new", "ES", "PS", "NS"], records)))
    return standalone_page(f"visit edit-eval: {name}", f"CounterFact evaluation: {name}", parts)
