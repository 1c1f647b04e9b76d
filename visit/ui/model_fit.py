"""The model box says, before loading, whether the model typed there fits (:func:`visit.models.fit.check_fit`).

When the box loses focus (the user is about to press Load, or moves on), one callback estimates the model from
its config, with the server's own placement (``--device-map`` / ``--max-memory``), and shows the line in the
message area: a note when it fits or cannot be told, an error when it will not (Load would then be refused with
the same reason). Names the server's model policy refuses are refused here too, before any file is read.
"""

from __future__ import annotations

from dash import Input, Output, State, no_update

from visit.errors import VisitError
from visit.models.fit import check_fit
from visit.ui import ids, views


def fit_message(registry, name: str | None):
    """The message-area children for the model box's ``name`` (``no_update`` for a model already loaded)."""
    key = registry.key(name)
    if key in registry.loaded():
        return no_update
    try:
        if key != registry.default_name:
            registry.policy.check(key)
        options = getattr(registry.loader, "keywords", {}) or {}  # app.py's loader: load_model with its placement
        policy = registry.policy
        fit = check_fit(key, device_map=options.get("device_map"), max_memory=options.get("max_memory"),
                        download=policy.unrestricted or policy.allow_downloads)
    except VisitError as exc:
        return views.messages(errors=[str(exc)])
    if fit.fits is False:
        return views.messages(errors=[f"before loading: {fit.text}"])
    return views.messages(notes=[f"before loading: {fit.text}"])


def register(app, registry) -> None:
    @app.callback(Output(ids.MESSAGE, "children", allow_duplicate=True), Input(ids.MODEL_INPUT, "n_blur"),
                  State(ids.MODEL_INPUT, "value"), prevent_initial_call=True)
    def say_if_it_fits(_, name):
        if not (name or "").strip():
            return no_update
        return fit_message(registry, name)
