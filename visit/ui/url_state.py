"""Links that reproduce a view: the page's URL holds what is needed to rebuild it.

After every new analysis, and after every change of pins, groups, labels or the selected node
(``ids.VIEW_VERSION``), the URL's query string is set (``history.replaceState`` through ``dcc.Location``, no
reload) to the session's view: model, prompt, target, position, layer range, prune mode and share, the pruning
knobs, highlighted and included nodes, pins, groups, labels, the selected node and the pinned-only switch
(parameters: :mod:`visit.links`). Opening such a link fills the controls, restores the marks and the curation
in the new session and traces. Every value goes back through the same parsing and caps as typed input (a
hostile string in a URL lands in a text box or a label as text, or fails with a message, never in markup).
"""

from __future__ import annotations

from dash import Input, Output, State, no_update

from visit import limits
from visit.links import KNOB_KEYS, curation_from_query, parse_query, view_query
from visit.ui import ids

MAX_QUERY = 64_000  # characters of a query string this page reads
KNOWN = ("model", "prompt", "target", "tid", "pos", "layers", "prune", "share", "hl", "inc", *KNOB_KEYS.values())


def encode(state) -> str:
    """``?prompt=...&...`` for a session's request and curation ("" before its first trace)."""
    r = state.request
    if r is None:
        return ""
    return view_query(r.prompt, model=state.model_name, target_text=r.target_text, target_id=r.target_id,
                      position=r.position, settings=r.settings, curation=getattr(state, "curation", None))


def decode(search: str | None) -> dict:
    """The query string -> ``{key: str}`` (first value of each key; unknown keys ignored; the curation's
    keys are read by :func:`visit.links.curation_from_query`)."""
    raw = parse_query(search, MAX_QUERY)
    return {k: v[0] for k, v in raw.items() if k in KNOWN and v}


def _ids(text: str | None) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(t.strip() for t in (text or "").split(",") if t.strip()))
    return items[:limits.GRAPH_MARKS.value()]


def register(app, sessions) -> None:
    @app.callback(Output(ids.URL, "search"), Input(ids.ANALYSIS_VERSION, "data"), Input(ids.VIEW_VERSION, "data"),
                  State(ids.SESSION, "data"), prevent_initial_call=True)
    def write_url(_version, _view, session_id):
        state = sessions.get(session_id)
        return encode(state) or no_update

    knob_outputs = {name: Output(cid, "value", allow_duplicate=True) for name, cid in ids.KNOBS.items()}

    @app.callback(
        output=dict(prompt=Output(ids.PROMPT, "value", allow_duplicate=True),
                    target=Output(ids.TARGET, "value", allow_duplicate=True),
                    position=Output(ids.POSITION, "value", allow_duplicate=True),
                    layer_start=Output(ids.LAYER_START, "value", allow_duplicate=True),
                    layer_end=Output(ids.LAYER_END, "value", allow_duplicate=True),
                    prune=Output(ids.PRUNE_BY, "value", allow_duplicate=True),
                    share=Output(ids.CIRCUIT_SHARE, "value", allow_duplicate=True),
                    model=Output(ids.MODEL_INPUT, "value", allow_duplicate=True),
                    knobs=knob_outputs, go=Output(ids.URL_TRACE, "data")),
        inputs=dict(search=Input(ids.URL, "search"), session_id=State(ids.SESSION, "data"),
                    shown_prompt=State(ids.PROMPT, "value")),
        prevent_initial_call="initial_duplicate")
    def read_url(search, session_id, shown_prompt):
        q = decode(search)
        nothing = dict(prompt=no_update, target=no_update, position=no_update, layer_start=no_update,
                       layer_end=no_update, prune=no_update, share=no_update, model=no_update,
                       knobs={k: no_update for k in ids.KNOBS}, go=no_update)
        state = sessions.get(session_id)
        loading = not (shown_prompt or "").strip()  # a page (re)loaded: its controls are blank, fill them
        if "prompt" not in q or (not loading and state.request is not None and encode(state) == search):
            return nothing  # no view in the URL, or the one this page just wrote
        start, _, end = q.get("layers", "").partition("-")
        marks = {}
        if q.get("hl"):
            marks["highlight"] = _ids(q["hl"])
        if q.get("inc"):
            marks["include"] = _ids(q["inc"])
        state.marks = marks  # restored with the view; the trace checks them like a panel's marks
        state.curation = curation_from_query(parse_query(search, MAX_QUERY))  # pins, groups, labels, selection
        return dict(prompt=q["prompt"], target=q.get("target", ""), position=q.get("pos") or None,
                    layer_start=start or None, layer_end=end or None,
                    prune=q.get("prune") if q.get("prune") in ("activation", "attribution", "circuit") else "activation",
                    share=_share(q.get("share")), model=q.get("model", ""),
                    knobs={name: q.get(key) if q.get(key) not in (None, "") else None
                           for name, key in KNOB_KEYS.items()},
                    go={"search": search, "tid": q.get("tid"), "model": q.get("model")})


def _share(text: str | None) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return 0.8
    return value if 0 < value <= 1 else 0.8
