"""Batched traces: several prompts in one padded forward pass, each row a :class:`~visit.tracer.Trace` of its own.

A server that many people share runs their traces one after the other, each a one-row forward pass; on a GPU one
twenty-row pass costs about what one row does. :func:`trace_batch` pads the prompts to one length, runs the pass
through the hook layer (:func:`visit.hooks.run`, which records ``[batch, pos, ...]``) and cuts each row's values
back to its own tokens, so every row is exactly the trace of that prompt alone (up to float rounding of the
bigger matrix products: the decompositions of each row stay exact, they are sums of that row's own values)::

    from visit.batching import TraceRequest, trace_batch

    rows = trace_batch(vm, [TraceRequest("The Eiffel Tower is in"), TraceRequest("", None)])
    rows[0]          # a Trace, as visit.tracer.trace(vm, "The Eiffel Tower is in") gives
    rows[1]          # a VisitError ("the prompt is empty ..."): a bad row fails alone

Padding. ``"right"`` (the default) puts the pad tokens after each prompt: a causal model's real positions never
attend to later ones, and positions count from 0 as they do alone. ``"left"`` puts them first (what generation
needs); then the attention mask hides the pads from every real query and the position ids count from each
prompt's first real token (``cumsum(mask) - 1``), so rotary and learned position embeddings see the positions the
prompt has alone. Both are passed in either case: the attention mask and the position ids are the whole story of
why a padded row equals the row alone, and sliding windows (Gemma 2/3, OLMo 3) measure distances between real
tokens, which padding at one end does not change.

:class:`TraceBatcher` is the serving side: threads that ask for traces while the model is busy wait, and the next
pass takes all of them (up to ``max_rows``) together. Rows share a pass only when they share the weights: the
same model and the same session weights (:func:`visit.models.overlay.current`, grouped by the overlay's key), so
one session's edits never reach another's row. What follows the trace (the graph) runs per session, as before.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

import torch

from visit.errors import VisitError
from visit.hooks.runner import run
from visit.models.loading import VisitModel
from visit.models.overlay import Overlay, current, bind_session
from visit.tokens import token_strings
from visit.tracer import Trace, collect_values, encode_prompt, resolve_position, trace, trace_reads

log = logging.getLogger(__name__)
PADDINGS = ("right", "left")


@dataclass(frozen=True)
class TraceRequest:
    """One row of a batch: what :func:`visit.tracer.trace` takes (no interventions: those trace alone)."""

    prompt: str
    position: int | None = None


@dataclass
class _Row:
    request: TraceRequest
    ids: torch.Tensor  # [n]
    position: int


def _encode(vm: VisitModel, request: TraceRequest) -> _Row:
    ids = encode_prompt(vm, request.prompt)[0]
    return _Row(request, ids, resolve_position(request.position, len(ids)))


def _pad_id(vm: VisitModel) -> int:
    """Any token of the vocabulary will do (the mask hides it); the tokenizer's pad or end token if it has one."""
    for tid in (getattr(vm.tokenizer, "pad_token_id", None), getattr(vm.tokenizer, "eos_token_id", None)):
        if isinstance(tid, int) and 0 <= tid < vm.dims.d_vocab:
            return tid
    return 0


def pad(rows: Sequence[torch.Tensor], pad_id: int, side: str = "right"
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """Token rows of different lengths -> ``(input_ids [b, L], attention_mask [b, L], position_ids [b, L],
    offsets)``: ``offsets[i]`` is where row i's first real token sits (0 with right padding)."""
    if side not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, not {side!r}")
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    offsets = []
    for i, r in enumerate(rows):
        start = length - len(r) if side == "left" else 0
        ids[i, start:start + len(r)] = r
        mask[i, start:start + len(r)] = 1
        offsets.append(start)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    return ids, mask, positions, offsets


def _row_values(raw: dict[str, torch.Tensor], row: int, start: int, n: int) -> dict[str, torch.Tensor]:
    """Row ``row``'s real tokens ``start:start+n`` of every recorded value, with a batch axis of 1 (the layout
    :func:`visit.tracer.collect_values` reads). Attention patterns ``[b, heads, dest, src]`` are cut on both
    position axes; every other value is ``[b, pos, ...]``."""
    out = {}
    for name, value in raw.items():
        v = value[row:row + 1]
        if name.endswith("attn.hook_pattern"):
            out[name] = v[:, :, start:start + n, start:start + n]
        else:
            out[name] = v[:, start:start + n]
    return out


def trace_batch(vm: VisitModel, requests: Sequence[TraceRequest], padding: str = "right"
                ) -> list[Union[Trace, VisitError]]:
    """Trace every request in one padded forward pass; element i is request i's :class:`Trace` or the
    :class:`VisitError` that request alone raises (an empty prompt, a prompt longer than the context, a position
    out of range). The pass runs under ``vm.lock`` on this thread's weights (:mod:`visit.models.overlay`), like
    :func:`visit.tracer.trace`; the traces remember them."""
    results: list[Union[Trace, VisitError, None]] = [None] * len(requests)
    rows: dict[int, _Row] = {}
    for i, request in enumerate(requests):
        try:
            rows[i] = _encode(vm, request)
        except VisitError as exc:
            results[i] = exc
    if rows:
        order = list(rows)
        ids, mask, positions, offsets = pad([rows[i].ids for i in order], _pad_id(vm), padding)
        device = vm.device
        with vm.weights_for():  # the pass, each row's derived values and the version, all on this thread's weights
            logits, rec = run(vm, ids, read=trace_reads(vm.dims.n_layers, vm.adapter),
                              attention_mask=mask.to(device), position_ids=positions.to(device))
            version, overlay = vm.weights.version, current()
            for b, i in enumerate(order):
                row, start = rows[i], offsets[b]
                n = len(row.ids)
                try:
                    values = collect_values(vm, _row_values(rec.values, b, start, n), logits[b, start:start + n],
                                            row.position)
                except VisitError as exc:
                    results[i] = exc
                    continue
                token_ids = row.ids.tolist()
                results[i] = Trace(vm.name, row.request.prompt, token_ids, token_strings(vm.tokenizer, token_ids),
                                   row.position, values, vm, (), version, overlay)
    return results  # type: ignore[return-value]


@dataclass(eq=False)
class _Pending:
    vm: VisitModel
    overlay: Overlay
    request: TraceRequest
    result: object = None
    done: bool = False

    @property
    def key(self) -> tuple:
        return id(self.vm), self.overlay.key


@dataclass
class BatchStats:
    """What a :class:`TraceBatcher` did: passes run, rows traced, the largest pass."""

    passes: int = 0
    rows: int = 0
    largest: int = 0
    sizes: list[int] = field(default_factory=list, repr=False)  # rows of each pass (the last 1000)


class TraceBatcher:
    """Coalesces concurrent traces into batched passes (module doc).

    ``trace(vm, prompt, position)`` has :func:`visit.tracer.trace`'s signature and result. A thread that finds
    no pass running leads: it takes the oldest waiting request and every other waiting one with the same model
    and weights (at most ``max_rows``, an int or a function returning one, read per pass), runs them as one
    :func:`trace_batch` and hands each waiting thread its row; threads that arrive meanwhile wait and form the
    next pass. ``max_rows`` 1 traces one at a time. Interventions, and callers already holding the model's lock,
    trace alone at once (the lock is theirs; waiting for another thread's pass would deadlock).
    """

    def __init__(self, max_rows: Union[int, Callable[[], int]] = 8, padding: str = "right"):
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, not {padding!r}")
        self.max_rows, self.padding = max_rows, padding
        self.stats = BatchStats()
        self._pending: list[_Pending] = []
        self._leading = False
        self._in_pass = 0  # rows of the pass running now
        self._cond = threading.Condition()

    def _limit(self) -> int:
        return max(1, int(self.max_rows() if callable(self.max_rows) else self.max_rows))

    def waiting(self) -> int:
        """Requests not answered yet: waiting for a pass, or in the one running."""
        with self._cond:
            return len(self._pending) + self._in_pass

    def trace(self, vm: VisitModel, prompt: str, position: int | None = None, interventions=()) -> Trace:
        if interventions or vm.lock.held_by_me():
            return trace(vm, prompt, position, interventions)
        item = _Pending(vm, current(), TraceRequest(prompt, position))
        with self._cond:
            self._pending.append(item)
            while not item.done:
                if self._leading:
                    self._cond.wait()
                    continue
                self._leading = True
                batch = self._take()
                self._in_pass = len(batch)
                self._cond.release()
                try:
                    self._run(batch)
                finally:
                    self._cond.acquire()
                    self._leading, self._in_pass = False, 0
                    self._cond.notify_all()
        if isinstance(item.result, BaseException):
            raise item.result
        return item.result  # type: ignore[return-value]

    def _take(self) -> list[_Pending]:  # the condition held
        key, limit = self._pending[0].key, self._limit()
        batch = [p for p in self._pending if p.key == key][:limit]
        taken = set(map(id, batch))
        self._pending = [p for p in self._pending if id(p) not in taken]
        return batch

    def _run(self, batch: list[_Pending]) -> None:
        try:
            with bind_session(batch[0].overlay):
                results = trace_batch(batch[0].vm, [p.request for p in batch], self.padding)
        except Exception as exc:  # noqa: BLE001 - the pass itself failed: each row alone, so one row fails alone
            if len(batch) == 1:
                results = [exc]
            else:
                log.warning("a batched pass of %d rows failed (%s: %s); tracing them one by one",
                            len(batch), type(exc).__name__, exc)
                results = []
                for p in batch:
                    try:
                        with bind_session(p.overlay):
                            results.append(trace(p.vm, p.request.prompt, p.request.position))
                    except Exception as one:  # noqa: BLE001 - handed to the thread that asked
                        results.append(one)
        with self._cond:
            for p, result in zip(batch, results):
                p.result, p.done = result, True
            s = self.stats
            s.passes, s.rows, s.largest = s.passes + 1, s.rows + len(batch), max(s.largest, len(batch))
            s.sizes = (s.sizes + [len(batch)])[-1000:]


__all__ = ["BatchStats", "PADDINGS", "TraceBatcher", "TraceRequest", "pad", "trace_batch"]
