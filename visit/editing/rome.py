"""ROME (Meng et al. 2022): insert a new (key, value) pair into one MLP output projection with a rank-one update.

The projection ``W`` (GPT-2 ``mlp.c_proj``, Llama ``mlp.down_proj``; in the ``[in, out]`` view,
``out = k @ W + b``) maps keys ``k`` (``blocks.l.mlp.hook_post``) to the MLP output. For a request
(template, subject, new object):

1. **Prefixes.** 20 short texts sampled from the model (top-5 sampling from MEMIT's starts: 10 of 5 tokens and
   10 of 10 tokens, seeded, made once per model) give 21 contexts: the bare prompt and ``"{prefix}. {prompt}"``.
2. **Key.** ``k_i`` = the key at the subject's last token in context ``i``; ``k_bar`` = their mean.
3. **Value.** A vector ``delta [d_model]`` is added to the MLP output at the subject's last token in all 21
   contexts (a hook-layer ``add`` write on ``blocks.l.hook_mlp_out``) and optimised (Adam, lr 0.5, at most 20
   passes, stop when NLL + KL < 0.05) for: the NLL of the new object's tokens after each context (teacher forced,
   mean over tokens, then over contexts) + 0.0625 x KL(original || edited) next-token distribution at the
   subject's last token of ``"{subject} is a"`` (keeps the subject's other properties) + ``0.5 x ||delta|| /
   ||o||^2`` (ROME's weight decay; ``o`` the original output at the bare prompt). After each step ``||delta||``
   is clamped to ``4 x ||o||``. (ROME stops when the whole loss is < 0.05; the weight-decay term is left out of
   that test here because with small models' small MLP outputs it alone stays above 0.05 -- on the default
   model ``||o|| ~ 16``, ``||delta|| ~ 65``: 0.12 -- so ROME's test would never stop; on GPT-2 XL it is
   negligible.)
4. **Update.** ``u = C^-1 k_bar`` (:mod:`visit.editing.stats`); with the key ``k*`` of the update and
   ``v* = k* @ W + b + delta``: ``W' = W + u (v* - k* @ W - b)^T / (u . k*)``, so ``W' k* = v*`` exactly and any
   key ``k`` moves by ``(u . k) / (u . k*) x delta``.

Key variants (``key=``): ``"averaged"`` (default, r-ROME, Gupta et al. 2024): ``k* = k_bar``, the same key as in
``u``. ``"original"`` (ROME's code): ``k* = k`` of the bare prompt while ``u`` uses ``k_bar``; when ``u . k_bare``
is small the update explodes (ROME issue 32), which is why r-ROME exists. In both variants ``v* - k* @ W - b`` is
the optimised ``delta``; r-ROME sets ``v*`` from the averaged key's own output.

Speed: a fact's 22 rows are left-padded into one batch (:mod:`visit.hooks.batch`); the context prefixes' keys
and values are computed once per weights version, the rest of the columns before the earliest subject-last token
once per edit, and each optimisation pass re-runs only the last few columns, from block ``layer + 1`` on (nothing
before the edit layer's MLP output depends on ``delta``), with logits for the columns the loss needs. The KL row
stops at its subject's last token (all the KL reads). All maths outside the forward pass is fp32 (fp64 for the
solve), whatever the model's dtype.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, replace
from typing import Callable

import torch

from visit.editing.edit import Edit, mlp_out_param, register, to_param_layout
from visit.editing.request import EditRequest, fill, object_ids, subject_last_token
from visit.editing.sampling import PREFIX_STARTS, sample, start_ids
from visit.editing.stats import DEFAULT_TOKENS, KeyStats, key_name, key_stats
from visit.errors import VisitError
from visit.hooks import add
from visit.hooks.names import hook_name
from visit.hooks.batch import aligned, check_window, pad_id, prefix_kv, suffix_pass, unembed
from visit.hooks.resume import captured_calls, run_blocks
from visit.models.weights import as_in_out, bias_or_zeros

Progress = Callable[[int, int, str], None]
KEYS = ("averaged", "original")

# The edit layer each model ships with: the peak of the MLP causal trace at the last subject token
# (``docs/editing.md`` shows the curve this comes from). Other models: :func:`default_layer`.
DEFAULT_LAYERS = {"SmolLM2-135M-Instruct": 3}


@dataclass(frozen=True)
class RomeConfig:
    """ROME's hyper-parameters (GPT-2 XL's published ones, r-ROME's key handling)."""

    key: str = "averaged"
    prefixes: tuple[tuple[int, int], ...] = ((5, 10), (10, 10))  # (tokens, how many)
    steps: int = 20
    lr: float = 0.5
    kl_factor: float = 0.0625
    weight_decay: float = 0.5
    clamp: float = 4.0
    stop_loss: float = 5e-2
    stats_tokens: int = DEFAULT_TOKENS
    corpus: str | None = None
    seed: int = 0


def default_layer(vm) -> int:
    """The shipped edit layer for this model; for other models the layer a quarter of the way up (where the MLP
    causal-trace peak of the last subject token sits for the models ROME and seed 001 traced), said in the
    edit's info."""
    return DEFAULT_LAYERS.get(vm.name, max(0, vm.dims.n_layers // 4 - 1))


_PREFIXES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def context_prefixes(vm, lengths: tuple[tuple[int, int], ...] = RomeConfig.prefixes, seed: int = 0) -> list[str]:
    """ROME's context prefixes, sampled once per model (and settings) and kept for its lifetime."""
    per_model = _PREFIXES.setdefault(vm.model, {})
    key = (tuple(lengths), seed)
    if key not in per_model:
        starts = start_ids(vm.tokenizer, PREFIX_STARTS)
        texts = []
        for i, (length, count) in enumerate(lengths):
            rows = [starts[j % len(starts)] for j in range(count)]
            ids = sample(vm, rows, max(1, length - len(rows[0])), seed=seed + i, top_k=5)
            for row in ids.tolist():
                text = vm.tokenizer.decode(row, skip_special_tokens=True).replace("\n", " ").strip()
                texts.append(text or "The")
        per_model[key] = texts
    return list(per_model[key])


@dataclass
class _Rows:
    """The optimisation batch: row ``i < n_rewrite`` is context ``i`` (row 0 the bare prompt) followed by the
    prompt and the new object's tokens but the last; the last row is ``"{subject} is a"`` (the KL prompt) up to
    the subject's last token, where the KL is read."""

    batch: object
    context_end: int  # columns [0, context_end) hold the context prefixes (the same for every edit)
    t: int  # first column re-run in each optimisation pass (the earliest subject-last token)
    subject_cols: list[int]  # per row
    n_rewrite: int
    target: torch.Tensor  # [n_target] ids
    contexts: tuple  # the context prefixes' ids (the key of their cached keys/values)


def _encode_body(tok, text: str, span: tuple[int, int], after_context: bool) -> tuple[list[int], int]:
    """Ids of a prompt and its subject-last index; after a context prefix the prompt is encoded with a leading
    space and no special tokens (as ``"{prefix}. {prompt}"`` would be), dropping a lone word-start piece."""
    if not after_context:
        return subject_last_token(tok, text, span)
    ids, last = subject_last_token(tok, " " + text, (span[0] + 1, span[1] + 1), special=False)
    if len(ids) > 1 and last > 0 and not tok.decode(ids[:1]).strip():
        ids, last = ids[1:], last - 1
    return ids, last


def _build_rows(vm, request: EditRequest, prefixes: list[str]) -> _Rows:
    tok = vm.tokenizer
    target = object_ids(tok, request.new)
    span = request.subject_span
    rows, lasts = [], []
    contexts = [[]] + [tok(p + ".").input_ids for p in prefixes]
    for ctx in contexts:
        body, last = _encode_body(tok, request.prompt, span, after_context=bool(ctx))
        rows.append([ctx, body + target[:-1]])
        lasts.append(last)
    kl_body, kl_last = subject_last_token(tok, fill("{} is a", request.subject), (0, len(request.subject)))
    rows.append([[], kl_body[: kl_last + 1]])  # the KL is read at the subject's last token: nothing after it counts
    lasts.append(kl_last)
    if max(len(a) + len(b) for a, b in rows) > vm.dims.n_ctx:
        raise VisitError(f"the prompt is too long for this model's context ({vm.dims.n_ctx} tokens)")
    batch, ends = aligned(rows, pad_id(tok), vm.device)
    check_window(vm, batch.width)
    cols = [ends[1] - len(body) + last for (_ctx, body), last in zip(rows, lasts)]
    return _Rows(batch, ends[0], min(cols), cols, len(contexts), torch.tensor(target, device=vm.device),
                 tuple(tuple(c) for c in contexts))


def _context_kv(vm, rows: _Rows):
    """The context prefixes' keys/values, computed once per model weights (cached by weights version)."""
    key = ("rome context kv", rows.contexts, rows.batch.ids.shape[0])
    return vm.weights.memo(key, lambda: prefix_kv(vm, rows.batch, rows.context_end)[0])


def prepare(vm, request: EditRequest, layer: int | None = None, config: RomeConfig | None = None,
            stats: KeyStats | None = None, progress: Progress | None = None, **options) -> dict:
    """What must be computed on the unedited model before edits are applied: the key statistics."""
    config = config or RomeConfig()
    layer = default_layer(vm) if layer is None else int(layer)
    if stats is None:
        stats = key_stats(vm, layer, config.corpus, config.stats_tokens, progress=progress)
    return {"layer": layer, "config": config, "stats": stats, "progress": progress, **options}


@register("rome")
def rome_edit(vm, request: EditRequest, layer: int | None = None, config: RomeConfig | None = None,
              stats: KeyStats | None = None, progress: Progress | None = None, key: str | None = None) -> Edit:
    """Compute a ROME edit of ``request`` at ``layer`` (default :func:`default_layer`). ``stats``: C for that layer
    (computed or loaded from the cache when not given). ``key``: ``"averaged"`` (r-ROME) or ``"original"``."""
    config = config or RomeConfig()
    if key is not None:
        config = replace(config, key=key)
    if config.key not in KEYS:
        raise VisitError(f"unknown ROME key handling '{config.key}'; choose one of {', '.join(KEYS)}")
    started = time.perf_counter()
    layer_note = "given" if layer is not None else ("shipped default" if vm.name in DEFAULT_LAYERS else
                                                     "n_layers/4 (no shipped default for this model)")
    layer = default_layer(vm) if layer is None else int(layer)
    param = mlp_out_param(vm, layer)
    rows = _build_rows(vm, request, context_prefixes(vm, config.prefixes, config.seed))  # checks input first
    if stats is None or stats.layer != layer:
        stats = key_stats(vm, layer, config.corpus, config.stats_tokens, progress=progress)
    delta, keys, out0, history = _optimise_value(vm, layer, rows, config, progress)

    module = vm.weights.block_module(layer, vm.adapter.mlp_out)
    W = as_in_out(module, vm.adapter.weight_layout).detach().float()  # [d_mlp, d_model]
    b = bias_or_zeros(module, vm.dims.d_model, W.device).detach().float()
    k_bar = keys.mean(0)
    k_star = k_bar if config.key == "averaged" else keys[0]
    v_star = k_star @ W + b + delta
    u = stats.solve(k_bar).float().to(W.device)  # C^-1 k_bar (C's factors kept with the statistics)
    denom = float(u @ k_star)
    residual = v_star - (k_star @ W + b)
    update = torch.outer(u, residual) / denom  # [d_mlp, d_model]
    info = {"key": config.key, "layer_source": layer_note, "steps": len(history), "loss": history,
            "delta_norm": float(delta.norm()), "output_norm": float(out0.norm()),
            "update_norm": float(update.norm()), "weight_norm": float(W.norm()), "u_dot_k": denom,
            "contexts": rows.n_rewrite, "stats": stats.corpus, "stats_tokens": stats.n_tokens,
            "seconds": round(time.perf_counter() - started, 3)}
    deltas = {param: to_param_layout(update, vm.adapter.weight_layout).contiguous()}
    return Edit("rome", request, layer, deltas, info, tensors={"key": k_star, "value": v_star})


rome_edit.prepare = prepare


def _optimise_value(vm, layer: int, rows: _Rows, config: RomeConfig, progress: Progress | None):
    """ROME's value optimisation; returns ``(delta [d_model], keys [n_rewrite, d_mlp], o [d_model], losses)``.

    Pass 0 runs the whole model over columns ``[t, T)`` with ``delta`` (zero) added by a hook-layer write; it
    records the keys, the MLP output, the residual after the edit layer and the arguments the model gave each block
    (:func:`visit.hooks.resume.captured_calls`). Nothing up to the edit layer's MLP output depends on ``delta``, so
    every later pass starts at block ``layer + 1`` (:func:`visit.hooks.resume.run_blocks`) from that residual plus
    ``delta`` at the subject's last token of each row: the same sums but for the order of one addition
    (``(resid_mid + o) + delta`` instead of ``resid_mid + (o + delta)``).
    """
    B, t, n_rw = rows.batch.ids.shape[0], rows.t, rows.n_rewrite
    positions = [c - t for c in rows.subject_cols]
    point, resid = hook_name(layer, "hook_mlp_out"), hook_name(layer, "hook_resid_post")
    n_t, width = len(rows.target), rows.batch.width
    # the columns whose next-token distributions the loss needs, relative to t
    nll_cols = torch.arange(width - n_t, width, device=vm.device) - t
    kl_col = rows.subject_cols[-1] - t
    pick = torch.arange(B, device=vm.device), torch.tensor(positions, device=vm.device)
    with vm.weights_for():
        kv, _ = prefix_kv(vm, rows.batch, t, start=rows.context_end, past=_context_kv(vm, rows))
        delta = torch.zeros(vm.dims.d_model, device=vm.device, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=config.lr)
        write = [add(point, delta, rows=list(range(B)), positions=positions, paired=True)]
        with captured_calls(vm) as calls:
            _, rec = suffix_pass(vm, rows.batch, t, kv, read=["ln_final.hook_out", key_name(layer), point, resid],
                                 write=write, keep=0, grad=True)
        keys = rec[key_name(layer)][pick][:n_rw].detach().float()
        out0 = rec[point][pick][0].detach().float()
        base = rec[resid].detach()  # [B, T - t, d_model], delta = 0
        at = torch.zeros(base.shape[:2] + (1,), dtype=base.dtype, device=vm.device)
        at[pick] = 1  # where delta joins the residual
        final = rec["ln_final.hook_out"]
        history: list[float] = []
        init_kl = None
        for step in range(max(1, config.steps)):
            if step > 0:
                with torch.enable_grad():
                    final, _ = run_blocks(vm, layer + 1, base + at * delta.to(base.dtype), calls, kv)
            # one unembedding for the NLL columns and the KL column (its weight is read once a pass, not twice)
            picked = torch.cat([final[:n_rw, nll_cols].reshape(n_rw * n_t, -1), final[-1:, kl_col]])
            logp = unembed(vm, picked).float().log_softmax(-1)  # [n_rw * n_t + 1, vocab]
            kl_logp = logp[-1]
            logp = logp[:-1].view(n_rw, n_t, -1)
            nll = -logp.gather(-1, rows.target.view(1, -1, 1).expand(n_rw, -1, 1)).squeeze(-1).mean(1).mean()
            if init_kl is None:
                init_kl = kl_logp.detach()
            kl = config.kl_factor * (init_kl.exp() * (init_kl - kl_logp)).sum()
            decay = config.weight_decay * delta.norm() / (out0.norm() ** 2)
            loss = nll + kl + decay
            fit = float((nll + kl).detach())
            history.append(round(float(loss.detach()), 5))
            if not torch.isfinite(loss):
                raise VisitError("ROME's value optimisation diverged (non-finite loss); nothing was changed")
            if progress is not None:
                progress(step + 1, config.steps, f"value optimisation: loss {float(loss.detach()):.3f}")
            if fit < config.stop_loss or step == config.steps - 1:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                limit = config.clamp * out0.norm()
                if delta.norm() > limit:
                    delta.mul_(limit / delta.norm())
    return delta.detach().float(), keys, out0, history
