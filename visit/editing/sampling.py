"""Text sampled from the model itself: ROME's context prefixes and the default corpus of key statistics.

:func:`sample` continues a batch of equally long starts token by token with a key/value cache, every pass going
through :func:`visit.hooks.run` (so reads of named values, e.g. the MLP keys the statistics need, come for free
while sampling). Sampling is seeded: the same model, starts and seed give the same text.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from visit.hooks import run
from visit.hooks.batch import _cache

# MEMIT's starts for context prefixes; the corpus uses more of them for variety
PREFIX_STARTS = ("The", "Therefore", "Because", "I", "You")
CORPUS_STARTS = ("The", "In", "A", "It", "This", "I", "We", "He", "She", "They", "There", "When", "After",
                 "Because", "Therefore", "You", "My", "One", "For", "As", "On", "If", "What", "How")

Visit = Callable[[dict, int], None]


def start_ids(tokenizer, starts: Sequence[str]) -> list[list[int]]:
    """Each start encoded as a prompt is (special tokens included); keeps the starts of the most common length so
    that rows line up without padding."""
    enc = [tokenizer(s).input_ids for s in starts]
    lengths = [len(e) for e in enc]
    common = max(set(lengths), key=lengths.count)
    return [e for e in enc if len(e) == common]


def sample(vm, starts: Sequence[Sequence[int]], new_tokens: int, *, seed: int = 0, top_k: int | None = None,
           temperature: float = 1.0, read: Sequence[str] = (), visit: Visit | None = None,
           progress: Callable[[int, int], None] | None = None, groups: Sequence[int] | None = None
           ) -> torch.Tensor:
    """Continue each row of ``starts`` (equal lengths) by ``new_tokens`` sampled tokens: ``[rows, len + new]``.

    ``visit(values, first_position)`` receives the values of ``read`` (``[rows, n, ...]``) for the positions fed in
    each pass, the last sampled token included (one extra pass), so every position is visited once.
    ``top_k=None`` samples from the whole distribution (ancestral sampling); ``progress(done, total)`` per token.
    ``groups``: row counts (summing to ``len(starts)``); group ``i`` draws from its own generator seeded
    ``seed + i``, so it gets the tokens a separate call with that seed would (up to the float rounding of a wider
    batch) while all groups share each forward pass (bigger matrix products, fewer sequential steps).
    """
    sizes = list(groups) if groups is not None else [len(starts)]
    if sum(sizes) != len(starts) or min(sizes) < 1:
        raise ValueError(f"groups {sizes} do not split {len(starts)} rows")
    gens = [torch.Generator().manual_seed(int(seed) + i) for i in range(len(sizes))]
    bounds = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    ids = torch.as_tensor([list(s) for s in starts], dtype=torch.long, device=vm.device)
    cache = _cache(vm, None)
    cur, first = ids, 0
    # run() takes the weights per step, so other sessions interleave; this context's weights are the same at
    # every step (visit.models.overlay), so the cache stays valid
    for step in range(new_tokens + (1 if visit else 0)):
        logits, rec = run(vm, cur, read=read, past_key_values=cache, logits_to_keep=1)
        if visit is not None:
            visit(rec.values, first)
        if step == new_tokens:
            break
        probs = (logits[:, -1].float() / max(float(temperature), 1e-6)).softmax(-1).cpu()
        nxt = torch.cat([_draw(probs[a:b], top_k, gen) for a, b, gen in zip(bounds, bounds[1:], gens)])
        nxt = nxt.to(vm.device)
        first += cur.shape[1]
        ids, cur = torch.cat([ids, nxt], dim=1), nxt
        if progress is not None:
            progress(step + 1, new_tokens)
    return ids


def _draw(probs: torch.Tensor, top_k: int | None, gen: torch.Generator) -> torch.Tensor:
    """One token per row of ``probs [rows, vocab]`` (from the ``top_k`` most likely when given): ``[rows, 1]``."""
    if top_k:
        top = probs.topk(int(top_k), dim=-1)
        return top.indices.gather(1, torch.multinomial(top.values, 1, generator=gen))
    return torch.multinomial(probs, 1, generator=gen)
