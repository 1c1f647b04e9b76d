"""What runs where the model lives: the server side of a remote request, in plain torch.

Everything here is shipped by value with each request (nnsight serialises these functions' source; the server
has torch and nnsight, not visit), so this module imports nothing but torch and is handed only plain data:

- a **plan** (:func:`run_sites`): the module sites of one forward pass in execution order, each with the parts
  of its input or output to save and the writes to apply (:class:`visit.hooks.Intervention`, shipped by value
  too), so a request reads and writes exactly what the hook layer would;
- a **lens request** (:func:`lens_rows`): normed vectors in, the unembedding applied server-side, only the top
  tokens, entropy and the target's probability and rank back;
- a **weight request** (:func:`weight_slices`): named parameters (or rows of them) back, for the small
  tensors the client computes with.

A *part* is what a hook point's view needs of the module's value: ``value`` itself, element 0 (``first``) or 1
(``pattern``) of a tuple, or ``.logits``; the client applies the view (:func:`visit.hooks.points.read`).
"""

from __future__ import annotations

import torch

PARTS = ("value", "first", "pattern", "logits")


def envoy_at(model, path: str):
    """The envoy of ``path`` (``"model.layers.3.mlp"``; ``""`` for the root)."""
    envoy = model
    for name in path.split(".") if path else ():
        envoy = envoy[int(name)] if name.isdigit() else getattr(envoy, name)
    return envoy


def part_of(value, part: str):
    """One part of a module's input or output ``value``."""
    if part == "value":
        return value
    if part == "logits":
        return value.logits
    if part == "pattern":
        return value[1]
    return value[0] if isinstance(value, (tuple, list)) else value


def with_part(value, part: str, new):
    """``value`` with ``part`` replaced by ``new`` (a new tuple for tuple values; ``.logits`` set in place)."""
    if part == "value" or (part == "first" and not isinstance(value, (tuple, list))):
        return new
    if part == "logits":
        value.logits = new
        return value
    return (new,) + tuple(value[1:])


def run_sites(model, steps: list, keep: dict, target=None) -> dict:
    """Run one planned forward pass's sites (inside an nnsight trace) and return what it saves.

    ``steps``: ``[(path, side, reads, writes)]`` in the order the modules run; ``reads``: ``[(key, part)]``;
    ``writes``: ``[(part, features, interventions)]``: the part viewed as ``[batch, pos, *features]``
    (``features`` None: as it is) gets each intervention applied in turn. Saved values are cast to the model's
    dtype, detached and moved to the CPU (``keep``: ``{key: positions}`` keeps only those positions of
    ``[batch, pos, ...]`` values). With ``target`` (a token id) the logits come back as each row's
    probability of it at the last position only (``[batch]``).
    """
    saved = {}
    for path, side, reads, writes in steps:
        envoy = envoy_at(model, path)
        value = envoy.output if side == "out" else envoy.input
        if writes:
            for part, features, interventions in writes:
                current = part_of(value, part)
                x = current if features is None else current.reshape(*current.shape[:2], *features)
                for iv in interventions:
                    x = iv.apply(x)
                value = with_part(value, part, x.reshape(current.shape))
            if side == "out":
                envoy.output = value
            else:
                envoy.input = value
        for key, part in reads:
            x = part_of(value, part)
            if key in keep:
                x = x[:, keep[key]]
            saved[key] = x.detach().cpu().clone()  # a view would carry its whole storage over the wire
    if target is not None:
        saved["logits"] = saved["logits"][:, -1].float().softmax(-1)[:, target].clone()
    return saved


def lens_rows_at(model, path: str, normed: torch.Tensor, softcap, k: int, target, bottom: bool, top_tokens,
                 matmul, chunk: int) -> dict:
    """The logit lens of ``normed [n, d_model]`` (the final norm already applied) through the output embedding at
    ``path`` (its weight ``[d_vocab, d_model]``, its bias if any, then the soft cap): ``top_tokens``' dict
    (:func:`visit.lens.top_tokens`) on the CPU, only ``[n, k]`` tokens travelling back. ``matmul`` (the module's
    functions ``(onednn_fits, pack, packed_times)`` of :mod:`visit.matmul`) multiplies ``chunk`` rows at a time
    as the local lens does, so the two agree to the bit on the same hardware. All are shipped by value."""
    unembed = envoy_at(model, path)
    W, bias = unembed.weight.detach(), getattr(unembed, "bias", None)
    W_U = W.float().T if W.dtype != torch.float32 else W.T
    fits, pack, packed_times = matmul
    packed = pack(W_U) if fits(normed[:1].to(W_U.device, W_U.dtype), W_U) else None
    parts = []
    for rows in normed.split(chunk):
        rows = rows.to(W_U.device, W_U.dtype)
        logits = rows @ W_U if packed is None else packed_times(rows, packed)
        if bias is not None:
            logits = logits + bias.detach().float()
        if softcap is not None:
            logits = torch.tanh(logits / softcap) * softcap
        parts.append(top_tokens(logits, k, target, bottom))
    out = {key: (torch.cat([p[key] for p in parts]) if parts[0][key] is not None else None) for key in parts[0]}
    return {key: (v.cpu().clone() if torch.is_tensor(v) else v) for key, v in out.items()}  # not views: see above


def weight_slices(model, wanted: list) -> dict:
    """``wanted``: ``[(key, module path, parameter name, indices or None, axis)]`` -> ``{key: tensor}`` on the
    CPU in the parameter's dtype: the whole parameter, or the given indices along ``axis``."""
    out = {}
    for key, path, name, index, axis in wanted:
        param = getattr(envoy_at(model, path), name).detach()
        if index is not None:
            param = param.index_select(axis, torch.as_tensor(index, device=param.device))
        out[key] = param.cpu().clone()
    return out


def head_results(model, paths: list, z: torch.Tensor, conv1d: bool) -> torch.Tensor:
    """Each head's output at one position through its slice of the output projection, for several layers:
    ``z [layers, heads, d_head]`` and the projections at ``paths`` -> ``[layers, heads, d_model]`` (model dtype)."""
    out = []
    for path, zl in zip(paths, z):
        W = envoy_at(model, path).weight.detach()
        n_heads, d_head = zl.shape
        zl = zl.to(W.device, W.dtype)
        if conv1d:  # [H * dh, d_model]
            out.append(torch.einsum("hd,hdm->hm", zl, W.view(n_heads, d_head, -1)).cpu())
        else:  # nn.Linear: [d_model, H * dh]
            out.append(torch.einsum("hd,mhd->hm", zl, W.view(-1, n_heads, d_head)).cpu())
    return torch.stack(out)  # in the model's dtype: [layers, heads, d_model] is the trace's largest derived value


def through_heads(model, paths: list, heads: list, xs: list, conv1d: bool, n_heads: int, d_head: int) -> list:
    """Memory values' projections: for each layer's output projection at ``paths``, ``xs[i] [P, d_head]`` through
    the slices of heads ``heads[i] [P]`` -> ``[P, d_model]`` (fp32, on the CPU)."""
    out = []
    for path, h, x in zip(paths, heads, xs):
        W = envoy_at(model, path).weight.detach()
        W = W.view(n_heads, d_head, -1) if conv1d else W.view(-1, n_heads, d_head).permute(1, 2, 0)
        h = torch.as_tensor(h, device=W.device)
        out.append(torch.einsum("pd,pdm->pm", x.to(W.device, W.dtype), W[h]).float().cpu().clone())
    return out
