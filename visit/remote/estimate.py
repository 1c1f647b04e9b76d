"""What one trace of a remote model transfers, from its config alone (no weights, no request).

Counts what :mod:`visit.remote` moves for one trace and its graph, before compression:

- **forward** (down): every value the trace records (:func:`visit.tracer.trace_reads`) at every position,
  plus the logits ``[pos, d_vocab]``, in the model's dtype;
- **heads** (up ``[layers, heads, d_head]`` fp32, down ``[layers, heads, d_model]`` in the model's dtype):
  each head's contribution at the traced position (:meth:`visit.remote.weights.RemoteWeights.head_results`);
- **memory** (up ``[values, d_head]``, down ``[values, d_model]``, fp32): the graph's memory values through their
  heads' ``W_O`` slices (:meth:`visit.remote.weights.RemoteWeights.through_heads`);
- **lens** (up ``[nodes, d_model]`` fp32, down ``[nodes, k]`` ids and probabilities, entropy, the target's
  probability and rank): the graph's projections;
- **rows** (down): ``W_out`` rows of the MLP neurons and ``W_O`` rows of the W_O neurons the graph shows, all in
  one request, fetched once per model and revision;
- **open** (down, once): every parameter of at most 65,536 elements (norm gains, biases).

Requests per trace and graph: forward, heads, lens (the layer strip), memory, rows (when not cached), lens
(the graph's nodes): six.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

REQUEST_BYTES = 8 * 1024  # a request's serialised code and plan (measured: 3-7 KiB; grows with the writes)
SMALL = 1 << 16


@dataclass(frozen=True)
class Shape:
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_mlp: int
    d_vocab: int

    @classmethod
    def of(cls, config) -> "Shape":
        c = config
        n_heads = c.num_attention_heads
        d_head = getattr(c, "head_dim", None) or c.hidden_size // n_heads
        return cls(c.num_hidden_layers, c.hidden_size, n_heads, getattr(c, "num_key_value_heads", None) or n_heads,
                   d_head, getattr(c, "intermediate_size", None) or 4 * c.hidden_size, c.vocab_size)


LLAMA_31_70B = Shape(80, 8192, 64, 8, 128, 28672, 128256)
LLAMA_31_405B = Shape(126, 16384, 128, 8, 128, 53248, 128256)


def trace_download(config_or_shape, tokens: int, bytes_per_value: int = 2) -> int:
    """Bytes of the forward request's answer: the recorded values at every position and the logits."""
    s = config_or_shape if isinstance(config_or_shape, Shape) else Shape.of(config_or_shape)
    t = tokens
    per_layer = t * (7 * s.d_model  # ln1/ln2 in and out, attn_out, mlp_out, resid_post
                     + 2 * s.n_heads * s.d_head  # q, z
                     + 2 * s.n_kv_heads * s.d_head  # k, v
                     + s.d_mlp) + s.n_heads * t * t  # mlp post; the pattern
    return (s.n_layers * per_layer + 2 * t * s.d_model + t * s.d_vocab) * bytes_per_value


@dataclass(frozen=True)
class Transfer:
    requests: int
    up: int
    down: int
    rows_once: int
    open_once: int

    def describe(self) -> str:
        return (f"one trace and its graph move about {_size(self.down)} down and {_size(self.up)} up in "
                f"{self.requests} requests (plus {_size(self.rows_once)} of weight rows the first time, cached)")


def per_trace(config_or_shape, tokens: int, bytes_per_value: int = 2, k: int = 5, memory_per_head: int = 3,
              wo_neurons: int = 5, mlp_neurons: int = 10, heads_per_layer: int | None = None) -> Transfer:
    """The transfer of one trace and its graph at the graph's default settings
    (:class:`visit.graph.settings.GraphSettings`: every head, 3 memory values each, 5 W_O neurons, 5 + 5 MLP
    neurons, top 5 tokens per node), every layer shown."""
    s = config_or_shape if isinstance(config_or_shape, Shape) else Shape.of(config_or_shape)
    heads = s.n_heads if heads_per_layer is None else heads_per_layer
    memory = heads * memory_per_head  # memory values per layer
    projected = s.n_layers * (6 + heads + memory + wo_neurons + mlp_neurons) + 1  # distinct lens rows
    forward = trace_download(s, tokens, bytes_per_value)
    heads_up, heads_down = s.n_layers * s.n_heads * s.d_head * 4, s.n_layers * s.n_heads * s.d_model * bytes_per_value
    memory_up, memory_down = s.n_layers * memory * (s.d_head * 4 + 8), s.n_layers * memory * s.d_model * 4
    lens_up, lens_down = projected * s.d_model * 4, projected * (k * 16 + 24)
    rows = s.n_layers * (wo_neurons + mlp_neurons) * s.d_model * bytes_per_value
    small = (2 * s.n_layers + 1) * s.d_model * bytes_per_value
    strip = 2 * s.n_layers + 1  # the layer strip's lens rows (after attention, after the MLP, final)
    lens_up += strip * s.d_model * 4
    lens_down += strip * (k * 16 + 24)
    return Transfer(6, 6 * REQUEST_BYTES + heads_up + memory_up + lens_up,
                    forward + heads_down + memory_down + lens_down, rows, small)


def value_bytes(dtype) -> int:
    """Bytes per value of a dtype given as a ``torch.dtype``, its name (``"bfloat16"``) or None (fp32)."""
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return torch.finfo(dtype).bits // 8 if isinstance(dtype, torch.dtype) and dtype.is_floating_point else 4


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"
