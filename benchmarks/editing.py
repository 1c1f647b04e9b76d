"""Knowledge-editing speed on the default model (issue 10 targets, CPU):

- C for one layer from the default corpus (text sampled from the model), once: <= 3 min;
- one ROME edit with C cached: <= 5 s (the first edit of a process also samples the 20 context prefixes, once per
  model, and runs their keys/values, once per weights version: reported separately);
- ``edit-eval`` with ROME: <= 2 s per record (edit + evaluation + restore; the evaluation part alone reported too);
- issue 18: a MEMIT batch of 20 records with cached C (layers 1-5): <= 3 x one ROME edit (``--memit 20``: the
  MEMIT batch and ROME edits of the same records' first one and of "The capital of France is", alternating in one
  process; wall and CPU time).

    .venv/bin/python benchmarks/editing.py [--threads 1] [--layer 3] [--repeat 3] [--records 5] [--stats [--stats-only]]
    .venv/bin/python benchmarks/editing.py --threads 1 --memit 20 [--repeat 1]

``--stats`` computes C from scratch in a private cache directory (slow: that is the measurement); without it the
cached C of the user's cache is used (computed first if missing).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import torch


def load_avg() -> str:
    """The 1-, 5- and 15-minute load averages (as ``uptime`` prints them): on a shared machine they say how far
    the wall times below are from an idle machine's."""
    try:
        return "%.2f, %.2f, %.2f" % os.getloadavg()
    except OSError:
        return "?"


def timed(fn):
    """``(result, wall seconds, this process's CPU seconds)``: CPU time is what the work itself took; wall time
    also counts waiting for a core on a loaded machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--layer", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--records", type=int, default=5)
    ap.add_argument("--stats", action="store_true", help="time C for one layer from scratch (private cache)")
    ap.add_argument("--stats-only", action="store_true", help="with --stats: stop after timing C")
    ap.add_argument("--memit", type=int, default=0, help="time a MEMIT batch of N records against ROME edits, only")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memit:
        return memit_benchmark(args.memit, args.repeat)
    from visit.editing.counterfact import evaluate, load_records
    from visit.editing.request import EditRequest
    from visit.editing.rome import default_layer, rome_edit
    from visit.editing.stats import key_stats
    from visit.models import load_model

    vm = load_model()
    layer = default_layer(vm) if args.layer is None else args.layer
    print(f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, model {vm.name}, layer {layer}, load {load_avg()}")
    if args.stats:
        with tempfile.TemporaryDirectory() as tmp:
            old = os.environ.get("VISIT_CACHE_DIR")
            os.environ["VISIT_CACHE_DIR"] = tmp
            try:
                st, wall, cpu = timed(lambda: key_stats(vm, layer))
                print(f"C, layer {layer}, {st.n_tokens} sampled tokens: {wall:.1f} s (cpu {cpu:.1f} s), "
                      f"load {load_avg()}")
                other, wall, cpu = timed(lambda: key_stats(vm, layer + 1))
                print(f"C, layer {layer + 1} from the cached corpus: {wall:.1f} s (cpu {cpu:.1f} s), "
                      f"{other.n_tokens} tokens")
            finally:
                if old is None:
                    os.environ.pop("VISIT_CACHE_DIR")
                else:
                    os.environ["VISIT_CACHE_DIR"] = old
        if args.stats_only:
            return
    stats = key_stats(vm, layer)
    requests = {"The capital of France is -> Rome": EditRequest("The capital of {} is", "France", "Rome", old="Paris")}
    rec0 = load_records(None, limit=1)[0]
    requests[f"record 0: {rec0.request.prompt} -> {rec0.request.new}"] = rec0.request
    first, wall, cpu = timed(lambda: rome_edit(vm, next(iter(requests.values())), layer=layer, stats=stats))
    print(f"first ROME edit in this process (samples the prefixes, runs their keys/values): "
          f"{wall:.2f} s (cpu {cpu:.2f} s), {first.info['steps']} passes")
    for name, req in requests.items():
        walls, cpus = [], []
        for i in range(args.repeat):
            e, wall, cpu = timed(lambda: rome_edit(vm, req, layer=layer, stats=stats))
            walls.append(wall)
            cpus.append(cpu)
        print(f"ROME edit, cached C, {name}: median {statistics.median(walls):.2f} s "
              f"({', '.join(f'{t:.2f}' for t in walls)}; cpu median {statistics.median(cpus):.2f} s), "
              f"{e.info['steps']} passes, load {load_avg()}")
    records = load_records(None, limit=args.records)
    result, wall, cpu = timed(lambda: evaluate(vm, records, "rome", layer=layer, stats=stats))
    print(f"edit-eval rome, {len(records)} records: {wall / len(records):.2f} s per record (cpu "
          f"{cpu / len(records):.2f} s; edit {result.seconds['edit_per_record']:.2f} s, evaluation "
          f"{result.seconds['eval_per_record']:.2f} s, the rest the unedited scores), passes "
          f"{[r['edit']['steps'] for r in result.records]}, load {load_avg()}")


def memit_benchmark(n: int, repeat: int) -> None:
    """A MEMIT batch of ``n`` shipped records (cached C of its layers, the prefixes sampled beforehand) against one
    ROME edit (record 0, and "The capital of France is" -> Rome), ``repeat`` rounds alternating in one process."""
    from visit.editing.counterfact import load_records
    from visit.editing.memit import default_layers, memit_edit
    from visit.editing.request import EditRequest
    from visit.editing.rome import context_prefixes, default_layer, rome_edit
    from visit.editing.stats import key_stats
    from visit.models import load_model

    vm = load_model()
    layers, layer = default_layers(vm), default_layer(vm)
    stats = {lay: key_stats(vm, lay) for lay in layers}
    records = load_records(None, limit=n)
    france = EditRequest("The capital of {} is", "France", "Rome", old="Paris")
    context_prefixes(vm, ((10, 5),))  # sampled once per model, as the first ROME edit samples its own
    rome_edit(vm, france, layer=layer, stats=stats[layer])  # warm: ROME's prefixes and their keys/values
    print(f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, model {vm.name}, MEMIT layers {layers}, ROME layer {layer}, {len(records)} "
          f"records, load {load_avg()}")
    for i in range(repeat):
        for name, fn in ((f"ROME, record 0 ({records[0].request.prompt} -> {records[0].request.new})",
                          lambda: rome_edit(vm, records[0].request, layer=layer, stats=stats[layer])),
                         ("ROME, The capital of France is -> Rome",
                          lambda: rome_edit(vm, france, layer=layer, stats=stats[layer])),
                         (f"MEMIT, batch of {len(records)} records",
                          lambda: memit_edit(vm, [r.request for r in records], stats=stats))):
            e, wall, cpu = timed(fn)
            steps = e.info["steps"]
            print(f"round {i + 1}: {name}: {wall:.2f} s (cpu {cpu:.2f} s), passes {steps}, load {load_avg()}",
                  flush=True)


if __name__ == "__main__":
    main()
