"""Node kinds, ids and the "10) attn-input"-style locations of VISIT A.6."""

from __future__ import annotations

from visit.tokens import display_token

# kinds in computation order within a block
KINDS = ("resid_pre", "ln1", "qkv", "query", "key", "memory", "head", "concat", "wo_neuron", "attn_out",
         "resid_mid", "ln2", "neuron", "mlp_out", "resid_post")
GROUP_KIND = "group"  # a user's group of nodes drawn as one (visit.graph.groups)
DRAWN_KINDS = KINDS + (GROUP_KIND,)  # what a drawn graph may hold, in legend order
SPINE_KINDS = frozenset({"resid_pre", "ln1", "qkv", "concat", "attn_out", "resid_mid", "ln2", "mlp_out", "resid_post"})
NORM_KINDS = frozenset({"ln1", "ln2"})
# kinds whose vector lives in d_head space (queries and keys): no vocabulary projection
UNPROJECTED_KINDS = frozenset({"qkv", "query", "key"})

LOCATION = {
    "resid_pre": "attn-input", "ln1": "attn-ln", "qkv": "attn-qkv", "query": "attn-query",
    "key": "attn-key", "memory": "attn-memory", "head": "attn-head", "concat": "attn-heads-concat",
    "wo_neuron": "attn-W_O-neuron", "attn_out": "attn-output", "resid_mid": "mlp-input",
    "ln2": "mlp-ln", "neuron": "mlp-neuron", "mlp_out": "mlp-output", "resid_post": "block-output",
}


def node_id(layer: int, kind: str, head: int | None = None, index: int | None = None) -> str:
    if kind in SPINE_KINDS:
        return f"L{layer}.{kind}"
    if kind == "head":
        return f"L{layer}.H{head}"
    if kind == "query":
        return f"L{layer}.H{head}.q"
    if kind == "key":
        return f"L{layer}.H{head}.key{index}"
    if kind == "memory":
        return f"L{layer}.H{head}.mem{index}"
    if kind == "wo_neuron":
        return f"L{layer}.WO{index}"
    if kind == "neuron":
        return f"L{layer}.N{index}"
    raise ValueError(f"unknown node kind {kind}")


def location(attrs: dict) -> str:
    """``"10) attn-memory h3 <- ' France'@3"``: layer, then where the vector was taken (raw text)."""
    kind = attrs["kind"]
    if kind == GROUP_KIND:
        return group_location(attrs)
    text = f"{attrs['layer']}) {LOCATION[kind]}"
    if kind in ("query", "head"):
        text += f" h{attrs['head']}"
    elif kind in ("key", "memory"):
        text += f" h{attrs['head']} <- '{display_token(attrs['source_token'])}'@{attrs['source']}"
    elif kind == "wo_neuron":
        text += f" {attrs['neuron']} (h{attrs['head']})"
    elif kind == "neuron":
        text += f" {attrs['neuron']}"
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
