"""C = E[k k^T]: the uncentred second moment of the keys an MLP output projection reads, for ROME's update.

The keys of layer ``l`` are the inputs of its output projection (``blocks.l.mlp.hook_post``: the neuron
coefficients, ``act(gate) * up`` for gated MLPs), one ``[d_mlp]`` vector per token. ROME's update
``u = C^-1 k*`` makes the rank-one change as small as possible *on average over these keys*, so the edit disturbs
other facts' keys as little as possible.

Corpora:

- **default**: text sampled from the model itself (ancestral sampling, temperature 1, from a few common sentence
  starts, 128 tokens a row, seeded; every key of the rows it takes, so slightly more than asked). No corpus
  ships offline, and the keys the model produces on its own text are the keys of text it finds likely.
  ``DEFAULT_TOKENS`` (16,384) keys: that is ~10.7 x ``d_mlp`` for the default model (1,536), enough for a
  well-conditioned estimate (the smallest eigenvalues of a sample second moment shrink like
  ``(1 - sqrt(d/n))^2``, here 0.48), and not fewer: ROME's ``u = C^-1 k`` is sensitive to it. Measured on the
  default model's layer 3 for 6 shipped records' averaged keys, against ``u`` from all 16,510 keys: the cosine
  is 0.42 from 2,048 keys, 0.73 from 4,096, 0.89 from 8,192, 0.96 from 12,288, and two disjoint halves of the
  corpus (8,255 keys each) agree at 0.68; so halving the count would change the update's direction by much
  more than the sampling noise left at this size. Sampling costs one forward pass of the whole model per token
  (~0.27 GFLOP on the default model), all 130 rows side by side; this size is what the 3-minute budget buys
  on one core (measured: ``docs/benchmarks.md``). The sampled token ids are cached too, so another layer costs
  one batched pass up to that layer.
- **a user corpus**: a text file (cut into rows of 128 tokens) or a JSONL file with a ``"text"`` field per line.

The first token of every row is left out (a sequence start: attention-sink activations that no fact's subject
token has). Sums are accumulated in fp64 from fp32 keys and stored as fp32. Results are cached on disk under
``visit.models.loading.cache_dir()/editing`` per (model, layer, corpus, size).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from visit.editing.sampling import CORPUS_STARTS, sample, start_ids
from visit.errors import VisitError
from visit.hooks import apply_fn, run
from visit.hooks.names import hook_name
from visit.models.loading import cache_dir
from visit.prompts import read_user_file

DEFAULT_TOKENS = 16384
ROW_TOKENS = 128
ROWS_PER_BATCH = 64  # rows per forward pass over a corpus; the sampled corpus's seed groups
SAMPLE_ROWS = 256  # rows sampled side by side (the default corpus's 130 in one go: ~0.8 GB of keys/values)
SEED = 0
Progress = Callable[[int, int, str], None]
log = logging.getLogger(__name__)


@dataclass
class KeyStats:
    """``C [d_mlp, d_mlp]`` fp32 = E[k k^T] over ``n_tokens`` keys of ``layer``; ``seconds``: time to compute."""

    C: torch.Tensor
    layer: int
    n_tokens: int
    corpus: str
    model: str
    seconds: float = 0.0
    cached: bool = False
    _lu: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def solve(self, k: torch.Tensor) -> torch.Tensor:
        """``C^-1 k`` in fp64 (``k [d_mlp]``); C's LU factors are computed once per statistics object, so every
        edit with these statistics costs one triangular solve. Raises :class:`VisitError` when C is singular."""
        if self._lu is None:
            try:
                self._lu = torch.linalg.lu_factor(self.C.double())
            except RuntimeError as exc:  # singular C: a corpus too small for this layer's keys
                raise VisitError(f"the key statistics of layer {self.layer} are singular ({self.n_tokens} tokens): "
                                 f"use a larger corpus ({exc.__class__.__name__})") from None
        lu, pivots = self._lu
        return torch.linalg.lu_solve(lu, pivots, k.double().to(lu.device).view(-1, 1)).view(-1)


_LOADED: dict[tuple, KeyStats] = {}  # statistics read from the disk cache, by (file, its version, device)


def key_stats(vm, layer: int, corpus: str | Path | None = None, tokens: int = DEFAULT_TOKENS,
              progress: Progress | None = None, use_cache: bool = True) -> KeyStats:
    """C for ``layer`` from ``corpus`` (None: text sampled from the model), over ``tokens`` keys; cached on disk."""
    if not 0 <= int(layer) < vm.dims.n_layers:
        raise VisitError(f"layer {layer} is out of range: the model has {vm.dims.n_layers} layers")
    if int(tokens) < 1:
        raise VisitError(f"the statistics need at least one token, not {tokens}")
    layer, tokens = int(layer), int(tokens)
    corpus_key = "sampled" if corpus is None else _file_key(Path(corpus))
    path = _stats_dir(vm) / f"{corpus_key}-layer{layer}-{tokens}.pt"
    if use_cache and path.exists():
        stamp = (str(path), path.stat().st_mtime_ns, str(vm.device))
        if stamp not in _LOADED:  # read once per process (and file version): C's LU factors come along
            saved = torch.load(path, map_location="cpu")
            _LOADED[stamp] = KeyStats(saved["C"].to(vm.device), layer, saved["n_tokens"], saved["corpus"], vm.name,
                                      saved.get("seconds", 0.0), cached=True)
        return _LOADED[stamp]
    start = time.perf_counter()
    if corpus is None:
        C, n = _sampled_stats(vm, layer, tokens, progress, use_cache)
        description = f"{n} tokens sampled from {vm.name} (seed {SEED})"
    else:
        rows = _corpus_rows(vm, Path(corpus), tokens)
        C, n = _rows_stats(vm, layer, rows, progress, limit=tokens)
        description = f"{n} tokens of {Path(corpus).name}"
    seconds = time.perf_counter() - start
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"C": C.cpu(), "n_tokens": n, "corpus": description, "seconds": seconds}, tmp)
        tmp.replace(path)
    return KeyStats(C, layer, n, description, vm.name, seconds)


def building(layer: int) -> str:
    """What a job computing the statistics is doing, in words (the progress notes start with it)."""
    return f"first edit at layer {layer}: building ROME's key statistics (once; kept for the next edits)"


def key_name(layer: int) -> str:
    """The hook point holding layer ``layer``'s keys."""
    return hook_name(layer, "mlp.hook_post")


class _Accumulator:
    def __init__(self, d: int, limit: int):
        self.sum = torch.zeros(d, d, dtype=torch.float64)
        self.n, self.limit = 0, limit

    def add(self, keys: torch.Tensor) -> None:
        k = keys.reshape(-1, keys.shape[-1]).float()[: self.limit - self.n]
        if len(k):
            self.sum += (k.T @ k).double().cpu()
            self.n += len(k)

    def result(self, device) -> torch.Tensor:
        if self.n == 0:
            raise VisitError("the corpus gave no tokens for the statistics")
        return (self.sum / self.n).float().to(device)


def _sampled_stats(vm, layer: int, tokens: int, progress: Progress | None, use_cache: bool):
    """Sample the corpus (or reuse a cached one) and accumulate the layer's keys."""
    rows_needed = -(-tokens // (ROW_TOKENS - 1))  # every key of whole rows: n >= tokens
    corpus_path = _stats_dir(vm) / f"sampled-corpus-{rows_needed}x{ROW_TOKENS}-seed{SEED}.pt"
    if use_cache and corpus_path.exists():
        return _rows_stats(vm, layer, torch.load(corpus_path), progress)
    acc = _Accumulator(vm.dims.d_mlp, rows_needed * (ROW_TOKENS - 1))
    starts = start_ids(vm.tokenizer, CORPUS_STARTS)
    # the corpus is defined as batches of at most ROWS_PER_BATCH rows, batch b sampled with seed SEED + b; all of
    # them are sampled side by side (one forward pass per token for every row: wider matrix products and a third
    # of the sequential steps), each batch drawing from its own generator, so the text is the same
    n_batches = -(-rows_needed // ROWS_PER_BATCH)
    per = -(-rows_needed // n_batches)  # even batches
    sizes = [min(per, rows_needed - b * per) for b in range(n_batches)]
    rows = [starts[i % len(starts)] for i in range(rows_needed)]
    new = ROW_TOKENS - len(rows[0])

    def visit(values, first):
        keys = values[key_name(layer)]
        acc.add(keys[:, 1:] if first == 0 else keys)

    all_rows, g = [], 0
    while g < n_batches:  # at most SAMPLE_ROWS rows at once (the key/value cache grows with them)
        end = g + max(1, SAMPLE_ROWS // per)
        lo, hi = sum(sizes[:g]), sum(sizes[:end])

        def step(done, total, _lo=lo, _hi=hi):
            if progress is not None:
                progress(done, total, f"{building(layer)}: sampling text from the model, rows {_lo + 1}-{_hi} of "
                                      f"{rows_needed}")

        all_rows.append(sample(vm, rows[lo:hi], new, seed=SEED + g, read=[key_name(layer)], visit=visit,
                               progress=step, groups=sizes[g:end]).cpu())
        g = end
    if use_cache:
        corpus_path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(torch.cat(all_rows), corpus_path)
    return acc.result(vm.device), acc.n


class _Stop(Exception):
    """Raised from a hook once the wanted layer's keys are read: the rest of the pass is not needed."""


def _rows_stats(vm, layer: int, rows: torch.Tensor, progress: Progress | None, limit: int | None = None):
    """Keys of ``rows [n, T]`` (equal-length token rows), first column skipped; stops each pass at ``layer``."""
    limit = limit or rows.numel()
    acc = _Accumulator(vm.dims.d_mlp, limit)

    def grab(x):
        acc.add(x[:, 1:])
        raise _Stop

    n_batches = -(-len(rows) // ROWS_PER_BATCH)
    for b in range(n_batches):
        if acc.n >= limit:
            break
        try:
            run(vm, rows[b * ROWS_PER_BATCH:(b + 1) * ROWS_PER_BATCH], write=[apply_fn(key_name(layer), grab)])
        except _Stop:
            pass
        if progress is not None:
            progress(b + 1, n_batches, f"{building(layer)}: keys of the corpus, batch {b + 1}/{n_batches}")
    return acc.result(vm.device), acc.n


def _corpus_rows(vm, path: Path, tokens: int) -> torch.Tensor:
    """A text file or JSONL (``{"text": ...}``) as rows of ``ROW_TOKENS`` tokens, enough for ``tokens`` keys."""
    raw = read_user_file(path, "corpus file")
    if path.suffix.lower() in (".jsonl", ".json"):
        texts = []
        for number, line in enumerate(raw.splitlines(), 1):
            if line.strip():
                try:
                    texts.append(str(json.loads(line)["text"]))
                except (ValueError, KeyError, TypeError):
                    raise VisitError(f"{path}:{number}: expected a JSON object with a \"text\" field") from None
    else:
        texts = [raw]
    ids: list[int] = []
    for text in texts:
        ids += vm.tokenizer(text).input_ids
        if len(ids) >= (tokens // (ROW_TOKENS - 1) + 1) * ROW_TOKENS:
            break
    n_rows = len(ids) // ROW_TOKENS
    if n_rows == 0:
        raise VisitError(f"corpus {path} has fewer than {ROW_TOKENS} tokens")
    return torch.tensor(ids[: n_rows * ROW_TOKENS]).view(n_rows, ROW_TOKENS)


def _file_key(path: Path) -> str:
    if not path.is_file():
        raise VisitError(f"corpus file not found: {path}")
    digest = hashlib.sha1(path.read_bytes()).hexdigest()[:12]
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', path.stem)[:40]}-{digest}"


def _stats_dir(vm) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", vm.name)[:80]
    return cache_dir() / "editing" / f"{slug}-{_fingerprint(vm)}"


def _fingerprint(vm) -> str:
    """A short hash of the model's input embedding (the part of the weights no edit here changes) and dims, so two
    models with the same name (e.g. two tiny test models) never share statistics."""
    emb = vm.model.get_input_embeddings().weight
    sample = emb.detach().reshape(-1)[:: max(1, emb.numel() // 4096)].float().cpu().numpy().tobytes()
    return hashlib.sha1(sample + repr(vm.dims).encode() + str(emb.dtype).encode()).hexdigest()[:10]
