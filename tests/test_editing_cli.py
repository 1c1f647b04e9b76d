"""The edit and edit-eval commands: registered, and bad input gives one line and exit status 2."""

import pytest

from visit.cli import build_parser, main


def test_commands_are_registered_with_every_editor():
    from visit.editing.editors import EDITORS

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in ("edit", "edit-eval"):
        assert name in sub.choices
        method = next(a for a in sub.choices[name]._actions if a.dest == "method")
        assert set(method.choices) == set(EDITORS)


@pytest.mark.parametrize("argv, message", [
    (["edit", "The capital of France is", "--subject", "Germany", "--new", "Rome"], "does not contain the subject"),
    (["edit", "The capital of {} is", "--subject", "France", "--new", "Paris", "--old", "Paris"], "same as the old"),
    (["edit", "{} and {}", "--subject", "France", "--new", "Rome"], "exactly one"),
    (["edit-eval", "--records", "/nonexistent/records.json"], "not found"),
    (["edit-eval", "--limit", "0"], "at least 1"),
])
def test_bad_input_exits_2_with_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
