"""Opening a remote model: ``ndif:ORG/NAME`` traces on NDIF with the key in ``NDIF_API_KEY``.

The client builds the model's structure on the ``meta`` device from its config (no weights: nothing of the
checkpoint is downloaded), with the tokenizer; forward passes, the lens and weight slices go through
:class:`visit.remote.backend.RemoteBackend`. ``VISIT_NDIF_SIMULATE=1`` runs the same requests against a local
copy of the model (``ndif:default`` means the default model; any name :func:`visit.models.load_model`
accepts works), serialised and executed the way NDIF would (:mod:`visit.remote.transport`); nothing is
contacted.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch
from nnsight import TransformersModel

from visit.errors import VisitError
from visit.models import loading
from visit.models.loading import VisitModel, cache_dir, wrap_model
from visit.remote import estimate
from visit.remote import weights as rw
from visit.remote.backend import RemoteBackend
from visit.remote.transport import Transport

PREFIX = "ndif:"
KEY_VAR, SIMULATE_VAR = "NDIF_API_KEY", "VISIT_NDIF_SIMULATE"
log = logging.getLogger(__name__)
SETUP = (f"set {KEY_VAR} to your NDIF API key (from the NDIF website) and be online; or set {SIMULATE_VAR}=1 "
         f"to simulate NDIF with a local copy of the model")


def is_remote(name: str | None) -> bool:
    return (name or "").strip().lower().startswith(PREFIX)


def simulating() -> bool:
    return os.environ.get(SIMULATE_VAR, "").strip() not in ("", "0", "false", "False")


def load_remote(name: str, **_placement) -> VisitModel:
    """Open ``ndif:ORG/NAME``. Raises :class:`VisitError` with one line when it cannot (no key, offline, an
    unknown model, nnsight missing)."""
    repo = name.strip()[len(PREFIX):].strip()
    if not repo:
        raise VisitError(f"'{name}' names no model: write ndif:ORG/NAME (e.g. ndif:meta-llama/Llama-3.1-70B)")
    if simulating():
        local = loading.load_model(repo)
        lm = TransformersModel(local.model, tokenizer=local.tokenizer)
        config, tokenizer, display = local.model.config, local.tokenizer, local.name
        revision = _local_revision(local)
        transport = Transport(lm, simulate=True)
        size = estimate.value_bytes(local.model.dtype)
    else:
        key = os.environ.get(KEY_VAR, "").strip()
        if not key:
            raise VisitError(f"cannot open '{name}': {KEY_VAR} is not set; {SETUP}")
        if not loading.hub_reachable():
            raise VisitError(f"cannot open '{name}': offline (the model's config and tokenizer come from the "
                             f"Hugging Face hub and the passes run on NDIF); {SETUP}")
        config, tokenizer = _hub_config(name, repo)
        revision, display = getattr(config, "_commit_hash", None) or "main", repo
        lm = TransformersModel(repo, tokenizer=tokenizer)
        transport = Transport(lm, simulate=False, api_key=key)
        size = estimate.value_bytes(getattr(config, "dtype", None) or getattr(config, "torch_dtype", None))
    if config.model_type not in loading.supported_model_types():
        raise VisitError(f"cannot open '{name}': architecture '{config.model_type}' is not supported")
    for tokens in (16, 128):  # said before anything is fetched (the CLI shows this logger's INFO lines)
        log.info("%s: at %d tokens %s", name, tokens, estimate.per_trace(config, tokens, size).describe())
    client = _meta_model(config)
    unembed = next(p for p, m in client.named_modules() if m is client.get_output_embeddings())
    backend = RemoteBackend(transport, unembed, size)
    root = Path(os.environ.get("VISIT_REMOTE_CACHE_DIR") or cache_dir() / "remote")
    try:
        limit = int(os.environ.get("VISIT_REMOTE_MAX_FETCH") or rw.DEFAULT_WHOLE_LIMIT)
    except ValueError:
        raise VisitError("VISIT_REMOTE_MAX_FETCH must be a number of bytes") from None
    cache = rw.WeightCache(backend, root / f"{_safe(repo)}@{revision}", limit, size)
    rw.attach(client, cache)
    client.hf_device_map = {"": "cpu"}  # visit computes on the CPU (visit.models.dispatch.compute_device)
    vm = wrap_model(client, tokenizer, f"{PREFIX}{display}")
    vm.backend = backend
    vm.weights = rw.RemoteWeights(client, vm.adapter, vm.dims, cache, backend)
    rw.prefetch_small(client, cache)
    return vm


def _meta_model(config):
    # transformers takes seconds to import: only when a remote model is opened (start-up cost)
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    return model.eval()


def _hub_config(name: str, repo: str):
    # transformers takes seconds to import: only when a remote model is opened (start-up cost)
    from transformers import AutoConfig, AutoTokenizer

    try:
        return AutoConfig.from_pretrained(repo), AutoTokenizer.from_pretrained(repo)
    except Exception as exc:  # noqa: BLE001 - one line for the user
        raise VisitError(f"cannot open '{name}': {loading._short(exc)}") from None


def _local_revision(vm) -> str:
    """A simulated model's revision: a digest of its weights (a local copy has no hub revision)."""
    digest = hashlib.sha1()
    for name, p in sorted(vm.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(p.detach().float().flatten()[:: max(1, p.numel() // 4096)].numpy().tobytes())
    return digest.hexdigest()[:12]


def _safe(repo: str) -> str:
    return repo.replace("/", "--").replace(":", "_")
