"""What an edit changed where a person looks: the top tokens and the old and new objects' probabilities on the
edit's prompt and on prompts the user lists (paraphrases, neighbours), before and after; shared by the CLI's
``visit edit`` and the app's editing panel.

"Before" and "after" are two sets of weights (:class:`visit.models.overlay.Overlay`: e.g. a session's edits
without and with the newest one), so the comparison never changes the model at rest::

    rows = before_after(vm, request, ["The capital city of France is", "Berlin is the capital of"],
                        before=NONE, after=stack.overlay())
    rows[0]["after"]["objects"]["Rome"]     # P(" Rome") after the prompt, on the edited weights

An object's probability is CounterFact's ``exp(-mean per-token NLL)`` of ``" " + object``
(:func:`visit.editing.counterfact.object_nll`).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from visit.editing.counterfact import object_nll
from visit.editing.request import EditRequest, from_prompt
from visit.errors import VisitError
from visit.hooks import run
from visit.models.overlay import Overlay, bind_session
from visit.tokens import token_string
from visit.tracer import encode_prompt

MAX_PROMPTS = 20


def make_request(template: str, subject: str, new: str, old: str | None = None) -> EditRequest:
    """A request from typed text: a template with ``{}``, or a prompt that contains the subject."""
    template = template or ""
    if "{}" not in template:
        if subject and subject.strip() and subject.strip() in template:
            return from_prompt(template, subject, new, old)
        raise VisitError(f"the template has no {{}} for the subject and does not contain the subject "
                         f"'{subject}': write e.g. 'The capital of {{}} is'")
    return EditRequest(template, subject, new, old)


def top_tokens(vm, prompt: str, k: int) -> list[dict]:
    """The ``k`` most likely next tokens after ``prompt``: ``[{"token", "id", "prob"}]``."""
    logits, _ = run(vm, encode_prompt(vm, prompt), logits_to_keep=1)
    probs = logits[0, -1].float().softmax(-1)
    values, ids = probs.topk(k)
    return [{"token": token_string(vm.tokenizer, int(i)), "id": int(i), "prob": float(v)}
            for v, i in zip(values, ids)]


def object_probs(vm, prompts: Sequence[str], objects: Sequence[str]) -> list[dict]:
    """``[{object (stripped): P}]`` per prompt, ``P = exp(-mean per-token NLL)`` (CounterFact's scoring)."""
    nll = object_nll(vm, list(prompts), list(objects))
    return [{o.strip(): math.exp(-float(nll[i, j])) for j, o in enumerate(objects)} for i in range(len(prompts))]


def _side(vm, prompts: list[str], objects: list[str], k: int) -> list[dict]:
    probs = object_probs(vm, prompts, objects)
    return [{"top": top_tokens(vm, p, k), "objects": pr} for p, pr in zip(prompts, probs)]


def before_after(vm, request: EditRequest, prompts: Sequence[str] = (), before: Overlay | None = None,
                 after: Overlay | None = None, k: int = 5) -> list[dict]:
    """Per prompt (the edit's own first, then ``prompts``, blanks dropped, at most :data:`MAX_PROMPTS`):
    ``{"prompt", "kind": "edit"|"listed", "before": {"top": [...], "objects": {old, new: P}}, "after": {...}}``."""
    listed = [p.strip() for p in prompts if p and p.strip()]
    if len(listed) > MAX_PROMPTS:
        raise VisitError(f"list at most {MAX_PROMPTS} prompts to compare (got {len(listed)})")
    all_prompts = [request.prompt] + [p for p in listed if p != request.prompt]
    objects = [request.new] + ([request.old] if request.old else [])
    sides = {}
    for name, overlay in (("before", before), ("after", after)):
        with bind_session(overlay):
            sides[name] = _side(vm, all_prompts, objects, k)
    return [{"prompt": p, "kind": "edit" if i == 0 else "listed", "before": sides["before"][i],
             "after": sides["after"][i]} for i, p in enumerate(all_prompts)]


def analyses_before_after(vm, analyze: Callable, analysis, before: Overlay | None, after: Overlay | None) -> list:
    """``[before, after]``: ``analysis``'s prompt, position, target and settings analysed again by ``analyze``
    (:func:`visit.pipeline.analyze`) on each set of weights (each trace keeps its own: ``Trace.overlay``)."""
    out = []
    for overlay in (before, after):
        with bind_session(overlay):
            out.append(analyze(vm, analysis.trace.prompt, None, analysis.trace.position, analysis.settings,
                               target_id=analysis.target.id))
    return out


__all__ = ["make_request", "top_tokens", "object_probs", "before_after", "analyses_before_after", "MAX_PROMPTS"]
