"""The models the app serves: read-only singletons, loaded once, behind a lock.

Sessions name the model they use; the registry keeps the few most recently used ones loaded (the
default is never evicted). A failed load raises :class:`VisitError` and changes nothing, so every
session keeps the model it had. A :class:`~visit.ui.policy.ModelPolicy` decides which names may be loaded
at all (default: any).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

import visit.remote  # noqa: F401 - registers the ndif: scheme (remote models)
from visit.errors import VisitError
from visit.models import DEFAULT_MODEL, VisitModel, load_model
from visit.ui.policy import ModelPolicy

Loader = Callable[[str], VisitModel]


def _default_loader(name: str) -> VisitModel:
    return load_model(name)


def normalise_name(name: str | None) -> str:
    name = (name or "").strip()
    return name or DEFAULT_MODEL


class ModelRegistry:
    def __init__(self, loader: Loader | None = None, preloaded: VisitModel | None = None,
                 default_name: str = DEFAULT_MODEL, max_models: int = 2, policy: ModelPolicy | None = None):
        """``preloaded`` is the model called ``default_name``, which sessions use until they load
        another (tests inject a tiny one this way). ``policy`` (default: open) gates every other name."""
        self.loader = loader or _default_loader
        self.default_name = normalise_name(default_name)
        self.max_models = max(1, max_models)
        self.policy = policy or ModelPolicy.open()
        self._models: OrderedDict[str, VisitModel] = OrderedDict()
        self._lock = threading.Lock()  # one load at a time; tracing uses each model's own lock
        if preloaded is not None:
            self._models[self.default_name] = preloaded

    def get(self, name: str | None = None) -> VisitModel:
        """The model called ``name`` (blank: the app's default), loading it on first use."""
        key = self.key(name)
        if key != self.default_name:
            self.policy.check(key)
        with self._lock:
            vm = self._models.get(key)
            if vm is not None:
                self._models.move_to_end(key)
                return vm
            try:
                vm = self.loader(key)
            except VisitError:
                raise
            except Exception as exc:  # noqa: BLE001 - a loader bug must not take the server down
                raise VisitError(f"cannot load model '{key}': {type(exc).__name__}: {exc}") from None
            self._models[key] = vm
            self._evict()
            return vm

    def key(self, name: str | None) -> str:
        return normalise_name(name) if name and name.strip() else self.default_name

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def _evict(self) -> None:
        while len(self._models) > self.max_models:
            victim = next((k for k in self._models if k != self.default_name), None)
            if victim is None:
                return
            del self._models[victim]


def describe(vm: VisitModel) -> str:
    d = vm.dims
    kind = "parallel blocks" if vm.parallel else "sequential blocks"
    text = (f"{vm.name}: {d.n_layers} layers, {d.n_heads} heads ({d.n_kv_heads} kv), d_model {d.d_model}, "
            f"d_mlp {d.d_mlp}, vocab {d.d_vocab}, {kind}")
    return text if vm.backend is None else f"{text}; {vm.backend.describe(vm)}"
