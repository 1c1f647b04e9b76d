"""Graph settings: the layer range and the pruning knobs (VISIT A.5), validated against a model."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace

from visit.errors import VisitError
from visit.ids import NodeId, neuron_id

PRUNE_BY = ("activation", "attribution", "circuit")
_INT_FIELDS = ("layer_start", "layer_end", "heads_per_layer", "memory_per_head", "wo_neurons", "mlp_top",
               "mlp_bottom", "top_k")


@dataclass
class GraphSettings:
    """What the flow graph shows. ``layer_start``/``layer_end`` are inclusive (None = first/last layer).

    ``include`` forces node ids in even when pruning would drop them (``"L5.N123"``, ``"L5.H3"``,
    ``"L5.H3.mem2"``, ``"L5.WO17"``); ``highlight`` marks node ids; ``flagged_neurons`` maps
    ``(layer, neuron) -> label`` (forced in, drawn with their own marker and legend entry).
    """

    layer_start: int | None = None
    layer_end: int | None = None
    heads_per_layer: int | None = None  # None = all heads, ranked by output norm
    memory_per_head: int = 3
    wo_neurons: int = 5
    mlp_top: int = 5
    mlp_bottom: int = 5
    min_edge_score: float = 0.0
    show_norms: bool = True
    prune_by: str = "activation"
    include: tuple[str, ...] = ()
    highlight: tuple[str, ...] = ()
    flagged_neurons: dict = field(default_factory=dict)
    top_k: int = 5  # tokens kept per node in the graph (node_details shows 20)
    circuit_share: float = 0.8  # prune_by="circuit": the share of the positive log-prob increase kept

    def layers(self, n_layers: int) -> range:
        """The inclusive layer range as a ``range``; raises :class:`VisitError` when out of bounds."""
        start = 0 if self.layer_start is None else self.layer_start
        end = n_layers - 1 if self.layer_end is None else self.layer_end
        if not all(isinstance(v, int) for v in (start, end)):
            raise VisitError(f"the layer range must be whole numbers, not {start!r}-{end!r}")
        if start > end:
            raise VisitError(f"the layer range {start}-{end} ends before it starts")
        if not (0 <= start <= end < n_layers):
            raise VisitError(f"layers {start}-{end} are out of range: this model has {n_layers} layers "
                             f"(0-{n_layers - 1})")
        return range(start, end + 1)

    def validated(self, n_layers: int) -> "GraphSettings":
        """A copy with checked, normalised values (tuples, ``{(layer, neuron): label}``)."""
        fixed = {name: int(value) for name in _INT_FIELDS
                 if isinstance(value := getattr(self, name), float) and value.is_integer()}
        self = replace(self, **fixed) if fixed else self  # 3.0 from a number box is 3
        for name in ("memory_per_head", "wo_neurons", "mlp_top", "mlp_bottom"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise VisitError(f"{name} must be a whole number >= 0, not {getattr(self, name)!r}")
        if self.heads_per_layer is not None and (not isinstance(self.heads_per_layer, int)
                                                 or self.heads_per_layer < 0):
            raise VisitError(f"heads_per_layer must be a whole number >= 0 or None (all), not {self.heads_per_layer!r}")
        if not isinstance(self.top_k, int) or self.top_k < 1:
            raise VisitError(f"top_k must be a whole number >= 1, not {self.top_k!r}")
        try:
            min_score = float(self.min_edge_score)
        except (TypeError, ValueError):
            raise VisitError(f"min_edge_score must be a number, not {self.min_edge_score!r}") from None
        if min_score < 0 or min_score != min_score:
            raise VisitError(f"min_edge_score must be >= 0, not {self.min_edge_score!r}")
        try:
            share = float(self.circuit_share)
        except (TypeError, ValueError):
            raise VisitError(f"circuit_share must be a number, not {self.circuit_share!r}") from None
        if not 0 < share <= 1:
            raise VisitError(f"circuit_share must be more than 0 and at most 1, not {self.circuit_share!r}")
        if self.prune_by not in PRUNE_BY:
            raise VisitError(f"prune_by must be one of {', '.join(PRUNE_BY)}, not {self.prune_by!r}")
        self.layers(n_layers)
        return replace(self, min_edge_score=min_score, circuit_share=share, include=tuple(self.include), highlight=tuple(self.highlight),
                       flagged_neurons=normalise_flags(self.flagged_neurons))

    def as_dict(self) -> dict:
        """Plain JSON-able data (flagged neurons as ``"L{layer}.N{neuron}" -> label``)."""
        data = asdict(self)
        data["include"], data["highlight"] = list(self.include), list(self.highlight)
        data["flagged_neurons"] = {neuron_id(l, n): label for (l, n), label in normalise_flags(self.flagged_neurons).items()}
        return data


def normalise_flags(flags) -> dict[tuple[int, int], str]:
    """Accepts ``{(layer, neuron): label}``, ``{"L5.N12": label}`` or ``{"5,12": label}``."""
    out: dict[tuple[int, int], str] = {}
    for key, label in dict(flags or {}).items():
        if isinstance(key, str):
            node = NodeId.try_parse(key)
            m = re.match(r"^\s*(\d+)\s*[,:]\s*(\d+)\s*$", key)
            if node is not None and node.kind == "neuron" and node.source is None:
                key = (node.layer, node.index)
            elif m:
                key = (int(m.group(1)), int(m.group(2)))
            else:
                raise VisitError(f"flagged neuron {key!r} is not 'L<layer>.N<neuron>' or '<layer>,<neuron>'")
        try:
            layer, neuron = (int(v) for v in key)
        except (TypeError, ValueError):
            raise VisitError(f"flagged neuron {key!r} is not a (layer, neuron) pair") from None
        out[(layer, neuron)] = str(label)
    return out


def parse_layers(text: str | None) -> tuple[int | None, int | None]:
    """``"20-29"`` -> ``(20, 29)``; ``"7"`` -> ``(7, 7)``; ``None``/``""``/``"all"`` -> ``(None, None)``."""
    if text is None or not str(text).strip() or str(text).strip().lower() == "all":
        return None, None
    m = re.match(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$", str(text))
    if not m:
        raise VisitError(f"layer range {text!r} is not 'START-END' (e.g. 20-29) or one layer number")
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) is not None else start
    if end < start:
        raise VisitError(f"layer range {text!r} ends before it starts")
    return start, end
