"""Prompt -> rendered flow-graph figure on the default model, all layers, default pruning, after load.

    .venv/bin/python benchmarks/graph_render.py [--repeats 7] [--prompt "..."] [--device cpu] [--heads N]

Times :func:`visit.pipeline.analyze` end to end (trace, top predictions, per-layer strip, graph with the
one batched projection of all its nodes, layout, the plotly figure and the strip figure) and reports the
median, the per-stage medians, node/edge counts, how many vectors were projected and the figure's JSON
size. Target (issue 3): median <= 2 s on CPU.

Issue 12's targets, measured in the same run against one traced forward pass (``trace``): the *first view*
(``analyze(first_view=4)``: trace, strip, the graph of the last 4 layers, its figure; target <= 1 s on CPU),
the completion of the rest from the same trace, and *changes* without a forward pass (target <= 0.3 s):
a pruning knob (:func:`visit.pipeline.redraw`), a highlight (the one-trace patch of :mod:`visit.ui.fast`). The CPU time (``time.process_time``, all threads) is printed
too: on a shared machine it is far less inflated by other processes than the wall time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from visit.graph import GraphSettings
from visit.models import load_model
from visit.pipeline import analyze, complete, redraw
from visit.tracer import trace

PROMPT = "The capital of France is"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--heads", type=int, default=None, help="heads per layer (default: all, as the app)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = GraphSettings(heads_per_layer=args.heads)

    vm = load_model(device=args.device)
    analyze(vm, args.prompt, settings=settings)  # warm-up: lazily built weight views, allocator
    load_before = os.getloadavg()[0]
    totals, cpu, stages, analysis = [], [], {}, None
    for _ in range(args.repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        analysis = analyze(vm, args.prompt, settings=settings)
        totals.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        for name, seconds in analysis.timings.items():
            stages.setdefault(name, []).append(seconds)
    load_after = os.getloadavg()[0]
    g = analysis.graph
    fig_json = len(analysis.figure.to_json().encode())
    strip_json = len(analysis.strip_figure.to_json().encode())
    projected = g.graph["projected_rows"]
    d = vm.dims
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), device {vm.device}; 1-min load average "
          f"{load_before:.1f} before / {load_after:.1f} after")
    print(f"model: {vm.name} ({d.n_layers} layers, {d.n_heads} heads, d_model {d.d_model}, d_mlp {d.d_mlp}, "
          f"vocab {d.d_vocab}); prompt {args.prompt!r} ({len(analysis.trace.tokens)} tokens)")
    print(f"settings: heads_per_layer={settings.heads_per_layer}, other knobs default")
    print(f"graph: {g.number_of_nodes()} nodes, {g.number_of_edges()} edges, {projected} node vectors "
          f"projected in one batched lens call")
    print(f"figure JSON: {fig_json / 1e6:.2f} MB (+ strip {strip_json / 1e3:.0f} kB)")
    print(f"analyze() median over {args.repeats}: {statistics.median(totals):.3f} s "
          f"(min {min(totals):.3f}, max {max(totals):.3f}); target <= 2 s")
    print(f"CPU time (all threads) median: {statistics.median(cpu):.3f} s")
    print("stage medians: " + ", ".join(f"{k} {statistics.median(v):.3f} s" for k, v in stages.items()))
    fast_paths(vm, args.prompt, settings, args.repeats)


def _median(fn, repeats: int) -> float:
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fast_paths(vm, prompt: str, settings: GraphSettings, repeats: int) -> None:
    """Issue 12: first view, completion and changes, each as a ratio to one traced forward pass (same run)."""
    from dataclasses import replace
    from types import SimpleNamespace

    from visit.ui import fast

    t_trace = _median(lambda i: trace(vm, prompt), repeats)
    t_first = _median(lambda i: analyze(vm, prompt, settings=settings, first_view=4), repeats)
    firsts = [analyze(vm, prompt, settings=settings, first_view=4) for _ in range(repeats)]
    t_complete = _median(lambda i: complete(firsts[i]), repeats)
    whole = complete(firsts[0])
    t_knob = _median(lambda i: redraw(whole, replace(settings, mlp_top=6 + i % 2)).figure.to_dict(), repeats)
    t_knob_first = _median(lambda i: redraw(whole, replace(settings, mlp_top=6 + i % 2),
                                            first_view=4).figure.to_dict(), repeats)
    state = SimpleNamespace(analysis=whole)
    heads = [n for n, a in whole.graph.nodes(data=True) if a["kind"] == "head"]
    t_mark = _median(lambda i: fast.patch_highlight(state, heads[i % len(heads):i % len(heads) + 3]), repeats)
    rows = [("one traced forward pass", t_trace), ("first view (last 4 layers), target <= 1 s", t_first),
            ("rest of the graph from the same trace", t_complete),
            ("change: pruning knob, last 4 layers re-drawn first (the app), target <= 0.3 s", t_knob_first),
            ("  then the whole graph re-drawn (the completion that follows)", t_knob),
            ("change: highlight (one-trace patch), target <= 0.3 s", t_mark)]
    print(f"issue 12 fast paths, medians of {repeats}:")
    print("  first view stages: " + ", ".join(f"{k} {statistics.median(f.timings[k] for f in firsts):.3f} s"
                                           for k in firsts[0].timings))
    for name, seconds in rows:
        print(f"  {name}: {seconds:.3f} s = {seconds / t_trace:.2f} x the traced pass")


if __name__ == "__main__":
    main()
