"""Batched forward passes that resume at a block boundary, over a suffix of the prompt's positions.

Why: causal tracing and integrated gradients run hundreds of variants of one prompt that differ from a
recorded pass only from some layer ``l`` on, and only at positions ``>= t`` (attention is causal, so nothing at
an earlier position can change). Recomputing the whole pass for each variant wastes most of the work. Here:

1. :func:`record` runs the prompt once (any number of batch rows, with reads and writes through
   :func:`visit.hooks.hooked`) and keeps every attention layer's keys and values, as the model's cache holds them
   (after rotary embeddings).
2. :func:`resume` runs many rows at once from given blocks onward, over positions ``t..T-1`` only. Row ``i``
   *joins* at block ``joins[i].layer`` with the residual ``joins[i].hidden`` (``[T - t, d_model]``); rows are
   sorted by the layer they join at, so the batch grows as the pass goes deeper and no row computes a block it
   does not need. Each attention layer sees the recorded keys/values of positions ``< t`` (of the recorded row
   ``joins[i].source``) followed by the suffix's own. Writes (:class:`visit.hooks.Intervention`) apply inside the
   resumed blocks as in any pass: ``rows`` index the rows of ``joins``, ``positions`` count from ``t``.
3. The last position's final residual goes through the final norm and the unembedding: ``[rows, d_vocab]``.

The blocks are called with exactly the arguments the model itself passes each of them (captured from one real
batch-1 pass over the same suffix after the recorded prefix: per-layer masks and rotary embeddings, as sliding-
window models have, come along), with the model's cache swapped for the recorded prefix: no family-specific
code. Models that soft-cap their logits (Gemma 2) get the cap on the resumed logits too. The result equals a full forward pass of each variant (tests check it on every
family); the saving is the skipped blocks and positions (``benchmarks/causal_trace.py``).

Padded batches of *different* prompts (ROME's value optimisation) use the lower-level pair
:func:`captured_calls` (the block arguments of one real pass over the batch) and :func:`run_blocks` (re-run the
blocks from a layer with new residuals after a fixed prefix of keys/values).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import torch

from visit.hooks import points as hp
from visit.hooks.interventions import Intervention
from visit.hooks.runner import Hooked, hooked


@dataclass
class Recording:
    """One recorded pass: ``input_ids [T]``, per layer ``keys[l]``/``values[l]`` ``[rows, kv_heads, T, d_head]``,
    ``logits [rows, T, d_vocab]`` and the values read (``read[name]``: ``[rows, T, ...]``)."""

    input_ids: torch.Tensor
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    logits: torch.Tensor
    read: Hooked


@dataclass(frozen=True)
class Join:
    """A row of a resumed pass: it enters block ``layer`` (``n_layers``: straight to the final norm) with the
    residual ``hidden`` ``[T - t, d_model]``; the prefix keys/values come from recorded row ``source``."""

    layer: int
    hidden: torch.Tensor
    source: int = 0


def _watched_cache(vm, on_update):
    """A fresh model cache whose ``update`` also reports ``(layer, keys, values, new length)`` to ``on_update``."""
    # transformers takes seconds to import: only when a model is loaded
    from transformers import DynamicCache

    cache = DynamicCache(config=vm.model.config)
    update = cache.update

    def watched(key_states, value_states, layer_idx, *args, **kwargs):
        k, v = update(key_states, value_states, layer_idx, *args, **kwargs)
        on_update(layer_idx, k, v, key_states.shape[-2])
        return k, v

    cache.update = watched
    return cache


def record(vm, input_ids: torch.Tensor, rows: int = 1, read: Iterable[str] = (),
           write: Iterable[Intervention] = ()) -> Recording:
    """Run ``input_ids [T]`` as ``rows`` identical batch rows (writes may make them differ) and keep the keys and
    values every attention layer used (all ``T`` positions, also on sliding-window layers, whose cache keeps
    fewer). Caller is inside ``vm.weights_for()`` and decides about autograd."""
    ids = input_ids.reshape(1, -1).to(vm.device).expand(rows, -1)
    keys: dict[int, torch.Tensor] = {}
    values: dict[int, torch.Tensor] = {}

    def keep(layer, k, v, _new):
        keys[layer], values[layer] = k, v

    with hooked(vm, read, write) as rec:
        out = vm.model(input_ids=ids, use_cache=True, past_key_values=_watched_cache(vm, keep))
    n = len(keys)
    return Recording(input_ids.reshape(-1).cpu(), [keys[l] for l in range(n)], [values[l] for l in range(n)],
                     out.logits, rec)


class _PrefixKV:
    """Stands in for the model's cache during :func:`resume`: each attention layer gets the recorded prefix's
    keys/values of its rows' sources (as many of the last ones as the model's own cache would hand it: all, or a
    sliding window's), then the suffix's own (nothing is stored)."""

    def __init__(self, recording: Recording, t: int, sources: torch.Tensor, used: dict[int, int]):
        self.rec, self.t, self.sources, self.used = recording, t, sources, used

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        n = self.used.get(layer_idx, 0)
        if n == 0:
            return key_states, value_states
        keys, values = self.rec.keys[layer_idx], self.rec.values[layer_idx]
        rows = self.sources[: key_states.shape[0]].to(keys.device)
        k = keys[rows, :, self.t - n: self.t].to(key_states.device, key_states.dtype)
        v = values[rows, :, self.t - n: self.t].to(value_states.device, value_states.dtype)
        return torch.cat([k, key_states], dim=-2), torch.cat([v, value_states], dim=-2)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.t


def _block_calls(vm, recording: Recording, t: int) -> tuple[list[tuple[tuple, dict]], dict[int, int]]:
    """The arguments the model passes to each block when it runs positions ``t..T-1`` after a cached prefix of
    length ``t`` (captured from one real batch-1 pass: masks and rotary embeddings may differ per layer, e.g.
    sliding-window layers), and how many prefix positions each attention layer's cache hands it."""
    ids = recording.input_ids[t:].reshape(1, -1).to(vm.device)
    used: dict[int, int] = {}
    kwargs: dict = {"use_cache": False}
    if t > 0:
        cache = _watched_cache(vm, lambda layer, k, _v, new: used.__setitem__(layer, k.shape[-2] - new))
        for layer, (k, v) in enumerate(zip(recording.keys, recording.values)):
            cache.update(k[:1, :, :t], v[:1, :, :t], layer)  # the pass below overwrites what this reports
        kwargs = {"use_cache": True, "past_key_values": cache}
    with captured_calls(vm) as calls:
        vm.model(input_ids=ids, **kwargs)
    return calls, used


def _swap_cache(call: tuple[tuple, dict], prefix: _PrefixKV) -> tuple[tuple, dict]:
    # transformers takes seconds to import: only when a model is loaded
    from transformers.cache_utils import Cache

    args, kwargs = call
    args = tuple(prefix if isinstance(a, Cache) else a for a in args[1:])
    kwargs = {k: (prefix if isinstance(v, Cache) else v) for k, v in kwargs.items()}
    return args, kwargs


def resume(vm, recording: Recording, t: int, joins: Sequence[Join], write: Iterable[Intervention] = (),
           read: Iterable[str] = (), detach: bool = True) -> tuple[torch.Tensor, Hooked]:
    """Resume ``joins`` (sorted by ``layer``) at positions ``t..T-1``; returns the last position's logits
    ``[len(joins), d_vocab]`` and the values read (``[rows active there, T - t, ...]``).

    Caller is inside ``vm.weights_for()`` and sets autograd (gradients flow to tensors in ``joins`` and in writes).
    """
    layers = [j.layer for j in joins]
    if layers != sorted(layers):
        raise ValueError("joins must be sorted by the layer they join at")
    n_layers = vm.dims.n_layers
    sources = torch.tensor([j.source for j in joins], device=vm.device)
    captured, used = _block_calls(vm, recording, t)
    prefix = _PrefixKV(recording, t, sources, used)
    calls = [_swap_cache(call, prefix) for call in captured]
    hidden = None
    cursor = 0
    with hooked(vm, read, write, detach=detach) as rec:
        for layer in range(n_layers + 1):
            entering = []
            while cursor < len(joins) and joins[cursor].layer == layer:
                entering.append(joins[cursor].hidden)
                cursor += 1
            if entering:
                new = torch.stack(entering).to(vm.device)
                hidden = new if hidden is None else torch.cat([hidden, new.to(hidden.dtype)])
            if layer == n_layers or hidden is None:
                continue
            args, kwargs = calls[layer]
            out = vm.weights.blocks[layer](hidden, *args, **kwargs)
            hidden = out[0] if isinstance(out, tuple) else out
        final = hp.module_of(vm, hp.hook_point(vm, "ln_final.hook_out"))(hidden[:, -1:])
        logits = vm.model.get_output_embeddings()(final)[:, 0]
    cap = vm.weights.logit_softcap
    logits = logits.to(vm.device)  # the unembedding may live elsewhere (dispatched models)
    return (logits if cap is None else torch.tanh(logits / cap) * cap), rec


@contextmanager
def captured_calls(vm) -> Iterator[list[tuple[tuple, dict]]]:
    """While active, record the arguments the model passes each block (after the hidden state) in the one
    forward pass run inside; the list is filled, block by block, when the block exits. With those,
    :func:`run_blocks` can re-run the blocks from any layer with other residuals (masks, rotary embeddings and
    per-layer sliding windows come along as the model built them for that pass)."""
    calls: dict[int, tuple[tuple, dict]] = {}
    out: list[tuple[tuple, dict]] = []
    handles = [block.register_forward_pre_hook(lambda _m, args, kw, i=i: calls.__setitem__(i, (args, kw)),
                                               with_kwargs=True)
               for i, block in enumerate(vm.weights.blocks)]
    try:
        yield out
    finally:
        for h in handles:
            h.remove()
        out.extend(calls[i] for i in range(len(calls)))


def run_blocks(vm, layer: int, hidden: torch.Tensor, calls: Sequence[tuple[tuple, dict]],
               past: Sequence[tuple[torch.Tensor, torch.Tensor]], read: Iterable[str] = (),
               write: Iterable[Intervention] = (), detach: bool = True) -> tuple[torch.Tensor, Hooked]:
    """Run blocks ``layer..n_layers-1`` on ``hidden [rows, n, d_model]`` (the residual entering block ``layer`` at
    the ``n`` positions after a prefix) with the block arguments of :func:`captured_calls` (a pass over the same
    rows and positions), each attention layer seeing ``past[l] = (keys, values)`` (``[rows, kv_heads, t,
    d_head]``, all of the prefix: the caller checks that sliding windows cover it) before the positions' own.
    Returns the final norm's output ``[rows, n, d_model]`` (no unembedding) and the values read. The result is
    what the pass the calls were captured from computes with ``hidden`` entering block ``layer``.

    Caller is inside ``vm.weights_for()`` and sets autograd (gradients flow to ``hidden`` and to tensors in writes)."""
    t = past[0][0].shape[-2] if past else 0
    rows = hidden.shape[0]
    recording = Recording(torch.empty(0, dtype=torch.long), [k for k, _ in past], [v for _, v in past], None,
                          None)
    prefix = _PrefixKV(recording, t, torch.arange(rows, device=hidden.device),
                       {i: t for i in range(len(past))})
    with hooked(vm, read, write, detach=detach) as rec:
        for i in range(layer, vm.dims.n_layers):
            args, kwargs = _swap_cache(calls[i], prefix)
            out = vm.weights.blocks[i](hidden, *args, **kwargs)
            hidden = out[0] if isinstance(out, tuple) else out
        final = hp.module_of(vm, hp.hook_point(vm, "ln_final.hook_out"))(hidden)
    return final, rec
