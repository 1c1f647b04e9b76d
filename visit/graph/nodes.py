"""Node kinds, ids and the "10) attn-input"-style locations of VISIT A.6."""

from __future__ import annotations

from visit.ids import COMPONENT_KINDS, GRAPH_KINDS, GROUP_KIND, NodeId
from visit.tokens import display_token

# kinds in computation order within a block (visit.ids.COMPONENT_KINDS holds one record per kind)
KINDS = GRAPH_KINDS
DRAWN_KINDS = KINDS + (GROUP_KIND,)  # what a drawn graph may hold, in legend order
SPINE_KINDS = frozenset(k for k in KINDS if COMPONENT_KINDS[k].spine)
NORM_KINDS = frozenset({"ln1", "ln2"})
# kinds whose vector lives in d_head space (queries and keys): no vocabulary projection
UNPROJECTED_KINDS = frozenset(k for k in KINDS if not COMPONENT_KINDS[k].projected)

LOCATION = {k: COMPONENT_KINDS[k].location for k in KINDS}


def node_id(layer: int, kind: str, head: int | None = None, index: int | None = None) -> str:
    """The id of a graph node (:class:`visit.ids.NodeId`); ``index`` is the neuron, or the source position of
    a key or memory value."""
    fields = COMPONENT_KINDS[kind].fields if kind in COMPONENT_KINDS else ()
    given = {"head": head, "source" if kind in ("key", "memory") else "index": index}
    return str(NodeId(layer, kind, **{k: v for k, v in given.items() if k in fields}))


def node_of(attrs: dict) -> NodeId:
    """The :class:`visit.ids.NodeId` of a graph node from its attributes."""
    kind = attrs["kind"]
    if kind in ("key", "memory"):
        return NodeId(attrs["layer"], kind, attrs["head"], source=attrs["source"])
    if kind in ("neuron", "wo_neuron"):
        return NodeId(attrs["layer"], kind, index=attrs["neuron"])
    return NodeId(attrs["layer"], kind, attrs["head"] if kind in ("query", "head") else None)


def location(attrs: dict) -> str:
    """``"10) attn-memory h3 <- ' France'@3"``: layer, then where the vector was taken (raw text)."""
    kind = attrs["kind"]
    if kind == GROUP_KIND:
        return group_location(attrs)
    token = attrs.get("source_token")
    text = f"{attrs['layer']}) {LOCATION[kind]}" + COMPONENT_KINDS[kind].detail.format(
        head=attrs.get("head"), source=attrs.get("source"), neuron=attrs.get("neuron"),
        token=None if token is None else display_token(token))
    if kind == "neuron":
        if attrs.get("expert_neuron") is not None:  # a mixture of experts: which expert, and its router weight
            expert = attrs.get("expert")
            text += (f" (shared expert, #{attrs['expert_neuron']})" if expert is None else
                     f" (expert {expert} #{attrs['expert_neuron']}, router weight {attrs['router_weight']:.2f})")
    return text


def group_location(attrs: dict) -> str:
    """``"3-5) group 'copy heads' (4 nodes)"``: a group's layer span, name (raw text) and size."""
    lo, hi = attrs["layer"], attrs.get("layer_end", attrs["layer"])
    span = f"{lo}" if lo == hi else f"{lo}-{hi}"
    return f"{span}) group '{attrs['name']}' ({len(attrs['members'])} nodes)"
