"""Left-padded batches of different prompts, and passes that reuse a batch's prefix (keys/values) through the hook
layer.

Editing runs many *different* prompts at once (ROME's 20 prefixed copies of a fact, CounterFact's paraphrases and
neighbours), and runs the same batch many times with only the end changing (ROME's value optimisation changes the
MLP output at the subject's last token; nothing before that token can change, attention being causal). So:

- :class:`Batch` pads rows on the **left**: every row ends at the last column, so the tokens that matter (the
  subject's tail, the object) sit in the last few columns of every row; ``mask`` hides the padding and
  ``positions`` (``cumsum(mask) - 1``) gives each row its own position ids, so a row computes exactly what it would
  alone (tests compare with unpadded passes on every family);
- :func:`prefix_kv` runs columns ``[0, t)`` once and keeps every layer's keys and values;
- :func:`suffix_pass` runs columns ``[t, T)`` with those keys/values as the past, through
  :func:`visit.hooks.run` (reads, writes, autograd), as often as needed: a fresh cache is built from the stored
  prefix each time (the model appends to the cache it is given).

Logits are only computed for the last ``keep`` columns (``logits_to_keep``): the unembedding of every position
would cost more than the rest of these short passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from visit.errors import VisitError
from visit.hooks.interventions import Intervention
from visit.hooks.runner import run


@dataclass
class Batch:
    """``ids``, ``mask``, ``positions``: ``[rows, T]``; ``lengths[i]``: real tokens of row i (the last ones)."""

    ids: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    lengths: list[int]

    @property
    def width(self) -> int:
        return self.ids.shape[1]

    def column(self, row: int, index: int) -> int:
        """The column of token ``index`` of row ``row`` (negative indices count from the row's end)."""
        n = self.lengths[row]
        index = index % n if index < 0 else index
        return self.width - n + index


def left_padded(rows: Sequence[Sequence[int]], pad_id: int = 0, device=None) -> Batch:
    """A :class:`Batch` of token id lists (each non-empty)."""
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("every row of a batch needs at least one token")
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.as_tensor(list(r), dtype=torch.long)
        mask[i, width - len(r):] = 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    return Batch(ids.to(device), mask.to(device), positions.to(device), [len(r) for r in rows])


def aligned(rows: Sequence[Sequence[Sequence[int]]], pad_id: int = 0, device=None) -> tuple[Batch, list[int]]:
    """A batch of rows made of parts (e.g. ``[context prefix, prompt]``), each part left-padded to its widest
    version, so that part ``j`` of every row ends at the same column. Returns ``(batch, ends)``: ``ends[j]`` is the
    column after part ``j``. Padding in the middle of a row is masked like any other (positions skip it), so a
    row still computes what it would alone. ``lengths`` count a row's real tokens; :meth:`Batch.column` is not
    meaningful for such rows: use ``ends``."""
    n_parts = len(rows[0])
    widths = [max(len(r[j]) for r in rows) for j in range(n_parts)]
    flat_ids, flat_mask = [], []
    for r in rows:
        ids, mask = [], []
        for j, part in enumerate(r):
            pad = widths[j] - len(part)
            ids += [int(pad_id)] * pad + list(part)
            mask += [0] * pad + [1] * len(part)
        flat_ids.append(ids)
        flat_mask.append(mask)
    ids = torch.tensor(flat_ids, dtype=torch.long)
    mask = torch.tensor(flat_mask, dtype=torch.long)
    if (mask.sum(1) == 0).any():
        raise ValueError("every row of a batch needs at least one token")
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    ends = [sum(widths[: j + 1]) for j in range(n_parts)]
    return Batch(ids.to(device), mask.to(device), positions.to(device), [int(m) for m in mask.sum(1)]), ends


def check_window(vm, width: int) -> None:
    """Padded batches need every row inside the attention window: a sliding window counts padded columns, so a
    row would see fewer real tokens than it does alone. Refuse (one message) when the batch is wider."""
    window = getattr(vm.model.config, "sliding_window", None)
    if window and width > int(window):
        raise VisitError(f"this model's sliding attention window ({window} tokens) is shorter than the padded "
                         f"batch editing needs ({width} columns); editing does not support it")


def pad_id(tokenizer) -> int:
    """Any valid id for padded columns (they are masked): the pad token, else end-of-text, else 0."""
    for tid in (getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if tid is not None:
            return int(tid)
    return 0


KV = list[tuple[torch.Tensor, torch.Tensor]]
NO_LOGITS = torch.zeros(0, dtype=torch.long)  # logits_to_keep that selects no position


def _cache(vm, kv: KV | None):
    # transformers takes seconds to import: only when a model is loaded
    from transformers import DynamicCache

    cache = DynamicCache(config=vm.model.config)
    for layer, (k, v) in enumerate(kv or ()):
        cache.update(k, v, layer)
    return cache


def prefix_kv(vm, batch: Batch, t: int, read: Iterable[str] = (), write: Iterable[Intervention] = (),
              start: int = 0, past: KV | None = None) -> tuple[KV, dict]:
    """Run columns ``[start, t)`` (no autograd) after ``past`` (the keys/values of columns ``[0, start)``) and
    return every layer's ``(keys, values)`` for ``[0, t)`` and the values read."""
    if t <= start:
        return list(past or []), {}
    cache = _cache(vm, past)
    _, rec = run(vm, batch.ids[:, start:t], read=read, write=write, attention_mask=batch.mask[:, :t],
                 position_ids=batch.positions[:, start:t], past_key_values=cache, logits_to_keep=NO_LOGITS)
    kv = [(layer.keys, layer.values) for layer in cache.layers]
    return kv, rec.values


def suffix_pass(vm, batch: Batch, t: int, kv: KV, read: Iterable[str] = (), write: Iterable[Intervention] = (),
                keep: int = 1, grad: bool = False):
    """Run columns ``[t, T)`` after the prefix ``kv``; returns ``(logits [rows, keep, d_vocab], recorded)``.

    Writes and reads address positions counted from ``t`` (the pass only sees the suffix). ``keep=0`` computes
    no logits (read ``ln_final.hook_out`` and use :func:`unembed` on the vectors you need).
    """
    logits, rec = run(vm, batch.ids[:, t:], read=read, write=write, grad=grad, attention_mask=batch.mask,
                      position_ids=batch.positions[:, t:], past_key_values=_cache(vm, kv),
                      logits_to_keep=keep if keep > 0 else NO_LOGITS)
    return logits, rec


def unembed(vm, final: torch.Tensor) -> torch.Tensor:
    """Logits of final-norm outputs ``[..., d_model]`` -> ``[..., d_vocab]`` (the model's output embedding, and its
    logit soft-capping where the model has one), for the few positions a loss needs: the unembedding of every
    position costs more than these short passes."""
    logits = vm.model.get_output_embeddings()(final)
    cap = vm.weights.logit_softcap
    return logits if not cap else cap * torch.tanh(logits / cap)
