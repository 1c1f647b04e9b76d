"""Find the subject's tokens in a prompt by character offsets.

Decoding tokens one at a time and matching strings breaks on SentencePiece (the word-start marker is dropped
when a piece is decoded alone) and on BPE merges across the subject's edge; the tokenizer's offset mapping says
exactly which characters each token covers, whatever the tokenizer.
"""

from __future__ import annotations

from visit.errors import VisitError


def find_subject(tokenizer, prompt: str, subject: str) -> tuple[int, int]:
    """The token range ``[start, end)`` of the first occurrence of ``subject`` in ``prompt``: every token whose
    characters overlap the subject's (a leading space merged into the first token counts as the subject's).

    Raises :class:`VisitError` for an empty subject or one that does not occur in the prompt.
    """
    if not isinstance(subject, str) or not subject.strip():
        raise VisitError("the subject is empty; type the part of the prompt that names it (e.g. 'France')")
    subject = subject.strip()
    begin = prompt.find(subject)
    if begin < 0:
        lowered = prompt.lower().find(subject.lower())
        if lowered < 0:
            raise VisitError(f"the subject '{subject}' does not occur in the prompt")
        begin = lowered
    end = begin + len(subject)
    enc = tokenizer(prompt, return_offsets_mapping=True)
    covered = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > a and a < end and b > begin]
    if not covered:
        raise VisitError(f"the subject '{subject}' covers no token of the prompt")
    return covered[0], covered[-1] + 1
