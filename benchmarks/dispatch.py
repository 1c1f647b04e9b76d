"""Models spread over devices: the memory estimate against measured memory, and what offloading to disk costs.

    .venv/bin/python benchmarks/dispatch.py [--model default] [--tokens 64] [--disk-layers 15] [--json out.json]

Each configuration runs in its own subprocess (so peak memory is that configuration's): the model loaded on
the CPU, then with a device map that offloads the last ``--disk-layers`` blocks to disk (read in place from
the cached safetensors checkpoint). For each: load time, the time of a trace of a ``--tokens``-token prompt
(median of 3 after one warm-up), the process's peak resident memory (VmHWM) after loading and one 1-token forward
pass (so the memory-mapped weights are resident) and after the traces (the difference is the trace's share),
and the largest difference of the trace's logits from the CPU run's. The estimate
(:mod:`visit.models.memory`) for the same token count is printed beside them. No GPU is used.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024
    return 0


def _checkpoint(model: str) -> str:
    from visit.models import loading

    shipped = loading.shipped_model(model)
    return str(loading.shipped_checkpoint(shipped)) if shipped else model


def disk_map(model: str, disk_layers: int) -> dict:
    """Everything on the CPU but the last ``disk_layers`` blocks, which go to disk (built from an empty model:
    nothing is loaded, so the child's peak memory is the dispatched load's own)."""
    import torch
    from transformers import AutoConfig

    from visit.models import adapter_for, memory

    empty = memory.empty_model(AutoConfig.from_pretrained(_checkpoint(model)), torch.float32)
    blocks = adapter_for(empty.config.model_type).blocks
    parent, _, leaf = blocks.rpartition(".")
    n = empty.config.num_hidden_layers
    inner = empty.get_submodule(parent) if parent else empty
    device_map = {f"{parent}.{name}" if parent else name: "cpu" for name, _ in inner.named_children() if name != leaf}
    device_map.update({f"{blocks}.{i}": "disk" if i >= n - disk_layers else "cpu" for i in range(n)})
    device_map.update({name: "cpu" for name, _ in empty.named_children() if name != parent.split(".")[0]})
    return device_map


def child(model: str, tokens: int, disk_layers: int, out: str) -> None:
    import torch

    from visit.models import load_model
    from visit.tracer import trace

    device_map = json.dumps(disk_map(model, disk_layers)) if disk_layers else None
    t0 = time.perf_counter()
    vm = load_model(model, device_map=device_map)
    load_s = time.perf_counter() - t0
    with torch.no_grad():  # one token through every block: the weights are resident (mmapped pages touched)
        vm.model(input_ids=torch.tensor([[1]], device=vm.device))
    hwm_load = _hwm()
    ids = vm.tokenizer(" ".join(["The capital of France is Paris."] * 64)).input_ids[:tokens]
    prompt = vm.tokenizer.decode(ids)
    trace(vm, prompt)
    times, tr = [], None
    for _ in range(3):
        tr = None  # one trace alive at a time
        t0 = time.perf_counter()
        tr = trace(vm, prompt)
        times.append(time.perf_counter() - t0)
    torch.save(tr["logits"], out + ".pt")
    Path(out).write_text(json.dumps({"load_s": load_s, "trace_s": statistics.median(times),
                                     "tokens": len(tr.input_ids), "hwm_load": hwm_load, "hwm_trace": _hwm()}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="default")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--disk-layers", type=int, default=15)
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", nargs=3, default=None)
    args = parser.parse_args()
    if args.child:
        child(args.model, args.tokens, int(args.child[0]), args.child[1])
        return
    import torch
    from transformers import AutoConfig

    from visit.models import loading, memory

    results = {}
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    configs = (("cpu", 0), (f"cpu + {args.disk_layers} blocks on disk", args.disk_layers), ("cpu (again)", 0))
    for label, disk in configs:  # the CPU run twice: the first child also warms the file cache
        out = str(tmp / f"visit-dispatch-{os.getpid()}-{len(results)}.json")
        subprocess.run([sys.executable, __file__, "--model", args.model, "--tokens", str(args.tokens),
                        "--child", str(disk), out, "x"], check=True)
        results[label] = json.loads(Path(out).read_text())
        results[label]["logits"] = torch.load(out + ".pt")
    base = next(iter(results.values()))["logits"]
    config = AutoConfig.from_pretrained(_checkpoint(args.model))
    empty = memory.empty_model(config, torch.float32)
    est = memory.estimate(empty, loading.dims_of(empty), torch.float32, args.tokens)
    print(f"estimate: {est.describe()}")
    for label, r in results.items():
        diff = float((r.pop("logits") - base).abs().max())
        r["max_logit_diff"] = diff
        print(f"{label:32s} load {r['load_s']:6.2f} s  trace {r['trace_s']:6.3f} s ({r['tokens']} tokens)  "
              f"peak after load + 1 token {r['hwm_load'] / 2**30:5.2f} GiB, after traces {r['hwm_trace'] / 2**30:5.2f} GiB (+{(r['hwm_trace'] - r['hwm_load']) / 2**30:.2f})  "
              f"max |logit diff| {diff:.1e}")
    if args.json:
        Path(args.json).write_text(json.dumps({"estimate": est.__dict__ | {"dtype": str(est.dtype)},
                                               "results": results}, indent=2, default=str))


if __name__ == "__main__":
    main()
