"""Remote models through nnsight: ``--model ndif:ORG/NAME`` runs visit on a model hosted by NDIF.

- :mod:`visit.remote.loading` -- opening ``ndif:`` models (key, simulation, the client's meta structure);
- :mod:`visit.remote.backend` -- the hook layer's reads and writes, the lens and weight slices as requests;
- :mod:`visit.remote.program` -- what runs where the model lives (plain torch, shipped with each request);
- :mod:`visit.remote.transport` -- sending requests (NDIF or simulated) and counting requests and bytes;
- :mod:`visit.remote.weights` -- the weight slices the client needs, cached per model and revision;
- :mod:`visit.remote.estimate` -- what one trace transfers, from the config alone.

Importing this package registers the ``ndif:`` scheme with :func:`visit.models.load_model`.
"""

from visit.models.loading import register_scheme
from visit.remote.loading import PREFIX, is_remote, load_remote

register_scheme(PREFIX, load_remote)

__all__ = ["PREFIX", "is_remote", "load_remote"]
