"""The Dash web app: a thin layer over :mod:`visit.pipeline`. ``app.py`` at the top level runs it.

``create_app(model=...)`` takes a loaded :class:`~visit.models.VisitModel` (tests inject tiny ones)
or loads the default lazily on first use; ``loader`` loads the models users type in.
"""

from __future__ import annotations

from pathlib import Path

from dash import Dash

from visit.ui import callbacks, pins, url_state, welcome, workspace
from visit.ui.controls import default_settings
from visit.ui.layout import build_layout
from visit.ui.panels import details, load_panels
from visit.ui.panels.context import PanelContext
from visit.ui.session_callbacks import bind_callbacks

ASSETS = Path(__file__).resolve().parents[2] / "assets"


def create_app(model=None, loader=None, model_name: str = "default", max_sessions: int = 32, analyze=None,
               panels=None) -> Dash:
    """Build the app. ``model`` is served as ``model_name`` (what users type to get it back);
    ``analyze`` defaults to :func:`visit.pipeline.analyze`; ``panels`` to the registry."""
    panel_ctx = PanelContext.create(model=model, loader=loader, model_name=model_name, max_sessions=max_sessions,
                                    analyze=analyze)
    registry, sessions, analyze = panel_ctx.registry, panel_ctx.sessions, panel_ctx.analyze
    panel_modules = load_panels() if panels is None else load_panels(panels)
    app = Dash(__name__, title="visit", assets_folder=str(ASSETS), update_title=None,
               serve_locally=True)
    app.visit_registry = registry
    app.visit_sessions = sessions
    app.visit_jobs = panel_ctx.jobs  # long work of the panels (visit.ui.jobs.JobRunner)
    app.visit_context = panel_ctx  # what every panel's register_callbacks(app, ctx) gets
    bind_callbacks(app, panel_ctx.using)  # every callback runs on its session's weights
    model_label = model.name if model is not None else "default model (loads on first trace)"
    settings = default_settings()
    app.layout = lambda: build_layout(model_label, settings, panel_modules)
    callbacks.register(app, registry, sessions, analyze)
    url_state.register(app, sessions)  # links that reproduce a view
    workspace.register(app)  # open a tool, arrange the split
    welcome.register(app)  # example prompts trace on a click

    pins.register(app, sessions, details.NODE if details in panel_modules else None)  # pin, group, label
    for panel in panel_modules:
        panel.register_callbacks(app, panel_ctx)
    return app


__all__ = ["create_app"]
