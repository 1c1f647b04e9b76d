"""Edits speak: the greedy continuations of an edit's prompt, its paraphrases and neighbours, before and after.

"Before" and "after" are two sets of weights (:class:`visit.models.overlay.Overlay`, e.g. a session's edits
without and with the newest one), as in :func:`visit.editing.before_after.before_after`, so nothing changes the
model at rest; shared by ``visit edit --generate N`` and the app's editing panel::

    rows = continuations(vm, ["The capital of France is", "Berlin is the capital of"], NONE, stack.overlay(), 12)
    rows[0]["after"].text       # what the edited model says after the edit's prompt
"""

from __future__ import annotations

from typing import Sequence

from visit.generation.generate import Generation, generate
from visit.models.overlay import Overlay, bind_session


def continuations(vm, prompts: Sequence[str], before: Overlay | None, after: Overlay | None,
                  max_new_tokens: int) -> list[dict]:
    """Per prompt: ``{"prompt", "before": Generation, "after": Generation}`` (greedy, ``max_new_tokens`` each)."""
    sides: dict[str, list[Generation]] = {}
    for name, overlay in (("before", before), ("after", after)):
        with bind_session(overlay):
            sides[name] = [generate(vm, p, max_new_tokens) for p in prompts]
    return [{"prompt": p, "before": b, "after": a} for p, b, a in zip(prompts, sides["before"], sides["after"])]


def to_json(rows: Sequence[dict]) -> list[dict]:
    """:func:`continuations`' rows as plain JSON (the texts and each side's tokens)."""
    return [{"prompt": r["prompt"], "before": r["before"].to_json(), "after": r["after"].to_json()} for r in rows]


__all__ = ["continuations", "to_json"]
