"""The workspace: the graph and the tool in use side by side (or the tool under the graph), with a split the user
drags, and the tools grouped by what a person is doing in one bar above both.

- The tool bar: one button per panel (class ``tab``, its whole ``TITLE`` as text, ``DESCRIPTION`` as tooltip), in
  the registry's groups (:func:`visit.ui.panels.grouped`), and two arrangement buttons (graph beside / above the
  tool). Clicking a tool sets ``ids.TABS``'s value (a hidden input: panels read ``Input(ids.TABS, "value")`` to
  compute only while open) and shows its pane, in the browser (:data:`SELECT_JS`, no round trip to the server).
- Every tool's pane stays mounted (hidden when another is open), so switching back keeps its inputs, results and
  scroll, and a switch costs no re-render of the panel.
- The split's sizes live in the browser (``assets/workspace.js``: CSS variables on ``<body>``, ``localStorage``):
  the page's re-draws (a new trace) never touch them, and a reload keeps them. Switching tools keeps the split (a
  resized flow graph is re-drawn: seconds with software rendering); a tool made for more room than the split gives
  it (the panel's ``WIDTH``) offers "more room", which sets the split to that share.
- The tool bar's buttons and panes change class in the browser at the click (assets/workspace.js); the clientside
  callback only tells the panels (``ids.TABS``).
"""

from __future__ import annotations

from dash import ALL, ClientsideFunction, Input, Output, State, dcc, html

from visit.ui import ids
from visit.ui.panels import grouped, pane_width, tool_key

TOOL = "visit-tool"  # pattern-matching id type of a tool's button: {"type": TOOL, "index": tool_key}
TOOL_PANE = "visit-tool-pane"  # pattern-matching id type of a tool's pane
WORKSPACE = "visit-workspace"
ARRANGE = "visit-arrange"  # pattern-matching id type: {"type": ARRANGE, "index": "side" | "stacked"}
ARRANGEMENT = "visit-arrangement"  # dcc.Store: the arrangement picked last ("side" | "stacked"; the browser keeps it)
EMPTY_STATE = "Nothing traced yet: type a prompt above and press Enter (or click an example on the graph), then: "
ARRANGEMENTS = (("side", "◧", "graph beside the tool: the graph on the left, the tool on the right; drag the bar"),
                ("stacked", "⬒", "graph above the tool: the tool takes the whole width under it; drag the bar"))


def tool_bar(panels, selected: str) -> html.Nav:
    groups = []
    for group, members in grouped(panels):
        buttons = [html.Button(p.TITLE, id={"type": TOOL, "index": tool_key(p)}, n_clicks=0,
                               title=getattr(p, "DESCRIPTION", p.TITLE), **{"data-tool": tool_key(p)},
                               className="tab tool-button" + (" tab-selected" if tool_key(p) == selected else ""))
                   for p in members]
        groups.append(html.Div([html.Span(group, className="tool-group-label"), *buttons], className="tool-group"))
    arrange = [html.Button(label, id={"type": ARRANGE, "index": key}, n_clicks=0, title=title,
                           className="btn btn-small arrange-button", **{"aria-label": title.split(":")[0]})
               for key, label, title in ARRANGEMENTS]
    return html.Nav([html.Div(groups, className="tool-groups"), html.Div(arrange, className="arrange")],
                    className="tool-bar", **{"aria-label": "tools"})


def tool_pane(panel, selected: str) -> html.Section:
    key = tool_key(panel)
    description = getattr(panel, "DESCRIPTION", "")
    return html.Section([
        html.Div([html.Button("⇔ more room", className="btn btn-small tool-widen",
                              title="give this tool the share of the width it is made for (or drag the bar)"),
                  html.H2(panel.TITLE, className="tool-title"),
                  html.P(description, className="tool-description") if description else None,
                  html.P(EMPTY_STATE + (description or f"use {panel.TITLE}."), className="tool-empty")],
                 className="tool-head"),
        panel.layout(),
    ], id={"type": TOOL_PANE, "index": key}, className="tool-pane" + (" tool-open" if key == selected else ""),
        **{"data-width": f"{pane_width(panel):.3f}", "data-tool": key})


def workspace(graph_area, panels) -> html.Div:
    """The tool bar over the split of ``graph_area`` and the tools' panes."""
    selected = tool_key(panels[0]) if panels else None
    return html.Div([
        tool_bar(panels, selected),
        html.Div([
            graph_area,
            html.Div(className="split-handle", title="drag to give the graph or the tool more room",
                     role="separator", tabIndex="0", **{"aria-orientation": "vertical"}),
            html.Div([dcc.Input(id=ids.TABS, type="hidden", value=selected),
                      *[tool_pane(p, selected) for p in panels]], className="tools", id="visit-tools"),
        ], className="split", id="visit-split"),
        dcc.Store(id=ARRANGEMENT),
    ], className="workspace", id=WORKSPACE)


def register(app) -> None:
    """The browser-side callbacks: open a tool, arrange the split (``assets/workspace.js``)."""
    app.clientside_callback(
        ClientsideFunction("visit_workspace", "select"), Output(ids.TABS, "value"),
        Input({"type": TOOL, "index": ALL}, "n_clicks"), State(ids.TABS, "value"), prevent_initial_call=True)
    app.clientside_callback(
        ClientsideFunction("visit_workspace", "arrange"), Output(ARRANGEMENT, "data"),
        Input({"type": ARRANGE, "index": ALL}, "n_clicks"), prevent_initial_call=True)
