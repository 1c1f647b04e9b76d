"""Knowledge-editing speed on the default model (issue 10 targets, CPU):

- C for one layer from the default corpus (text sampled from the model), once: <= 3 min;
- one ROME edit with C cached: <= 5 s (the first edit of a process also samples the 20 context prefixes, once per
  model, and runs their keys/values, once per weights version: reported separately);
- ``edit-eval`` with ROME: <= 2 s per record (edit + evaluation + restore; the evaluation part alone reported too).

    .venv/bin/python benchmarks/editing.py [--threads 1] [--layer 3] [--repeat 3] [--records 5] [--stats]

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
    try:
        return "%.1f" % os.getloadavg()[0]
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--layer", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--records", type=int, default=5)
    ap.add_argument("--stats", action="store_true", help="time C for one layer from scratch (private cache)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
                start = time.perf_counter()
                st = key_stats(vm, layer)
                print(f"C, layer {layer}, {st.n_tokens} sampled tokens: {time.perf_counter() - start:.1f} s "
                      f"(load {load_avg()})")
                start = time.perf_counter()
                other = key_stats(vm, layer + 1)
                print(f"C, layer {layer + 1} from the cached corpus: {time.perf_counter() - start:.1f} s "
                      f"({other.n_tokens} tokens)")
            finally:
                if old is None:
                    os.environ.pop("VISIT_CACHE_DIR")
                else:
                    os.environ["VISIT_CACHE_DIR"] = old
    stats = key_stats(vm, layer)
    req = EditRequest("The capital of {} is", "France", "Rome", old="Paris")
    start = time.perf_counter()
    first = rome_edit(vm, req, layer=layer, stats=stats)
    print(f"first ROME edit in this process (samples the prefixes, runs their keys/values): "
          f"{time.perf_counter() - start:.2f} s, {first.info['steps']} passes")
    times = []
    for i in range(args.repeat):
        start = time.perf_counter()
        e = rome_edit(vm, req, layer=layer, stats=stats)
        times.append(time.perf_counter() - start)
    print(f"ROME edit, cached C: median {statistics.median(times):.2f} s ({', '.join(f'{t:.2f}' for t in times)}), "
          f"{e.info['steps']} passes, load {load_avg()}")
    records = load_records(None, limit=args.records)
    start = time.perf_counter()
    result = evaluate(vm, records, "rome", layer=layer, stats=stats)
    total = time.perf_counter() - start
    print(f"edit-eval rome, {len(records)} records: {total / len(records):.2f} s per record (edit "
          f"{result.seconds['edit_per_record']:.2f} s, evaluation {result.seconds['eval_per_record']:.2f} s, "
          f"the rest the unedited scores), load {load_avg()}")


if __name__ == "__main__":
    main()
