"""The remote backend: the hook layer's reads and writes, the logit lens and weight slices as requests.

:func:`visit.hooks.run` hands a remote model's passes here (``vm.backend``): the same ``read`` names and
``write`` interventions become one planned request (:func:`visit.remote.program.run_sites`). The plan lists
the module sites in the order the model runs them (nnsight reads a pass's values as they are produced), each
with the *parts* of its input or output to save; the client then applies each hook point's view
(:func:`visit.hooks.points.read`) to what came back, so every name means exactly what it means locally.

Writes run where the model lives: :class:`~visit.hooks.Intervention` objects travel by value and are applied
to the ``plain``, ``first`` or ``heads`` view of their site (every write tracing, attribution and causal
tracing make); the q/k/v slices of fused projections, the gate half of fused MLPs and mixtures of experts'
computed views cannot be written remotely (one line says so).

Not remote: gradients (``grad=True``: integrated gradients, ROME), key/value caches (``past_key_values``),
and anything that changes weights (:func:`visit.editing.edit.check_editable`,
:func:`visit.hooks.weights_changed` refuse remote models with one line).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Iterable

import torch

from visit.errors import VisitError
from visit.hooks import points as hp
from visit.hooks.interventions import Intervention
from visit.hooks.runner import Hooked
from visit.lens import top_tokens
from visit.matmul import onednn_fits, pack, packed_times
from visit.remote import causal as remote_causal
from visit.remote import estimate, program
from visit.remote.transport import Transport

_PART = {"first": "first", "pattern": "pattern", "logits_attr": "logits"}  # else "value"
_WRITABLE = {"plain", "first", "heads"}
_MODEL_KWARGS = {"attention_mask", "position_ids", "logits_to_keep"}


class RemoteBackend:
    """Forward passes, lens projections and weights of a model that lives elsewhere (``transport``)."""

    def __init__(self, transport: Transport, unembed_path: str, value_bytes: int = 4):
        self.transport = transport
        self.unembed_path = unembed_path
        self.value_bytes = value_bytes  # of the model where it runs (what recorded values travel in)
        self._order: dict[tuple[str, str], int] | None = None

    @property
    def ledger(self):
        return self.transport.ledger

    def describe(self, vm, tokens: int = 16) -> str:
        """Where the model runs and what one trace of ``tokens`` tokens transfers (:mod:`visit.remote.estimate`)."""
        where = "simulated NDIF (a local copy)" if self.transport.simulate else "NDIF"
        est = estimate.per_trace(vm.model.config, tokens, bytes_per_value=self.value_bytes)
        return f"runs on {where}: at {tokens} tokens {est.describe()}; {self.ledger.describe()} so far"

    # -- forward passes ------------------------------------------------------------------------------------
    def run(self, vm, input_ids: torch.Tensor, read: Iterable[str] = (), write: Iterable[Intervention] = (),
            grad: bool = False, target: int | None = None, **model_kwargs) -> tuple[torch.Tensor, Hooked]:
        """:func:`visit.hooks.run` for a remote model: ``(logits [batch, pos, d_vocab], recorded)``; with
        ``target`` (a token id), instead of the logits each row's probability of it at the last position
        (``[batch]``), computed where the model lives (causal tracing needs no more)."""
        if grad:
            raise VisitError(f"{vm.name} runs remotely: gradients (integrated gradients, editing) are not "
                             f"available for remote models")
        extra = set(model_kwargs) - _MODEL_KWARGS
        if extra:
            raise VisitError(f"{vm.name} runs remotely: '{sorted(extra)[0]}' (a local key/value cache) is not "
                             f"available for remote models")
        ids = input_ids.cpu()
        ids = ids.unsqueeze(0) if ids.dim() == 1 else ids
        read, write = list(dict.fromkeys(read)), list(write)
        steps, points = self.plan(vm, read, write)
        kwargs = {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in model_kwargs.items()}
        saved = self.transport.request("forward", ids, program.run_sites, steps, {}, target,
                                        use_cache=False, **kwargs)
        rec = Hooked()
        for name in read:
            point = points[name]
            raw = saved[_key(point)]
            value = {"first": (raw,), "pattern": (None, raw), "logits": SimpleNamespace(logits=raw)}.get(
                _part(point), raw)
            rec.values[name] = hp.read(vm, point, value).to(vm.device)
        return saved["logits"].to(vm.device), rec

    def plan(self, vm, read: list[str], write: list[Intervention]) -> tuple[list, dict]:
        """The request's steps (:func:`visit.remote.program.run_sites`) in execution order, and each read
        name's hook point."""
        points = {name: hp.hook_point(vm, name) for name in dict.fromkeys(read + [iv.name for iv in write])}
        sites: dict[tuple[str, str], dict] = {}
        for name, point in points.items():
            if point.computed:
                raise VisitError(f"{vm.name} runs remotely: '{name}' (a mixture of experts' computed view) is not "
                                 f"available for remote models")
            sites.setdefault((point.module, point.side), {"reads": {}, "writes": {}})
        for name in read:
            point = points[name]
            sites[(point.module, point.side)]["reads"][_key(point)] = _part(point)
        for iv in write:
            point = points[iv.name]
            if not point.writable or point.view not in _WRITABLE:
                raise VisitError(f"{vm.name} runs remotely: '{iv.name}' cannot be written on a remote model")
            features = (vm.dims.n_heads, vm.dims.d_head) if point.view == "heads" else None
            sites[(point.module, point.side)]["writes"].setdefault((_part(point), features), []).append(iv)
        sites.setdefault(("<root>", "out"), {"reads": {}, "writes": {}})["reads"]["logits"] = "logits"
        order = self.order(vm)
        steps = [(self._path(module), side, list(s["reads"].items()),
                  [(part, features, ivs) for (part, features), ivs in s["writes"].items()])
                 for (module, side), s in sorted(sites.items(), key=lambda kv: order.get(kv[0], len(order)))]
        return steps, points

    def order(self, vm) -> dict[tuple[str, str], int]:
        """``{(module path, side): rank}``: the order the client's (meta) copy of the model runs its modules
        and their hooks in (the same code as where the model lives), found once with one pass of two tokens."""
        if self._order is None:
            seen: dict[tuple[str, str], int] = {}
            handles = []
            root = vm.model
            paths = {module: path for path, module in root.named_modules()}
            paths[vm.model.get_output_embeddings()] = "<unembed>"

            def note(key):
                seen.setdefault(key, len(seen))

            for module, path in paths.items():
                handles.append(module.register_forward_pre_hook(lambda m, a, p=path: note((p, "in"))))
                handles.append(module.register_forward_hook(lambda m, a, o, p=path: note((p, "out"))))
            try:
                with torch.no_grad():
                    dev = _first_device(root)  # meta: no weights, shapes only
                    root(input_ids=torch.zeros(1, 2, dtype=torch.long, device=dev),
                         attention_mask=torch.ones(1, 2, dtype=torch.long, device=dev), use_cache=False)
            finally:
                for h in handles:
                    h.remove()
            seen[("<root>", "out")] = seen.pop(("", "out"))
            self._order = seen
        return self._order

    def _path(self, module: str) -> str:
        """A hook point's module path as the envoy path where the model lives."""
        return {"<root>": "", "<unembed>": self.unembed_path}.get(module, module)

    def causal_trace(self, vm, *args, **kwargs):
        """:func:`visit.localization.causal_trace.causal_trace` for a remote model (:mod:`visit.remote.causal`)."""
        return remote_causal.causal_trace(vm, *args, **kwargs)

    # -- the logit lens --------------------------------------------------------------------------------------
    def lens_chunk(self, lens):
        """A :meth:`visit.lens.LogitLens._project_chunk` that applies the final norm here (its parameters are
        small) and the unembedding where the model lives: ``[n, d_model]`` up, top tokens back."""

        def project(vectors, mode, k, target, bottom=True):
            normed = lens.normed(vectors, mode).cpu()
            out = self.transport.request("lens", torch.zeros(1, 1, dtype=torch.long), program.lens_rows_at,
                                         self.unembed_path, normed, lens.softcap, k, target, bottom, top_tokens,
                                         (onednn_fits, pack, packed_times), lens.chunk_size)
            return {key: (v.to(lens.vm.device) if torch.is_tensor(v) else v) for key, v in out.items()}

        return project

    # -- weights -----------------------------------------------------------------------------------------------
    def fetch(self, wanted: list) -> dict:
        """``[(key, module path, parameter name, rows)]`` -> ``{key: tensor}``, in one request."""
        return self.transport.request("weights", torch.zeros(1, 1, dtype=torch.long), program.weight_slices, wanted)


def _part(point: hp.HookPoint) -> str:
    return _PART.get(point.view, "value")


def _key(point: hp.HookPoint) -> str:
    return f"{point.module}|{point.side}|{_part(point)}"


def _first_device(model) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
