"""The weights a remote model's client computes with: slices fetched from where the model lives, cached on disk.

The client holds the model's structure on the ``meta`` device (no weights). Three ways a weight reaches it:

- **small parameters** (norm gains, biases: at most :data:`SMALL` elements) all in one request when the model
  is opened (:func:`prefetch_small`); every module's stand-in for accelerate's offload hook serves them
  (:func:`visit.models.dispatch.read_param` reads offloaded parameters that way), so
  :class:`visit.models.weights.ModelWeights` works unchanged;
- **rows** of ``W_out`` and ``W_O`` (:class:`Rows`): a graph's neurons and memory values need their own output
  rows only (``W_out(layer)[neurons]``, ``W_O(layer)[heads]``); those rows are fetched, nothing else;
- **computed remotely**: each head's contribution at the traced position (:meth:`RemoteWeights.head_results`),
  the graph's memory values through their heads' ``W_O`` slices (:meth:`RemoteWeights.through_heads`) and the
  logit lens (:mod:`visit.remote.backend`), so neither ``W_O`` nor the unembedding is downloaded.

Anything else that needs a whole matrix (an analysis multiplying all of ``W_out``) fetches that parameter once.
Cache: ``$VISIT_CACHE_DIR/remote/<model>@<revision>/`` (``$VISIT_REMOTE_CACHE_DIR`` instead of
``$VISIT_CACHE_DIR/remote`` when set): whole parameters as ``<module>.<param>.pt``, rows as
``<module>.<param>.rows.pt`` (``{row: tensor}``), in the parameter's dtype.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from visit.errors import VisitError
from visit.models.weights import ModelWeights
from visit.remote import program

SMALL = 1 << 16  # parameters up to this many elements are fetched together when the model is opened


DEFAULT_WHOLE_LIMIT = 1 << 30  # bytes of whole parameters a session may download (VISIT_REMOTE_MAX_FETCH)


class WeightCache:
    """Parameters (and rows of parameters) of one remote model and revision: memory, then disk, then a request.

    Whole parameters beyond ``limit`` bytes in all (an analysis that multiplies every neuron's row, e.g. the
    log-prob attribution's all-neuron scores, would download a large part of the checkpoint) are refused with
    one line instead."""

    def __init__(self, backend, root: Path, limit: int = DEFAULT_WHOLE_LIMIT, value_bytes: int = 4):
        self.backend, self.root, self.limit, self.value_bytes = backend, root, limit, value_bytes
        self.memory: dict[str, torch.Tensor] = {}
        self.rows: dict[str, dict[int, torch.Tensor]] = {}
        self.fetched = 0  # bytes of whole parameters downloaded so far

    def _file(self, key: str, suffix: str = ".pt") -> Path:
        return self.root / (re.sub(r"[^A-Za-z0-9_.-]", "_", key) + suffix)

    def _save(self, obj, file: Path) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(file.name + ".part")
        torch.save(obj, tmp)
        tmp.replace(file)

    def get(self, path: str, name: str, numel: int = 0) -> torch.Tensor:
        key = f"{path}.{name}" if path else name
        if key not in self.memory:
            file = self._file(key)
            if file.exists():
                self.memory[key] = torch.load(file, map_location="cpu", weights_only=True)
            else:
                size = numel * self.value_bytes
                if self.fetched + size > self.limit:
                    raise VisitError(
                        f"this needs the whole parameter {key} ({size / 1e9:.2f} GB), which stays where the remote "
                        f"model lives: remote models run traces, graphs, ablations and causal tracing there; set "
                        f"VISIT_REMOTE_MAX_FETCH (bytes, now {self.limit}) to download whole weights anyway")
                self.fetched += size
                self.store(self.backend.fetch([(key, path, name, None, 0)]))
        return self.memory[key]

    def store(self, fetched: dict) -> None:
        for key, tensor in fetched.items():
            self.memory[key] = tensor
            self._save(tensor, self._file(key))

    def prefetch(self, wanted: list[tuple[str, str]]) -> None:
        missing = [(f"{p}.{n}" if p else n, p, n, None, 0) for p, n in wanted
                   if not self._file(f"{p}.{n}" if p else n).exists()]
        if missing:
            self.store(self.backend.fetch(missing))

    def _known_rows(self, key: str) -> dict[int, torch.Tensor]:
        if key not in self.rows:
            file = self._file(key, ".rows.pt")
            self.rows[key] = torch.load(file, weights_only=True) if file.exists() else {}
        return self.rows[key]

    def fetch_rows(self, wanted: list[tuple[str, int, list[int]]]) -> None:
        """Fetch the rows not cached yet of several ``(module path, axis, indices)`` in one request."""
        asks = []
        for path, axis, index in wanted:
            missing = sorted(set(index) - set(self._known_rows(f"{path}.weight")))
            if missing:
                asks.append((f"{path}.weight", path, "weight", missing, axis))
        if not asks:
            return
        got = self.backend.fetch(asks)
        for key, _path, _name, missing, axis in asks:
            known = self.rows[key]
            known.update(zip(missing, got[key].unbind(axis)))
            self._save(known, self._file(key, ".rows.pt"))

    def get_rows(self, path: str, axis: int, index: list[int]) -> torch.Tensor:
        """``weight.index_select(axis, index)`` of the module at ``path``, fetching only the rows not cached."""
        self.fetch_rows([(path, axis, index)])
        known = self.rows[f"{path}.weight"]
        return torch.stack([known[i] for i in index], dim=axis)


class _Params:
    """A module's parameters by name, from the cache (the ``weights_map`` of accelerate's offload hook)."""

    def __init__(self, cache: WeightCache, path: str, module: nn.Module):
        self.cache, self.path, self.module = cache, path, module

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.cache.get(self.path, name, getattr(self.module, name).numel())


def attach(model: nn.Module, cache: WeightCache) -> None:
    """Give every module of the meta ``model`` that holds parameters a hook whose ``weights_map`` is the cache."""
    for path, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            module._hf_hook = SimpleNamespace(weights_map=_Params(cache, path, module))


def prefetch_small(model: nn.Module, cache: WeightCache) -> None:
    """Fetch every parameter of at most :data:`SMALL` elements (norm gains, biases) in one request."""
    cache.prefetch([(path.rpartition(".")[0], path.rpartition(".")[2]) for path, p in model.named_parameters()
                    if p.numel() <= SMALL])


class Rows:
    """A weight matrix of which only indexed rows are fetched: ``W_out(layer)`` ``[d_mlp, d_model]`` or
    ``W_O(layer)`` ``[n_heads, d_head, d_model]`` (also viewed ``[n_heads * d_head, d_model]``).

    ``rows[i]`` (an int, a list or a 1-D tensor on the first axis) fetches those rows; any other use
    (``@``, ``.T``, another index) fetches the whole matrix once (``whole()``) and acts on it.
    """

    def __init__(self, fetch, shape: tuple, whole):
        self._fetch, self.shape, self._whole = fetch, torch.Size(shape), whole
        self.dtype = torch.float32

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def reshape(self, *shape) -> "Rows":
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)) else shape
        if shape[-1] != self.shape[-1] or len(shape) > 3:
            return self.whole().reshape(*shape)
        return Rows(self._fetch, shape, lambda: self.whole().reshape(*shape))

    def __getitem__(self, index):
        if isinstance(index, tuple) or isinstance(index, slice):
            return self.whole()[index]
        single = isinstance(index, int) or (torch.is_tensor(index) and index.dim() == 0)
        idx = torch.as_tensor(index).reshape(-1).tolist()
        group = int(torch.tensor(self.shape[1:-1]).prod()) if len(self.shape) > 2 else 1
        flat = [i * group + j for i in idx for j in range(group)]
        got = self._fetch(flat).reshape(len(idx), *self.shape[1:])
        return got[0] if single else got

    def whole(self) -> torch.Tensor:
        return self._whole()

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        swap = lambda a: a.whole() if isinstance(a, Rows) else a  # noqa: E731
        args = [swap(a) for a in args]
        return func(*args, **{k: swap(v) for k, v in (kwargs or {}).items()})

    def __matmul__(self, other):
        return self.whole() @ other

    def __rmatmul__(self, other):
        return other @ self.whole()

    def __mul__(self, other):
        return self.whole() * other

    __rmul__ = __mul__

    def __getattr__(self, name):  # every other tensor attribute: on the whole matrix
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.whole(), name)


class RemoteWeights(ModelWeights):
    """:class:`ModelWeights` for a remote model: output rows fetched as needed, head results computed remotely."""

    def __init__(self, model: nn.Module, adapter, dims, cache: WeightCache, backend):
        super().__init__(model, adapter, dims)
        self.cache, self.backend = cache, backend

    def _rows(self, layer: int, path: str, which: str, shape: tuple, whole) -> Rows:
        """Rows of the output projection at ``path`` as ``[in, out]`` rows, times the post-norm's gain."""
        full = f"{self.adapter.blocks}.{layer}.{path}"
        axis = 1 if self.adapter.weight_layout == "linear" else 0  # the [in, out] view's rows

        def fetch(index: list[int]) -> torch.Tensor:
            rows = self.cache.get_rows(full, axis, index).float()
            rows = rows.T if axis == 1 else rows
            gain = self.post_gain(layer, which)
            return rows if gain is None else rows * gain

        return Rows(fetch, shape, whole)

    def W_out(self, layer: int):
        if self.adapter.moe:  # the experts' rows come from fused 3-D parameters
            return super().W_out(layer)
        d = self.dims
        return self._rows(layer, self.adapter.mlp_out, "mlp", (d.d_mlp, d.d_model), lambda: super(
            RemoteWeights, self).W_out(layer))

    def W_O(self, layer: int):
        d = self.dims
        return self._rows(layer, self.adapter.attn_out, "attn", (d.n_heads, d.d_head, d.d_model), lambda: super(
            RemoteWeights, self).W_O(layer))

    def prefetch_rows(self, W_out: dict, W_O: dict) -> None:
        """Every layer's rows a graph is about to read, in one request."""
        axis = 1 if self.adapter.weight_layout == "linear" else 0
        wanted = [(f"{self.adapter.blocks}.{l}.{self.adapter.mlp_out}", axis, rows)
                  for l, rows in W_out.items() if rows and not self.adapter.moe]
        wanted += [(f"{self.adapter.blocks}.{l}.{self.adapter.attn_out}", axis, rows) for l, rows in W_O.items() if rows]
        self.cache.fetch_rows(wanted)

    def head_results(self, z: dict) -> dict:
        """Each head's contribution at the traced position, computed where ``W_O`` lives (one request)."""
        if not z:
            return {}
        layers = list(z)
        paths = [f"{self.adapter.blocks}.{l}.{self.adapter.attn_out}" for l in layers]
        out = self.backend.transport.request("heads", torch.zeros(1, 1, dtype=torch.long), program.head_results,
                                             paths, torch.stack([z[l].float().cpu() for l in layers]),
                                             self.adapter.weight_layout == "conv1d")
        results = {}
        for l, r in zip(layers, out):
            gain = self.post_gain(l, "attn")
            results[l] = (r.float() if gain is None else r.float() * gain).to(self.device)
        return results

    def through_heads(self, asks: dict) -> dict:
        """Memory values' projections through ``W_O`` computed where it lives (one request for all layers)."""
        if not asks:
            return {}
        layers = list(asks)
        out = self.backend.transport.request(
            "memory", torch.zeros(1, 1, dtype=torch.long), program.through_heads,
            [f"{self.adapter.blocks}.{l}.{self.adapter.attn_out}" for l in layers],
            [asks[l][0].cpu().tolist() for l in layers], [asks[l][1].float().cpu() for l in layers],
            self.adapter.weight_layout == "conv1d", self.dims.n_heads, self.dims.d_head)
        results = {}
        for l, r in zip(layers, out):
            gain = self.post_gain(l, "attn")
            results[l] = (r if gain is None else r * gain).to(self.device)
        return results
