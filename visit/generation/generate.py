"""Generation on the hook layer: greedy or sampled, token by token, with a key/value cache.

::

    from visit.generation import generate
    g = generate(vm, "The Eiffel Tower is in", max_new_tokens=8)               # greedy
    g = generate(vm, prompt, temperature=0.8, top_p=0.9, seed=1)               # sampled, reproducible
    g = generate(vm, prompt, writes=steering.writes)                           # steered (visit.generation.steer)
    g.text, g.tokens[0].p, g.tokens[0].top                                     # what it said, how sure it was

Every pass goes through :func:`visit.hooks.run`, so plain, steered and edited models share one code path:

- the first pass feeds the prompt, each later pass the one token chosen last, with the keys and values of
  everything before in a cache (:class:`transformers.DynamicCache`, built from the model's config, so sliding
  window layers keep their window);
- ``writes(first, n)`` (optional) returns the :class:`~visit.hooks.Intervention` s of the pass that covers the
  absolute positions ``[first, first + n)``; their ``positions`` count from ``first`` (a pass sees only its own
  positions). A plain list of interventions applies to every position of every pass;
- :func:`visit.hooks.run` takes the model's lock per pass: other sessions' requests interleave between tokens,
  and a session's edits (:mod:`visit.models.overlay`, the overlay of the calling thread) are applied at every
  pass, so the cache is always computed with the same weights. Nothing changes a weight.

Each generated token carries ``p``, its probability under the model's own next-token distribution (temperature
1, before top-p), and ``top``: the five most likely tokens of that distribution. Greedy generation picks the
arg-max, which is what ``model.generate(do_sample=False)`` picks (tests compare them token for token on every
family). Sampling draws from ``softmax(logits / temperature)`` restricted to the smallest set of most likely
tokens whose probabilities add up to ``top_p``, with a :class:`torch.Generator` seeded by ``seed`` (same model,
prompt and seed -> same text).

The number of new tokens is capped by :data:`visit.limits.NEW_TOKENS` (``VISIT_MAX_NEW_TOKENS``, default 64) in
the library, the CLI and the app alike. ``on_token(token, index)`` is called after each token (streaming); it
may raise to stop (a job's ``partial`` raises once the user cancelled); ``cancelled()`` is polled before each
pass and ends the generation early (``stopped == "cancelled"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from visit import limits
from visit.errors import VisitError
from visit.hooks import Intervention, run
from visit.tokens import token_string
from visit.tracer import encode_prompt

TOP = 5
Writes = Callable[[int, int], Sequence[Intervention]]  # (first absolute position, positions) -> the pass's writes


@dataclass(frozen=True)
class GeneratedToken:
    """One generated token: its text (leading space kept), vocabulary id, probability and the top alternatives
    (``[{"token", "id", "p"}]``, most likely first)."""

    token: str
    id: int
    p: float
    top: tuple[dict, ...] = ()

    def to_json(self) -> dict:
        return {"token": self.token, "id": self.id, "p": self.p, "top": [dict(t) for t in self.top]}


@dataclass
class Generation:
    """A prompt and what the model added to it. ``stopped``: ``"length"`` (``max_new_tokens`` reached),
    ``"eos"`` (the model's end token, included in ``tokens``) or ``"cancelled"``."""

    prompt: str
    prompt_ids: list[int]
    tokens: list[GeneratedToken] = field(default_factory=list)
    text: str = ""
    stopped: str = "length"

    @property
    def ids(self) -> list[int]:
        """The generated token ids (without the prompt)."""
        return [t.id for t in self.tokens]

    def to_json(self) -> dict:
        """``{"prompt", "tokens": [{"token", "id", "p", "top"}], "text"}`` (the CLI's ``--json``)."""
        return {"prompt": self.prompt, "tokens": [t.to_json() for t in self.tokens], "text": self.text,
                "stopped": self.stopped}


def check_new_tokens(vm, n_prompt: int, max_new_tokens) -> int:
    """``max_new_tokens`` as an int within the cap and the model's context (else a one-line VisitError)."""
    n = limits.NEW_TOKENS.check(max_new_tokens, "new tokens")
    if n_prompt + n > vm.dims.n_ctx:
        raise VisitError(f"the prompt ({n_prompt} tokens) and {n} new tokens exceed this model's context of "
                         f"{vm.dims.n_ctx} tokens")
    return n


def check_sampling(temperature: float | None, top_p: float | None) -> tuple[float, float]:
    """``(temperature, top_p)`` validated: temperature >= 0 (0: greedy), 0 < top_p <= 1."""
    t = 0.0 if temperature is None else float(temperature)
    p = 1.0 if top_p is None else float(top_p)
    if not t == t or t < 0 or t == float("inf"):
        raise VisitError(f"the temperature must be a finite number >= 0 (0: greedy), not {temperature}")
    if not 0 < p <= 1:
        raise VisitError(f"top-p must be in (0, 1], not {top_p}")
    return t, p


def eos_ids(vm) -> set[int]:
    """The ids that end a generation: the model's generation config's end token(s), else the tokenizer's."""
    config = getattr(vm.model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    if eos is None:
        eos = getattr(vm.tokenizer, "eos_token_id", None)
    return set() if eos is None else {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}


def generate(vm, prompt: str, max_new_tokens: int = 32, *, temperature: float | None = 0.0,
             top_p: float | None = 1.0, seed: int = 0, writes: Writes | Sequence[Intervention] = (),
             stop_at_eos: bool = True, on_token: Callable[[GeneratedToken, int], None] | None = None,
             cancelled: Callable[[], bool] | None = None) -> Generation:
    """Continue ``prompt`` by up to ``max_new_tokens`` tokens (module doc). Raises :class:`VisitError` for bad
    input, and when a pass's logits are not finite (a steering scale too large)."""
    ids = encode_prompt(vm, prompt)
    n_new = check_new_tokens(vm, ids.shape[1], max_new_tokens)
    temperature, top_p = check_sampling(temperature, top_p)
    out = Generation(prompt, ids[0].tolist())
    writes_for = writes if callable(writes) else (lambda _first, _n, _w=tuple(writes): _w)
    stops = eos_ids(vm) if stop_at_eos else set()
    gen = torch.Generator().manual_seed(int(seed))
    cache = new_cache(vm)
    cur, first = ids.to(vm.device), 0
    for index in range(n_new):
        if cancelled is not None and cancelled():
            out.stopped = "cancelled"
            break
        with torch.inference_mode():
            logits, _ = run(vm, cur, write=writes_for(first, cur.shape[1]), past_key_values=cache,
                            logits_to_keep=1)
        last = logits[0, -1].float()
        if not torch.isfinite(last).all():
            raise VisitError(f"the model's logits became NaN or infinite at new token {index + 1} "
                             "(a steering value too large?)")
        token = choose(last, temperature, top_p, gen)
        out.tokens.append(describe(vm.tokenizer, last, token))
        if on_token is not None:
            on_token(out.tokens[-1], index)
        first += cur.shape[1]
        cur = torch.tensor([[token]], device=vm.device)
        if token in stops:
            out.stopped = "eos"
            break
    out.text = vm.tokenizer.decode(out.ids)
    return out


def new_cache(vm):
    """An empty key/value cache for ``vm`` (sliding-window layers keep their window, as ``generate`` does)."""
    from transformers import DynamicCache  # start-up cost: transformers' cache classes load on first use

    return DynamicCache(config=vm.model.config)


def choose(logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator) -> int:
    """The next token from ``logits [d_vocab]``: the arg-max when ``temperature == 0``, else a draw (module doc)."""
    if temperature == 0:
        return int(logits.argmax())
    probs = (logits / temperature).softmax(-1).cpu()
    if top_p < 1:
        sorted_p, order = probs.sort(descending=True)
        keep = (sorted_p.cumsum(-1) - sorted_p) < top_p  # the most likely tokens until top_p is reached
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs, 1, generator=gen))


def describe(tokenizer, logits: torch.Tensor, token: int, k: int = TOP) -> GeneratedToken:
    """``token`` with its probability and the ``k`` most likely tokens under ``softmax(logits [d_vocab])``."""
    probs = logits.softmax(-1)
    top = probs.topk(k)
    alternatives = tuple({"token": token_string(tokenizer, i), "id": i, "p": p}
                         for i, p in zip(top.indices.tolist(), top.values.tolist()))
    return GeneratedToken(token_string(tokenizer, token), int(token), float(probs[token]), alternatives)


__all__ = ["GeneratedToken", "Generation", "generate", "check_new_tokens", "check_sampling", "choose", "describe",
           "eos_ids", "new_cache", "Writes", "TOP"]
