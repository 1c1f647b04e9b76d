"""Causal tracing (Meng et al. 2022, ROME; seed 001 section 3.3): which hidden states carry a fact.

Three kinds of run of one prompt:

- the **clean** run;
- **corrupted** runs (``samples`` of them, default 10): Gaussian noise of scale ``noise`` is added to the input
  embeddings (``hook_embed``) of the subject's tokens; the same noise for every cell below;
- **restored** runs: a corrupted run in which one clean value is copied back: the hidden state (block output,
  ``hook_resid_post``) at one (token, layer), or the MLP / attention output (``hook_mlp_out`` / ``hook_attn_out``)
  at one token over a window of ``window`` layers around the layer (``[l - w//2, l + ceil(w/2))``, clipped: one
  layer's MLP or attention is too weak alone to see).

Reported per cell: the target's probability averaged over the corrupted samples (``kinds[kind][token, layer]``);
the indirect effect is that minus the corrupted probability, the total effect ``p_clean - p_corrupted``. The
target is the clean run's top-1 next token unless one is given.

How the grid is computed (the reference runs one full forward pass per cell):

- a cell at a token before the subject changes nothing (the clean and corrupted runs are identical there, causal
  attention), so its value is exactly ``p_corrupted``, without a pass;
- every other cell at token ``t`` and layer ``l`` differs from the corrupted run only from its first restored
  layer on, and only at positions ``>= t``. :func:`visit.hooks.resume.resume` runs all cells of one token as one
  batch that joins each row at its first block and covers positions ``t..T-1`` only, with the corrupted run's
  keys and values for the positions before ``t``. Restoring a hidden state is the row's starting residual;
  restoring an MLP or attention output is a hook-layer ``replace`` write on the rows whose window covers the
  layer.

The default noise scale is 3 x the standard deviation of the model's input embeddings of the subjects of the
shipped prompt set (one scalar, measured once per model and weights version), as the ROME paper does over its
known facts. ``benchmarks/causal_trace.py`` compares the batched grid with the per-cell loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from visit.errors import VisitError
from visit.hooks import Intervention, add, replace, run
from visit.hooks.names import hook_name
from visit.hooks.resume import Join, record, resume
from visit.localization.subject import find_subject
from visit.prompts import default_prompt_file, load_prompt_file
from visit.tokens import Target, resolve_target, target_from_id, token_strings
from visit.tracer import encode_prompt

KINDS = ("hidden", "mlp", "attn")
_POINT = {"hidden": "hook_resid_post", "mlp": "hook_mlp_out", "attn": "hook_attn_out"}
MAX_SAMPLES = 1000  # beyond this the batches stop fitting a workstation's memory for no statistical gain
MAX_ROWS = 768  # rows per resumed batch (bounds memory: rows x positions x d_mlp floats)
Progress = Callable[[int, int, str], None]


@dataclass
class CausalTrace:
    """The result: restored probabilities per kind, ``kinds[kind]`` ``[n_tokens, n_layers]``."""

    prompt: str
    tokens: list[str]
    subject_range: tuple[int, int]
    target: Target
    p_clean: float
    p_corrupted: float
    kinds: dict[str, np.ndarray]
    samples: int
    noise: float
    window: int
    clean_top_id: int = -1  # the clean run's top-1 next token
    complete: bool = True  # False while a job is still filling the grid

    def indirect_effect(self, kind: str) -> np.ndarray:
        """``[n_tokens, n_layers]``: restored minus corrupted probability."""
        return self.kinds[kind] - self.p_corrupted

    @property
    def known(self) -> bool:
        """Whether the target is the clean run's top-1 prediction."""
        return self.clean_top_id == self.target.id

    @property
    def total_effect(self) -> float:
        return self.p_clean - self.p_corrupted

    def to_json(self) -> dict:
        return {"prompt": self.prompt, "tokens": self.tokens, "subject_range": list(self.subject_range),
                "target": {"token": self.target.token, "id": self.target.id},
                "p_clean": self.p_clean, "p_corrupted": self.p_corrupted, "known": self.known,
                "samples": self.samples, "noise": self.noise, "window": self.window,
                "kinds": {k: np.round(v, 8).tolist() for k, v in self.kinds.items()}}


def window_of(layer: int, window: int, n_layers: int) -> range:
    """The layers restored for an MLP/attention cell at ``layer`` (ROME: ``[l - w//2, l + ceil(w/2))``)."""
    return range(max(0, layer - window // 2), min(n_layers, layer - (-window // 2)))


def default_noise(vm) -> float:
    """3 x the std of the input embeddings of the shipped prompt set's subjects (per model and weights)."""
    return 3.0 * vm.weights.memo(("subject embedding std",), lambda: _subject_embedding_std(vm))


def _subject_embedding_std(vm) -> float:
    rows = []
    embed = vm.model.get_input_embeddings()
    for case in load_prompt_file(default_prompt_file()):
        if case.subject:
            ids = encode_prompt(vm, case.prompt)[0]
            s, e = find_subject(vm.tokenizer, case.prompt, case.subject)
            with torch.no_grad():
                rows.append(embed(ids[s:e].to(vm.device)).float())
    return float(torch.cat(rows).std())


def _target(vm, target, clean_logits: torch.Tensor) -> Target:
    if target is None or target == "":
        return target_from_id(vm.tokenizer, int(clean_logits.argmax()))
    if isinstance(target, int):
        return target_from_id(vm.tokenizer, target)
    resolved = resolve_target(vm.tokenizer, target)
    if resolved.n_tokens > 1:
        raise VisitError(f"the target '{target}' is {resolved.n_tokens} tokens; causal tracing needs a target of "
                         f"one token (e.g. '{resolved.token}')")
    return resolved


def _check(samples: int, window: int, kinds: Sequence[str]) -> None:
    if not 1 <= int(samples) <= MAX_SAMPLES:
        raise VisitError(f"samples must be between 1 and {MAX_SAMPLES}, not {samples}")
    if int(window) < 1:
        raise VisitError(f"the window must be at least 1 layer, not {window}")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise VisitError(f"unknown kind(s) {unknown or kinds}; choose from {', '.join(KINDS)}")


def causal_trace(vm, prompt: str, subject: str, target: str | int | None = None,
                 kinds: Sequence[str] = KINDS, samples: int = 10, noise: float | None = None, window: int = 10,
                 seed: int = 0, progress: Progress | None = None,
                 partial: Callable[[CausalTrace], None] | None = None) -> CausalTrace:
    """The causal-trace grid of ``prompt`` with ``subject`` (text in the prompt, located by character offsets).

    ``progress(done, total, note)`` is called after each batch (it may raise to cancel); ``partial(result)``
    receives the grid filled so far (cells not yet computed are NaN). The model's weights are not touched.
    """
    if vm.backend is not None:  # the model lives elsewhere: full passes, written and reduced there
        return vm.backend.causal_trace(vm, prompt, subject, target, kinds, samples, noise, window, seed, progress,
                                       partial)
    kinds = tuple(dict.fromkeys(kinds))
    _check(samples, window, kinds)
    ids = encode_prompt(vm, prompt)[0]
    s0, s1 = find_subject(vm.tokenizer, prompt, subject)
    noise = default_noise(vm) if noise is None else float(noise)
    if not noise >= 0:
        raise VisitError(f"the noise scale must be >= 0, not {noise}")
    L, T, d = vm.dims.n_layers, len(ids), vm.dims.d_model
    gen = torch.Generator().manual_seed(seed)
    eps = (torch.randn(samples, s1 - s0, d, generator=gen) * noise).to(vm.device)
    reads = [hook_name(l, p) for l in range(L) for p in ("hook_resid_pre", *_POINT.values())]
    # the weights are taken per pass, so other sessions' requests interleave; this context's weights (its
    # session's edits: visit.models.overlay) are the same at every weights_for, so the recorded prefixes stay valid
    with torch.no_grad():
        with vm.weights_for():
            clean = record(vm, ids, rows=1, read=reads)
        tgt = _target(vm, target, clean.logits[0, -1])
        with vm.weights_for():
            corrupt = record(vm, ids, rows=samples, read=reads + ["ln_final.hook_in"],
                             write=[add("hook_embed", eps.to(vm.model.dtype), positions=list(range(s0, s1)))])
        p_clean = float(clean.logits[0, -1].float().softmax(-1)[tgt.id])
        p_corr = float(corrupt.logits[:, -1].float().softmax(-1)[:, tgt.id].mean())
        result = CausalTrace(prompt, token_strings(vm.tokenizer, ids.tolist()), (s0, s1), tgt, p_clean, p_corr,
                             {k: np.full((T, L), np.nan) for k in kinds}, samples, noise, window,
                             int(clean.logits[0, -1].argmax()), complete=False)
        for k in kinds:
            result.kinds[k][:s0] = p_corr
        plan = [(t, k, l) for t in range(s0, T) for k in kinds for l in range(L)]
        done = 0
        for t in range(s0, T):
            cells = [(k, l) for k in kinds for l in range(L)]
            for batch in _batches(cells, samples, window, L):
                with vm.weights_for():
                    probs = _run_cells(vm, clean, corrupt, t, batch, samples, window, tgt.id)
                for (k, l), p in zip(batch, probs):
                    result.kinds[k][t, l] = p
                done += len(batch)
                if partial is not None:
                    partial(result)
                if progress is not None:
                    progress(done, len(plan), f"token {t + 1}/{T}")
    result.complete = True
    return result


def _first_layer(kind: str, layer: int, window: int, n_layers: int) -> int:
    """The block a cell's rows join at (``n_layers``: only the final norm is left)."""
    return layer + 1 if kind == "hidden" else window_of(layer, window, n_layers).start


def _batches(cells: list[tuple[str, int]], samples: int, window: int, n_layers: int):
    """Cells of one token sorted by the block they join at, in batches of at most MAX_ROWS rows."""
    cells = sorted(cells, key=lambda c: _first_layer(c[0], c[1], window, n_layers))
    n_batches = -(-len(cells) * samples // MAX_ROWS)
    per = max(1, -(-len(cells) // n_batches))  # equal batches: a small last one would run inefficiently
    for i in range(0, len(cells), per):
        yield cells[i:i + per]


def _run_cells(vm, clean, corrupt, t: int, cells: list[tuple[str, int]], samples: int, window: int,
               target_id: int) -> list[float]:
    """One resumed batch: ``samples`` rows per cell; returns each cell's mean target probability."""
    L = vm.dims.n_layers
    joins: list[Join] = []
    restore: dict[tuple[str, int], list[int]] = {}  # (hook point, layer) -> rows restored there
    for kind, layer in cells:
        start = _first_layer(kind, layer, window, L)
        if kind == "hidden":
            base = corrupt.read[hook_name(layer, "hook_resid_post")][:, t:].clone()
            base[:, 0] = clean.read[hook_name(layer, "hook_resid_post")][0, t]
        else:
            base = (corrupt.read[hook_name(start, "hook_resid_pre")][:, t:] if start < L
                    else corrupt.read["ln_final.hook_in"][:, t:])
            rows = range(len(joins), len(joins) + samples)
            for k in window_of(layer, window, L):
                restore.setdefault((_POINT[kind], k), []).extend(rows)
        joins.extend(Join(start, base[s], source=s) for s in range(samples))
    writes: list[Intervention] = [
        replace(hook_name(k, point), clean.read[hook_name(k, point)][0, t], rows=rows, positions=0)
        for (point, k), rows in restore.items()
    ]
    logits, _ = resume(vm, corrupt, t, joins, write=writes)
    probs = logits.float().softmax(-1)[:, target_id].reshape(len(cells), samples).mean(-1)
    return probs.tolist()


def naive_cell(vm, prompt: str, subject_range: tuple[int, int], noise: torch.Tensor, kind: str, token: int,
               layer: int, window: int, target_id: int) -> float:
    """One cell the way the reference code computes it: one full forward pass of 1 + N rows (row 0 clean, the
    others corrupted by ``noise [N, subject tokens, d_model]``), the clean row's value copied into the corrupted
    rows at the cell. The benchmark's baseline and the tests' ground truth."""
    ids = encode_prompt(vm, prompt)[0]
    s0, s1 = subject_range
    n = noise.shape[0]
    copy = lambda sel: sel[:1].expand_as(sel)  # noqa: E731 - row 0 (clean) into every row
    layers = [layer] if kind == "hidden" else list(window_of(layer, window, vm.dims.n_layers))
    writes = [add("hook_embed", noise.to(vm.model.dtype), rows=list(range(1, n + 1)), positions=list(range(s0, s1)))]
    writes += [Intervention(hook_name(k, _POINT[kind]), "fn", copy, positions=token) for k in layers]
    logits, _ = run(vm, ids.expand(n + 1, -1), write=writes)
    return float(logits[1:, -1].float().softmax(-1)[:, target_id].mean())


@dataclass(frozen=True)
class CausalNeuron:
    """Seed 001's causal neuron: the MLP state (token, layer) whose restoration has the largest indirect effect."""

    token: int
    layer: int
    effect: float  # indirect effect (restored - corrupted probability)
    trace: CausalTrace


def causal_neuron(vm, prompt: str, subject: str, target: str | int | None = None, samples: int = 10,
                  noise: float | None = None, window: int = 1, seed: int = 0,
                  progress: Progress | None = None) -> CausalNeuron:
    """``argmax_{token, layer}`` of the MLP trace's indirect effect. ``window=1`` restores one layer's MLP output,
    seed 001's definition (an MLP hidden state); ROME's 10-layer window smooths it over neighbours."""
    ct = causal_trace(vm, prompt, subject, target, ("mlp",), samples, noise, window, seed, progress)
    ie = ct.indirect_effect("mlp")
    token, layer = np.unravel_index(int(np.nanargmax(ie)), ie.shape)
    return CausalNeuron(int(token), int(layer), float(ie[token, layer]), ct)
