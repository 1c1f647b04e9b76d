"""How much memory a model and a trace will need, estimated from the config before anything is loaded.

The weights: the parameters of an empty model built from the config (``meta`` tensors, no memory; exact for
every family, tied embeddings counted once) times the dtype's bytes. A trace of ``T`` tokens
(:func:`visit.tracer.trace`) then holds, on the device visit computes on:

- the recorded activations, per layer and position: the norms' inputs and outputs, attention and MLP outputs
  and the residual (``7 d_model``), queries and per-head outputs (``2 n_heads d_head``), keys and values
  (``2 n_kv_heads d_head``), the attention pattern's row (``n_heads T``) and the neuron coefficients
  (``d_mlp``); in the model's dtype as computed, and once more in fp32 unless the model is fp32;
- the logits (``T d_vocab``), likewise, and the forward pass's transient peak (eager attention scores
  ``2 n_heads T^2`` and the MLP's ``3 T d_mlp``);
- the fp32 weight views the decompositions use (``W_O``, ``W_in``, ``W_out`` per layer, the unembedding):
  copies when the model is not fp32 (kept for layers on the compute device, one layer at a time for
  offloaded ones), views of the weights themselves when it is.

It is an estimate (allocator overhead and Python objects come on top; benchmarks compare it with a measured
peak): :func:`check_one_device` and :func:`visit.models.dispatch.plan_device_map` use it to refuse, with one
line, what would not fit instead of failing with an out-of-memory error halfway through loading.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from visit.errors import VisitError
from visit.models.dispatch import available_memory, gib

FP32 = 4


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a model's weights and one ``tokens``-token trace need (see the module's docstring)."""

    parameters: int
    dtype: torch.dtype
    weights_bytes: int
    trace_bytes: int
    tokens: int

    def describe(self) -> str:
        return (f"{self.parameters / 1e6:.1f}M parameters x {self.dtype.itemsize} bytes ({str(self.dtype)[6:]}) = "
                f"{gib(self.weights_bytes)} of weights, plus about {gib(self.trace_bytes)} for a "
                f"{self.tokens}-token trace")


def empty_model(config, dtype: torch.dtype) -> nn.Module:
    """The model ``config`` describes, with every parameter on ``meta`` (no memory, no weights read)."""
    # transformers takes seconds to import: only when a model is loaded
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):  # buffers too; 4-6x faster than accelerate's init_empty_weights here
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="eager")
    model.tie_weights()
    return model


def trace_bytes(dims, dtype: torch.dtype, tokens: int, offloaded: bool = False) -> int:
    """Bytes one trace of ``tokens`` tokens needs on the compute device, beyond the weights placed there
    (``dims``: :class:`visit.models.loading.Dims`)."""
    d, t = dims, int(tokens)
    per_position = (7 * d.d_model + 2 * d.n_heads * d.d_head + 2 * d.n_kv_heads * d.d_head + d.n_heads * t
                    + d.d_mlp + d.d_model)  # + resid_mid, derived
    copies = dtype.itemsize + (FP32 if dtype != torch.float32 else 0)
    activations = d.n_layers * t * per_position * copies + t * d.d_vocab * copies
    peak = (2 * d.n_heads * t * t + 3 * t * d.d_mlp) * dtype.itemsize
    per_layer = d.n_heads * d.d_head * d.d_model + 3 * d.d_mlp * d.d_model  # W_O, W_in (gate, up), W_out
    if dtype == torch.float32 and not offloaded:
        views = 0
    elif offloaded:
        views = per_layer * FP32 + d.d_model * d.d_vocab * FP32
    else:
        views = d.n_layers * per_layer * FP32 + d.d_model * d.d_vocab * FP32
    return int(activations + peak + views)


def estimate(model: nn.Module, dims, dtype: torch.dtype, tokens: int, offloaded: bool = False) -> MemoryEstimate:
    """The estimate for ``model`` (an empty model from :func:`empty_model`) and a ``tokens``-token trace."""
    n = sum(p.numel() for p in model.parameters())
    return MemoryEstimate(n, dtype, n * dtype.itemsize, trace_bytes(dims, dtype, tokens, offloaded), tokens)


def check_one_device(est: MemoryEstimate, device: torch.device, max_memory: dict | None = None) -> None:
    """One clear line when the weights and a trace will not fit on ``device`` (its ``max_memory`` entry when
    given, else what it has free now); nothing when they fit or the free memory cannot be told."""
    key = (device.index or 0) if device.type == "cuda" else device.type
    if max_memory and key in max_memory:
        have, what = max_memory[key], "--max-memory gives it"
    else:
        have, what = available_memory().get(key), "it has free"
    if have is None:
        return
    need = est.weights_bytes + est.trace_bytes
    if need > have:
        raise VisitError(f"the model will not fit on {device}: {est.describe()} is {gib(need)}, and {what} "
                         f"{gib(have)}; spread it with --device-map auto and --max-memory "
                         f"(add disk=SIZE to offload layers to disk), or load it with a smaller --dtype")
