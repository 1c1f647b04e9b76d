"""Models bigger than one device: accelerate's big-model dispatch, and reading weights where they live.

``load_model(..., device_map="auto", max_memory="0=20GiB,cpu=60GiB,disk=200GiB")`` loads a model whose
modules live on several devices: each block on a GPU, in CPU memory, or offloaded to disk (its parameters are
then ``meta`` tensors and accelerate's ``AlignDevicesHook`` brings the real ones in for the block's forward
call, out of the checkpoint's own safetensors file when it has one, else out of an offload folder).

What the rest of visit needs from a dispatched model lives here, in one place:

- :func:`compute_device`: the one device where visit's maths runs (fp32) and where inputs go: the model's main
  device, i.e. the first GPU of its device map, or the CPU when it has none (accelerate's own choice of the
  device offloaded blocks execute on). Recorded activations and weight views are moved there.
- :func:`read_param`: a module's parameter where it lives: the tensor itself, or, for an offloaded module
  (``meta``), the one its hook's ``weights_map`` reads from disk (or from CPU memory). Nothing else in visit
  reads offloaded weights.
- :func:`is_offloaded`: whether a module's weights are offloaded (so fp32 views of them are built when needed
  rather than kept: :class:`visit.models.weights.ModelWeights`).
- :func:`parse_device_map`, :func:`parse_max_memory` and :func:`plan_device_map`: the CLI's and the app's
  ``--device-map auto|balanced|sequential|JSON`` and ``--max-memory DEVICE=SIZE,...`` into an explicit map,
  checked against the memory estimate (:mod:`visit.models.memory`) before anything is loaded.

Tested on CPU with layers offloaded to disk (tests/test_dispatch.py). A GPU + CPU split takes its devices from
where tensors live and should work the same way, but has not been run here (no GPU on the test machine).
"""

from __future__ import annotations

import atexit
import json
import re
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from visit.errors import VisitError

STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
OFFLOAD = ("cpu", "disk")  # device-map values that are not accelerators


# --- reading a dispatched model ---------------------------------------------------------------------------

def _device(value) -> torch.device:
    """A device-map value (``0``, ``"cuda:1"``, ``"cpu"``) as a torch device; ``"disk"`` executes on the CPU."""
    if isinstance(value, int):
        return torch.device("cuda", value)
    return torch.device("cpu" if value == "disk" else value)


def device_map_of(model: nn.Module) -> dict | None:
    """The model's accelerate device map (``hf_device_map``), or None when it was loaded on one device."""
    return getattr(model, "hf_device_map", None) or None


def compute_device(model: nn.Module) -> torch.device:
    """The device where inputs go and visit's maths runs: for a dispatched model its main device (the first
    accelerator in its device map, else the CPU: where accelerate executes offloaded blocks); otherwise the
    device of its first parameter."""
    device_map = device_map_of(model)
    if device_map:
        accelerators = [v for v in device_map.values() if v not in OFFLOAD]
        return _device(accelerators[0]) if accelerators else torch.device("cpu")
    for param in model.parameters():
        return param.device
    return torch.device("cpu")


def _hooks(module: nn.Module) -> list:
    hook = getattr(module, "_hf_hook", None)
    if hook is None:
        return []
    return list(getattr(hook, "hooks", None) or [hook])  # a SequentialHook holds several


def read_param(module: nn.Module, name: str = "weight") -> torch.Tensor | None:
    """``module.<name>`` where it lives; for an offloaded module (parameter on ``meta``) the real tensor, read
    through its accelerate hook's ``weights_map`` (from the checkpoint or offload folder on disk, or CPU
    memory). None when the module has no such parameter. The result may be on any device; callers move it."""
    tensor = getattr(module, name, None)
    if tensor is None or tensor.device.type != "meta":
        return tensor
    for hook in _hooks(module):
        weights = getattr(hook, "weights_map", None)
        if weights is None:
            continue
        try:
            return weights[name]
        except KeyError:
            continue
    raise VisitError(f"the {name} of {type(module).__name__} is offloaded and its accelerate hook does not say "
                     f"where it lives; load the model without --device-map")


def is_offloaded(module: nn.Module) -> bool:
    """Whether any of ``module``'s parameters is offloaded (a ``meta`` tensor standing for weights on disk or
    in CPU memory that accelerate brings in at forward time)."""
    return any(p.device.type == "meta" for p in module.parameters())


# --- parsing the options ----------------------------------------------------------------------------------

def _device_key(key) -> int | str:
    """``"0"``/``0``/``"cuda:0"`` -> 0; ``"cpu"``, ``"disk"``, ``"mps"`` stay; anything else is an error."""
    if isinstance(key, int):
        return key
    text = str(key).strip().lower()
    if text.isdigit():
        return int(text)
    if text.startswith("cuda:") and text[5:].isdigit():
        return int(text[5:])
    if text == "cuda":
        return 0
    if text in ("cpu", "disk", "mps"):
        return text
    raise VisitError(f"unknown device '{key}' (use a GPU index such as 0 or cuda:1, cpu, or disk)")


def parse_device_map(spec) -> str | dict | None:
    """``--device-map``: None/"" (one device), a strategy (``auto``, ``balanced``, ``balanced_low_0``,
    ``sequential``), or an explicit map ``{"module.name": device}`` given as JSON text, a JSON file's path, or
    a dict. Devices: GPU indices (``0``, ``"cuda:1"``), ``"cpu"``, ``"disk"``."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    if isinstance(spec, dict):
        raw = spec
    else:
        text = spec.strip()
        if text.lower() in STRATEGIES:
            return text.lower()
        if not text.startswith("{"):
            path = Path(text).expanduser()
            if not path.is_file():
                raise VisitError(f"--device-map must be one of {', '.join(STRATEGIES)}, a JSON object or a JSON "
                                 f"file; '{text[:80]}' is none of them")
            text = path.read_text(encoding="utf-8")
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise VisitError(f"the device map is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(raw, dict) or not raw:
        raise VisitError('the device map must be a JSON object {"module name": device, ...}')
    return {str(k): _device_key(v) for k, v in raw.items()}


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text) -> int:
    """``"20GiB"``, ``"500MB"``, ``"1.5GiB"`` or a number of bytes -> bytes."""
    if isinstance(text, (int, float)):
        return int(text)
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).lower() not in _UNITS:
        raise VisitError(f"cannot read the size '{text}' (write e.g. 20GiB, 500MB or a number of bytes)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def parse_max_memory(spec) -> dict | None:
    """``--max-memory``: ``DEVICE=SIZE,...`` (``0=20GiB,cpu=60GiB,disk=200GiB``), the same as a JSON object, or
    a dict; sizes in bytes per device. Naming ``disk`` allows offloading to disk (up to that size)."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    if isinstance(spec, dict):
        pairs = list(spec.items())
    elif spec.strip().startswith("{"):
        try:
            pairs = list(json.loads(spec).items())
        except (json.JSONDecodeError, AttributeError):
            raise VisitError("--max-memory as JSON must be an object {\"device\": \"size\", ...}") from None
    else:
        pairs = []
        for part in spec.split(","):
            if part.strip():
                if "=" not in part:
                    raise VisitError(f"--max-memory takes DEVICE=SIZE pairs (e.g. 0=20GiB,cpu=60GiB,disk=200GiB), "
                                     f"not '{part.strip()}'")
                key, value = part.split("=", 1)
                pairs.append((key, value))
    out = {_device_key(k): parse_size(v) for k, v in pairs}
    if not out:
        raise VisitError("--max-memory names no device")
    return out


# --- planning a device map --------------------------------------------------------------------------------

def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _label(device) -> str:
    return f"GPU {device}" if isinstance(device, int) else str(device)


def available_memory() -> dict:
    """What each device has free now (bytes): every visible GPU and the CPU (accelerate's ``get_max_memory``)."""
    # accelerate: imported only when a device map is asked for (start-up cost)
    from accelerate.utils import get_max_memory

    return dict(get_max_memory())


def budgets(max_memory: dict | None) -> dict:
    """Bytes each device may hold: ``max_memory`` as given, else what is free now. ``disk`` only when named."""
    if max_memory:
        visible = torch.cuda.device_count()
        for device in max_memory:
            if isinstance(device, int) and device >= visible:
                raise VisitError(f"--max-memory names GPU {device}, but {visible} GPU(s) are visible")
        return dict(max_memory)
    return available_memory()


def main_device_of(devices) -> int | str:
    """The device visit computes on for a set of device-map values: the first GPU, else the CPU."""
    gpus = sorted(d for d in devices if isinstance(d, int))
    return gpus[0] if gpus else "cpu"


def _no_split(model: nn.Module) -> list[str]:
    return list(getattr(model, "_no_split_modules", None) or [])


def _check_covers(model: nn.Module, device_map: dict) -> None:
    """Every key names a module, and every parameter lies under one key (one clear line otherwise)."""
    names = dict(model.named_modules())
    unknown = [k for k in device_map if k not in names]
    if unknown:
        raise VisitError(f"the device map names '{unknown[0]}', which is not a module of this model (top-level "
                         f"modules: {', '.join(n for n, _ in model.named_children())})")
    for device in device_map.values():
        if isinstance(device, int) and device >= torch.cuda.device_count():
            raise VisitError(f"the device map names GPU {device}, but {torch.cuda.device_count()} GPU(s) are visible")
    for pname, _ in model.named_parameters():
        if not any(k == "" or pname == k or pname.startswith(k + ".") for k in device_map):
            raise VisitError(f"the device map leaves '{pname}' without a device; name its module "
                             f"(or a parent) too")


def placement(model: nn.Module, device_map: dict, dtype: torch.dtype) -> dict:
    """Bytes of weights each device of ``device_map`` holds (``{device: bytes}``), from an empty model."""
    # accelerate: imported only when a device map is asked for (start-up cost)
    from accelerate.utils import compute_module_sizes

    sizes = compute_module_sizes(model, dtype=dtype)
    out: dict = {}
    for name, device in device_map.items():
        out[device] = out.get(device, 0) + sizes.get(name, 0)
    return out


def plan_device_map(model: nn.Module, spec: str | dict, max_memory: dict | None, dtype: torch.dtype,
                    trace_bytes: int) -> dict:
    """An explicit device map for ``model`` (an empty, ``meta`` model built from the config) that leaves
    ``trace_bytes`` free on the compute device for a trace, or :class:`VisitError` with one line when the model
    and a trace do not fit in the devices' budgets (``max_memory``, or what is free now; disk only when
    ``max_memory`` names it or an explicit map does)."""
    # accelerate: imported only when a device map is asked for (start-up cost)
    from accelerate import infer_auto_device_map
    # accelerate: imported only when a device map is asked for (start-up cost)
    from accelerate.utils import get_balanced_memory

    budget = budgets(max_memory)
    disk_allowed = "disk" in budget or (isinstance(spec, dict) and "disk" in spec.values())
    disk_budget = budget.pop("disk", None)
    if isinstance(spec, dict):
        _check_covers(model, spec)
        device_map = dict(spec)
    else:
        main = main_device_of(budget)
        room = dict(budget)
        if room.get(main, 0) <= trace_bytes:
            raise VisitError(f"a trace needs about {gib(trace_bytes)} on {_label(main)}, where visit computes, but "
                             f"--max-memory gives it {gib(room.get(main, 0))}; allow it more")
        room[main] -= trace_bytes
        if spec in ("auto", "balanced", "balanced_low_0") and sum(isinstance(d, int) for d in room) > 1:
            room = get_balanced_memory(model, room, no_split_module_classes=_no_split(model), dtype=dtype,
                                       low_zero=spec == "balanced_low_0")
        device_map = dict(infer_auto_device_map(model, max_memory=room, no_split_module_classes=_no_split(model),
                                                dtype=dtype))
    check_fit(model, device_map, budget, disk_allowed, disk_budget, dtype, trace_bytes)
    return device_map


def check_fit(model: nn.Module, device_map: dict, budget: dict, disk_allowed: bool, disk_budget: int | None,
              dtype: torch.dtype, trace_bytes: int) -> None:
    """One clear line when the weights ``device_map`` places, plus a trace on the compute device, exceed the
    budgets (bytes per device); nothing when they fit."""
    placed = placement(model, device_map, dtype)
    total = sum(placed.values())
    on_disk = placed.pop("disk", 0)
    if on_disk and not disk_allowed:
        held = sum(budget.values())
        raise VisitError(f"the model's weights need {gib(total)} but the devices hold {gib(held)} "
                         f"({', '.join(f'{_label(d)} {gib(b)}' for d, b in budget.items())}); add disk=SIZE to "
                         f"--max-memory to offload the rest ({gib(on_disk)}) to disk, or use a smaller --dtype")
    if on_disk and disk_budget is not None and on_disk > disk_budget:
        raise VisitError(f"{gib(on_disk)} of weights would go to disk but --max-memory allows disk {gib(disk_budget)}")
    main = main_device_of(placed)
    for device, held in placed.items():
        need = held + (trace_bytes if device == main else 0)
        have = budget.get(device)
        if have is None:
            raise VisitError(f"the device map places weights on {_label(device)}, which --max-memory does not name")
        if need > have:
            extra = f" plus about {gib(trace_bytes)} for a trace" if device == main else ""
            raise VisitError(f"{_label(device)} would hold {gib(held)} of weights{extra}, more than its "
                             f"{gib(have)}; use --device-map auto with disk=SIZE in --max-memory, or a smaller "
                             f"--dtype")
    if main not in placed and budget.get(main, 0) < trace_bytes:
        raise VisitError(f"a trace needs about {gib(trace_bytes)} on {_label(main)}, which has {gib(budget.get(main, 0))}")


def describe_map(model: nn.Module, device_map: dict, dtype: torch.dtype) -> str:
    """``"cpu 0.41 GiB, disk 0.12 GiB"``: where the weights went."""
    placed = placement(model, device_map, dtype)
    return ", ".join(f"{_label(d)} {gib(b)}" for d, b in placed.items())


def offload_folder(base: Path) -> Path:
    """A fresh folder under ``base`` for weights accelerate offloads to disk when the checkpoint cannot serve
    them itself (safetensors checkpoints are read in place and leave it empty); removed when the process ends."""
    base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="offload-", dir=base))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder
