"""A session's edits, stacked in order: apply them for a block of work, revert any one or all, bit-exactly.

The model keeps its original weights at rest. :meth:`EditStack.applied` adds the deltas of every edit, in order,
from the saved originals (:func:`visit.hooks.params.weights_changed`) and copies the originals back when the block
ends, also on an exception. So:

- reverting an edit is removing it from the list: the next :meth:`applied` gives exactly the weights the other
  edits give in their order (``torch.equal``, not ``W + d - d``);
- with no block active the weights are the originals, so another session (another :class:`EditStack`, or none)
  never sees these edits; the model lock is held for the whole block, so nobody else runs the model meanwhile.
- :meth:`overlay` hands the edits to :mod:`visit.models.overlay`: work bound to the session sees them inside
  every ``vm.weights_for()`` (the app's session isolation), pass by pass.

Edits are computed sequentially, as ROME's sequential editing does: :meth:`EditStack.edit` runs the editor with
the earlier edits applied. Reverting an early edit keeps the later ones' deltas as they were computed.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterator

import torch

from visit.editing.edit import Edit, check_editable
from visit.editing.editors import compute_edit, editor
from visit.editing.request import EditRequest
from visit.errors import VisitError
from visit.hooks import run, weights_changed
from visit.models.overlay import NONE, Overlay, bind_session


class EditStack:
    """An ordered list of :class:`Edit` for one session; nothing is applied outside :meth:`applied`."""

    def __init__(self, edits: list[Edit] | None = None):
        self.edits: list[Edit] = list(edits or [])

    def __len__(self) -> int:
        return len(self.edits)

    def __iter__(self):
        return iter(self.edits)

    def overlay(self) -> Overlay:
        """These edits as the weights a session works under (:mod:`visit.models.overlay`): keyed by the edits'
        ids, so caches derived from the edited weights survive until the stack changes."""
        if not self.edits:
            return NONE
        return Overlay(("edits",) + tuple(e.id for e in self.edits), tuple(e.deltas for e in self.edits),
                       tuple(self.edits))

    @contextmanager
    def applied(self, vm) -> Iterator[None]:
        """The model with every edit applied, in order, for the block (``vm.weights_for`` these edits)."""
        with vm.weights_for(self.overlay()):
            yield

    def push(self, vm, edit: Edit) -> Edit:
        """Add a computed edit after checking that the edited model still gives finite logits on its prompt.

        A non-finite delta or an edit that makes the logits NaN/inf is refused (the weights are restored at once)
        with a :class:`VisitError`; the stack is unchanged.
        """
        for name, delta in edit.deltas.items():
            if not torch.isfinite(delta).all():
                raise VisitError(f"the {edit.method} edit produced a non-finite weight change for '{name}'; "
                                 f"it was not applied")
        ids = torch.tensor([vm.tokenizer(edit.request.prompt).input_ids])
        with bind_session(NONE), weights_changed(vm, [e.deltas for e in self.edits] + [edit.deltas]):
            logits, _ = run(vm, ids, logits_to_keep=1)
            finite = bool(torch.isfinite(logits).all())
        if not finite:
            raise VisitError(f"the {edit.method} edit made the model's logits NaN or inf; it was reverted")
        self.edits.append(edit)
        return edit

    def edit(self, vm, request: EditRequest, method: str = "rome", **options) -> Edit:
        """Compute an edit on the model with this stack applied, check it and push it. ``request``: one request,
        or a sequence of them for the batch editors (MEMIT, AlphaEdit: one edit of all)."""
        check_editable(vm)
        fn = editor(method)
        if getattr(fn, "uses_history", False):  # AlphaEdit preserves the keys of the edits already made
            options["history"] = tuple(self.edits)
        prepare = getattr(fn, "prepare", None)
        if prepare is not None:  # work that must see the unedited model (ROME's key statistics)
            with bind_session(NONE):
                options = prepare(vm, request, **options)
        # a batch editor changes the weights between its layers (MEMIT: layer l's update is in place while layer
        # l+1's keys are read), which needs the lock exclusively; taken first, a reader could not ask for it later
        with (vm.lock if getattr(fn, "batched", False) else nullcontext()), self.applied(vm):
            edit = compute_edit(vm, request, method, **options)
        return self.push(vm, edit)

    def revert(self, edit_id: int) -> Edit:
        """Remove the edit with this id (any position); raises :class:`VisitError` when there is none."""
        for i, e in enumerate(self.edits):
            if e.id == edit_id:
                return self.edits.pop(i)
        raise VisitError(f"no edit with id {edit_id} in this session")

    def clear(self) -> None:
        self.edits.clear()

    def to_json(self) -> list[dict]:
        return [e.to_json() for e in self.edits]
