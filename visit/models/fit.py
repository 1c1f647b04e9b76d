"""Before loading: will this model fit? One line from the config alone (:mod:`visit.models.memory`'s estimate).

:func:`visit.models.load_model` already refuses a model that will not fit, but only once it is asked to load it.
The CLI and the app's model box say it first, from the config (a few kB; no weights read)::

    fit = check_fit("HuggingFaceTB/SmolLM2-360M")
    fit.fits   # True, False, or None when it cannot be told (the config is not on this machine)
    fit.text   # "HuggingFaceTB/SmolLM2-360M: 361.8M parameters x 4 bytes (float32) = 1.35 GiB of weights, plus
               #  about 0.27 GiB for a 512-token trace: fits on cpu (11.8 GiB free)"

The config comes from what is on this machine (a local directory, the Hugging Face cache, a shipped model once
converted); a hub id that is not cached is asked for its config only when ``download=True`` (the CLI, or the
app with ``--allow-downloads``), which is a few kB, not the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from visit import limits
from visit.errors import VisitError
from visit.models import dispatch, memory
from visit.models.dispatch import gib
from visit.models.loading import DTYPES, cache_dir, dims_of, gguf_file, hub_reachable, pick_device, shipped_model


@dataclass(frozen=True)
class Fit:
    """``fits``: True, False, or None when it cannot be told; ``text``: one line saying so and why."""

    fits: bool | None
    text: str


def _config(name: str, download: bool):
    """The model's config, read without loading (or converting) weights; None when it is not at hand."""
    # transformers: imported on first use (start-up cost)
    from transformers import AutoConfig

    shipped = shipped_model(name)
    if shipped is not None:
        source = cache_dir() / shipped.cache_name
        return AutoConfig.from_pretrained(source) if (source / "config.json").exists() else None
    gguf = gguf_file(name)
    if gguf is not None:
        return AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)  # reads the file's header
    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=False, local_files_only=True)
    except Exception:  # noqa: BLE001 - not on this machine
        if not download or not hub_reachable():
            return None
        return AutoConfig.from_pretrained(name, trust_remote_code=False)


def check_fit(name: str, device: str | None = None, dtype: str = "float32", device_map=None, max_memory=None,
              tokens: int | None = None, download: bool = False) -> Fit:
    """Whether ``name`` and a ``tokens``-token trace (default: the app's prompt cap or the context) fit where
    :func:`visit.models.load_model` with the same arguments would put them. Never raises for a model it cannot
    read: that is ``Fit(None, ...)`` (loading it says why)."""
    if dtype not in DTYPES:
        raise VisitError(f"unknown dtype '{dtype}'; choose one of {', '.join(sorted(DTYPES))}")
    try:
        config = _config(name, download)
    except Exception:  # noqa: BLE001 - loading will say what is wrong with it
        config = None
    if config is None:
        return Fit(None, f"{name}: its size is not known before loading (its config is not on this machine)")
    torch_dtype = DTYPES[dtype]
    try:
        empty = memory.empty_model(config, torch_dtype)
    except Exception:  # noqa: BLE001 - an architecture transformers cannot build: loading says so
        return Fit(None, f"{name}: its size cannot be estimated from its config")
    dims = dims_of(empty)
    tokens = tokens or min(dims.n_ctx, limits.PROMPT_TOKENS.value())
    spec, budget = dispatch.parse_device_map(device_map), dispatch.parse_max_memory(max_memory)
    if spec is not None:
        est = memory.estimate(empty, dims, torch_dtype, tokens, offloaded=True)
        try:
            placed = dispatch.plan_device_map(empty, spec, budget, torch_dtype, est.trace_bytes)
        except VisitError as exc:
            return Fit(False, f"{name}: {exc}")
        return Fit(True, f"{name}: {est.describe()}: fits, spread as "
                         f"{dispatch.describe_map(empty, placed, torch_dtype)}")
    est = memory.estimate(empty, dims, torch_dtype, tokens)
    where = pick_device(device)
    try:
        memory.check_one_device(est, where, budget)
    except VisitError as exc:
        return Fit(False, f"{name}: {exc}")
    key = (where.index or 0) if where.type == "cuda" else where.type
    have = (budget or {}).get(key) or dispatch.available_memory().get(key)
    room = f" ({gib(have)} {'allowed' if budget and key in budget else 'free'})" if have else ""
    return Fit(True, f"{name}: {est.describe()}: fits on {where}{room}")


__all__ = ["Fit", "check_fit"]
