"""The one way to touch a model's forward pass: :func:`hooked` reads and writes named values.

::

    from visit.hooks import hooked, zero

    with hooked(vm, read=["blocks.3.hook_attn_out"], write=[zero("blocks.3.attn.hook_z", index=(2,))]) as h:
        vm.model(input_ids=ids, use_cache=False)
    h.values["blocks.3.hook_attn_out"]   # [batch, pos, d_model], with head 2 zeroed

One PyTorch hook is registered per module and side (input or output) that anything asks for; it applies the
writes of every name living there, in the order given, and then records the reads, so a read sees the value the
model actually went on with. Hooks are removed when the block exits, also on an exception. Nothing here changes
a weight (see :mod:`visit.hooks.params` for temporary weight changes).

Reads keep autograd's graph when ``detach=False`` (integrated gradients); by default they are detached.
Models spread over devices (:mod:`visit.models.dispatch`): reads come back on ``vm.device``, where visit's maths
runs; writes apply where the value lives (interventions move their operands there).
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch

from visit.errors import VisitError
from visit.hooks import points as hp
from visit.hooks.interventions import Intervention


@dataclass
class Hooked:
    """What a :func:`hooked` block recorded: ``values[name]`` in the canonical ``[batch, pos, ...]`` view."""

    values: dict[str, torch.Tensor] = field(default_factory=dict)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.values[name]


@contextmanager
def hooked(vm, read: Iterable[str] = (), write: Iterable[Intervention] = (), detach: bool = True
           ) -> Iterator[Hooked]:
    """While active, every forward pass of ``vm.model`` records ``read`` and applies ``write``.

    Several forward passes inside one block overwrite the recorded values (the last pass wins).
    """
    read, write = list(dict.fromkeys(read)), list(write)
    writes: dict[str, list[Intervention]] = defaultdict(list)
    for iv in write:
        writes[iv.name].append(iv)
    by_site: dict[tuple[str, str], list[hp.HookPoint]] = defaultdict(list)
    for name in list(dict.fromkeys(read + list(writes))):
        point = hp.hook_point(vm, name)
        if name in writes and not point.writable:
            raise VisitError(f"'{name}' cannot be written")
        by_site[(point.module, point.side)].append(point)
    for points in by_site.values():  # values computed from a module's input first: its output may then change
        points.sort(key=lambda p: not p.computed)
    out = Hooked()
    wanted = set(read)
    device = vm.device  # reads come back where visit computes, wherever the module ran (dispatched models)
    handles = []

    def process(points, value, inputs=None):
        for point in points:
            ws = writes.get(point.name)
            seen = None
            if ws:
                old = new = hp.read(vm, point, value, inputs)
                for iv in ws:
                    new = iv.apply(new)
                value = hp.write(vm, point, value, new, old)
                seen = new if point.computed else None  # a computed view is not held in the value
            if point.name in wanted:
                seen = hp.read(vm, point, value, inputs) if seen is None else seen
                out.values[point.name] = (seen.detach() if detach else seen).to(device)
        return value

    def output_hook(points):
        def hook(_module, args, kwargs, output):
            inputs = None
            if any(p.computed for p in points):  # the module's first input (MoE views are computed from it)
                inputs = args[0] if args else kwargs.get("hidden_states", next(iter(kwargs.values()), None))
            new = process(points, output, inputs)
            return new if any(p.name in writes for p in points) else None
        return hook

    def input_hook(points):
        def hook(_module, args, kwargs):
            if args:
                first = process(points, args[0])
                return (first,) + tuple(args[1:]), kwargs
            key = "hidden_states" if "hidden_states" in kwargs else next(iter(kwargs))
            return args, {**kwargs, key: process(points, kwargs[key])}
        return hook

    try:
        for (_path, side), points in by_site.items():
            module = hp.module_of(vm, points[0])
            if side == "out":
                handles.append(module.register_forward_hook(output_hook(points), with_kwargs=True))
            else:
                handles.append(module.register_forward_pre_hook(input_hook(points), with_kwargs=True))
        yield out
    finally:
        for handle in handles:
            handle.remove()


def run(vm, input_ids: torch.Tensor, read: Iterable[str] = (), write: Iterable[Intervention] = (),
        grad: bool = False, **model_kwargs) -> tuple[torch.Tensor, Hooked]:
    """One forward pass of ``input_ids [batch, pos]`` with ``read``/``write``, inside ``vm.weights_for()``
    (the bound session's weights; :mod:`visit.models.overlay`).

    Returns ``(logits [batch, pos, d_vocab], recorded)``. ``grad=True`` keeps autograd on (and the reads
    attached) for gradients with respect to written values.
    """
    if vm.backend is not None:  # the model lives elsewhere: the same reads and writes in a request (visit.remote)
        return vm.backend.run(vm, input_ids, read, write, grad, **model_kwargs)
    ids = input_ids.to(vm.device)
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    with vm.weights_for(), torch.set_grad_enabled(grad), hooked(vm, read, write, detach=not grad) as rec:
        logits = vm.model(input_ids=ids, use_cache=False, **model_kwargs).logits
    return logits, rec
