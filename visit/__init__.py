"""visit: an X-ray for transformer language models.

The library is layered; the web UI and the CLI only call into it:

- ``visit.models``   loading models (default GGUF, hub ids, local dirs) and architecture adapters
- ``visit.tracer``   one hooked forward pass -> a :class:`~visit.tracer.Trace` of TransformerLens-named values
- ``visit.lens``     the logit lens (batched projections to the vocabulary)
- ``visit.tokens``   target resolution and token display

The layers, bottom to top, are data in :mod:`visit.layers`; ``tests/test_architecture.py`` keeps the imports to them.
"""

from visit.errors import VisitError

__all__ = ["VisitError"]
__version__ = "0.1.0"
