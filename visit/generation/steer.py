"""Steering: set, scale, zero or add to any node the graph shows while the model generates.

A steering spec is one line, ``TARGETS OP VALUE [@ POSITIONS]``::

    L20.N123=x5                       neuron 123 of layer 20: its coefficient times 5
    L7.H3=0                           head 3 of layer 7: its output zeroed (the head's slice of z, before W_O)
    L7.H3,L7.H5 *= 0.5                several nodes at once (a group of pinned nodes), each scaled by 0.5
    L3.N9 = 2.5                       the coefficient set to 2.5;   L3.N9 += 1   added to it
    L5.WO17=x0                        one W_O neuron (entry 17 of the layer's concatenated z)
    resid L12 += 4 * dir(L20.N123)    the residual stream entering layer 12 (``L12.resid_pre``) plus 4 x neuron
                                      L20.N123's value vector: as if that neuron fired 4 higher, earlier
    L12.resid_post -= 2 * dir(L9.H1)  minus 2 x head L9.H1's output at the prompt's last token
    L12.resid_pre += 8 * dir(" Paris")  plus 8 x the unembedding direction of the token " Paris"
    L7.H3=0 @ 4                       only at position 4;  @ 2,5,9  @ 3-7  several;  @ gen  every generated
                                      position;  @ all (the default)  every position, prompt included

Targets are node ids as the graph names them (:func:`visit.graph.nodes.node_id`): ``L{l}.H{h}`` (a head's
output, ``blocks.l.attn.hook_z[h]``), ``L{l}.N{i}`` (an MLP neuron's coefficient, ``blocks.l.mlp.hook_post[i]``),
``L{l}.WO{i}`` (one entry of z), and the residual-stream nodes ``L{l}.resid_pre``, ``resid_post``, ``attn_out``,
``mlp_out`` (``resid L{l}`` is ``L{l}.resid_pre``). Operations: ``=xK`` or ``*=K`` scale, ``=V`` set (``=0``
zeroes), ``+=V`` / ``-=V`` add. Added values are numbers, or ``K * dir(NODE)`` on a residual-stream node: a
neuron's direction is its value vector (row of ``W_out``, raw: ``+= 4 * dir(L20.N123)`` is what the neuron would
add with a coefficient 4 higher), a head's is its output at the prompt's last token (``z_h @ W_O[h]``), a
token's (``dir(" Paris")``) its unembedding column. On models with norms after the attention / MLP (Gemma 2/3)
these are the effective vectors before that norm: a direction, not an exact replay.

Positions count tokens of prompt + continuation from 0. ``@ gen`` starts at the prompt's last token: every
position whose prediction becomes a generated token. Steering is a list of :class:`visit.hooks.Intervention` s
applied during each pass (:meth:`Steering.writes`); it never changes a weight, and the hooks are gone when the
pass ends.

Bad specs (no node named, a node out of the model's range, a NaN or infinite value) raise one-line
:class:`VisitError` s before anything runs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import torch

from visit.errors import VisitError
from visit.hooks import Intervention, run
from visit.tokens import resolve_target

RESID = {"resid_pre": "hook_resid_pre", "resid_post": "hook_resid_post", "attn_out": "hook_attn_out",
         "mlp_out": "hook_mlp_out"}
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf|infinity)"
_NODE = r"L\d+\.(?:H\d+|N\d+|WO\d+|resid_pre|resid_post|attn_out|mlp_out)|resid\s+L\d+"
_SPEC = re.compile(rf"^\s*(?P<targets>(?:{_NODE})(?:\s*,\s*(?:{_NODE}))*)\s*(?P<op>\+=|-=|\*=|=)\s*"
                   rf"(?P<value>[^@]+?)\s*(?:@\s*(?P<where>[^@]*?)\s*)?$", re.IGNORECASE)
_TARGET = re.compile(r"^(?:L(?P<layer>\d+)\.(?:H(?P<head>\d+)|N(?P<neuron>\d+)|WO(?P<wo>\d+)|(?P<spine>\w+))"
                     r"|resid\s+L(?P<rlayer>\d+))$", re.IGNORECASE)
_DIR = re.compile(rf"^(?:(?P<coef>{_NUM})\s*\*\s*)?dir\(\s*(?P<what>.+?)\s*\)$", re.IGNORECASE)
EXAMPLES = "e.g. L20.N123=x5, L7.H3=0, \"resid L12 += 4 * dir(L20.N123)\""


@dataclass(frozen=True)
class Node:
    """A steerable node: the hook point it lives at and the feature index there (``()``: the whole vector)."""

    id: str
    name: str
    index: tuple = ()

    @property
    def residual(self) -> bool:
        return not self.index


@dataclass(frozen=True)
class Steer:
    """One parsed spec: ``op`` in ``scale | replace | add``, a number or a direction ``[d_model]`` as ``value``,
    ``positions``: ``"all"``, ``"gen"`` or a tuple of absolute positions."""

    spec: str
    nodes: tuple[Node, ...]
    op: str
    value: object
    positions: object = "all"


def parse_node(vm, text: str) -> Node:
    """``"L7.H3"`` -> the :class:`Node` (one-line VisitError when malformed or out of the model's range)."""
    m = _TARGET.match(text.strip())
    if not m:
        raise VisitError(f"'{text}' is not a node id like L7.H3, L20.N123, L5.WO17 or L12.resid_pre")
    d = vm.dims
    layer = int(m.group("layer") or m.group("rlayer"))
    if layer >= d.n_layers:
        raise VisitError(f"'{text}': layer {layer} is out of range (the model has layers 0..{d.n_layers - 1})")
    p = f"blocks.{layer}"
    canonical = f"L{layer}"
    if m.group("head") is not None:
        head = int(m.group("head"))
        _in_range(text, head, d.n_heads, "heads")
        return Node(f"{canonical}.H{head}", f"{p}.attn.hook_z", (head,))
    if m.group("neuron") is not None:
        neuron = int(m.group("neuron"))
        _in_range(text, neuron, d.d_mlp, "MLP neurons")
        return Node(f"{canonical}.N{neuron}", f"{p}.mlp.hook_post", (neuron,))
    if m.group("wo") is not None:
        wo = int(m.group("wo"))
        _in_range(text, wo, d.n_heads * d.d_head, "W_O neurons")
        return Node(f"{canonical}.WO{wo}", f"{p}.attn.hook_z", (wo // d.d_head, wo % d.d_head))
    spine = (m.group("spine") or "resid_pre").lower()
    if spine not in RESID:
        raise VisitError(f"'{text}' is not a steerable node id: heads L7.H3, neurons L20.N123, W_O neurons L5.WO17"
                         f" or residual nodes L12.{'/'.join(RESID)}")
    return Node(f"{canonical}.{spine}", f"{p}.{RESID[spine]}")


def _in_range(text: str, value: int, size: int, what: str) -> None:
    if value >= size:
        raise VisitError(f"'{text}' is out of range: the layer has {size} {what} (0..{size - 1})")


def _number(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise VisitError(f"steering '{spec}': '{text}' is not a number ({EXAMPLES})") from None
    if not math.isfinite(value):
        raise VisitError(f"steering '{spec}': the value must be finite, not {text}")
    return value


def _positions(text: str | None, spec: str):
    text = (text or "all").strip().lower()
    if text in ("all", "gen"):
        return text
    out: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        if not lo.strip().isdigit() or (dash and not hi.strip().isdigit()):
            raise VisitError(f"steering '{spec}': positions must be 'all', 'gen' or numbers like 4, 2,5 or 3-7")
        out += list(range(int(lo), int(hi) + 1)) if dash else [int(lo)]
    return tuple(sorted(set(out)))


def parse(vm, spec: str, prompt_ids: Sequence[int] | None = None) -> Steer:
    """One spec (module doc) -> a :class:`Steer` for ``vm``. ``prompt_ids`` is needed by a head's ``dir()``
    (its output at the prompt's last token)."""
    if not isinstance(spec, str) or not spec.strip():
        raise VisitError(f"the steering spec is empty ({EXAMPLES})")
    m = _SPEC.match(spec)
    if not m:
        raise VisitError(f"steering '{spec.strip()[:80]}' names no node and operation ({EXAMPLES})")
    spec = spec.strip()
    nodes = tuple(parse_node(vm, t) for t in re.split(r"\s*,\s*", m.group("targets").strip()))
    op, value = m.group("op"), m.group("value").strip()
    positions = _positions(m.group("where"), spec)
    if op == "*=" or (op == "=" and value[:1].lower() == "x"):
        return Steer(spec, nodes, "scale", _number(value[1:] if op == "=" else value, spec), positions)
    if op == "=":
        return Steer(spec, nodes, "replace", _number(value, spec), positions)
    sign = 1.0 if op == "+=" else -1.0
    d = _DIR.match(value)
    if d is None:
        return Steer(spec, nodes, "add", sign * _number(value, spec), positions)
    if not all(n.residual for n in nodes):
        raise VisitError(f"steering '{spec}': a direction can only be added to a residual-stream node "
                         "(L12.resid_pre, resid L12, L12.resid_post, L12.attn_out, L12.mlp_out)")
    coef = sign * (_number(d.group("coef"), spec) if d.group("coef") else 1.0)
    return Steer(spec, nodes, "add", coef * direction(vm, d.group("what"), prompt_ids), positions)


def direction(vm, what: str, prompt_ids: Sequence[int] | None = None) -> torch.Tensor:
    """``[d_model]``: a neuron's value vector, a head's output at the prompt's last token, or a quoted token's
    unembedding column (module doc), under the calling thread's weights (its session's edits)."""
    what = what.strip()
    if len(what) >= 2 and what[0] == what[-1] and what[0] in "\"'":
        token = resolve_target(vm.tokenizer, what[1:-1])
        with vm.weights_for():
            return vm.weights.W_U[:, token.id].clone()
    node = parse_node(vm, what)
    layer = int(node.name.split(".")[1])
    if node.name.endswith("mlp.hook_post"):
        with vm.weights_for():
            return vm.weights.W_out(layer)[node.index[0]].float().clone()
    if node.name.endswith("attn.hook_z") and len(node.index) == 1:
        if not prompt_ids:
            raise VisitError(f"dir({what}) is the head's output on the prompt: give the prompt")
        with vm.weights_for():
            _, rec = run(vm, torch.tensor([list(prompt_ids)]), read=[node.name])
            z = rec[node.name][0, -1, node.index[0]].float()
            return z @ vm.weights.W_O(layer)[node.index[0]].float()
    raise VisitError(f"dir({what}): directions are of neurons (L20.N123), heads (L7.H3) or tokens (\" Paris\")")


@dataclass(frozen=True)
class Steering:
    """Parsed specs for one prompt (``prompt_len`` tokens): :meth:`writes` gives each pass its interventions."""

    steers: tuple[Steer, ...]
    prompt_len: int

    def __bool__(self) -> bool:
        return bool(self.steers)

    @property
    def specs(self) -> list[str]:
        return [s.spec for s in self.steers]

    def writes(self, first: int, n: int) -> list[Intervention]:
        """The interventions of a pass over absolute positions ``[first, first + n)`` (their positions local to
        the pass); a steer with no position in that range is left out."""
        out: list[Intervention] = []
        for s in self.steers:
            if s.positions == "all":
                local = None
            else:
                wanted = range(self.prompt_len - 1, first + n) if s.positions == "gen" else s.positions
                local = [p - first for p in wanted if first <= p < first + n]
                if not local:
                    continue
            for node in s.nodes:
                out.append(Intervention(node.name, s.op, s.value, positions=local, index=node.index))
        return out


def steering(vm, specs: Sequence[str], prompt_ids: Sequence[int]) -> Steering:
    """Parse every spec of ``specs`` for a prompt of tokens ``prompt_ids`` (all checked before anything runs)."""
    return Steering(tuple(parse(vm, s, prompt_ids) for s in specs), len(prompt_ids))


def differing(original: Sequence[int], steered: Sequence[int]) -> list[bool]:
    """For each token of ``steered``: True where it differs from ``original``'s token at the same index (or
    ``original`` ended before), so a view can mark what steering changed."""
    return [i >= len(original) or int(t) != int(original[i]) for i, t in enumerate(steered)]


__all__ = ["Node", "Steer", "Steering", "parse", "parse_node", "direction", "steering", "differing", "RESID",
           "EXAMPLES"]
