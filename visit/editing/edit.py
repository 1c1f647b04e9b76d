"""The editors' one interface: a request in, an :class:`Edit` (weight deltas that can be applied and reverted) out.

Every editor is a function ``editor(vm, request, layer=None, progress=None, **options) -> Edit`` registered under
its method name with :func:`register` when its module is imported (:mod:`visit.editing.editors` imports them all,
so :data:`EDITORS` is complete once that module is; look editors up there). An editor never leaves the model changed: it reads the model
as it is (with whatever edits the caller applied) and returns deltas; :class:`visit.editing.stack.EditStack`
applies them.

Deltas are ``{parameter name: fp32 tensor in the parameter's own layout}`` (:func:`to_param_layout`), the form
:func:`visit.hooks.params.weights_changed` takes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

import torch

from visit.editing.request import EditRequest
from visit.errors import VisitError

Editor = Callable[..., "Edit"]
EDITORS: dict[str, Editor] = {}
_ids = itertools.count(1)


@dataclass(eq=False)
class Edit:
    """One computed edit. ``deltas``: ``{parameter name: fp32 delta}``; ``info``: what the editor found (losses,
    neurons, norms), JSON-friendly; ``tensors``: what checks need (ROME's ``key`` k* and ``value`` v*); ``id``:
    unique in this process (a session reverts by id)."""

    method: str
    request: EditRequest
    layer: int | None
    deltas: dict[str, torch.Tensor]
    info: dict = field(default_factory=dict)
    tensors: dict = field(default_factory=dict, repr=False)  # editor-specific tensors (ROME: "key", "value")
    id: int = field(default_factory=lambda: next(_ids))
    requests: tuple = ()  # a batch edit's requests (MEMIT, AlphaEdit); ``request`` is the first

    @property
    def all_requests(self) -> tuple:
        """Every request this edit writes (one, or a batch's)."""
        return self.requests or (self.request,)

    def label(self) -> str:
        layers = self.info.get("layers") if self.layer is None else None
        where = f" @ layer {self.layer}" if self.layer is not None else (
            f" @ layers {layers[0]}-{layers[-1]}" if layers else "")
        old = f"{self.request.old.strip()} -> " if self.request.old else "-> "
        more = f" (+{len(self.requests) - 1} more facts)" if len(self.requests) > 1 else ""
        return f"{self.method}{where}: {self.request.prompt} {old}{self.request.new.strip()}{more}"

    def to_json(self) -> dict:
        out = {"id": self.id, "method": self.method, "layer": self.layer, "request": self.request.to_json(),
               "parameters": sorted(self.deltas), "info": self.info}
        if self.requests:
            out["requests"] = [r.to_json() for r in self.requests]
        return out


def register(name: str) -> Callable[[Editor], Editor]:
    """Decorator: make ``fn`` the editor for method ``name``."""

    def deco(fn: Editor) -> Editor:
        if name in EDITORS and EDITORS[name] is not fn:
            raise ValueError(f"editor '{name}' registered twice")
        EDITORS[name] = fn
        return fn

    return deco


def check_editable(vm) -> None:
    """One clear line for models whose MLP the editors cannot change: they edit one dense output projection, and a
    mixture of experts (Mixtral, Qwen-MoE) keeps its experts' projections in one fused 3-D parameter."""
    if vm.backend is not None:
        raise VisitError(f"{vm.name} runs remotely: editing changes weights, which stay where the model lives; "
                         f"load the model locally to edit it")
    if vm.adapter.moe is not None:
        raise VisitError(f"knowledge editing changes one dense MLP projection; {vm.name} is a mixture of experts "
                         f"({vm.adapter.family}), which the editors do not support")


def to_param_layout(delta_in_out: torch.Tensor, layout: str) -> torch.Tensor:
    """A delta computed in the ``[in, out]`` view (:func:`visit.models.weights.as_in_out`) in the parameter's own
    layout: Conv1D stores ``[in, out]``, nn.Linear ``[out, in]`` (the adapter's ``weight_layout``)."""
    return delta_in_out if layout == "conv1d" else delta_in_out.T


def mlp_out_param(vm, layer: int) -> str:
    """The parameter name of layer ``layer``'s MLP output projection weight (what ROME and KN-E change)."""
    if not 0 <= int(layer) < vm.dims.n_layers:
        raise VisitError(f"layer {layer} is out of range: the model has {vm.dims.n_layers} layers "
                         f"(0..{vm.dims.n_layers - 1})")
    return f"{vm.adapter.blocks}.{int(layer)}.{vm.adapter.mlp_out}.weight"
