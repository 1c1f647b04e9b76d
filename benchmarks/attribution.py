"""Brute force vs the fast exact method: time and top-K agreement (``python benchmarks/attribution.py``).

Scores every FFN neuron and every attention neuron (per head, head dimension and source position)
of every layer at one position, on the default model (or ``--model``), or on a random model of a
given size (``--random gpt2-xl|llama-7b``, for a GPU). Prints times (median of ``--repeat`` runs for
the fast method, one run for brute force), the number of neurons rescored exactly, and whether the
top-K set, order and scores agree.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def timed(fn, repeat=1):
    times, out = [], None
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def agreement(fast, brute, k, tie=1e-6):
    """Same top-k set? same order? max score difference; and whether every order difference is a
    swap of neighbours whose brute-force scores differ by less than ``tie`` (fp32 rounding: the
    rescoring's matmuls are blocked differently from brute force's)."""
    flat_b = brute.reshape(-1)
    vf, idf = fast.reshape(-1).topk(k)
    vb, idb = flat_b.topk(k)
    same_set = set(idf.tolist()) == set(idb.tolist())
    same_order = bool((idf == idb).all())
    max_err = float((vf - vb).abs().max())
    differs = (idf != idb).nonzero().flatten()
    only_ties = bool(((flat_b[idf[differs]] - vb[differs]).abs() < tie).all())
    return same_set, same_order, max_err, int(differs.numel()), only_ties


def product_throughput(W_U: torch.Tensor, rows: int = 1024, repeat: int = 5) -> tuple[float, float]:
    """GFLOPS of ``x @ W_U`` for ``rows`` rows: :func:`visit.matmul.rows_times` vs torch's default."""
    from visit.matmul import rows_times

    x = torch.randn(rows, W_U.shape[0], device=W_U.device)
    flops = 2 * rows * W_U.shape[0] * W_U.shape[1]
    rows_times(x, W_U)  # packs W_U once
    t_packed, _ = timed(lambda: rows_times(x, W_U), repeat)
    t_plain, _ = timed(lambda: x @ W_U, repeat)
    return flops / t_packed / 1e9, flops / t_plain / 1e9


def random_model(kind: str, device: str):
    from transformers import AutoTokenizer, GPT2Config, LlamaConfig, AutoModelForCausalLM

    from visit.models import wrap_model
    from visit.models.loading import default_checkpoint

    tok = AutoTokenizer.from_pretrained(default_checkpoint())
    if kind == "gpt2-xl":
        cfg = GPT2Config(vocab_size=50257, n_embd=1600, n_layer=48, n_head=25, n_positions=1024)
    else:
        cfg = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                          num_attention_heads=32, num_key_value_heads=32)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").to(device)
    return wrap_model(model, tok, f"random-{kind}")


def main() -> None:
    from visit.attribution.fast import attn_neuron_scores, ffn_neuron_scores
    from visit.attribution.logprob import attn_neuron_logprob_increase_brute, ffn_neuron_logprob_increase_brute
    from visit.models import load_model
    from visit.tokens import resolve_target
    from visit.tracer import trace

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    ap.add_argument("--random", default=None, choices=["gpt2-xl", "llama-7b"])
    ap.add_argument("--device", default=None)
    ap.add_argument("--prompt", default="The capital of France is")
    ap.add_argument("--target", default=" Paris")
    ap.add_argument("--top", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-brute", action="store_true")
    args = ap.parse_args()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    vm = random_model(args.random, device) if args.random else load_model(args.model, device=device)
    tr = trace(vm, args.prompt)
    target = resolve_target(vm.tokenizer, args.target).id
    d = vm.dims
    print(f"model {vm.name}: {d.n_layers} layers, d_mlp {d.d_mlp}, {d.n_heads} heads x {d.d_head}, vocab {d.d_vocab}; "
          f"{len(tr.input_ids)} tokens; device {device}; torch threads {torch.get_num_threads()}")
    with torch.no_grad():
        packed, plain = product_throughput(vm.weights.W_U)
        print(f"products with W_U (1024 rows): visit.matmul {packed:.0f} GFLOPS, torch default {plain:.0f} GFLOPS")
        t_ffn, ffn = timed(lambda: ffn_neuron_scores(tr, target, k=args.top), args.repeat)
        t_attn, attn = timed(lambda: attn_neuron_scores(tr, target, per_source=True, k=args.top), args.repeat)
        print(f"fast  FFN neurons:       {t_ffn:8.2f} s  rescored {ffn.n_candidates} of {ffn.n_total}")
        print(f"fast  attention neurons: {t_attn:8.2f} s  rescored {attn.n_candidates} of {attn.n_total}")
        print(f"fast  both:              {t_ffn + t_attn:8.2f} s")
        if args.skip_brute:
            return
        tb_ffn, bffn = timed(lambda: ffn_neuron_logprob_increase_brute(tr, target))
        tb_attn, battn = timed(lambda: attn_neuron_logprob_increase_brute(tr, target, per_source=True))
        print(f"brute FFN neurons:       {tb_ffn:8.2f} s")
        print(f"brute attention neurons: {tb_attn:8.2f} s")
        print(f"brute both:              {tb_ffn + tb_attn:8.2f} s   speed-up {(tb_ffn + tb_attn) / (t_ffn + t_attn):.1f}x")
        for name, f, b in (("FFN", ffn.scores, bffn), ("attention", attn.scores, battn)):
            same_set, same_order, err, n_diff, only_ties = agreement(f, b, args.top)
            print(f"top-{args.top} {name}: same set {same_set}, same order {same_order} "
                  f"({n_diff} positions differ, all fp32 ties < 1e-6: {only_ties}), max score difference {err:.2e}")


if __name__ == "__main__":
    main()
