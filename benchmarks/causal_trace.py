"""The batched causal-trace grid vs the reference's loop of one forward pass per cell
(``python benchmarks/causal_trace.py``).

Default: "Big Ben is located in the city of" (8 tokens) on the default model, 10 samples, window 10, all three
kinds (hidden, MLP, attention: 3 x 8 x 30 = 720 cells). The naive loop runs one full pass of 1 + 10 rows per
cell, as ROME's code does; it is timed on ``--naive-sample`` random cells of each kind (the full grid's time
extrapolated from the mean per cell, stated as such), or on every cell with ``--full-naive``. Every naively computed cell is also checked against the batched grid. Both run in one process,
one after the other, so the ratio holds even when the machine's speed drifts between runs.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    ap.add_argument("--prompt", default="Big Ben is located in the city of")
    ap.add_argument("--subject", default="Big Ben")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--naive-sample", type=int, default=24, help="naive cells timed per window kind")
    ap.add_argument("--full-naive", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="batched runs (median)")
    args = ap.parse_args()

    from visit.localization.causal_trace import causal_trace, default_noise, naive_cell
    from visit.models import load_model

    vm = load_model(args.model)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; model {vm.name}")
    noise = default_noise(vm)
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        ct = causal_trace(vm, args.prompt, args.subject, samples=args.samples, noise=noise, window=args.window)
        times.append(time.perf_counter() - start)
    batched = float(np.median(times))
    T, L = len(ct.tokens), vm.dims.n_layers
    print(f"prompt: {args.prompt!r} ({T} tokens), subject tokens {ct.subject_range}, target {ct.target.token!r}, "
          f"p clean {ct.p_clean:.4f}, corrupted {ct.p_corrupted:.4f}, noise {noise:.4f}")
    print(f"batched: {batched:.2f} s for {3 * T * L} cells (3 kinds), runs: {[round(t, 2) for t in times]}")

    gen = torch.Generator().manual_seed(0)
    s0, s1 = ct.subject_range
    eps = torch.randn(args.samples, s1 - s0, vm.dims.d_model, generator=gen) * noise
    rng = np.random.default_rng(0)
    total_naive, worst = 0.0, 0.0
    for kind in ("hidden", "mlp", "attn"):
        cells = [(t, l) for t in range(T) for l in range(L)]
        if not args.full_naive:
            cells = [cells[i] for i in rng.choice(len(cells), size=min(args.naive_sample, len(cells)), replace=False)]
        start = time.perf_counter()
        for t, l in cells:
            p = naive_cell(vm, args.prompt, ct.subject_range, eps, kind, t, l, args.window, ct.target.id)
            worst = max(worst, abs(p - ct.kinds[kind][t, l]))
        spent = time.perf_counter() - start
        full = spent / len(cells) * T * L
        total_naive += full
        how = "measured" if len(cells) == T * L else f"extrapolated from {len(cells)} cells"
        print(f"naive {kind}: {spent:.1f} s for {len(cells)} cells ({spent / len(cells):.3f} s/cell); "
              f"full grid {full:.1f} s ({how})")
    print(f"naive all three kinds: {total_naive:.1f} s; batched {batched:.2f} s; speed-up {total_naive / batched:.1f}x; "
          f"max |batched - naive| over the checked cells {worst:.2e}")


if __name__ == "__main__":
    main()
