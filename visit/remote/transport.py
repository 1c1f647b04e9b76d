"""Requests to where the model lives, through nnsight: to NDIF, or simulated here, with every byte counted.

A request is one nnsight trace whose body calls one function of :mod:`visit.remote.program` (shipped by value:
nnsight serialises its source) on the model's envoys. Two ways to send it:

- **NDIF** (``NDIF_API_KEY`` set): nnsight's :class:`~nnsight.intervention.backends.remote.RemoteBackend`
  ships the serialised request and downloads the saved values;
- **simulated** (``VISIT_NDIF_SIMULATE=1``): :class:`SimulatedNDIF` does what nnsight's own local simulation
  (``remote="local"``) does -- serialise the request exactly as for NDIF, deserialise it with every
  non-installed module hidden (as on a server, where visit does not exist) and run it against a local copy of
  the model -- and also counts the bytes the server's answer would take (``torch.save`` of the saved values,
  compressed as NDIF compresses it).

:class:`Ledger` records requests and bytes each way (request payload up, saved values down), which the tests,
``docs/remote.md`` and the CLI's transfer estimate read.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import nnsight
import torch
import zstandard as zstd
from nnsight.intervention.backends.local import LocalSimulationBackend
from nnsight.intervention.backends.remote import RemoteBackend
from nnsight.ndif import pull_env
from nnsight.schema.request import RequestModel

from visit import lens, matmul
from visit.errors import VisitError
from visit.hooks import interventions
from visit.remote import program


@dataclass
class Ledger:
    """What went over the wire: one ``(kind, bytes up, bytes down)`` per request."""

    requests: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def bytes_up(self) -> int:
        return sum(r[1] for r in self.requests)

    @property
    def bytes_down(self) -> int:
        return sum(r[2] for r in self.requests)

    def since(self, mark: int) -> "Ledger":
        return Ledger(self.requests[mark:])

    def describe(self) -> str:
        return (f"{len(self.requests)} request(s), {_mib(self.bytes_up)} up, {_mib(self.bytes_down)} down")


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def result_bytes(saved, compress: bool) -> int:
    """The size of the answer a server sends for ``saved``: ``torch.save`` (pickle protocol 4, as
    :meth:`nnsight.schema.response.ResponseModel.pickle`), zstd-compressed when the request asked for it."""
    buf = io.BytesIO()
    torch.save(saved, buf, pickle_protocol=4)
    data = buf.getvalue()
    if compress:
        data = zstd.ZstdCompressor(level=6).compress(data)
    return len(data)


def _simulated_backend_class():
    """nnsight's local simulation, counting the payload."""
    class SimulatedNDIF(LocalSimulationBackend):
        """:class:`LocalSimulationBackend` that keeps the serialised request's size (and compresses it, as the
        remote backend does when configured to)."""

        def __init__(self, model, compress: bool):
            super().__init__(model)
            self.compress, self.payload = compress, 0

        def __call__(self, tracer) -> None:
            pull_env()
            self.payload = len(RequestModel.serialize(tracer, compress=self.compress))
            super().__call__(tracer)

    return SimulatedNDIF


def _ndif_backend_class():
    class CountingRemoteBackend(RemoteBackend):
        """nnsight's remote backend, keeping the size of the payload it sends."""

        payload = 0

        def send(self, request, blob):
            self.payload = len(blob)
            return super().send(request, blob)

    return CountingRemoteBackend


class Transport:
    """Sends requests for one remote model. ``lm`` is the nnsight model (for NDIF a meta model named by its
    repo id; simulated, the local copy); ``api_key`` is required unless ``simulate``."""

    def __init__(self, lm, simulate: bool, api_key: str | None = None, compress: bool = True):
        self.lm, self.simulate, self.api_key, self.compress = lm, simulate, api_key, compress
        self.ledger = Ledger()

    def _backend(self):
        _ship_by_value()
        if self.simulate:
            return _simulated_backend_class()(self.lm, self.compress)
        return _ndif_backend_class()(self.lm.to_model_key(), api_key=self.api_key)

    def request(self, kind: str, input_ids: torch.Tensor, fn, *args, **model_kwargs) -> dict:
        """Run ``fn(model envoy, *args)`` where the model lives, during a forward pass of ``input_ids``; returns
        what ``fn`` returned (a dict of tensors). Raises :class:`VisitError` with one line when it fails."""
        lm, backend = self.lm, self._backend()
        try:
            with lm.trace(input_ids, backend=backend, **model_kwargs):
                result = nnsight.save(fn(lm, *args))
        except VisitError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed remote job is one line for the user
            raise VisitError(f"the remote request ({kind}) failed: {_short(exc)}") from None
        self.ledger.requests.append((kind, backend.payload, result_bytes(result, self.compress)))
        return result


def _ship_by_value() -> None:
    """What a request's code calls and the server does not have: this package's server program, the lens' top
    tokens and matrix product, and the hook layer's interventions (plain torch, no other visit import in the code that runs)."""
    for module in (program, lens, matmul, interventions):
        nnsight.register(module)


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


__all__ = ["Ledger", "Transport", "program", "result_bytes"]
