"""Pin, group and label changes on the default model's graph (issue 12 item 3): no forward pass.

    .venv/bin/python benchmarks/curation.py [--repeats 3] [--threads 1] [--prompt "..."]

Times what the app does for each change (:mod:`visit.ui.pins`): a pin toggled patches one trace
(:func:`visit.ui.fast.patch_pins`); a node's label patches the node traces and the labels
(:func:`visit.ui.fast.patch_labels`); a group or a group's label re-draws the figure from the kept graph
(:func:`visit.ui.fast.curated`) and sends its traces (``dash.Patch``). Each is measured on the first view
(the last 4 layers) and on the whole graph, next to one traced forward pass of the same run (target: a change
<= 0.3 s on CPU). Medians of ``--repeats``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from visit.graph.groups import EMPTY, group_pins, set_label, toggle_pin
from visit.models import load_model
from visit.pipeline import analyze, complete
from visit.tracer import trace
from visit.ui.fast import curated, patch_data, patch_labels, patch_pins


def change(analysis, curation):
    """As the pin bar's callback: a one-trace patch when it can, else the re-drawn figure's traces."""
    if patch_pins(analysis, curation) is not None or patch_labels(analysis, curation) is not None:
        return analysis
    out = curated(analysis, curation)
    patch_data(out.figure.to_dict())
    return out


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prompt", default="The capital of France is")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vm = load_model()
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    passes, rows = [], {}
    for _ in range(args.repeats):
        passes.append(timed(lambda: trace(vm, args.prompt))[0])
        first = analyze(vm, args.prompt, first_view=4)
        for name, base in (("first view", first), ("whole graph", complete(first))):
            heads = [n for n, a in base.graph.nodes(data=True) if a["kind"] == "head"][-3:]
            pinned = toggle_pin(EMPTY, heads[0])
            t_pin, a1 = timed(lambda: change(base, pinned))
            grouped = group_pins(toggle_pin(toggle_pin(pinned, heads[1]), heads[2]), "g")
            t_group, a2 = timed(lambda: change(a1, grouped))
            named = set_label(grouped, "G1", "label")
            t_label, a3 = timed(lambda: change(a2, named))
            other = next(n for n, a in a3.graph.nodes(data=True) if a["kind"] == "resid_post")
            t_node_label, _ = timed(lambda: change(a3, set_label(named, other, "mine")))
            for key, value in (("pin", t_pin), ("group", t_group), ("label the group", t_label),
                               ("label a node", t_node_label)):
                rows.setdefault((name, len(base.graph), key), []).append(value)
    p = statistics.median(passes)
    print(f"one traced forward pass: {p:.3f} s (median of {args.repeats})")
    for (name, nodes, key), values in rows.items():
        m = statistics.median(values)
        print(f"{name} ({nodes} nodes), {key}: {m:.3f} s = {m / p:.2f} x the pass")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
