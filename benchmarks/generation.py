"""Generation through the hook layer vs a plain ``model.generate``: 32 new tokens with a key/value cache.

    .venv/bin/python benchmarks/generation.py [--repeats 5] [--tokens 32] [--model default] [--device cuda]

Three ways to generate ``--tokens`` greedy tokens after the same prompt, interleaved so that load on the machine
affects all alike, in one process:

- ``model.generate(do_sample=False, min_new_tokens=N, max_new_tokens=N)``: Hugging Face's own loop;
- :func:`visit.generation.generate` unsteered (every pass through :func:`visit.hooks.run`, per-token p and top-5);
- the same, steered by ``L20.N123=x5`` (every position) and ``resid L12 += 4 * dir(L20.N123) @ gen``.

Reports medians and the ratios to ``model.generate``. Target: ratio <= 1.3 for both.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from visit.generation.generate import eos_ids, generate
from visit.generation.steer import steering
from visit.models import load_model

PROMPT = "The Eiffel Tower, completed in 1889 for the World's Fair, stands in the city of"
STEER = ["L20.N123=x5", "resid L12 += 4 * dir(L20.N123) @ gen"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--model", default="default")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    vm = load_model(args.model, device=args.device)
    n = args.tokens
    ids = vm.tokenizer(PROMPT, return_tensors="pt").input_ids.to(vm.device)
    steer = steering(vm, STEER, ids[0].tolist())
    cuda = vm.device.type == "cuda"

    def timed(fn):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start, out

    def plain():
        with torch.no_grad():
            return vm.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, min_new_tokens=n,
                                     max_new_tokens=n, pad_token_id=vm.tokenizer.eos_token_id)

    runs = {"model.generate": plain,
            "visit generate": lambda: generate(vm, PROMPT, n, stop_at_eos=False),
            "visit generate, steered": lambda: generate(vm, PROMPT, n, stop_at_eos=False, writes=steer.writes)}
    for fn in runs.values():  # warm-up
        fn()
    times = {k: [] for k in runs}
    outputs = {}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t, outputs[name] = timed(fn)
            times[name].append(t)
    # min_new_tokens keeps model.generate from choosing an end token: compare the tokens before visit's first one
    mine = outputs["visit generate"].ids
    stops = [i for i, t in enumerate(mine) if t in eos_ids(vm)]
    upto = stops[0] if stops else len(mine)
    same = outputs["model.generate"][0, ids.shape[1]:].tolist()[:upto] == mine[:upto]
    base = statistics.median(times["model.generate"])
    print(f"model: {vm.name}   device: {vm.device}   prompt: {ids.shape[1]} tokens   new tokens: {n}   "
          f"repeats: {args.repeats}")
    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} torch {torch.__version__} "
          f"threads={torch.get_num_threads()} load={os.getloadavg()[0]:.1f}")
    print(f"greedy tokens equal to model.generate (the first {upto}, before the first end token): {same}")
    print(f"steered: {'; '.join(STEER)} -> {outputs['visit generate, steered'].text!r}")
    print("| run | median | ms / token | ratio |\n| --- | ---: | ---: | ---: |")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"| {name} | {m:.3f} s | {1000 * m / n:.1f} | **{m / base:.2f}** |")


if __name__ == "__main__":
    main()
