"""What the model says: generation on the hook layer, steering, and the fluency of what it generated.

- :mod:`visit.generation.generate` -- greedy and sampled generation with a key/value cache, every pass through
  :func:`visit.hooks.run` (so steering, a session's edits and plain generation share one code path);
- :mod:`visit.generation.steer` -- steering specs (``L20.N123=x5``, ``L7.H3=0``, ``resid L12 += 4 * dir(L20.N123)``)
  turned into :class:`visit.hooks.Intervention` s;
- :mod:`visit.generation.fluency` -- CounterFact's generation entropy (GE).
"""
