"""Knowledge neurons of one prompt, all layers: batched resume vs the plain per-layer loop
(``python benchmarks/knowledge_neurons.py``).

Both compute the same integrated gradients (m steps, every MLP neuron of every layer, the answer position):

- ``full``: per layer one forward + backward pass of ``m`` rows over the whole prompt (what the reference code
  does, batched over the steps);
- ``resume``: every (layer, step) row as a single-position row of a few batched passes that join at their layer
  with the recorded prefix's keys and values (:mod:`visit.localization.integrated_gradients`).

Prints the wall times (median of ``--repeat`` runs for resume, one run of the loop), the ratio, the largest
difference between the two attributions and whether their top neurons agree, plus the machine's load.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch


def timed(fn, repeat: int = 1):
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, out


def main(argv=None) -> None:
    from visit.localization.integrated_gradients import integrated_gradients
    from visit.models import load_model
    from visit.tokens import resolve_target

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--prompt", default="The capital of France is")
    ap.add_argument("--target", default=" Paris")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rows", type=int, default=None, help="rows per resumed pass (default: the library's)")
    ap.add_argument("--skip-full", action="store_true", help="time only the batched method")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (1 avoids OpenMP thrashing when other processes load the cores)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    vm = load_model(args.model)
    tid = resolve_target(vm.tokenizer, args.target).id
    n_tokens = len(vm.tokenizer(args.prompt).input_ids)
    load_before = os.getloadavg()[0]
    kw = {} if args.rows is None else {"rows": args.rows}
    integrated_gradients(vm, args.prompt, tid, steps=2, layers=[vm.dims.n_layers - 1])  # warm-up
    t_resume, all_resume, fast = timed(lambda: integrated_gradients(vm, args.prompt, tid, steps=args.steps, **kw),
                                       args.repeat)
    print(f"model {vm.name}: {vm.dims.n_layers} layers x {vm.dims.d_mlp} neurons, {n_tokens} tokens, "
          f"m = {args.steps}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.machine()} {os.cpu_count()} CPUs")
    print(f"resume (batched): {t_resume:.2f} s median of {args.repeat} "
          f"({', '.join(f'{t:.2f}' for t in all_resume)})")
    if not args.skip_full:
        t_full, _, slow = timed(lambda: integrated_gradients(vm, args.prompt, tid, steps=args.steps, method="full"))
        diff = float((fast - slow).abs().max())
        top_fast = set(fast.reshape(-1).topk(50).indices.tolist())
        top_slow = set(slow.reshape(-1).topk(50).indices.tolist())
        print(f"full per-layer loop: {t_full:.2f} s  ->  {t_full / t_resume:.1f}x")
        print(f"max |difference| {diff:.2e} (largest attribution {float(slow.abs().max()):.4f}); "
              f"same top 50: {top_fast == top_slow}")
    print(f"load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
