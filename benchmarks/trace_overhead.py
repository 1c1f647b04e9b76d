"""Median wall time of a fully traced forward pass vs a plain forward pass (same model, same prompt).

    .venv/bin/python benchmarks/trace_overhead.py [--repeats 30] [--sizes default,gpt2-small] [--device cuda]

``--sizes`` takes random-init sizes (gpt2-small, gpt2-xl, llama-7b, mixtral-mini: a small mixture of experts, 8
experts of which 2 run per token) and shipped models (default, gemma3-270m).

The traced time includes tokenisation, hooks and collecting every value (per-head results included);
the plain time is ``model(input_ids)`` alone, so the ratio is an upper bound on the tracer's overhead.
Runs are interleaved so that load on the machine affects both sides alike. Target: ratio <= 1.3.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from visit.models import load_model, wrap_model
from visit.models.loading import default_checkpoint, shipped_model
from visit.tracer import trace

PROMPT = ("The Eiffel Tower, completed in 1889 for the World's Fair, stands on the Champ de Mars in the city of"
          " Paris, which is the capital of France. The capital of France is")


def random_model(kind: str, tokenizer, device: str):
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, MixtralConfig

    configs = {
        "gpt2-small": lambda: GPT2Config(vocab_size=len(tokenizer), bos_token_id=None, eos_token_id=None),
        "gpt2-xl": lambda: GPT2Config(vocab_size=len(tokenizer), n_embd=1600, n_layer=48, n_head=25,
                                     bos_token_id=None, eos_token_id=None),
        "llama-7b": lambda: LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                                        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32),
        "mixtral-mini": lambda: MixtralConfig(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=1536,
                                              num_hidden_layers=6, num_attention_heads=12, num_key_value_heads=4,
                                              num_local_experts=8, num_experts_per_tok=2),
    }
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(configs[kind](), attn_implementation="eager")
    dtype = torch.float16 if device == "cuda" and kind != "gpt2-small" else torch.float32
    return wrap_model(model.to(device=device, dtype=dtype), tokenizer, f"random {kind}")


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def measure(vm, repeats: int) -> dict:
    ids = vm.tokenizer(PROMPT, return_tensors="pt").input_ids.to(vm.device)
    dev = vm.device

    def plain():
        with torch.no_grad():
            vm.model(input_ids=ids, use_cache=False)

    def traced():
        trace(vm, PROMPT)

    for _ in range(3):
        plain(), traced()
    times = {"plain": [], "traced": []}
    for _ in range(repeats):
        for name, fn in (("plain", plain), ("traced", traced)):
            sync(dev)
            t0 = time.perf_counter()
            fn()
            sync(dev)
            times[name].append(time.perf_counter() - t0)
    plain_ms = statistics.median(times["plain"]) * 1e3
    traced_ms = statistics.median(times["traced"]) * 1e3
    return {"model": vm.name, "tokens": ids.shape[1], "plain_ms": plain_ms, "traced_ms": traced_ms,
            "ratio": traced_ms / plain_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--sizes", default="default,gpt2-small")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    default = load_model(device=args.device)
    device = str(default.device)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device.startswith("cuda") else ""))
    print(f"{'model':<28}{'tokens':>7}{'plain ms':>11}{'traced ms':>11}{'ratio':>8}")
    for size in args.sizes.split(","):
        if size == "default":
            vm = default
        elif shipped_model(size):
            vm = load_model(size, device=device)
        else:
            vm = random_model(size, default.tokenizer, device)
        r = measure(vm, args.repeats)
        print(f"{r['model']:<28}{r['tokens']:>7}{r['plain_ms']:>11.1f}{r['traced_ms']:>11.1f}{r['ratio']:>8.2f}")
        if vm is not default:
            del vm
            if device.startswith("cuda"):
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
