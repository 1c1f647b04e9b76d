"""Knowledge editing: change what a model says about a subject, see it, and take it back.

- :mod:`visit.editing.request` -- :class:`EditRequest` (template with ``{}``, subject, new object) and validation;
- :mod:`visit.editing.edit` -- the editors' interface: :class:`Edit` (weight deltas) and :func:`register`;
- :mod:`visit.editing.editors` -- every editor by method name (:func:`editor`, :func:`compute_edit`);
- :mod:`visit.editing.rome` -- ROME (r-ROME key handling by default), with :mod:`visit.editing.stats` (C = E[kk^T])
  and :mod:`visit.editing.sampling` (text sampled from the model: prefixes, the default corpus);
- :mod:`visit.editing.memit` -- MEMIT: a batch of facts over a range of layers; :mod:`visit.editing.alphaedit`
  -- AlphaEdit: MEMIT's updates projected onto the null space of the preserved keys (sequential editing);
- :mod:`visit.editing.modes` -- CounterFact evaluation in batch and sequential modes (the health curve);
- :mod:`visit.editing.kn_edit` -- KN-E and CNE (seed 001): embeddings added to / subtracted from neurons' value
  vectors;
- :mod:`visit.editing.stack` -- :class:`EditStack`: a session's edits, applied in order, reverted bit-exactly;
- :mod:`visit.editing.counterfact` -- CounterFact metrics (ES/EM/PS/PM/NS/NM/S), each record edited, evaluated
  and restored.

Importing the package registers every editor (:mod:`visit.editing.editors`).
"""

from visit.editing.edit import Edit
from visit.editing.editors import EDITORS, compute_edit
from visit.editing.request import EditRequest, from_prompt
from visit.editing.stack import EditStack

__all__ = ["EDITORS", "Edit", "EditRequest", "EditStack", "compute_edit", "from_prompt"]
