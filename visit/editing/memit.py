"""MEMIT (Meng et al. 2023): many facts written at once, the change spread over a range of MLP layers.

ROME writes one (key, value) pair into one layer. MEMIT takes a batch of requests and a range of layers
``R = (l_1 .. l_k)`` (the default model: 1-5, centred on ROME's layer 3 as GPT-J's 3-8 is on its 5):

1. **Targets.** For each fact a vector ``delta_i [d_model]`` is added to the residual after the *last* layer of
   ``R`` (here: to that layer's MLP output, which is the same for every later layer) at the subject's last token,
   in the bare prompt and 5 prefixed copies (MEMIT's contexts: 5 texts of 10 tokens sampled from the model,
   :func:`visit.editing.rome.context_prefixes`), and optimised as ROME's value is: NLL of the new object (teacher
   forced) + 0.0625 x KL at the subject of ``"{subject} is a"`` + ``0.5 x ||delta|| / ||h||^2``, Adam lr 0.5, at
   most 20 passes, ``||delta|| <= 0.75 ||h||`` after each step (MEMIT's clamp; ``h`` the residual at the bare
   prompt). All facts are optimised side by side in one padded batch: each row carries its own fact's
   ``delta``, the losses are summed, and Adam works element by element, so this is the same as one optimisation
   per fact; a fact whose NLL + KL is below 0.05 is frozen (its ``delta`` no longer moves) while the others go on.
   The target is ``z_i = h_i + delta_i``.
2. **Spreading.** For ``l`` in ``R`` in order, on the model with the earlier layers of ``R`` already updated: the
   keys ``K [n, d_mlp]`` of layer ``l`` at each fact's subject (MEMIT's average: the mean of the bare prompt's key
   and the prefixed contexts' mean key), the residual ``h_i`` the model now gives at the last layer of ``R``,
   ``R_l = (z - h) / (layers left, this one included)``, and the update (``[in, out]`` view, ``out = k @ W``)::

       Delta_l = argmin ||K Delta - R_l||^2 + lambda tr(Delta^T C Delta) = (lambda C + K^T K)^-1 K^T R_l

   with ``C = E[k k^T]`` of the layer (:mod:`visit.editing.stats`, ROME's statistics, cached) and ``lambda`` the
   "mom2 update weight" (GPT-J's reference 15,000; here :data:`MOM2_WEIGHT`, measured on the default model: see
   ``docs/editing.md``). One fact, one layer and ``lambda -> 0`` give ROME's update (Sherman-Morrison:
   ``Delta = C^-1 k r^T / (lambda + k . C^-1 k)``).

The solve is fp64; everything outside the forward passes is fp32. One :class:`visit.editing.edit.Edit` holds
every layer's delta and every request (``edit.requests``); ``edit.tensors`` keeps ``keys`` and ``residuals``
per layer (what the closed form was solved for) and the targets ``z``. :mod:`visit.editing.alphaedit` reuses all
of it with another solve.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch

from visit.editing.edit import Edit, mlp_out_param, register, to_param_layout
from visit.editing.request import EditRequest, fill, object_ids, subject_last_token
from visit.editing.rome import _encode_body, context_prefixes, default_layer
from visit.editing.stats import DEFAULT_TOKENS, KeyStats, key_name, key_stats
from visit.errors import VisitError
from visit.hooks import add, apply_fn, run, weights_changed
from visit.hooks.batch import aligned, check_window, pad_id, prefix_kv, suffix_pass, unembed
from visit.hooks.resume import captured_calls, run_blocks

Progress = Callable[[int, int, str], None]
Solver = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]  # (layer, K [n, d_in], R [n, d_out]) -> Delta

# The layer range each model ships with (centred on ROME's layer: docs/editing.md); others: default_layers().
DEFAULT_LAYERS = {"SmolLM2-135M-Instruct": (1, 2, 3, 4, 5)}
MOM2_WEIGHT = 1e3
MAX_REQUESTS = 1000


@dataclass(frozen=True)
class MemitConfig:
    """MEMIT's hyper-parameters (the reference's GPT-J ones; ``mom2_weight``: see the module doc)."""

    prefixes: tuple[tuple[int, int], ...] = ((10, 5),)  # (tokens, how many): MEMIT's contexts
    steps: int = 20
    lr: float = 0.5
    kl_factor: float = 0.0625
    weight_decay: float = 0.5
    clamp: float = 0.75
    stop_loss: float = 5e-2
    mom2_weight: float = MOM2_WEIGHT
    stats_tokens: int = DEFAULT_TOKENS
    corpus: str | None = None
    seed: int = 0


def default_layers(vm) -> tuple[int, ...]:
    """The shipped range for this model; others: five layers centred on ROME's default layer (clipped)."""
    if vm.name in DEFAULT_LAYERS:
        return DEFAULT_LAYERS[vm.name]
    mid = default_layer(vm)
    return tuple(range(max(0, mid - 2), min(vm.dims.n_layers, mid + 3)))


def resolve_layers(vm, layer: int | None = None, layers=None) -> tuple[int, ...]:
    """The layer range: ``layers`` (ints, or text ``"1-5"`` / ``"1,3,5"``), else ``(layer,)``, else the default."""
    if layers is None or layers == "":
        picked = default_layers(vm) if layer is None else (int(layer),)
    elif isinstance(layers, str):
        try:
            if "-" in layers:
                a, b = (int(x) for x in layers.split("-", 1))
                picked = tuple(range(a, b + 1))
            else:
                picked = tuple(int(x) for x in layers.split(",") if x.strip())
        except ValueError:
            raise VisitError(f"layers '{layers}': write a range like 1-5 or a list like 1,3,5") from None
    else:
        picked = tuple(int(x) for x in layers)
    picked = tuple(sorted(set(picked)))
    if not picked:
        raise VisitError("MEMIT needs at least one layer")
    for p in picked:
        mlp_out_param(vm, p)  # one message for a layer out of range
    return picked


def as_requests(request) -> list[EditRequest]:
    """One request or a sequence of them, checked."""
    requests = [request] if isinstance(request, EditRequest) else list(request)
    if not requests:
        raise VisitError("no requests to edit")
    if len(requests) > MAX_REQUESTS:
        raise VisitError(f"at most {MAX_REQUESTS} requests in one batch (got {len(requests)})")
    for r in requests:
        if not isinstance(r, EditRequest):
            raise VisitError(f"not an edit request: {r!r}")
    return requests


def memit_solve(K: torch.Tensor, R: torch.Tensor, C: torch.Tensor, weight: float) -> torch.Tensor:
    """MEMIT's closed form in the ``[in, out]`` view: ``(weight C + K^T K)^-1 K^T R``, fp64 -> fp32.

    ``K [n, d_in]`` keys, ``R [n, d_out]`` residuals, ``C [d_in, d_in]``: the ``Delta [d_in, d_out]`` minimising
    ``||K Delta - R||^2 + weight tr(Delta^T C Delta)`` (the new weights map each key to its old output plus its
    residual, in least squares, while moving the corpus's keys as little as possible)."""
    K64 = K.double()
    A = float(weight) * C.double().to(K64.device) + K64.T @ K64
    return torch.linalg.solve(A, K64.T @ R.double().to(K64.device)).float()


def prepare(vm, request, layer: int | None = None, layers=None, config: MemitConfig | None = None,
            stats: dict | None = None, progress: Progress | None = None, **options) -> dict:
    """On the unedited model: the key statistics of every layer of the range."""
    config = config or MemitConfig()
    picked = resolve_layers(vm, layer, layers)
    stats = dict(stats or {})
    for lay in picked:
        if lay not in stats:
            stats[lay] = key_stats(vm, lay, config.corpus, config.stats_tokens, progress=progress)
    return {"layers": picked, "config": config, "stats": stats, "progress": progress, **options}


@register("memit")
def memit_edit(vm, request, layer: int | None = None, layers=None, config: MemitConfig | None = None,
               stats: dict | None = None, progress: Progress | None = None, mom2_weight: float | None = None
               ) -> Edit:
    """A MEMIT edit of one request or a batch of them (``request``: an :class:`EditRequest` or a sequence).
    ``layers``: the range (default :func:`default_layers`; ``layer`` alone: that one layer); ``stats``:
    ``{layer: KeyStats}`` (computed or loaded from the cache when missing)."""
    config = config or MemitConfig()
    if mom2_weight is not None:
        config = replace(config, mom2_weight=float(mom2_weight))
    weight = config.mom2_weight
    stats = _layer_stats(vm, resolve_layers(vm, layer, layers), stats, config, progress)

    def solve(lay: int, K: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        return memit_solve(K, R, stats[lay].C, weight)

    edit = edit_facts(vm, "memit", as_requests(request), resolve_layers(vm, layer, layers), config, solve,
                      progress)
    edit.info.update(mom2_weight=weight, stats=stats[edit.info["layers"][0]].corpus)
    return edit


memit_edit.prepare = prepare
memit_edit.batched = True


def _layer_stats(vm, layers, stats, config, progress) -> dict[int, KeyStats]:
    stats = dict(stats or {})
    for lay in layers:
        if lay not in stats or stats[lay].layer != lay:
            stats[lay] = key_stats(vm, lay, config.corpus, config.stats_tokens, progress=progress)
    return stats


def edit_facts(vm, method: str, requests: list[EditRequest], layers: tuple[int, ...], config: MemitConfig,
               solve: Solver, progress: Progress | None = None) -> Edit:
    """MEMIT's scheme (module doc) with ``solve(layer, K, R) -> Delta [d_in, d_out]`` for the update of each layer
    (MEMIT's closed form, or AlphaEdit's projected one). The model is read as it is; nothing is left applied."""
    started = time.perf_counter()
    facts = _build_facts(vm, requests, context_prefixes(vm, config.prefixes, config.seed))
    z_layer = layers[-1]
    delta, h, history, steps = _optimise_targets(vm, z_layer, facts, config, progress)
    z = h + delta
    layout = vm.adapter.weight_layout
    deltas: dict[str, torch.Tensor] = {}
    keys, residuals, norms = {}, {}, {}
    for i, lay in enumerate(layers):
        if progress is not None:
            progress(i + 1, len(layers), f"update of layer {lay}")
        with weights_changed(vm, deltas) if deltas else nullcontext():
            K, h_now = _keys_and_outputs(vm, facts, lay, z_layer)
        R = (z - h_now) / (len(layers) - i)
        update = solve(lay, K, R)  # [d_mlp, d_model]
        if not torch.isfinite(update).all():
            raise VisitError(f"the {method} update of layer {lay} is not finite; nothing was changed")
        deltas[mlp_out_param(vm, lay)] = to_param_layout(update.to(vm.device), layout).contiguous()
        keys[lay], residuals[lay], norms[lay] = K, R, round(float(update.norm()), 4)
    info = {"layers": list(layers), "n_requests": len(requests), "steps": steps, "loss": history,
            "delta_norms": [round(float(x), 3) for x in delta.norm(dim=1)],
            "residual_norms": [round(float(x), 3) for x in h.norm(dim=1)], "update_norms": norms,
            "contexts": facts.n_ctx, "seconds": round(time.perf_counter() - started, 3)}
    return Edit(method, requests[0], None, deltas, info,
                tensors={"keys": keys, "residuals": residuals, "targets": z}, requests=tuple(requests))


@dataclass
class _Facts:
    """The optimisation batch: rows ``f * n_ctx + c`` are fact ``f`` in context ``c`` (``c = 0``: the bare prompt)
    followed by its new object's tokens but the last; rows ``n * n_ctx + f`` are fact ``f``'s KL prompt
    ``"{subject} is a"`` up to the subject's last token."""

    batch: object
    context_end: int
    t: int  # the first column re-run in each optimisation pass
    subject_cols: list[int]
    fact: torch.Tensor  # [rows] the fact of each row
    n: int
    n_ctx: int
    targets: torch.Tensor  # [n, M] object ids, right-aligned, -1 before a shorter object
    contexts: tuple


def _build_facts(vm, requests: list[EditRequest], prefixes: list[str]) -> _Facts:
    tok = vm.tokenizer
    contexts = [[]] + [tok(p + ".").input_ids for p in prefixes]
    rows, lasts, targets = [], [], []
    for req in requests:
        target = object_ids(tok, req.new)
        targets.append(target)
        for ctx in contexts:
            body, last = _encode_body(tok, req.prompt, req.subject_span, after_context=bool(ctx))
            rows.append([ctx, body + target[:-1]])
            lasts.append(last)
    for req in requests:
        body, last = subject_last_token(tok, fill("{} is a", req.subject), (0, len(req.subject)))
        rows.append([[], body[: last + 1]])
        lasts.append(last)
    if max(len(a) + len(b) for a, b in rows) > vm.dims.n_ctx:
        raise VisitError(f"a prompt is too long for this model's context ({vm.dims.n_ctx} tokens)")
    batch, ends = aligned(rows, pad_id(tok), vm.device)
    check_window(vm, batch.width)
    cols = [ends[1] - len(body) + last for (_ctx, body), last in zip(rows, lasts)]
    width = max(len(t) for t in targets)
    padded = torch.full((len(requests), width), -1, dtype=torch.long)
    for i, t in enumerate(targets):
        padded[i, width - len(t):] = torch.tensor(t)
    n, n_ctx = len(requests), len(contexts)
    fact = torch.cat([torch.arange(n).repeat_interleave(n_ctx), torch.arange(n)]).to(vm.device)
    return _Facts(batch, ends[0], min(min(cols), batch.width - width), cols, fact, n, n_ctx, padded.to(vm.device),
                  tuple(tuple(c) for c in contexts))


def _context_kv(vm, facts: _Facts):
    """The context prefixes' keys/values, once per weights version (as ROME's)."""
    key = ("memit context kv", facts.contexts, facts.batch.ids.shape[0], facts.context_end)
    return vm.weights.memo(key, lambda: prefix_kv(vm, facts.batch, facts.context_end)[0])


def _optimise_targets(vm, layer: int, facts: _Facts, config: MemitConfig, progress: Progress | None):
    """Every fact's ``delta`` at the residual after ``layer`` (module doc, step 1); returns ``(delta [n, d_model],
    h [n, d_model] the residual at the bare prompts, the largest NLL + KL per pass, passes per fact)``.

    As ROME's (:func:`visit.editing.rome._optimise_value`): pass 0 runs the whole model over the re-run columns
    recording the block arguments; later passes re-run only the blocks after ``layer``."""
    batch, t, n, n_ctx = facts.batch, facts.t, facts.n, facts.n_ctx
    B, n_rw = batch.ids.shape[0], facts.n * facts.n_ctx
    positions = [c - t for c in facts.subject_cols]
    point, resid = f"blocks.{layer}.hook_mlp_out", f"blocks.{layer}.hook_resid_post"
    M, width = facts.targets.shape[1], batch.width
    nll_cols = torch.arange(width - M, width, device=vm.device) - t
    kl_cols = torch.tensor(facts.subject_cols[n_rw:], device=vm.device) - t
    pick = torch.arange(B, device=vm.device), torch.tensor(positions, device=vm.device)
    row_targets = facts.targets[facts.fact[:n_rw]]  # [n_rw, M]
    valid = row_targets >= 0
    row_len = valid.sum(1)
    with vm.lock:
        kv, _ = prefix_kv(vm, batch, t, start=facts.context_end, past=_context_kv(vm, facts))
        delta = torch.zeros(n, vm.dims.d_model, device=vm.device, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=config.lr)
        write = [add(point, delta[facts.fact], rows=list(range(B)), positions=positions, paired=True)]
        with captured_calls(vm) as calls:
            _, rec = suffix_pass(vm, batch, t, kv, read=["ln_final.hook_out", resid], write=write, keep=0,
                                 grad=True)
        h = rec[resid][pick][: n_rw : n_ctx].detach().float()  # the bare prompts' rows
        limit = config.clamp * h.norm(dim=1)  # [n]
        base = rec[resid].detach()
        at = torch.zeros(base.shape[:2] + (1,), dtype=base.dtype, device=vm.device)
        at[pick] = 1
        final = rec["ln_final.hook_out"]
        frozen = torch.zeros(n, dtype=torch.bool, device=vm.device)
        steps = [0] * n
        history: list[float] = []
        init_kl = None
        for step in range(max(1, config.steps)):
            if step > 0:
                with torch.enable_grad():
                    moved = base + at * delta[facts.fact].to(base.dtype).unsqueeze(1)
                    final, _ = run_blocks(vm, layer + 1, moved, calls, kv)
            picked = torch.cat([final[:n_rw][:, nll_cols].reshape(n_rw * M, -1),
                                final[n_rw:][torch.arange(n, device=vm.device), kl_cols]])
            logp = unembed(vm, picked).float().log_softmax(-1)
            kl_logp = logp[n_rw * M:]  # [n, vocab]
            logp = logp[: n_rw * M].view(n_rw, M, -1)
            token_nll = -logp.gather(-1, row_targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * valid
            nll = (token_nll.sum(1) / row_len).view(n, n_ctx).mean(1)  # [n]
            if init_kl is None:
                init_kl = kl_logp.detach()
            kl = config.kl_factor * (init_kl.exp() * (init_kl - kl_logp)).sum(-1)
            decay = config.weight_decay * delta.norm(dim=1) / h.norm(dim=1) ** 2
            loss = (nll + kl + decay).sum()
            fit = (nll + kl).detach()
            if not torch.isfinite(loss):
                raise VisitError("the value optimisation diverged (non-finite loss); nothing was changed")
            history.append(round(float(fit.max()), 5))
            for i in range(n):
                if not frozen[i]:
                    steps[i] = step + 1
            frozen |= fit < config.stop_loss
            if progress is not None:
                progress(step + 1, config.steps, f"targets of {n} facts: {int(frozen.sum())} reached, "
                                                 f"largest loss {float(fit.max()):.3f}")
            if bool(frozen.all()) or step == config.steps - 1:
                break
            opt.zero_grad()
            loss.backward()
            kept = delta.detach()[frozen].clone()
            opt.step()
            with torch.no_grad():
                delta[frozen] = kept
                norms = delta.norm(dim=1)
                delta.mul_(torch.where(norms > limit, limit / norms.clamp(min=1e-12), torch.ones_like(norms))
                           .unsqueeze(1))
    return delta.detach().float(), h, history, steps


class _Stop(Exception):
    """Raised from a hook once the last value needed is read: the rest of the pass is not needed."""


def _keys_and_outputs(vm, facts: _Facts, layer: int, z_layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """On the model as it is: the keys of ``layer`` at each fact's subject (``[n, d_mlp]``, MEMIT's average of
    the bare prompt's key and the prefixed contexts' mean) and the residual after ``z_layer`` at the bare
    prompts' subjects (``[n, d_model]``). One pass over the facts' rows, stopped after ``z_layer``."""
    n, n_ctx = facts.n, facts.n_ctx
    n_rw = n * n_ctx
    batch = facts.batch
    rows = torch.arange(n_rw, device=vm.device)
    cols = torch.tensor(facts.subject_cols[:n_rw], device=vm.device)
    got = {}

    def grab(name, stop):
        def fn(x):
            got[name] = x[rows, cols].detach().float()
            if stop:
                raise _Stop
            return x
        return fn

    key, resid = key_name(layer), f"blocks.{z_layer}.hook_resid_post"
    writes = [apply_fn(key, grab("key", False)), apply_fn(resid, grab("resid", True))]
    try:
        run(vm, batch.ids[:n_rw], write=writes, attention_mask=batch.mask[:n_rw],
            position_ids=batch.positions[:n_rw], logits_to_keep=1)
    except _Stop:
        pass
    k = got["key"].view(n, n_ctx, -1)
    K = k[:, 0] if n_ctx == 1 else (k[:, 0] + k[:, 1:].mean(1)) / 2
    return K, got["resid"][::n_ctx]
