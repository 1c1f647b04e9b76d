"""The weights a remote model's client computes with: fetched from where the model lives, cached on disk.

The client holds the model's structure on the ``meta`` device (no weights). Each module gets a stand-in for
accelerate's offload hook whose ``weights_map`` fetches that module's parameters on first use
(:func:`visit.models.dispatch.read_param` reads offloaded parameters exactly that way), so
:class:`visit.models.weights.ModelWeights` serves a remote model unchanged: the norms' gains, a layer's ``W_O``
when a graph shows its memory values, a layer's ``W_out`` when it shows neurons. Nothing fetches the
unembedding or the MLPs' input weights for a trace or a graph (the lens runs remotely).

Cache: ``$VISIT_CACHE_DIR/remote/<model>@<revision>/<module>.<param>.pt``, in the parameter's dtype, so a
parameter is downloaded once per model and revision; :func:`prefetch_small` fetches every small parameter
(norm gains, biases) in one request when the model is opened.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

SMALL = 1 << 16  # parameters up to this many elements are fetched together when the model is opened


class WeightCache:
    """Parameters of one remote model and revision: memory, then disk, then one request."""

    def __init__(self, backend, root: Path):
        self.backend, self.root = backend, root
        self.memory: dict[str, torch.Tensor] = {}

    def _file(self, key: str) -> Path:
        return self.root / (re.sub(r"[^A-Za-z0-9_.-]", "_", key) + ".pt")

    def get(self, path: str, name: str) -> torch.Tensor:
        key = f"{path}.{name}" if path else name
        if key not in self.memory:
            file = self._file(key)
            if file.exists():
                self.memory[key] = torch.load(file, map_location="cpu", weights_only=True)
            else:
                self.store(self.backend.fetch([(key, path, name, None)]))
        return self.memory[key]

    def store(self, fetched: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for key, tensor in fetched.items():
            self.memory[key] = tensor
            tmp = self._file(key).with_suffix(".part")
            torch.save(tensor, tmp)
            tmp.replace(self._file(key))

    def prefetch(self, wanted: list[tuple[str, str]]) -> None:
        missing = [(f"{p}.{n}" if p else n, p, n, None) for p, n in wanted
                   if not self._file(f"{p}.{n}" if p else n).exists()]
        if missing:
            self.store(self.backend.fetch(missing))


class _Params:
    """A module's parameters by name, from the cache (the ``weights_map`` of accelerate's offload hook)."""

    def __init__(self, cache: WeightCache, path: str):
        self.cache, self.path = cache, path

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.cache.get(self.path, name)


def attach(model: nn.Module, cache: WeightCache) -> None:
    """Give every module of the meta ``model`` that holds parameters a hook whose ``weights_map`` is the cache."""
    for path, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            module._hf_hook = SimpleNamespace(weights_map=_Params(cache, path))


def prefetch_small(model: nn.Module, cache: WeightCache) -> None:
    """Fetch every parameter of at most :data:`SMALL` elements (norm gains, biases) in one request."""
    cache.prefetch([(path.rpartition(".")[0], path.rpartition(".")[2]) for path, p in model.named_parameters()
                    if p.numel() <= SMALL])
