"""The hostile-string corpus (tests/hostile_strings.txt) as Python strings."""

from __future__ import annotations

from pathlib import Path

CORPUS = Path(__file__).with_name("hostile_strings.txt")


def decode(line: str) -> str:
    """A corpus line -> the string it stands for (backslash escapes decoded; other text kept as it is)."""
    return line.encode("ascii", "backslashreplace").decode("unicode_escape")


def hostile_strings() -> list[str]:
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    return [decode(line) for line in lines if line and not line.startswith("#")]
