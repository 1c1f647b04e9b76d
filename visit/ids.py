"""Component ids: one :class:`NodeId` per component of a traced model, and one :class:`ComponentKind` per kind.

A node id is the string a component goes by everywhere (the graph, URLs, JSON, reports, the CLI's
``--include``); :class:`NodeId` is its parsed form, so no module builds or matches these strings by hand:

==============  =========================  =================================================================
kind            id                         the component
==============  =========================  =================================================================
``resid_pre``   ``L5.resid_pre``           a spine node of block 5 (one per block and kind: ``resid_pre``,
...             ``L5.<kind>``              ``ln1``, ``qkv``, ``concat``, ``attn_out``, ``resid_mid``, ``ln2``,
                                           ``mlp_out``, ``resid_post``)
``query``       ``L5.H3.q``                head 3's query at the traced position
``key``         ``L5.H3.key2``             head 3's key at source position 2
``memory``      ``L5.H3.mem2``             head 3's memory value from source position 2 (``alpha v W_O``)
``head``        ``L5.H3``                  head 3's output
``wo_neuron``   ``L5.WO17``                entry 17 of the flattened ``z`` (head ``17 // d_head``) times its W_O row
``neuron``      ``L5.N123``                MLP neuron 123; ``L5.N123@2``: the same neuron at source position 2
``head_dim``    ``L5.H3.d7``               dimension 7 of head 3's ``z`` (a W_O neuron named by head and dim)
``attn_neuron`` ``L5.H3.d7.s2``            that dimension's term from source position 2 (``alpha v``)
``group``       ``G1``                     a user's group of nodes (:mod:`visit.graph.groups`)
==============  =========================  =================================================================

>>> NodeId.parse("L5.H3.mem2")
NodeId(layer=5, kind='memory', head=3, index=None, source=2)
>>> str(NodeId(5, "neuron", index=123))
'L5.N123'
>>> NodeId.parse("L5.N123").hook_name
'blocks.5.mlp.hook_post'

:data:`COMPONENT_KINDS` holds one :class:`ComponentKind` record per kind: what the if/elif chains of the graph,
the knock-outs and the reports used to switch on (its label, its location text, the hook and feature index
that hold its value, how it is knocked out).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from visit.errors import VisitError
from visit.hooks.names import hook_name

# spine kinds: one node per block, on the residual path, id "L{layer}.{kind}"
SPINE_KINDS = ("resid_pre", "ln1", "qkv", "concat", "attn_out", "resid_mid", "ln2", "mlp_out", "resid_post")
GROUP_KIND = "group"

_SPINE = "|".join(SPINE_KINDS)
_LAYER_ID = re.compile(
    r"^L(?P<layer>\d{1,4})\.(?:(?P<spine>" + _SPINE + r")"
    r"|H(?P<head>\d{1,5})(?:\.(?P<q>q)|\.key(?P<key>\d{1,6})|\.mem(?P<mem>\d{1,6})"
    r"|\.d(?P<dim>\d{1,6})(?:\.s(?P<dsrc>\d{1,6}))?)?"
    r"|N(?P<neuron>\d{1,7})(?:@(?P<nsrc>\d{1,6}))?"
    r"|WO(?P<wo>\d{1,7}))$")
_GROUP_ID = re.compile(r"^G(?P<group>\d{1,4})$")
EXAMPLES = "L5.H3, L5.H3.q, L5.H3.key2, L5.H3.mem2, L5.WO17, L5.N123, L5.resid_post or G1"


@dataclass(frozen=True)
class NodeId:
    """One component: ``layer`` (None for a group), ``kind`` (a key of :data:`COMPONENT_KINDS`), ``head``,
    ``index`` (neuron, W_O neuron, head dimension or group number) and ``source`` (a source position).

    ``str(node)`` is the id (module doc); :meth:`parse` reads one back, ``NodeId.parse(str(n)) == n``.
    """

    layer: int | None
    kind: str
    head: int | None = None
    index: int | None = None
    source: int | None = None

    def __post_init__(self) -> None:
        spec = COMPONENT_KINDS.get(self.kind)
        if spec is None:
            raise VisitError(f"unknown component kind {self.kind!r}; known: {', '.join(COMPONENT_KINDS)}")
        for name in ("layer", "head", "index", "source"):
            value = getattr(self, name)
            needed = name in spec.fields or (name == "source" and spec.optional_source)
            if value is None and name in spec.fields:
                raise VisitError(f"a {self.kind} id needs its {name} (like {spec.example})")
            if value is not None and not needed:
                raise VisitError(f"a {self.kind} id has no {name} (like {spec.example})")
            if value is not None:
                object.__setattr__(self, name, _whole(value, f"a {self.kind} id's {name}"))

    # -- string form -------------------------------------------------------------------------------
    def __str__(self) -> str:
        return COMPONENT_KINDS[self.kind].format(self)

    @classmethod
    def parse(cls, text: str) -> "NodeId":
        """``"L5.H3.mem2"`` -> ``NodeId(5, "memory", head=3, source=2)``; anything else raises a
        :class:`VisitError` naming the accepted forms."""
        node = cls.try_parse(text)
        if node is None:
            shown = str(text)[:60]
            raise VisitError(f"{shown!r} is not a node id: expected one like {EXAMPLES}")
        return node

    @classmethod
    def try_parse(cls, text) -> "NodeId | None":
        """:meth:`parse`, or None where ``text`` is not a node id."""
        text = str(text).strip()
        m = _GROUP_ID.match(text)
        if m:
            return cls(None, GROUP_KIND, index=int(m["group"]))
        m = _LAYER_ID.match(text)
        if not m:
            return None
        g = {k: v if k == "spine" else int(v) for k, v in m.groupdict().items() if k != "q" and v is not None}
        layer = g.pop("layer")
        if "spine" in g:
            return cls(layer, g["spine"])
        if "neuron" in g:
            return cls(layer, "neuron", index=g["neuron"], source=g.get("nsrc"))
        if "wo" in g:
            return cls(layer, "wo_neuron", index=g["wo"])
        head = g["head"]
        if m["q"]:
            return cls(layer, "query", head=head)
        if "key" in g:
            return cls(layer, "key", head=head, source=g["key"])
        if "mem" in g:
            return cls(layer, "memory", head=head, source=g["mem"])
        if "dim" in g:
            return cls(layer, "attn_neuron" if "dsrc" in g else "head_dim", head=head, index=g["dim"],
                       source=g.get("dsrc"))
        return cls(layer, "head", head=head)

    # -- what the id names -------------------------------------------------------------------------
    @property
    def spec(self) -> "ComponentKind":
        return COMPONENT_KINDS[self.kind]

    @property
    def hook_name(self) -> str | None:
        """The hook point whose features hold this component's value (None for a group)."""
        hook = self.spec.hook
        return None if hook is None else hook_name(self.layer, hook)

    def features(self, d_head: int) -> tuple[int, ...]:
        """The feature index of this component inside :attr:`hook_name`'s value (``()``: all of it)."""
        return self.spec.features(self, d_head)


def _whole(value, what: str) -> int:
    """``value`` as an int >= 0 (ints and integral numbers such as numpy ints), else one clear error."""
    try:
        ok = not isinstance(value, bool) and int(value) == value and value >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise VisitError(f"{what} must be a whole number >= 0, not {value!r}")
    return int(value)


def is_node_id(text) -> bool:
    """Whether ``text`` parses as a :class:`NodeId`."""
    return NodeId.try_parse(text) is not None


def node_id(layer: int, kind: str, head: int | None = None, index: int | None = None,
            source: int | None = None) -> str:
    """The id string of one component, e.g. ``node_id(5, "head", head=3) == "L5.H3"``."""
    return str(NodeId(layer, kind, head, index, source))


def neuron_id(layer: int, neuron: int) -> str:
    """``"L{layer}.N{neuron}"``: the id of MLP neuron ``neuron`` of block ``layer``."""
    return str(NodeId(layer, "neuron", index=neuron))


def head_id(layer: int, head: int) -> str:
    """``"L{layer}.H{head}"``: the id of attention head ``head`` of block ``layer``."""
    return str(NodeId(layer, "head", head=head))


def spine_id(layer: int, kind: str) -> str:
    """``"L{layer}.{kind}"`` for a spine kind (``resid_post``, ``attn_out``, ...)."""
    if kind not in SPINE_KINDS:
        raise VisitError(f"{kind!r} is not a spine kind; known: {', '.join(SPINE_KINDS)}")
    return str(NodeId(layer, kind))


# -- one record per component kind ---------------------------------------------------------------
@dataclass(frozen=True)
class ComponentKind:
    """Everything about one kind of component that code used to switch on.

    ``fields``: which :class:`NodeId` fields an id of this kind needs; ``template``: its string form
    (``str.format`` over those fields); ``label``: what it is, in words; ``location``: VISIT A.6's location
    text (``None`` for kinds the flow graph does not draw); ``spine``: one per block on the residual path;
    ``projected``: its vector lives in ``d_model`` (the lens projects it; queries and keys live in ``d_head``);
    ``hook`` / ``features``: the per-layer hook point and feature index holding its value, where a knock-out
    writes; ``ablate``: how it is knocked out (``"zero"``: write 0 there; ``"subtract"``: subtract its term of
    the clean run; ``None``: not a knock-out site); ``detail``: what follows the location text of a graph node
    (``" h{head}"``; :func:`visit.graph.nodes.location`).
    """

    name: str
    fields: tuple[str, ...]
    template: str
    label: str
    location: str | None
    spine: bool = False
    projected: bool = True
    hook: str | None = None
    features: Callable[[NodeId, int], tuple[int, ...]] = lambda node, d_head: ()
    ablate: str | None = None
    optional_source: bool = False  # "@{source}" may follow the id (a neuron zeroed at a source position)
    detail: str = ""  # after the location in the graph's hover: str.format over head, source, neuron, token

    @property
    def example(self) -> str:
        return self.template.format(layer=5, head=3, index=7, source=2)

    def format(self, node: NodeId) -> str:
        text = self.template.format(layer=node.layer, head=node.head, index=node.index, source=node.source)
        if self.optional_source and node.source is not None:
            text += f"@{node.source}"
        return text


def _spine(name: str, location: str, hook: str, label: str, ablate: str | None = None) -> ComponentKind:
    return ComponentKind(name, ("layer",), "L{layer}." + name, label, location, spine=True,
                         projected=name != "qkv", hook=hook, ablate=ablate)


_FROM_SOURCE = " h{head} <- '{token}'@{source}"  # a key or memory value: its head, source token and position
_KINDS = (
    _spine("resid_pre", "attn-input", "hook_resid_pre", "residual stream into the block"),
    _spine("ln1", "attn-ln", "ln1.hook_out", "attention norm output"),
    _spine("qkv", "attn-qkv", "attn.hook_q", "queries, keys and values"),
    ComponentKind("query", ("layer", "head"), "L{layer}.H{head}.q", "a head's query", "attn-query",
                  projected=False, hook="attn.hook_q", features=lambda n, dh: (n.head,), detail=" h{head}"),
    ComponentKind("key", ("layer", "head", "source"), "L{layer}.H{head}.key{source}", "a head's key at a source",
                  "attn-key", projected=False, hook="attn.hook_k", detail=_FROM_SOURCE),
    ComponentKind("memory", ("layer", "head", "source"), "L{layer}.H{head}.mem{source}",
                  "a head's memory value from a source", "attn-memory", hook="attn.hook_v", detail=_FROM_SOURCE),
    ComponentKind("head", ("layer", "head"), "L{layer}.H{head}", "attention head", "attn-head",
                  hook="attn.hook_z", features=lambda n, dh: (n.head,), ablate="zero", detail=" h{head}"),
    _spine("concat", "attn-heads-concat", "attn.hook_z", "the heads' outputs before W_O's bias"),
    ComponentKind("wo_neuron", ("layer", "index"), "L{layer}.WO{index}", "W_O neuron", "attn-W_O-neuron",
                  hook="attn.hook_z", features=lambda n, dh: divmod(n.index, dh), ablate="zero",
                  detail=" {neuron} (h{head})"),
    _spine("attn_out", "attn-output", "hook_attn_out", "attention output", ablate="zero"),
    _spine("resid_mid", "mlp-input", "hook_resid_mid", "residual stream after the attention"),
    _spine("ln2", "mlp-ln", "ln2.hook_out", "MLP norm output"),
    ComponentKind("neuron", ("layer", "index"), "L{layer}.N{index}", "MLP neuron", "mlp-neuron",
                  hook="mlp.hook_post", features=lambda n, dh: (n.index,), ablate="zero", optional_source=True,
                  detail=" {neuron}"),
    _spine("mlp_out", "mlp-output", "hook_mlp_out", "MLP output", ablate="zero"),
    _spine("resid_post", "block-output", "hook_resid_post", "residual stream out of the block"),
    ComponentKind("head_dim", ("layer", "head", "index"), "L{layer}.H{head}.d{index}",
                  "one dimension of a head's z (a W_O neuron)", None, hook="attn.hook_z",
                  features=lambda n, dh: (n.head, n.index), ablate="zero"),
    ComponentKind("attn_neuron", ("layer", "head", "index", "source"), "L{layer}.H{head}.d{index}.s{source}",
                  "one dimension of a head's z from one source (an attention neuron)", None, hook="attn.hook_z",
                  features=lambda n, dh: (n.head, n.index), ablate="subtract"),
    ComponentKind(GROUP_KIND, ("index",), "G{index}", "a user's group of nodes", None),
)
COMPONENT_KINDS: dict[str, ComponentKind] = {k.name: k for k in _KINDS}
# the kinds the flow graph draws, in computation order within a block
GRAPH_KINDS = tuple(k.name for k in _KINDS if k.location is not None)
