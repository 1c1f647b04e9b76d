"""A view as a query string: what the app's URL (:mod:`visit.ui.url_state`) and the HTML report's link hold.

:func:`view_query` writes ``?prompt=...&...`` from a request (model, prompt, target, position, settings) and a
:class:`~visit.graph.groups.Curation`; :func:`curation_from_query` reads the curation back. Parameters:

==========  ==============================================================================================
``model``   the model as typed in the model box; ``prompt``; ``target`` (typed) or ``tid`` (exact token id);
``pos``     the position; ``layers`` ``"20-29"``; ``prune``, ``share``; one per pruning knob; ``hl``, ``inc``
``pin``     pinned node and group ids, comma-separated: ``pin=L5.H3,G1``
``grp``     one per group, ``ID|NAME|MEMBER,MEMBER``: ``grp=G1|copy heads|L5.H3,L6.H1`` (the name is whatever
            lies between the first and the last ``|``, so it may hold ``|`` itself)
``lbl``     one per label, ``ID|TEXT``: ``lbl=L5.H3|mover``
``sel``     the selected node; ``only=1``: pinned nodes only
==========  ==============================================================================================

Reading is lenient: an entry that is malformed or over a cap is left out (the rest of the view still opens);
every id and text goes through :func:`visit.graph.groups.check_id` / ``check_text``, so a hostile string in a
URL ends up as plain text in a label, never as markup or code.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode

from visit.errors import VisitError
from visit.graph.groups import EMPTY, Curation, Group, check_caps, check_id, check_text, is_group_id

KNOB_KEYS = {"heads_per_layer": "heads", "memory_per_head": "memory", "wo_neurons": "wo", "mlp_top": "mlp_top",
             "mlp_bottom": "mlp_bottom", "min_edge_score": "min_edge"}
CURATION_KEYS = ("pin", "grp", "lbl", "sel", "only")
MULTI_KEYS = ("grp", "lbl")  # keys that repeat (one value each)


def view_query(prompt: str, *, model: str | None = None, target_text: str | None = None,
               target_id: int | None = None, position: int | None = None, settings=None,
               curation: Curation | None = None) -> str:
    """``"?prompt=...&..."``: the parameters of the module doc (defaults left out)."""
    q: list[tuple[str, object]] = [("prompt", prompt)]
    if model:
        q.append(("model", model))
    if target_id is not None:
        q.append(("tid", target_id))
    elif target_text is not None:
        q.append(("target", target_text))
    if position is not None:
        q.append(("pos", position))
    if settings is not None:
        q += _settings_query(settings)
    q += curation_query(curation or EMPTY)
    return "?" + urlencode(q)


def _settings_query(s) -> list[tuple[str, object]]:
    q: list[tuple[str, object]] = []
    if s.layer_start is not None or s.layer_end is not None:
        q.append(("layers", f"{'' if s.layer_start is None else s.layer_start}-"
                            f"{'' if s.layer_end is None else s.layer_end}"))
    if s.prune_by != "activation":
        q.append(("prune", s.prune_by))
    if s.prune_by == "circuit":
        q.append(("share", s.circuit_share))
    defaults = type(s)()
    for name, key in KNOB_KEYS.items():
        if getattr(s, name) != getattr(defaults, name):
            q.append((key, "" if getattr(s, name) is None else getattr(s, name)))
    if s.highlight:
        q.append(("hl", ",".join(s.highlight)))
    if s.include:
        q.append(("inc", ",".join(s.include)))
    return q


def curation_query(c: Curation) -> list[tuple[str, str]]:
    """The curation's ``(key, value)`` pairs (``grp`` and ``lbl`` repeat)."""
    q: list[tuple[str, str]] = []
    if c.pins:
        q.append(("pin", ",".join(c.pins)))
    q += [("grp", f"{g.id}|{g.name}|{','.join(g.members)}") for g in c.groups]
    q += [("lbl", f"{k}|{v}") for k, v in c.labels]
    if c.selected:
        q.append(("sel", c.selected))
    if c.pinned_only:
        q.append(("only", "1"))
    return q


def parse_query(search: str | None, max_chars: int = 64_000) -> dict[str, list[str]]:
    """``"?a=1&b=2&b=3"`` -> ``{"a": ["1"], "b": ["2", "3"]}`` (blank values kept; over ``max_chars``: {})."""
    if not search or len(search) > max_chars:
        return {}
    return parse_qs(search.lstrip("?"), keep_blank_values=True)


def curation_from_query(raw: dict[str, list[str]]) -> Curation:
    """The curation a parsed query string holds (:func:`parse_query`); malformed entries are left out."""
    pins = tuple(dict.fromkeys(_ids(_first(raw, "pin"))))
    groups: list[Group] = []
    for entry in raw.get("grp", [])[:64]:
        gid, _, rest = entry.partition("|")
        name, _, members = rest.rpartition("|")
        try:
            gid = check_id(gid)
            if not is_group_id(gid) or any(g.id == gid for g in groups):
                continue
            ids = tuple(m for m in dict.fromkeys(_ids(members)) if not is_group_id(m))
            if ids:
                groups.append(Group(gid, check_text(name, "a group name"), ids))
        except VisitError:
            continue
    labels: dict[str, str] = {}
    for entry in raw.get("lbl", [])[:512]:
        node, _, text = entry.partition("|")
        try:
            node, text = check_id(node), check_text(text, "a label")
        except VisitError:
            continue
        if text:
            labels[node] = text
    selected = None
    try:
        selected = check_id(_first(raw, "sel")) if _first(raw, "sel") else None
    except VisitError:
        pass
    out = Curation(pins, tuple(groups), tuple(labels.items()), selected, _first(raw, "only") in ("1", "true"))
    try:
        check_caps(out)
    except VisitError:
        return EMPTY  # a link this server would not let anyone build: open the view without it
    return out


def _first(raw: dict, key: str) -> str:
    values = raw.get(key) or [""]
    return values[0]


def _ids(text: str) -> list[str]:
    out = []
    for item in (text or "").split(","):
        try:
            out.append(check_id(item))
        except VisitError:
            continue
    return out
