"""The hook layer: one way to read and write every named value of a forward pass (TransformerLens names).

- :mod:`visit.hooks.names` -- :func:`hook_name`: the one function that spells ``blocks.{l}.{suffix}``;
- :mod:`visit.hooks.points` -- where each name lives in a Hugging Face model (derived from the adapter);
- :mod:`visit.hooks.interventions` -- :class:`Intervention`: replace / add / scale / zero / fn at rows, positions,
  feature indices;
- :mod:`visit.hooks.runner` -- :func:`hooked` (context manager) and :func:`run` (one forward pass);
- :mod:`visit.hooks.resume` -- batched passes that resume from a block boundary over a suffix of positions, with
  the keys and values of a recorded pass for the prefix (causal tracing, integrated gradients);
- :mod:`visit.hooks.batch` -- left-padded batches of different prompts and passes that reuse a batch's prefix
  (editing, CounterFact, the graph's verification);
- :mod:`visit.hooks.params` -- temporary weight changes that undo themselves bit-exactly.

Tracing, ablation, causal tracing, knowledge neurons, verification and editing all go through this package.
"""

from visit.hooks.names import block_name, hook_name, parse_hook_name
from visit.hooks.interventions import Intervention, add, apply_fn, replace, scale, zero
from visit.hooks.params import weights_changed
from visit.hooks.points import HookPoint, hook_point, known_names
from visit.hooks.runner import Hooked, hooked, run

__all__ = ["Intervention", "add", "apply_fn", "replace", "scale", "zero", "weights_changed", "HookPoint",
           "hook_point", "known_names", "Hooked", "hooked", "run", "hook_name", "block_name", "parse_hook_name"]
