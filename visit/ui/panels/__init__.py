"""Panels: the tools of the workspace beside the graph. Add yours to the import and to :data:`PANELS` (and its
feature to :data:`visit.features.FEATURES`).

A panel is a module with:

- ``TITLE: str`` -- the tool's label in the tool bar (keep it short: it is shown whole);
- optionally ``GROUP: str`` -- what a person does with it, one of :data:`GROUPS` (others follow them; default
  :data:`DEFAULT_GROUP`); ``DESCRIPTION: str`` -- one line under the tool's title saying what it is for and
  what to do first; ``WIDTH: float`` -- the share of the page's width the tool's pane opens with (default
  :data:`DEFAULT_WIDTH`; the user drags the split and the page remembers it per tool, :mod:`visit.ui.workspace`);
- ``layout() -> dash component`` -- the tab's content (built once, when the app starts; give every
  component an id prefixed with your module's name, e.g. ``"ablation-table"``);
- ``register_callbacks(app, ctx)`` -- register callbacks with ``app.callback`` (never the global
  ``dash.callback``: tests build several apps in one process, and ``app.callback`` runs each callback on its
  session's weights, :mod:`visit.ui.session_callbacks`). ``ctx`` is the app's
  :class:`visit.ui.panels.context.PanelContext`: ``ctx.analysis(session_id)`` is this browser session's
  current :class:`visit.pipeline.Analysis` (server-side; None before the first trace), ``ctx.state(session_id)``
  its whole state, ``ctx.model(session_id)`` the model it uses, ``ctx.jobs`` the job runner for long work
  (:mod:`visit.ui.jobs`), ``ctx.analyze`` the pipeline's ``analyze``. (Dash's own ``ctx`` has the same name:
  import it as ``from dash import ctx as dash_ctx``.)

Ids a panel reads (from :mod:`visit.ui.ids`):

- ``State(ids.SESSION, "data")`` -- the session id to pass to ``ctx``;
- ``Input(ids.ANALYSIS_VERSION, "data")`` -- fires after every new analysis (re-render your panel then);
- ``Input(ids.GRAPH, "clickData")`` -- the clicked node; ``visit.ui.clicks.node_id_from_click(analysis,
  click_data)`` turns it into a node id such as ``"L3.H2"``.

Long work (more than a second or so: causal tracing, integrated gradients, a prompt-set study) runs as
the session's job, with progress, cancel and results drawn as they arrive: one library module does the
work, the panel adds :mod:`visit.ui.panels.job_widget`'s controls and wires them in one call::

    from dash import State, dcc, html
    from visit.errors import VisitError
    from visit.ui.panels.job_widget import job_controls, register_job_callbacks

    TITLE = "Causal trace"

    def layout():
        return html.Div(job_controls("causal", "Run", controls=[dcc.Input(id="causal-subject")]))

    def register_callbacks(app, ctx):
        def start(ctx, session_id, values):          # check inputs here; return the job function
            analysis = ctx.analysis(session_id)
            if analysis is None:
                raise VisitError("trace a prompt first")
            return lambda job: causal_trace(analysis.trace, values[0], on_row=job.partial,
                                            on_progress=job.progress)
        register_job_callbacks(app, ctx, "causal", "causal-trace", start,
                               render=lambda value, finished: heatmaps(value),
                               inputs=[State("causal-subject", "value")])

The job calls ``job.progress(done, total, note)`` and, where it can, ``job.partial(value)``; both raise
``visit.ui.jobs.Cancelled`` once the user cancelled, so the work stops there. ``render(value, finished)``
draws a partial (``finished=False``) or the result. A session runs one job at a time (starting another
cancels it); its last result of each kind stays as ``ctx.jobs.result(session_id, "causal-trace")`` for the
panel's other callbacks (e.g. a click on a heatmap cell).

Changing the graph from a panel (e.g. highlight or force in a node, flag neurons)::

    from dash import Output
    from visit.ui import ids
    from visit.ui.state import request_graph_update

    @app.callback(Output(ids.GRAPH_REQUEST, "data", allow_duplicate=True),
                  Input("mypanel-button", "n_clicks"), State(ids.SESSION, "data"), prevent_initial_call=True)
    def _highlight(_, session_id):
        return request_graph_update(session_id, highlight=("L3.H2",), include=("L3.H2",))

The app then re-runs the session's last analysis with those GraphSettings changes (any field:
``highlight``, ``include``, ``flagged_neurons={(layer, neuron): "label"}``, ``layer_start``, ...), updates
the graph, the controls and ``ids.ANALYSIS_VERSION``. ``include``, ``highlight`` and ``flagged_neurons``
stay for later traces of the session until the user presses "Clear marks".
"""

from __future__ import annotations

import importlib
from types import ModuleType

from visit.ui.panels import (
    alignment,
    attribution,
    causal_trace,
    compare,
    details,
    editing,
    generate,
    knowledge_neurons,
    layer_norm,
    regularization,
    verify,
)

# the tool bar's groups, in order: what a person is doing
GROUPS: tuple[str, ...] = ("Inspect", "Localize", "Edit", "Compare", "Analyses", "Generate")
DEFAULT_GROUP = "More"
DEFAULT_WIDTH = 0.4

PANELS: tuple[ModuleType, ...] = (details, layer_norm, alignment, regularization, attribution, causal_trace,
                                  knowledge_neurons, verify, compare, editing, generate)


def load_panels(panels=PANELS) -> list:
    """The panel modules, in registry order, each checked against the interface (modules, or names as tests
    pass them)."""
    modules = []
    for panel in panels:
        module = importlib.import_module(panel) if isinstance(panel, str) else panel
        for attr in ("TITLE", "layout", "register_callbacks"):
            if not hasattr(module, attr):
                raise TypeError(f"panel {module.__name__} lacks {attr}")
        modules.append(module)
    return modules


def tool_key(panel) -> str:
    """The tool's value in ``ids.TABS`` (its module's last name, e.g. ``"causal_trace"``)."""
    return panel.__name__.rsplit(".", 1)[-1]


def grouped(panels) -> list[tuple[str, list]]:
    """``[(group, [panel, ...]), ...]``: :data:`GROUPS` first in their order, then any other group in the order its
    first panel comes; panels keep registry order within a group."""
    groups: dict[str, list] = {}
    for panel in panels:
        groups.setdefault(getattr(panel, "GROUP", DEFAULT_GROUP), []).append(panel)
    order = [g for g in GROUPS if g in groups] + [g for g in groups if g not in GROUPS]
    return [(g, groups[g]) for g in order]


def pane_width(panel) -> float:
    """The share of the page's width the tool's pane opens with, kept within 0.2-1."""
    return min(max(float(getattr(panel, "WIDTH", DEFAULT_WIDTH)), 0.2), 1.0)
