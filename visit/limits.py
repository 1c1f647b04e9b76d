"""Server-side caps: how much one request may ask of a shared server, defined in one place.

The page's own limits (``maxLength``, ``min`` on number boxes) are conveniences, not a defence: anyone can
post to a Dash callback directly. Everything that runs on behalf of a browser checks its inputs against
these caps and refuses with one clear :class:`~visit.errors.VisitError` ("... at most N ...") instead of
working for minutes or filling the memory. The CLI and the library do not apply them (a local user may
ask for anything).

Each cap is a :class:`Limit` with a default and an environment variable that overrides it, read on every
use, so an operator (or a test) can change it without a restart:

=====================  ===========================  =======  ==================================================
name                   environment variable         default  what it bounds
=====================  ===========================  =======  ==================================================
``PROMPT_CHARS``       ``VISIT_MAX_PROMPT_CHARS``    20000   characters in a prompt (checked before tokenising)
``PROMPT_TOKENS``      ``VISIT_MAX_PROMPT_TOKENS``     512   tokens in a prompt (eager attention is pos^2)
``TARGET_CHARS``       ``VISIT_MAX_TARGET_CHARS``      200   characters in a target / competitor token box
``GRAPH_KNOB``         ``VISIT_MAX_GRAPH_KNOB``         64   each pruning knob (heads, memory values per head,
                                                             W_O neurons, top / bottom MLP neurons) and top_k
``GRAPH_MARKS``        ``VISIT_MAX_GRAPH_MARKS``       256   include + highlight + flagged neurons together
``SAMPLES``            ``VISIT_MAX_SAMPLES``            50   noise samples (causal tracing's corrupted runs)
``STEPS``              ``VISIT_MAX_STEPS``              64   integration / optimisation steps (knowledge
                                                             neurons' integrated gradients, editing)
``NEW_TOKENS``         ``VISIT_MAX_NEW_TOKENS``         64   tokens one generation may add (checked by the
                                                             library and the CLI too: visit.generation)
``STUDY_PROMPTS``      ``VISIT_MAX_STUDY_PROMPTS``     200   prompts in one prompt-set study or evaluation
``TOP_N``              ``VISIT_MAX_TOP_N``            1000   rows a ranking / table may ask for
``JOBS_PER_SESSION``   ``VISIT_MAX_JOBS_PER_SESSION``    2   long jobs one session may have queued or running
``JOBS``               ``VISIT_MAX_JOBS``                8   long jobs the whole server queues or runs
``TRACES``             ``VISIT_MAX_TRACES``              1   analyses computing at once (the rest queue, FIFO)
``QUEUE``              ``VISIT_MAX_QUEUE``              64   traces waiting for their turn (more: "busy")
``BATCH``              ``VISIT_BATCH``                  16   traces of different sessions run together in one
                                                             padded forward pass (visit/batching.py); 1: one
                                                             at a time
``SESSIONS``           ``VISIT_MAX_SESSIONS``           32   browser sessions kept (least recent dropped)
``SESSION_BYTES``      ``VISIT_MAX_SESSION_BYTES``   1 GiB   bytes of analyses kept for all sessions together
                                                             (oldest dropped first; see visit/ui/state.py)
=====================  ===========================  =======  ==================================================

Use::

    from visit import limits
    n = limits.SAMPLES.check(n_samples, "noise samples")   # -> int, or VisitError "... at most 50 ..."
    limits.STEPS.value()                                    # the current cap (env override applied)
    limits.check_graph_settings(settings)                   # every knob of a GraphSettings at once
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from visit.errors import VisitError


@dataclass(frozen=True)
class Limit:
    """One cap: ``value()`` reads ``env`` (a positive whole number) or falls back to ``default``."""

    name: str
    env: str
    default: int
    doc: str

    def value(self) -> int:
        raw = os.environ.get(self.env, "").strip()
        if not raw:
            return self.default
        try:
            value = int(raw)
        except ValueError:
            raise VisitError(f"{self.env} must be a whole number, not '{raw}'") from None
        if value < 0:
            raise VisitError(f"{self.env} must be >= 0, not {value}")
        return value

    def check(self, value, what: str | None = None) -> int:
        """``value`` as an int if it is a whole number within 0..cap, else a one-line VisitError."""
        what = what or self.doc
        if isinstance(value, bool) or value is None:
            raise VisitError(f"{what} must be a whole number, not {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise VisitError(f"{what} must be a whole number, not {str(value)[:40]!r}") from None
        if number != number or number in (float("inf"), float("-inf")) or number != int(number):
            raise VisitError(f"{what} must be a whole number, not {str(value)[:40]!r}")
        cap = self.value()
        if number > cap:
            raise VisitError(f"{what}: {int(number):,} asked, this server allows at most {cap:,} "
                             f"(set {self.env} to change that)")
        if number < 0:
            raise VisitError(f"{what} must be at least 0, not {int(number)}")
        return int(number)

    def check_length(self, text, what: str, unit: str = "characters") -> None:
        """Raise when ``len(text)`` exceeds the cap."""
        cap = self.value()
        if text is not None and len(text) > cap:
            raise VisitError(f"{what} is {len(text):,} {unit} long; this server allows at most {cap:,} "
                             f"(set {self.env} to change that)")


PROMPT_CHARS = Limit("PROMPT_CHARS", "VISIT_MAX_PROMPT_CHARS", 20_000, "characters in a prompt")
PROMPT_TOKENS = Limit("PROMPT_TOKENS", "VISIT_MAX_PROMPT_TOKENS", 512, "tokens in a prompt")
TARGET_CHARS = Limit("TARGET_CHARS", "VISIT_MAX_TARGET_CHARS", 200, "characters in a target")
GRAPH_KNOB = Limit("GRAPH_KNOB", "VISIT_MAX_GRAPH_KNOB", 64, "a pruning knob")
GRAPH_MARKS = Limit("GRAPH_MARKS", "VISIT_MAX_GRAPH_MARKS", 256, "included, highlighted and flagged nodes")
SAMPLES = Limit("SAMPLES", "VISIT_MAX_SAMPLES", 50, "noise samples")
STEPS = Limit("STEPS", "VISIT_MAX_STEPS", 64, "steps")
NEW_TOKENS = Limit("NEW_TOKENS", "VISIT_MAX_NEW_TOKENS", 64, "new tokens")
STUDY_PROMPTS = Limit("STUDY_PROMPTS", "VISIT_MAX_STUDY_PROMPTS", 200, "prompts in one study")
TOP_N = Limit("TOP_N", "VISIT_MAX_TOP_N", 1000, "rows asked for")
JOBS_PER_SESSION = Limit("JOBS_PER_SESSION", "VISIT_MAX_JOBS_PER_SESSION", 2, "jobs of one session")
JOBS = Limit("JOBS", "VISIT_MAX_JOBS", 8, "jobs on this server")
TRACES = Limit("TRACES", "VISIT_MAX_TRACES", 1, "analyses at once")
QUEUE = Limit("QUEUE", "VISIT_MAX_QUEUE", 64, "traces waiting")
BATCH = Limit("BATCH", "VISIT_BATCH", 16, "traces in one forward pass")
SESSIONS = Limit("SESSIONS", "VISIT_MAX_SESSIONS", 32, "browser sessions kept")
SESSION_BYTES = Limit("SESSION_BYTES", "VISIT_MAX_SESSION_BYTES", 1 << 30, "bytes of kept analyses")

ALL: tuple[Limit, ...] = (PROMPT_CHARS, PROMPT_TOKENS, TARGET_CHARS, GRAPH_KNOB, GRAPH_MARKS, SAMPLES, STEPS,
                          NEW_TOKENS, STUDY_PROMPTS, TOP_N, JOBS_PER_SESSION, JOBS, TRACES, QUEUE, BATCH, SESSIONS, SESSION_BYTES)

# GraphSettings fields each bounded by GRAPH_KNOB (None means "all" for heads_per_layer: bounded by the model)
KNOB_FIELDS = {"heads_per_layer": "heads per layer", "memory_per_head": "memory values per head",
               "wo_neurons": "W_O neurons", "mlp_top": "top MLP neurons", "mlp_bottom": "bottom MLP neurons",
               "top_k": "tokens per node"}


def check_graph_settings(settings) -> None:
    """Refuse a GraphSettings (any object with its fields) whose knobs or marks exceed the caps."""
    for name, what in KNOB_FIELDS.items():
        value = getattr(settings, name, None)
        if value is not None:
            GRAPH_KNOB.check(value, what)
    n_marks = sum(len(getattr(settings, name, None) or ()) for name in ("include", "highlight", "flagged_neurons"))
    GRAPH_MARKS.check(n_marks, "included, highlighted and flagged nodes")


def check_prompt(prompt: str, tokenizer=None) -> None:
    """Characters first (cheap), then tokens when a tokenizer is given."""
    PROMPT_CHARS.check_length(prompt, "the prompt")
    if tokenizer is not None:
        n = len(tokenizer(prompt).input_ids)
        cap = PROMPT_TOKENS.value()
        if n > cap:
            raise VisitError(f"the prompt is {n} tokens long; the app traces at most {cap} "
                             f"(set {PROMPT_TOKENS.env} to change that, or use the CLI)")


def table() -> list[dict]:
    """Every cap with its current value (for docs, ``app.py --help`` and the health check)."""
    return [{"name": lim.name, "env": lim.env, "value": lim.value(), "default": lim.default, "what": lim.doc}
            for lim in ALL]
