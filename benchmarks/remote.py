"""Remote models: requests and bytes per trace, measured in the NDIF simulation, beside the estimate.

    .venv/bin/python benchmarks/remote.py [--model default] [--tokens 16 128] [--json out.json]

For each prompt length: the model is opened as ``ndif:<model>`` under ``VISIT_NDIF_SIMULATE=1`` with an empty
weight cache, then one trace, its graph (default settings) and (at 16 tokens) a causal trace (``mlp`` kind, 3 samples) run;
every request's kind and bytes up / down (the serialised request; ``torch.save`` of the saved values, both
zstd-compressed as NDIF sends them) come from the transport's ledger. The graph is drawn a second time to show
what the weight cache saves. :func:`visit.remote.estimate.per_trace` is printed for the same shape. On paper:
Llama-3.1-70B and 405B shapes at 16 and 128 tokens (bf16). Nothing is contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = ("The Eiffel Tower is located in the city of Paris , which is the capital of France and one of the most "
         "visited places in Europe , famous for its museums , cafes , parks and long history of art and science "
         "that draws millions every year from every country of the world , and the tower itself was built for "
         "the exhibition of 1889 by the engineer Gustave Eiffel whose company also designed many bridges and "
         "railway stations across the continent , long before anyone imagined that the iron lattice would become "
         "the symbol of the whole nation").split()


def prompt_of(tokenizer, tokens: int) -> str:
    """A prompt of exactly ``tokens`` tokens (a prefix of a long sentence about the Eiffel Tower)."""
    ids = tokenizer(" ".join(WORDS * 4)).input_ids[:tokens]
    return tokenizer.decode(ids)


def summarise(ledger) -> dict:
    by = defaultdict(lambda: [0, 0, 0])
    for kind, up, down in ledger.requests:
        by[kind][0] += 1
        by[kind][1] += up
        by[kind][2] += down
    return {"requests": len(ledger.requests), "up": ledger.bytes_up, "down": ledger.bytes_down,
            "by_kind": {k: {"requests": v[0], "up": v[1], "down": v[2]} for k, v in by.items()}}


def measure(model: str, tokens: int) -> dict:
    import visit.remote  # noqa: F401 - registers ndif:
    from visit.localization.causal_trace import causal_trace
    from visit.models import load_model
    from visit.pipeline import analyze
    from visit.remote import estimate

    os.environ["VISIT_NDIF_SIMULATE"] = "1"
    vm = load_model(f"ndif:{model}")
    ledger = vm.backend.ledger
    out = {"model": vm.name, "tokens": tokens, "open": summarise(ledger)}
    prompt = prompt_of(vm.tokenizer, tokens)
    mark = len(ledger.requests)
    analysis = analyze(vm, prompt)
    out["trace_and_graph"] = summarise(ledger.since(mark))
    out["graph_nodes"] = analysis.graph.number_of_nodes()
    mark = len(ledger.requests)
    analyze(vm, prompt)
    out["trace_and_graph_again"] = summarise(ledger.since(mark))
    if tokens <= 16:  # one request per token after the subject: kept short
        mark = len(ledger.requests)
        causal_trace(vm, prompt, "Eiffel Tower", kinds=("mlp",), samples=3, noise=0.1)
        out["causal_trace_mlp_3_samples"] = summarise(ledger.since(mark))
    est = estimate.per_trace(vm.model.config, tokens, vm.backend.value_bytes)
    out["estimate"] = {"requests": est.requests, "up": est.up, "down": est.down, "rows_once": est.rows_once}
    return out


def paper() -> list[dict]:
    from visit.remote import estimate

    rows = []
    for name, shape in (("Llama-3.1-70B", estimate.LLAMA_31_70B), ("Llama-3.1-405B", estimate.LLAMA_31_405B)):
        for tokens in (16, 128):
            e = estimate.per_trace(shape, tokens, 2)
            rows.append({"model": name, "tokens": tokens, "requests": e.requests, "up": e.up, "down": e.down,
                         "forward_down": estimate.trace_download(shape, tokens, 2), "rows_once": e.rows_once,
                         "open_once": e.open_once})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="default")
    parser.add_argument("--tokens", type=int, nargs="+", default=[16, 128])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = {"measured": [], "paper": paper()}
    for tokens in args.tokens:
        with tempfile.TemporaryDirectory() as cache:  # an empty weight cache per run
            os.environ["VISIT_REMOTE_CACHE_DIR"] = cache
            results["measured"].append(measure(args.model, tokens))
        print(json.dumps(results["measured"][-1], indent=1))
    print(json.dumps(results["paper"], indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
