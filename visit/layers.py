"""The layers of visit, bottom to top, as data: a module may import its own layer and the layers below it.

Each layer names packages (``visit.graph`` covers every module under it) and top-level modules. Within a layer
imports may go either way, but never in a cycle. ``tests/test_architecture.py`` reads the import graph of
``visit/`` and fails on a cycle (between modules or between packages), on an import from a higher layer, and on
more than :data:`MAX_FUNCTION_IMPORTS` import statements inside functions (each must say, in a comment, which
optional dependency or start-up cost it defers).

A new module goes in the lowest layer whose modules it needs; a new package gets a line here.
"""

from __future__ import annotations

LAYERS: tuple[tuple[str, ...], ...] = (
    # foundation: no model needed (errors, limits, prompt files, token display, the layer list itself)
    ("visit.errors", "visit.limits", "visit.prompts", "visit.tokens", "visit.matmul", "visit.layers", "visit.memo"),
    # loading models, architecture adapters, weights and their per-session overlay
    ("visit.models",),
    # one way to read and write every named value of a forward pass
    ("visit.hooks", "visit.ids"),
    # one traced forward pass and the logit lens over it
    ("visit.tracer", "visit.lens", "visit.summary", "visit.batching"),
    # the methods: each reads traces and the hook layer, none draws
    ("visit.attribution", "visit.analyses", "visit.localization", "visit.editing", "visit.generation",
     "visit.remote"),
    # the flow graph: selection, builder, groups, diff, verification against the model
    ("visit.graph",),
    # presentation: figures, report sections, hover text, HTML, the view's link, curation, the feature registry
    ("visit.render", "visit.report", "visit.links", "visit.curation", "visit.features"),
    # one call from a prompt to a drawn, reported analysis
    ("visit.pipeline",),
    # the two front ends: the Dash app and the command line (neither imports the other)
    ("visit.ui", "visit.cli", "visit.__main__", "visit.serving"),
)

# parts of one layer that must not import each other
INDEPENDENT: tuple[tuple[str, str], ...] = (("visit.ui", "visit.cli"),)

MAX_FUNCTION_IMPORTS = 20
