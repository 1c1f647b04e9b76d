"""What an edit asks for: :class:`EditRequest` (a prompt template with ``{}`` for the subject, the subject, the new
object and optionally the old one), validated before any work is done.

Objects are compared and scored as the text ``" " + object`` (a leading space: the next word), tokenized on their
own, as ROME and CounterFact do; a multi-token object is fine (its tokens are teacher-forced).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from visit.errors import VisitError
from visit.hooks import run

MAX_CHARS = 500


@dataclass(frozen=True)
class EditRequest:
    """``template`` holds exactly one ``{}`` where ``subject`` goes: ``EditRequest("The capital of {} is", "France",
    "Rome", old="Paris")``. ``old`` (the true object) is optional: without it, the new object is only checked
    against the model's own continuation (:func:`check_against_model`)."""

    template: str
    subject: str
    new: str
    old: str | None = None

    def __post_init__(self):
        validate(self)

    @property
    def prompt(self) -> str:
        """The template with the subject filled in."""
        return fill(self.template, self.subject)

    @property
    def subject_span(self) -> tuple[int, int]:
        """Character span ``[start, end)`` of the subject in :attr:`prompt`."""
        start = self.template.index("{}")
        return start, start + len(self.subject)

    def to_json(self) -> dict:
        return {"template": self.template, "subject": self.subject, "new": self.new, "old": self.old}


def fill(template: str, subject: str) -> str:
    """``template`` with its ``{}`` replaced by ``subject`` (other braces are left alone; no ``str.format``)."""
    return template.replace("{}", subject, 1)


def from_prompt(prompt: str, subject: str, new: str, old: str | None = None) -> EditRequest:
    """A request from a plain prompt in which ``subject`` occurs (its first occurrence becomes the ``{}``)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise VisitError("the prompt is empty; type the fact's prompt, e.g. 'The capital of France is'")
    if not isinstance(subject, str) or not subject.strip():
        raise VisitError("the subject is empty; type the part of the prompt that names it (e.g. 'France')")
    subject = subject.strip()
    at = prompt.find(subject)
    if at < 0:
        raise VisitError(f"the subject '{subject}' does not occur in the prompt '{prompt}'")
    return EditRequest(prompt[:at] + "{}" + prompt[at + len(subject):], subject, new, old)


def validate(req: EditRequest) -> None:
    """One clear :class:`VisitError` for a request that cannot be edited."""
    for field, value in (("template", req.template), ("subject", req.subject), ("new object", req.new)):
        if not isinstance(value, str) or not value.strip():
            raise VisitError(f"the {field} is empty")
        if len(value) > MAX_CHARS:
            raise VisitError(f"the {field} is longer than {MAX_CHARS} characters")
    if req.old is not None and not isinstance(req.old, str):
        raise VisitError("the old object must be text")
    n = req.template.count("{}")
    if n != 1:
        raise VisitError(f"the template needs exactly one {{}} where the subject goes (it has {n}): "
                         f"e.g. 'The capital of {{}} is'")
    if req.subject != req.subject.strip():
        raise VisitError("the subject has leading or trailing spaces; put spaces in the template instead")
    if req.template.strip() == "{}":
        raise VisitError("the template needs some text besides the subject (the relation, e.g. '{} is located in')")
    if req.old is not None and _norm(req.old) == _norm(req.new):
        raise VisitError(f"the new object '{req.new.strip()}' is the same as the old one")


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def object_text(obj: str) -> str:
    """``" " + object`` (unless it already starts with whitespace)."""
    return obj if obj[:1].isspace() else " " + obj


def object_ids(tokenizer, obj: str) -> list[int]:
    """Token ids of ``" " + object``, without special tokens (a lone word-start piece that SentencePiece puts before
    some words is dropped)."""
    ids = tokenizer.encode(object_text(obj), add_special_tokens=False)
    if len(ids) > 1 and not tokenizer.decode(ids[:1]).strip():
        ids = ids[1:]
    if not ids:
        raise VisitError(f"the object '{obj}' encodes to no tokens")
    return ids


def subject_last_token(tokenizer, text: str, span: tuple[int, int], special: bool = True) -> tuple[list[int], int]:
    """``(ids of text, index of the last token overlapping the character span)``: ROME's key position.
    ``special``: add the tokenizer's special tokens (a prompt of its own) or not (text that follows other text)."""
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=special)
    start, end = span
    hits = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > a and a < end and b > start]
    if not hits:
        raise VisitError(f"the subject covers no token of '{text}'")
    return list(enc["input_ids"]), hits[-1]


def check_against_model(vm, req: EditRequest) -> None:
    """Without an old object: refuse a new object the model already predicts (greedy, as many tokens as it has)."""
    new = object_ids(vm.tokenizer, req.new)
    ids = vm.tokenizer(req.prompt).input_ids
    predicted = []
    for _ in range(len(new)):
        logits, _rec = run(vm, torch.tensor([ids + predicted]), logits_to_keep=1)
        predicted.append(int(logits[0, -1].argmax()))
        if predicted[-1] != new[len(predicted) - 1]:
            return
    raise VisitError(f"the model already continues '{req.prompt}' with '{req.new.strip()}': "
                     f"choose a different new object")
