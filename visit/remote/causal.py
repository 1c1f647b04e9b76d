"""Causal tracing of a remote model: the same grid, as full passes whose writes and reductions run remotely.

The local grid (:mod:`visit.localization.causal_trace`) resumes each cell's rows from a recorded corrupted pass
with its key/value cache, which lives where the model runs. Remotely every cell is what that resumption stands
for -- the reference's definition: a corrupted pass (the same noise on the subject's input embeddings, sample
by sample) in which the clean value is written back at the cell -- and a request carries many cells' rows at
once (at most ``MAX_ROWS``), returning only each row's probability of the target. The clean run's restored
values (``hook_resid_post``, ``hook_mlp_out``, ``hook_attn_out`` at the subject's tokens and after) come back
once. Requests: one clean pass, one corrupted, then ``ceil(cells x samples / MAX_ROWS)`` per token.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from visit.errors import VisitError
from visit.hooks import Intervention, add, replace, run
from visit.localization import causal_trace as ct
from visit.localization.subject import find_subject
from visit.tokens import token_strings
from visit.tracer import encode_prompt
from visit.prompts import default_prompt_file, load_prompt_file


def causal_trace(vm, prompt: str, subject: str, target=None, kinds: Sequence[str] = ct.KINDS, samples: int = 10,
                 noise: float | None = None, window: int = 10, seed: int = 0, progress=None,
                 partial=None) -> ct.CausalTrace:
    """:func:`visit.localization.causal_trace.causal_trace`'s grid, computed by full remote passes."""
    kinds = tuple(dict.fromkeys(kinds))
    ct._check(samples, window, kinds)
    ids = encode_prompt(vm, prompt)[0]
    s0, s1 = find_subject(vm.tokenizer, prompt, subject)
    if noise is None:
        vm.weights.memo(("subject embedding std",), lambda: _subject_embedding_std(vm))
        noise = ct.default_noise(vm)
    noise = float(noise)
    if not noise >= 0:
        raise VisitError(f"the noise scale must be >= 0, not {noise}")
    L, T, d = vm.dims.n_layers, len(ids), vm.dims.d_model
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn(samples, s1 - s0, d, generator=gen) * noise
    points = sorted({ct._POINT[k] for k in kinds})
    logits, clean = run(vm, ids[None], read=[f"blocks.{l}.{p}" for l in range(L) for p in points])
    tgt = ct._target(vm, target, logits[0, -1])
    p_clean = float(logits[0, -1].float().softmax(-1)[tgt.id])
    corrupt = [add("hook_embed", eps, positions=list(range(s0, s1)))]
    p_corr = float(vm.backend.run(vm, ids.expand(samples, -1), write=corrupt, target=tgt.id)[0].mean())
    result = ct.CausalTrace(prompt, token_strings(vm.tokenizer, ids.tolist()), (s0, s1), tgt, p_clean, p_corr,
                            {k: np.full((T, L), np.nan) for k in kinds}, samples, noise, window,
                            int(logits[0, -1].argmax()), complete=False)
    for k in kinds:
        result.kinds[k][:s0] = p_corr
    total, done = (T - s0) * len(kinds) * L, 0
    per = max(1, ct.MAX_ROWS // samples)
    for t in range(s0, T):
        cells = [(k, l) for k in kinds for l in range(L)]
        for i in range(0, len(cells), per):
            batch = cells[i:i + per]
            probs = _cells(vm, ids, eps, clean.values, t, batch, samples, window, s0, s1, tgt.id)
            for (k, l), p in zip(batch, probs):
                result.kinds[k][t, l] = p
            done += len(batch)
            if partial is not None:
                partial(result)
            if progress is not None:
                progress(done, total, f"token {t + 1}/{T}")
    result.complete = True
    return result


def _cells(vm, ids, eps, clean: dict, t: int, cells, samples: int, window: int, s0: int, s1: int,
           target_id: int) -> list[float]:
    """One request: ``samples`` corrupted rows per cell, the clean value written back at each cell."""
    L, n = vm.dims.n_layers, len(cells) * samples
    writes: list[Intervention] = [add("hook_embed", eps.repeat(len(cells), 1, 1), positions=list(range(s0, s1)))]
    restore: dict[tuple[str, int], list[int]] = {}
    for c, (kind, layer) in enumerate(cells):
        layers = [layer] if kind == "hidden" else list(ct.window_of(layer, window, L))
        for k in layers:
            restore.setdefault((ct._POINT[kind], k), []).extend(range(c * samples, (c + 1) * samples))
    writes += [replace(f"blocks.{k}.{point}", clean[f"blocks.{k}.{point}"][0, t], rows=rows, positions=t)
               for (point, k), rows in restore.items()]
    probs = vm.backend.run(vm, ids.expand(n, -1), write=writes, target=target_id)[0]
    return probs.reshape(len(cells), samples).mean(-1).tolist()


def _subject_embedding_std(vm) -> float:
    """:func:`visit.localization.causal_trace.default_noise`'s statistic, the embeddings read remotely: the shipped
    prompt set's prompts as the rows of one request (padded on the right; an embedding does not look at other
    positions, so the padding changes nothing that is read)."""
    cases = [(encode_prompt(vm, c.prompt)[0], find_subject(vm.tokenizer, c.prompt, c.subject))
             for c in load_prompt_file(default_prompt_file()) if c.subject]
    width = max(len(ids) for ids, _ in cases)
    batch = torch.zeros(len(cases), width, dtype=torch.long)
    for i, (ids, _) in enumerate(cases):
        batch[i, :len(ids)] = ids
    _, rec = run(vm, batch, read=["hook_embed"])
    return float(torch.cat([rec["hook_embed"][i, s:e].float() for i, (_, (s, e)) in enumerate(cases)]).std())
