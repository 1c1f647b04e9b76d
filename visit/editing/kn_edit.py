"""KN-E and CNE (seed 001 section 3.4): move neurons' value vectors from the old object's embedding to the new one's.

For each chosen MLP neuron ``i`` of layer ``l`` (its value vector: row ``i`` of ``W_out`` in the ``[in, out]``
view, i.e. a row of GPT-2's Conv1D ``c_proj.weight`` or a column of Llama's ``down_proj.weight``)::

    w_i <- w_i - lambda1 * t_old + lambda2 * t_new        (seed 001: lambda1 = 1, lambda2 = 8)

``t`` is the object's **output embedding** (its column of the unembedding ``W_U``, the direction the residual
stream is read along; for tied models such as the default one it is also the input embedding) of the first
token of ``" " + object``, **scaled to the norm of w_i** (``scale="norm"``, Dai et al.'s choice, the default)
or used as it is (``scale="raw"``, ROME's and EasyEdit's KN baseline style). Whenever the neuron fires (``a_i``),
the MLP output moves by ``a_i`` times that change.

Which neurons:

- **KN-E** (Dai et al. 2022): the refined knowledge neurons of the old fact
  (:func:`visit.localization.knowledge_neurons.knowledge_neurons`: integrated gradients, 20 steps, coarse
  threshold 0.3, refined over the prompt and its paraphrases with share 0.5, seed 001's settings).
- **CNE** (seed 001): "the causal neuron": seed 001 defines it as *the MLP hidden state with the largest indirect
  effect*, ``argmax_{i,l} P(restored h_i^l) - P(corrupted)``, but a hidden state is a vector, not a neuron, and
  the paper does not say which weights its edit changed. Concretely here:

  1. **the state**: causal tracing of the prompt with the subject corrupted (10 samples, the default noise),
     restoring **one layer's MLP output** (``window=1``: literally "the MLP hidden state" ``h_i^l``) at each
     (token, layer); the cell with the largest indirect effect on the old object's first token gives the token
     ``i*`` and layer ``l*``;
  2. **the neuron(s)**: the ``top`` (default 1, as seed 001) neurons of layer ``l*`` with the largest indirect
     effect at token ``i*``, estimated to first order (attribution patching): ``mean over corrupted samples of
     (a_clean - a_corrupted) x dP/da`` at the corrupted run, ``P`` the old object's probability. This ranks the
     neurons by how much restoring each one alone would give back, without 1,536 more restorations.

  Then the KN-E update on those neurons.
"""

from __future__ import annotations

import torch

from visit.editing.edit import Edit, mlp_out_param, register, to_param_layout
from visit.editing.request import EditRequest, object_ids
from visit.errors import VisitError
from visit.hooks import add, run
from visit.localization.causal_trace import causal_trace, default_noise
from visit.localization.knowledge_neurons import knowledge_neurons
from visit.hooks.names import hook_name
from visit.models.weights import as_in_out
from visit.tokens import target_from_id
from visit.tracer import encode_prompt

LAMBDA1, LAMBDA2 = 1.0, 8.0
SCALES = ("norm", "raw")


def _old_new(vm, request: EditRequest, method: str) -> tuple[int, int]:
    if request.old is None:
        raise VisitError(f"{method} needs the old object (--old): it subtracts the old object's embedding")
    old, new = object_ids(vm.tokenizer, request.old)[0], object_ids(vm.tokenizer, request.new)[0]
    if old == new:
        raise VisitError(f"the old and new objects start with the same token; {method} edits by first tokens")
    return old, new


def neuron_deltas(vm, neurons, old_id: int, new_id: int, lambda1: float = LAMBDA1, lambda2: float = LAMBDA2,
                  scale: str = "norm") -> dict[str, torch.Tensor]:
    """``{parameter: delta}`` moving each ``(layer, neuron)``'s value vector by ``-l1 t_old + l2 t_new``."""
    if scale not in SCALES:
        raise VisitError(f"unknown embedding scaling '{scale}'; choose one of {', '.join(SCALES)}")
    W_U = vm.weights.W_U.detach()
    t_old, t_new = W_U[:, old_id].float(), W_U[:, new_id].float()
    by_layer: dict[int, list[int]] = {}
    for layer, neuron in neurons:
        by_layer.setdefault(int(layer), []).append(int(neuron))
    deltas = {}
    for layer, idx in sorted(by_layer.items()):
        W = as_in_out(vm.weights.block_module(layer, vm.adapter.mlp_out), vm.adapter.weight_layout).detach().float()
        delta = torch.zeros_like(W)
        for i in idx:
            if scale == "norm":
                norm = W[i].norm()
                a, b = t_old * norm / t_old.norm(), t_new * norm / t_new.norm()
            else:
                a, b = t_old, t_new
            delta[i] += -lambda1 * a + lambda2 * b
        deltas[mlp_out_param(vm, layer)] = to_param_layout(delta, vm.adapter.weight_layout).contiguous()
    return deltas


@register("kn")
def kn_edit(vm, request: EditRequest, layer: int | None = None, progress=None, paraphrases=(), steps: int = 20,
            threshold: float = 0.3, share: float = 0.5, lambda1: float = LAMBDA1, lambda2: float = LAMBDA2,
            scale: str = "norm") -> Edit:
    """KN-E on the refined knowledge neurons of the old fact (``layer``: keep only that layer's)."""
    old, new = _old_new(vm, request, "KN-E")
    kn = knowledge_neurons(vm, request.prompt, target_from_id(vm.tokenizer, old), paraphrases=list(paraphrases),
                           steps=steps, threshold=threshold, share=share, unrelated=(), progress=progress,
                           compare=False)
    neurons = [n for n in kn.refined if layer is None or n.layer == int(layer)]
    deltas = neuron_deltas(vm, [(n.layer, n.neuron) for n in neurons], old, new, lambda1, lambda2, scale)
    layers = sorted({n.layer for n in neurons})
    info = {"neurons": [n.as_dict() for n in neurons], "n_neurons": len(neurons), "layers": layers,
            "prompts": len(kn.prompts), "lambda1": lambda1, "lambda2": lambda2, "scale": scale,
            "notes": list(kn.notes) + ([] if neurons else ["no refined knowledge neuron: nothing was changed"])}
    return Edit("kn", request, layers[0] if len(layers) == 1 else None, deltas, info)


kn_edit.uses_paraphrases = True


def causal_neurons(vm, prompt: str, subject: str, target_id: int, top: int = 1, samples: int = 10,
                   window: int = 1, seed: int = 0, progress=None) -> dict:
    """The causal MLP state (token, layer) and its ``top`` neurons by first-order indirect effect (see module)."""
    ct = causal_trace(vm, prompt, subject, target=int(target_id), kinds=("mlp",), samples=samples, window=window,
                      seed=seed, progress=progress)
    ie = ct.indirect_effect("mlp")
    token, layer = divmod(int(ie.argmax()), ie.shape[1])
    ids = encode_prompt(vm, prompt)[0]
    s0, s1 = ct.subject_range
    gen = torch.Generator().manual_seed(seed)  # the same noise as the trace's corrupted runs
    eps = (torch.randn(samples, s1 - s0, vm.dims.d_model, generator=gen) * float(ct.noise)).to(vm.device)
    name = hook_name(layer, "mlp.hook_post")
    _, clean = run(vm, ids, read=[name])
    a_clean = clean[name][0, token].float()
    z = torch.zeros(samples, vm.dims.d_mlp, device=vm.device, requires_grad=True)
    logits, rec = run(vm, ids.view(1, -1).expand(samples, -1), read=[name], grad=True,
                      write=[add("hook_embed", eps.to(vm.model.dtype), positions=list(range(s0, s1))),
                             add(name, z.to(vm.model.dtype).unsqueeze(1), positions=[token])])
    p = logits[:, -1].float().softmax(-1)[:, int(target_id)].mean()
    (grad,) = torch.autograd.grad(p, z)
    a_corr = rec[name][:, token].detach().float()
    effect = ((a_clean - a_corr) * grad * samples).mean(0)  # d(mean p)/dz_r = grad_r / samples
    values, idx = effect.topk(max(1, int(top)))
    return {"token": token, "layer": layer, "indirect_effect": float(ie[token, layer]),
            "p_clean": ct.p_clean, "p_corrupted": ct.p_corrupted, "window": window,
            "neurons": [{"layer": layer, "neuron": int(i), "score": float(v)} for v, i in zip(values, idx)]}


@register("cne")
def cne_edit(vm, request: EditRequest, layer: int | None = None, progress=None, top: int = 1, samples: int = 10,
             window: int = 1, lambda1: float = LAMBDA1, lambda2: float = LAMBDA2, scale: str = "norm") -> Edit:
    """CNE on the causal neuron(s) of the old fact (``layer`` is ignored: causal tracing picks it)."""
    old, new = _old_new(vm, request, "CNE")
    found = causal_neurons(vm, request.prompt, request.subject, old, top=top, samples=samples, window=window,
                           progress=progress)
    neurons = [(n["layer"], n["neuron"]) for n in found["neurons"]]
    deltas = neuron_deltas(vm, neurons, old, new, lambda1, lambda2, scale)
    info = {**found, "lambda1": lambda1, "lambda2": lambda2, "scale": scale}
    return Edit("cne", request, found["layer"], deltas, info)
