"""Every editor, by method name: where the stack, the CounterFact evaluation, the UI and the CLI look one up.

Importing this module imports each editor's module, which registers the editor in
:data:`visit.editing.edit.EDITORS` (:func:`visit.editing.edit.register`); a new editing method adds its module
to the import line below.
"""

from __future__ import annotations

from visit.editing import alphaedit, kn_edit, memit, rome  # noqa: F401  (register rome, kn, cne, memit, alphaedit)
from visit.editing.edit import EDITORS, Edit, Editor, check_editable
from visit.editing.request import EditRequest
from visit.errors import VisitError

__all__ = ["EDITORS", "compute_edit", "editor"]


def editor(method: str) -> Editor:
    """The editor registered as ``method``; an unknown method is one clear line."""
    if method not in EDITORS:
        raise VisitError(f"unknown editing method '{method}'; choose one of {', '.join(sorted(EDITORS))}")
    return EDITORS[method]


def compute_edit(vm, request: EditRequest, method: str = "rome", **options) -> Edit:
    """Run the editor ``method`` on the model as it is now (nothing is applied)."""
    check_editable(vm)
    return editor(method)(vm, request, **options)
