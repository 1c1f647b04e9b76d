"""Integrated gradients of MLP neurons (Dai et al.'s knowledge attribution, seed 001 section 3.1).

A neuron is an MLP coefficient: ``blocks.{l}.mlp.hook_post`` at the answer position ``p`` (the input of the
output projection: GELU(x W_in) for GPT-2, act(gate) * up for gated MLPs, so that the index is the column an
edit of the output projection changes). With a zero baseline and ``m`` steps, neuron ``i`` of layer ``l``::

    attr[l, i] = a[l, i] * (1/m) * sum_{k=1..m} dP(k/m * a[l]) / da[l, i]

where ``a[l]`` is the layer's clean coefficient vector at ``p``, ``P(x)`` the target's softmax probability at
``p`` when the whole layer's coefficients at ``p`` are replaced by ``x`` (every other layer and position runs
as the model computes it), and ``k/m`` for ``k = 1..m`` is the *right* Riemann sum of seed 001's equation
(EleutherAI's code uses ``linspace(0, 1, m)``, Dai et al.'s ``0..m-1``; all converge to the integral).
Completeness: ``sum_i attr[l, i]`` approaches ``P(a[l]) - P(0)`` (the layer's neurons zeroed at ``p``) as
``m`` grows.

Two computations, equal up to float rounding (``tests/test_knowledge_neurons.py``):

- ``method="full"``: per layer, one forward and backward pass over ``m`` rows of the prompt (cut after ``p``,
  since later tokens cannot change ``p``), the layer's coefficients at ``p`` replaced by ``alpha_k * a``
  (a leaf that requires grad) through :func:`visit.hooks.replace`. ``n_layers`` passes of ``m x (p+1)``
  positions through every block.
- ``method="resume"`` (default): from layer ``l`` on only position ``p`` differs from the clean pass, so the
  rows of every layer run as single-position rows of one batch (:func:`visit.hooks.resume.resume`): the rows
  of layer ``l`` join at block ``l`` with the clean ``resid_pre[l]`` at ``p`` and attend to the recorded
  clean keys/values of positions ``< p``. A row of layer ``l`` computes ``n_layers - l`` blocks at one
  position instead of ``n_layers`` blocks at ``p + 1`` positions, and one backward pass gives every row's
  gradient. Layers are cut into chunks of at most ``rows`` rows (memory; a progress call per chunk).

Nothing here changes a weight; every write goes through the hook layer and ends with the pass.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from visit import hooks, limits
from visit.errors import VisitError
from visit.hooks.names import hook_name
from visit.hooks.resume import Join, record, resume
from visit.tracer import encode_prompt, resolve_position

Progress = Callable[[int, int, str], None]
MAX_ROWS = 240  # rows of one resumed pass (memory: activations kept for the backward pass)


def check_steps(steps, capped: bool = False) -> int:
    """``steps`` as an int of at least 1; ``capped=True`` (on behalf of the app) also refuses more than
    :data:`visit.limits.STEPS` (the library and the CLI do not cap: memory stays bounded, time grows)."""
    if isinstance(steps, bool) or not isinstance(steps, (int, float)) or steps != int(steps) or steps < 1:
        raise VisitError(f"integration steps must be a whole number of at least 1, not {steps!r}")
    return limits.STEPS.check(steps, "integration steps") if capped else int(steps)


def alphas(steps: int) -> torch.Tensor:
    """The scaling factors ``k/m``, ``k = 1..m`` (right Riemann sum): ``[steps]``."""
    return torch.arange(1, steps + 1, dtype=torch.float32) / steps


def _layers(vm, layers: Sequence[int] | None) -> list[int]:
    n = vm.dims.n_layers
    if layers is None:
        return list(range(n))
    out = sorted({int(l) for l in layers})
    if not out:
        raise VisitError("no layers to attribute")
    bad = [l for l in out if not 0 <= l < n]
    if bad:
        raise VisitError(f"layer {bad[0]} is out of range: the model has {n} layers (0..{n - 1})")
    return out


def encode(vm, prompt: str, position: int | None) -> tuple[torch.Tensor, int]:
    """The prompt's ids cut after the answer position: ``(ids [p + 1], p)``."""
    ids = encode_prompt(vm, prompt)[0]
    p = resolve_position(position, ids.shape[0])
    return ids[: p + 1], p


def _prob(logits: torch.Tensor, target_id: int) -> torch.Tensor:
    """``logits [rows, d_vocab]`` -> the target's softmax probability per row, in fp32."""
    return torch.softmax(logits.float(), dim=-1)[:, target_id]


def integrated_gradients(vm, prompt: str, target_id: int, steps: int = 20, layers: Sequence[int] | None = None,
                         position: int | None = None, progress: Progress | None = None, method: str = "resume",
                         rows: int = MAX_ROWS) -> torch.Tensor:
    """Knowledge attribution of every MLP neuron: ``[n_layers, d_mlp]`` (fp32; layers not asked for are 0).

    ``position``: the answer position (default the last token); ``method``: ``"resume"`` (batched, default)
    or ``"full"`` (a full pass per layer, the reference); ``progress(done, total, note)`` is called after
    each pass (it may raise to cancel: nothing is left changed).
    """
    steps = check_steps(steps)
    if method not in ("resume", "full"):
        raise VisitError(f"unknown method '{method}'; choose 'resume' or 'full'")
    target_id = int(target_id)
    if not 0 <= target_id < vm.dims.d_vocab:
        raise VisitError(f"target id {target_id} is outside the vocabulary (0..{vm.dims.d_vocab - 1})")
    ids, p = encode(vm, prompt, position)
    todo = _layers(vm, layers)
    out = torch.zeros(vm.dims.n_layers, vm.dims.d_mlp)
    # the weights are taken per pass (forward and backward together: autograd keeps the weights it met), so
    # other sessions interleave; this context's weights are the same at every weights_for (visit.models.overlay)
    if method == "full":
        _full(vm, ids, p, target_id, steps, todo, out, progress)
    else:
        _resumed(vm, ids, p, target_id, steps, todo, out, progress, max(1, int(rows)))
    return out


def _clean_reads(vm, ids: torch.Tensor, layers: list[int], extra: Sequence[str] = ()) -> dict:
    names = [hook_name(l, "mlp.hook_post") for l in layers] + list(extra)
    _, rec = hooks.run(vm, ids, read=names)
    return rec.values


def _full(vm, ids, p, target_id, steps, layers, out, progress) -> None:
    clean = _clean_reads(vm, ids, layers)
    a = alphas(steps).to(vm.device)
    batch = ids.reshape(1, -1).expand(steps, -1)
    for n, layer in enumerate(layers):
        name = hook_name(layer, "mlp.hook_post")
        act = clean[name][0, p]  # [d_mlp]
        scaled = (a.to(act.dtype)[:, None] * act[None]).unsqueeze(1).requires_grad_(True)  # [m, 1, d_mlp]
        with vm.weights_for():
            logits, _ = hooks.run(vm, batch, write=[hooks.replace(name, scaled, positions=[p])], grad=True)
            (grad,) = torch.autograd.grad(_prob(logits[:, p], target_id).sum(), [scaled])
        out[layer] = (act.float() * grad[:, 0].float().mean(0)).cpu()
        if progress is not None:
            progress(n + 1, len(layers), f"layer {layer}")


def _passes(layers: list[int], steps: int, rows: int) -> list[list[tuple[int, int, int]]]:
    """Units ``(layer, k0, k1)`` (steps ``k0..k1-1`` of one layer), packed in layer order into passes of at most
    ``rows`` rows: memory stays bounded whatever ``steps`` is."""
    units = [(l, k, min(k + rows, steps)) for l in layers for k in range(0, steps, rows)]
    passes, current, size = [], [], 0
    for unit in units:
        n = unit[2] - unit[1]
        if current and size + n > rows:
            passes.append(current)
            current, size = [], 0
        current.append(unit)
        size += n
    return passes + ([current] if current else [])


def _resumed(vm, ids, p, target_id, steps, layers, out, progress, rows) -> None:
    names = [hook_name(l, "hook_resid_pre") for l in layers] + [hook_name(l, "mlp.hook_post") for l in layers]
    with torch.no_grad(), vm.weights_for():
        rec = record(vm, ids, read=names)
    a = alphas(steps).to(vm.device)
    grads = {l: 0.0 for l in layers}
    passes = _passes(layers, steps, rows)
    for n, units in enumerate(passes):
        joins, writes, leaves = [], [], []
        for layer, k0, k1 in units:
            act = rec.read[hook_name(layer, "mlp.hook_post")][0, p]  # [d_mlp]
            hidden = rec.read[hook_name(layer, "hook_resid_pre")][0, p:p + 1]  # [1, d_model]
            first = len(joins)
            joins += [Join(layer, hidden)] * (k1 - k0)
            leaf = (a[k0:k1].to(act.dtype)[:, None] * act[None]).unsqueeze(1).requires_grad_(True)  # [k, 1, d_mlp]
            writes.append(hooks.replace(hook_name(layer, "mlp.hook_post"), leaf,
                                        rows=list(range(first, len(joins))), positions=[0]))
            leaves.append(leaf)
        with torch.enable_grad(), vm.weights_for():
            logits, _ = resume(vm, rec, p, joins, write=writes)
            found = torch.autograd.grad(_prob(logits, target_id).sum(), leaves)
        for (layer, _k0, _k1), g in zip(units, found):
            grads[layer] = grads[layer] + g[:, 0].float().sum(0)
        if progress is not None:
            progress(n + 1, len(passes), f"layers {units[0][0]}-{units[-1][0]}")
    for layer in layers:
        act = rec.read[hook_name(layer, "mlp.hook_post")][0, p].float()
        out[layer] = (act * grads[layer] / steps).cpu()


def layer_zeroed_prob(vm, prompt: str, target_id: int, layer: int, position: int | None = None) -> tuple[float, float]:
    """``(P(full), P(layer's neurons zeroed at p))``: what a layer's attributions add up to as ``m`` grows."""
    ids, p = encode(vm, prompt, position)
    batch = ids.reshape(1, -1).expand(2, -1)
    logits, _ = hooks.run(vm, batch, write=[hooks.zero(hook_name(layer, "mlp.hook_post"), rows=[1], positions=[p])])
    probs = _prob(logits[:, p], int(target_id))
    return float(probs[0]), float(probs[1])
