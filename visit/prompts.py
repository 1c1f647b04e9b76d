"""Prompt sets: factual prompts with their expected next token, read from TSV or JSONL.

TSV: one case a line, ``prompt<TAB>target[<TAB>relation[<TAB>subject]]``; blank lines and lines starting with
``#`` are skipped. The subject (the text causal tracing corrupts) must occur in the prompt. The target keeps its leading space (``" Oslo"``); a target written without one is
taken as the next word, as :func:`visit.tokens.resolve_target` does.

JSONL: one object a line with ``"prompt"`` and ``"target"`` (optionally ``"relation"`` and ``"subject"``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from visit.errors import VisitError

_DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class PromptCase:
    prompt: str
    target: str
    relation: str | None = None
    subject: str | None = None


def default_prompt_file() -> Path:
    """The shipped factual prompt set (about 100 CounterFact-style facts)."""
    return _DATA_DIR / "factual_prompts.tsv"


def read_user_file(path: Path, what: str) -> str:
    """A user-named UTF-8 text file's contents; a missing or unreadable one is a :class:`VisitError`
    (``what``: "prompt file", "corpus", ...)."""
    if not path.is_file():
        raise VisitError(f"{what} not found: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise VisitError(f"cannot read {what} {path}: {exc}") from None


def load_prompt_file(path) -> list[PromptCase]:
    """Read a TSV or JSONL prompt file. Raises :class:`VisitError` with the line at fault."""
    path = Path(path)
    text = read_user_file(path, "prompt file")
    if path.suffix.lower() in (".jsonl", ".json") or _looks_like_jsonl(text):
        cases = _parse_jsonl(text, path)
    else:
        cases = _parse_tsv(text, path)
    if not cases:
        raise VisitError(f"prompt file {path} has no prompts")
    return cases


def _looks_like_jsonl(text: str) -> bool:
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line.lstrip().startswith("{")
    return False


def _parse_tsv(text: str, path: Path) -> list[PromptCase]:
    cases = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) not in (2, 3, 4):
            raise VisitError(f"{path}:{number}: expected 'prompt<TAB>target[<TAB>relation[<TAB>subject]]', "
                             f"got {len(fields)} tab-separated field(s)")
        relation = fields[2].strip() if len(fields) >= 3 and fields[2].strip() else None
        subject = fields[3].strip() if len(fields) == 4 and fields[3].strip() else None
        cases.append(_case(fields[0], fields[1], relation, path, number, subject))
    return cases


def _parse_jsonl(text: str, path: Path) -> list[PromptCase]:
    cases = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise VisitError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or "prompt" not in record or "target" not in record:
            raise VisitError(f"{path}:{number}: expected an object with 'prompt' and 'target'")
        relation, subject = record.get("relation"), record.get("subject")
        cases.append(_case(record["prompt"], record["target"], str(relation) if relation is not None else None,
                           path, number, str(subject) if subject is not None else None))
    return cases


def _case(prompt, target, relation, path: Path, number: int, subject: str | None = None) -> PromptCase:
    if not isinstance(prompt, str) or not prompt.strip():
        raise VisitError(f"{path}:{number}: the prompt is empty")
    if not isinstance(target, str) or not target.strip():
        raise VisitError(f"{path}:{number}: the target is empty")
    if subject is not None and subject not in prompt:
        raise VisitError(f"{path}:{number}: the subject '{subject}' does not occur in the prompt")
    return PromptCase(prompt=prompt.rstrip(), target=target, relation=relation, subject=subject)
