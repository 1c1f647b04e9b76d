"""What a write does: :class:`Intervention` (replace, add, scale, zero or a function) at chosen rows, positions
and feature indices of one named value.

The value a hook point sees has the canonical shape ``[batch, pos, *features]`` (:mod:`visit.hooks.points`).
An intervention selects ``x[rows][:, positions][:, :, *index]`` as an open mesh (every row with every position
with every index, like ``numpy.ix_``), so the selection has shape
``[len(rows), len(positions), *index shape, *remaining features]`` and ``value`` must broadcast to it. With
``paired=True`` rows and positions go in pairs instead (``x[rows[i], positions[i]]``: one position per row, as
when each batch row restores a different token), and the selection is ``[n_pairs, *features...]``.

``None`` selects everything along that axis. A write never changes its input in place (the hook returns a new
tensor), and it is differentiable in ``value`` (integrated gradients feed a leaf tensor through ``replace``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

OPS = ("replace", "add", "scale", "zero", "fn")
Index = Sequence[int] | torch.Tensor | int | None


@dataclass(frozen=True, eq=False)
class Intervention:
    """Write ``name`` (a TransformerLens name, e.g. ``"blocks.3.mlp.hook_post"``).

    - ``op``: ``"replace"`` (by ``value``), ``"add"`` (``value``), ``"scale"`` (multiply by ``value``),
      ``"zero"`` or ``"fn"`` (``value`` is a callable: selection -> new selection);
    - ``rows`` / ``positions``: batch rows and token positions (``None``: all);
    - ``index``: indices into the feature axes, outermost first: ``(neurons,)`` for ``mlp.hook_post``,
      ``(head,)`` or ``(head, dims)`` for ``attn.hook_z``/``hook_q``; ``None``: all features.
    """

    name: str
    op: str = "replace"
    value: object = None
    rows: Index = None
    positions: Index = None
    index: tuple = ()
    paired: bool = False

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"unknown intervention op {self.op!r}; choose one of {OPS}")
        if self.op in ("replace", "add", "scale", "fn") and self.value is None:
            raise ValueError(f"intervention {self.op!r} on {self.name} needs a value")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``x [batch, pos, *features]`` -> a new tensor with this write done."""
        where = self._where(x)
        out = x.clone()
        if self.op == "zero":
            out[where] = 0
            return out
        sel = x[where]
        if self.op == "fn":
            new = self.value(sel)
        else:
            value = torch.as_tensor(self.value, dtype=x.dtype, device=x.device) if not torch.is_tensor(
                self.value) else self.value.to(device=x.device, dtype=x.dtype)
            new = {"replace": lambda: value.expand_as(sel), "add": lambda: sel + value,
                   "scale": lambda: sel * value}[self.op]()
        out[where] = new
        return out

    def _where(self, x: torch.Tensor) -> tuple:
        """An index tuple for ``x``: an open mesh of the given axes, or (row, position) pairs first."""
        dev = x.device
        if self.paired:
            rows = _as_index(self.rows, x.shape[0], dev)
            pos = _as_index(self.positions, x.shape[1], dev)
            if rows.shape != pos.shape:
                raise ValueError("paired rows and positions must have the same length")
            rest = _mesh([rows] + [_as_index(a, x.shape[2 + i], dev) for i, a in enumerate(self.index)])
            return (rest[0], pos.view(rest[0].shape), *rest[1:])
        axes = [self.rows, self.positions, *self.index]
        return _mesh([_as_index(a, x.shape[i], dev) for i, a in enumerate(axes)])


def _as_index(a: Index, size: int, device) -> torch.Tensor:
    if a is None:
        return torch.arange(size, device=device)
    t = torch.as_tensor(a, device=device, dtype=torch.long)
    return t.reshape(1) if t.dim() == 0 else t


def _mesh(idx: list[torch.Tensor]) -> tuple:
    """Open-mesh index tensors, like ``numpy.ix_``: axis i varies along dimension i only."""
    n = len(idx)
    return tuple(t.view([-1 if j == i else 1 for j in range(n)]) for i, t in enumerate(idx))


def zero(name: str, **where) -> Intervention:
    return Intervention(name, "zero", **where)


def replace(name: str, value, **where) -> Intervention:
    return Intervention(name, "replace", value, **where)


def add(name: str, value, **where) -> Intervention:
    return Intervention(name, "add", value, **where)


def scale(name: str, factor, **where) -> Intervention:
    return Intervention(name, "scale", factor, **where)


def apply_fn(name: str, fn: Callable[[torch.Tensor], torch.Tensor], **where) -> Intervention:
    return Intervention(name, "fn", fn, **where)
