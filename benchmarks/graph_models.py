"""Prompt -> graph (``analyze``) and the lens's share of it, per model: what a larger vocabulary costs.

    .venv/bin/python benchmarks/graph_models.py [--models default,gemma3-270m] [--repeats 5] [--prompt P]

For each model: the median of :func:`visit.pipeline.analyze` end to end with its stage medians (as
``benchmarks/graph_render.py`` reports for the default model), the median of one traced forward pass, and the
median of projecting 256 vectors through the logit lens (top/bottom-k, entropy, target: the graph's hot path),
per vector, and the median of the first view the app draws (``analyze(first_view=4)``: the last 4 layers). Target (issue 11): the graph under 2 s on CPU for Gemma-3-270M, whose 262k-token vocabulary makes
every projection about five times dearer than the default's 49k.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from visit.lens import LogitLens
from visit.models import load_model
from visit.pipeline import analyze
from visit.tracer import trace

PROMPTS = {"default": "The capital of France is", "gemma3-270m": "The capital of Japan is"}


def median_time(fn, repeats: int) -> tuple[float, list]:
    out, times = None, []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="default,gemma3-270m")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prompt", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); 1-min load average {os.getloadavg()[0]:.1f} at start")
    for name in args.models.split(","):
        start = time.perf_counter()
        vm = load_model(name, device=args.device)
        load_s = time.perf_counter() - start
        prompt = args.prompt or PROMPTS.get(name, PROMPTS["default"])
        analyze(vm, prompt)  # warm-up: weight views, allocator
        total, analysis = median_time(lambda: analyze(vm, prompt), args.repeats)
        stages = {}
        for _ in range(args.repeats):
            for stage, seconds in analyze(vm, prompt).timings.items():
                stages.setdefault(stage, []).append(seconds)
        first_s, first = median_time(lambda: analyze(vm, prompt, first_view=4), args.repeats)
        trace_s, tr = median_time(lambda: trace(vm, prompt), args.repeats)
        lens = LogitLens.for_trace(tr)
        vectors = torch.randn(256, vm.dims.d_model, generator=torch.Generator().manual_seed(0)).to(vm.device)
        lens_s, _ = median_time(lambda: lens.project(vectors, k=10, target=0), args.repeats)
        g, d = analysis.graph, vm.dims
        print(f"\n{vm.name}: {d.n_layers} layers, d_model {d.d_model}, vocab {d.d_vocab}; load (cached) {load_s:.1f} s;"
              f" prompt {prompt!r} ({len(tr.tokens)} tokens)")
        print(f"  analyze() median {total:.3f} s ({g.number_of_nodes()} nodes, {g.graph['projected_rows']} vectors "
              f"projected); stages: " + ", ".join(f"{k} {statistics.median(v):.3f}" for k, v in stages.items()))
        print(f"  first view (what the app draws first: the last 4 layers) median {first_s:.3f} s "
              f"({first.graph.number_of_nodes()} nodes)")
        print(f"  trace() median {trace_s:.3f} s; lens projection {lens_s / 256 * 1e3:.2f} ms per vector "
              f"(256 at once); 1-min load average now {os.getloadavg()[0]:.1f}")
        del vm, analysis, first, tr, lens


if __name__ == "__main__":
    main()
