"""Pins, groups and labels: what a user curates on a flow graph, as plain data and pure functions.

A :class:`Curation` is a value (frozen, JSON-able via :meth:`Curation.as_dict` / :meth:`Curation.from_dict`):

- ``pins``: node ids (or group ids) the user pinned (Ctrl/Cmd-click in the app);
- ``groups``: named sets of node ids drawn as one *supernode* (:class:`Group`, ids ``G1``, ``G2``, ...);
- ``labels``: ``{node or group id: text}`` shown instead of the logit-lens label;
- ``selected``: the node the details panel shows;
- ``pinned_only``: draw only the pinned nodes and the edges between them.

:func:`curate` applies one to a built graph and returns a *new* graph (the input is never changed), in three
steps that are each a pure function: :func:`apply_groups` (members -> one node, edges merged),
:func:`pinned_subgraph` (only pins, when asked), :func:`apply_labels`. Node positions (``x``, ``y``) are the
members' mean, so the view keeps VISIT's layout.

A group node follows the node-attribute schema of :mod:`visit.graph.builder` (so hover, details, JSON and
diffs read it like any node), with ``kind="group"`` and:

==================  =====================================================================================
``members``         the member node ids present in the graph, in graph order
``name``            the group's name (raw text; displays escape it)
``layer``           the first member's layer (``layer_end``: the last)
``attribution``     the members' combined contribution: the sum of their log-probability increases of the
                    target (:func:`visit.graph.attribution.node_attribution`), when every member has one
``norm``, lens      of the members' summed vector (``vectors``), when every member is *added* to the
                    residual stream (heads, memory values, W_O neurons, neurons, attention/MLP outputs):
                    ``label, top, target_prob, target_rank, entropy, projected`` from ``project(vector)``
==================  =====================================================================================

A merged edge keeps the heaviest member edge's ``kind`` and ``role``; ``score`` (and ``coefficient`` /
``norm`` where every merged edge has one) are summed over the member edges it stands for; ``merged`` counts
them. Edges between two members of one group disappear inside the supernode.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterable

import networkx as nx

from visit.errors import VisitError
from visit.graph.attribution import ADDED_TO_MID, ADDED_TO_PRE
from visit.graph.nodes import GROUP_KIND, group_location
from visit.ids import NodeId, is_node_id

MAX_GROUPS = 32
MAX_PINS = 256
MAX_LABELS = 256
MAX_TEXT = 80  # characters of a group name or a label
ADDITIVE = ADDED_TO_PRE | ADDED_TO_MID


@dataclass(frozen=True)
class Group:
    """A named set of node ids drawn as one node."""

    id: str  # "G1"
    name: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class Curation:
    """Pins, groups, labels, the selected node and the pinned-only switch (module doc)."""

    pins: tuple[str, ...] = ()
    groups: tuple[Group, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()  # (id, text) pairs: hashable, ordered
    selected: str | None = None
    pinned_only: bool = False

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def group(self, group_id: str) -> Group | None:
        return next((g for g in self.groups if g.id == group_id), None)

    def is_empty(self) -> bool:
        return not (self.pins or self.groups or self.labels or self.selected or self.pinned_only)

    def changes_graph(self) -> bool:
        """True when applying it changes the drawn graph (the selected node alone does not)."""
        return bool(self.pins or self.groups or self.labels or self.pinned_only)

    def node_ids(self) -> list[str]:
        """Every graph node id it names (pins and group members; group ids left out), in order, once."""
        ids = [p for p in self.pins if not is_group_id(p)]
        ids += [m for g in self.groups for m in g.members]
        return list(dict.fromkeys(ids))

    def as_dict(self) -> dict:
        """Plain JSON data: ``{"pins": [...], "groups": [{"id", "name", "members"}], "labels": {id: text},
        "selected": id | None, "pinned_only": bool}``."""
        return {"pins": list(self.pins),
                "groups": [{"id": g.id, "name": g.name, "members": list(g.members)} for g in self.groups],
                "labels": dict(self.labels), "selected": self.selected, "pinned_only": self.pinned_only}

    @classmethod
    def from_dict(cls, data: dict | None) -> "Curation":
        """The inverse of :meth:`as_dict`, checked like user input (:func:`check_id`, :func:`check_text`, caps);
        raises :class:`VisitError` with one line on anything malformed."""
        data = data or {}
        if not isinstance(data, dict):
            raise VisitError("the view state must be an object")
        pins = tuple(dict.fromkeys(check_id(p) for p in _list(data.get("pins"), "pins")))
        groups = []
        for g in _list(data.get("groups"), "groups"):
            if not isinstance(g, dict):
                raise VisitError("a group must be an object with id, name and members")
            gid = check_id(g.get("id"))
            if not is_group_id(gid):
                raise VisitError(f"a group id must look like G1, not {gid!r}")
            members = tuple(dict.fromkeys(check_id(m) for m in _list(g.get("members"), "members")))
            if any(is_group_id(m) for m in members):
                raise VisitError("a group cannot hold another group")
            groups.append(Group(gid, check_text(g.get("name", ""), "a group name"), members))
        if len({g.id for g in groups}) != len(groups):
            raise VisitError("two groups have the same id")
        labels = data.get("labels") or {}
        if not isinstance(labels, dict):
            raise VisitError("labels must map node ids to text")
        selected = data.get("selected")
        out = cls(pins, tuple(groups),
                  tuple((check_id(k), check_text(v, "a label")) for k, v in labels.items() if str(v or "").strip()),
                  None if selected in (None, "") else check_id(selected), bool(data.get("pinned_only")))
        check_caps(out)
        return out


def _list(value, what: str) -> list:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise VisitError(f"{what} must be a list")
    return list(value)


def is_group_id(text) -> bool:
    """Whether ``text`` is a group's id (``G2``)."""
    node = NodeId.try_parse(text)
    return node is not None and node.kind == GROUP_KIND


def check_id(value) -> str:
    """A node id (``L5.H3``, ``L7.resid_post``, ...) or a group id (``G2``); anything else raises."""
    text = str(value if value is not None else "").strip()
    if not is_node_id(text):
        shown = text if len(text) <= 40 else text[:39] + "…"
        raise VisitError(f"{shown!r} is not a node id like L5.H3 or a group id like G1")
    return text


def check_text(value, what: str) -> str:
    """A group name or label: any text (displays escape it), at most :data:`MAX_TEXT` characters, no line breaks."""
    text = " ".join(str(value if value is not None else "").split())
    if len(text) > MAX_TEXT:
        raise VisitError(f"{what} is at most {MAX_TEXT} characters, not {len(text)}")
    return text


def check_caps(c: Curation) -> None:
    for n, cap, what in ((len(c.pins), MAX_PINS, "pinned nodes"), (len(c.groups), MAX_GROUPS, "groups"),
                         (len(c.labels), MAX_LABELS, "labels"),
                         (max((len(g.members) for g in c.groups), default=0), MAX_PINS, "members of a group")):
        if n > cap:
            raise VisitError(f"too many {what}: {n} (at most {cap})")


# ---- changing a curation (each returns a new one) ----------------------------------------------------------

def toggle_pin(c: Curation, node_id: str) -> Curation:
    """``node_id`` pinned if it was not, unpinned if it was."""
    node_id = check_id(node_id)
    pins = tuple(p for p in c.pins if p != node_id) if node_id in c.pins else c.pins + (node_id,)
    out = replace(c, pins=pins)
    check_caps(out)
    return out


def group_pins(c: Curation, name: str = "", members: Iterable[str] | None = None) -> Curation:
    """A new group of ``members`` (default: the pinned nodes that are not groups), named ``name`` (default
    ``"group N"``). The members leave the pins and any other group; the group is pinned in their place."""
    members = tuple(dict.fromkeys(check_id(m) for m in (c.pins if members is None else members)
                                  if not is_group_id(str(m))))
    if len(members) < 2:
        raise VisitError("pin at least two nodes (Ctrl/Cmd-click) to group them")
    used = {int(g.id[1:]) for g in c.groups}
    gid = f"G{next(i for i in range(1, len(used) + 2) if i not in used)}"
    name = check_text(name, "a group name") or f"group {gid[1:]}"
    kept = tuple(replace(g, members=tuple(m for m in g.members if m not in members)) for g in c.groups)
    kept = tuple(g for g in kept if g.members)
    pins = tuple(p for p in c.pins if p not in members and (not is_group_id(p) or any(g.id == p for g in kept)))
    out = replace(c, groups=kept + (Group(gid, name, members),), pins=pins + (gid,))
    check_caps(out)
    return out


def ungroup(c: Curation, group_id: str) -> Curation:
    """The group dissolved: its members pinned again, its label dropped."""
    g = c.group(group_id)
    if g is None:
        raise VisitError(f"there is no group {group_id!r}")
    pins = tuple(p for p in c.pins if p != group_id) + tuple(m for m in g.members if m not in c.pins)
    return replace(c, groups=tuple(x for x in c.groups if x.id != group_id), pins=pins,
                   labels=tuple((k, v) for k, v in c.labels if k != group_id),
                   selected=None if c.selected == group_id else c.selected)


def set_label(c: Curation, node_id: str, text: str) -> Curation:
    """``node_id`` (a node or a group) shown as ``text``; blank text removes the label."""
    node_id, text = check_id(node_id), check_text(text, "a label")
    labels = tuple((k, v) for k, v in c.labels if k != node_id) + (((node_id, text),) if text else ())
    out = replace(c, labels=labels)
    check_caps(out)
    return out


def select(c: Curation, node_id: str | None) -> Curation:
    return replace(c, selected=None if not node_id else check_id(node_id))


# ---- applying a curation to a graph (each returns a new graph) ---------------------------------------------

def apply_groups(g: nx.DiGraph, groups: Iterable[Group], vectors: dict | None = None,
                 attribution: dict | None = None, project: Callable | None = None) -> tuple[nx.DiGraph, dict]:
    """``(new graph, {group id: summed vector})``: each group's members present in ``g`` replaced by one
    node (schema in the module doc), their edges merged. ``vectors``: node id -> d_model vector (the
    analysis's); ``attribution``: node id -> log-prob increase or None; ``project(vector) -> dict`` of lens
    fields (``label, top, target_prob, target_rank, entropy``). A group with no member in ``g`` is skipped."""
    out = g.copy()
    owner: dict[str, str] = {}
    sums: dict[str, object] = {}
    for grp in groups:
        members = [m for m in grp.members if m in g and m not in owner]
        if not members:
            continue
        for m in members:
            owner[m] = grp.id
        attrs, vector = _group_attrs(g, grp, members, vectors, attribution, project)
        if vector is not None:
            sums[grp.id] = vector
        out.add_node(grp.id, **attrs)
    if not owner:
        return out, sums
    merged: dict[tuple[str, str], list[dict]] = {}
    for u, v, e in g.edges(data=True):
        if u in owner or v in owner:
            a, b = owner.get(u, u), owner.get(v, v)
            if a != b:
                merged.setdefault((a, b), []).append(e)
    out.remove_nodes_from(owner)
    for (a, b), edges in merged.items():
        edge = merge_edges(edges)
        edge.pop("rank_from", None), edge.pop("rank_to", None)  # re-read from the ends (one may be the group)
        if out.nodes[a].get("projected") and out.nodes[b].get("projected"):
            edge.update(rank_from=out.nodes[a]["target_rank"], rank_to=out.nodes[b]["target_rank"])
        out.add_edge(a, b, **edge)
    return out, sums


def merge_edges(edges: list[dict]) -> dict:
    """One edge standing for ``edges`` (module doc): the heaviest's kind and role, summed weights."""
    top = max(edges, key=lambda e: e.get("score", 0.0))
    out = dict(top, score=float(sum(e.get("score", 0.0) for e in edges)), merged=len(edges))
    for key in ("coefficient", "norm"):
        values = [e.get(key) for e in edges]
        out[key] = float(sum(values)) if values and all(v is not None for v in values) else None
    if len(edges) > 1:
        for key in ("rank_from", "rank_to", "entropy", "via", "via_rank_in", "via_rank_out"):
            out.pop(key, None)  # facts about one member edge, not about the sum
    return out


def _summed(members: list[str], vectors: dict | None):
    if not vectors or not members or any(m not in vectors for m in members):
        return None
    total = vectors[members[0]].clone()
    for m in members[1:]:
        total = total + vectors[m]
    return total


def _group_attrs(g, grp: Group, members: list[str], vectors, attribution, project) -> tuple[dict, object]:
    """The group node's attributes, and its summed vector (None unless every member is additive)."""
    ms = [g.nodes[m] for m in members]
    layers = [a["layer"] for a in ms]
    xs, ys = [a.get("x") for a in ms], [a.get("y") for a in ms]
    attrs = dict(id=grp.id, kind=GROUP_KIND, name=grp.name, members=list(members), layer=min(layers),
                 layer_end=max(layers), head=None, neuron=None, source=None, source_token=None, attention=None,
                 coefficient=None, role=None, flag=None, highlighted=any(a.get("highlighted") for a in ms),
                 included=True, norm=None, projected=False, label=None, top=[], target_prob=None,
                 target_rank=None, entropy=None, attribution=None)
    if all(x is not None for x in xs) and all(y is not None for y in ys):
        attrs.update(x=sum(xs) / len(xs), y=sum(ys) / len(ys))
    attrs["location"] = group_location(attrs)
    if attribution is not None:
        values = [attribution.get(m) for m in members]
        if all(v is not None for v in values):
            attrs["attribution"] = float(sum(values))
    vector = _summed(members, vectors) if all(a["kind"] in ADDITIVE for a in ms) else None
    if vector is not None:
        attrs["norm"] = float(vector.norm())
        if project is not None:
            attrs.update(project(vector), projected=True)
    return attrs, vector


def pinned_subgraph(g: nx.DiGraph, pins: Iterable[str], groups: Iterable[Group] = ()) -> nx.DiGraph:
    """Only the pinned nodes (a pinned member of a group pins its group) and the edges between them."""
    owner = {m: grp.id for grp in groups for m in grp.members}
    keep = {owner.get(p, p) for p in pins}
    return g.subgraph(n for n in g if n in keep).copy()


def apply_labels(g: nx.DiGraph, labels: dict[str, str]) -> nx.DiGraph:
    """A copy with ``user_label`` set on the labelled nodes present (displays show it instead of ``label``)."""
    out = g.copy()
    for n, text in labels.items():
        if n in out and text:
            out.nodes[n]["user_label"] = text
    return out


def drawn_pins(c: Curation) -> set[str]:
    """The ids drawn as pinned: the pins, a pinned group member standing for its group."""
    owner = {m: grp.id for grp in c.groups for m in grp.members}
    return {owner.get(p, p) for p in c.pins}


def same_but_pins(a: Curation, b: Curation) -> bool:
    """True when ``a`` and ``b`` draw the same graph except for the pin marks (a pin toggled, nothing shown alone)."""
    return (a.groups, a.labels) == (b.groups, b.labels) and not a.pinned_only and not b.pinned_only


def mark_pins(g: nx.DiGraph, pins: Iterable[str]) -> None:
    """Set ``pinned`` on every node (in place: ``g`` is a graph :func:`curate` made)."""
    wanted = set(pins)
    for n, a in g.nodes(data=True):
        a["pinned"] = n in wanted


def curate(g: nx.DiGraph, c: Curation, vectors: dict | None = None, attribution: dict | None = None,
           project: Callable | None = None) -> tuple[nx.DiGraph, dict]:
    """``(the graph as the curation shows it, {group id: summed vector})``: groups, then the pinned-only
    subgraph (when ``c.pinned_only`` and something is pinned), then labels and pin marks."""
    out, sums = apply_groups(g, c.groups, vectors, attribution, project)
    if c.pinned_only and c.pins:
        out = pinned_subgraph(out, c.pins, c.groups)
    out = apply_labels(out, c.label_map)
    mark_pins(out, drawn_pins(c))
    out.graph["curation"] = c.as_dict()
    return out, {k: v for k, v in sums.items() if k in out}


EMPTY = Curation()
__all__ = ["Curation", "EMPTY", "GROUP_KIND", "Group", "apply_groups", "apply_labels", "check_id", "check_text",
           "curate", "group_pins", "merge_edges", "pinned_subgraph", "select", "set_label", "toggle_pin", "ungroup"]
