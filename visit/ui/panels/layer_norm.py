"""Layer-norm filter panel (VISIT 5.2, App. E): what each norm adds and removes for the traced prompt."""

from __future__ import annotations

import logging

from dash import Input, Output, State, dcc, html, no_update

from visit.analyses.ln_filter import layer_norm_filter
from visit.render import analyses as figures
from visit.tokens import display_token
from visit.ui import ids
from visit.ui.panels.analysis_widgets import (figure_component, message, register_study_callbacks,
                                              sections_component, study_controls, table_component)

TITLE = "Layer norm"
GROUP = "Analyses"
DESCRIPTION = "What each layer norm promotes and demotes in the logit lens, against random vectors."
WIDTH = 0.5
PREFIX = "layer-norm"
TAB_VALUE = __name__.rsplit(".", 1)[-1]  # the app names each tab after its panel module
MODE, BODY, SITE, SITE_BODY = f"{PREFIX}-mode", f"{PREFIX}-body", f"{PREFIX}-site", f"{PREFIX}-site-body"
HINT = ("Each norm's input and output projected through the logit lens: the tokens a norm promotes and "
        "demotes, the target's probability and rank before and after, and a control of random vectors "
        "of the same norm.")

log = logging.getLogger(__name__)


def layout():
    return html.Div([
        html.P(HINT, className="hint"),
        html.Div([
            dcc.RadioItems(id=MODE, value="renorm", inline=True, options=[
                {"label": "lens with the final norm", "value": "renorm"},
                {"label": "without the final norm (raw)", "value": "raw"}]),
        ], className="panel-controls"),
        dcc.Loading(html.Div(id=BODY)),
        dcc.Dropdown(id=SITE, options=[], value=None, placeholder="a norm, for its token lists…"),
        html.Div(id=SITE_BODY),
        study_controls(PREFIX, "mean probability change per token, VISIT Fig. 7 and Tables 1-6"),
    ], className="panel")


def filter_rows(analysis, mode: str):
    tr, target = analysis.trace, analysis.target.id
    return tr.memo(("ln_filter", target, mode), lambda: layer_norm_filter(tr, target, mode=mode))


def register_callbacks(app, ctx):
    @app.callback(
        Output(BODY, "children"), Output(SITE, "options"), Output(SITE, "value"),
        Input(ids.TABS, "value"), Input(MODE, "value"), Input(ids.ANALYSIS_VERSION, "data"),
        State(SITE, "value"), State(ids.SESSION, "data"),
        prevent_initial_call=True,
    )
    def _compute(tab, mode, _version, site, session_id):
        if tab != TAB_VALUE:  # a few seconds on the real model: only while the tab is open (memoised per trace)
            return no_update, no_update, no_update
        analysis = ctx.analysis(session_id)
        if analysis is None:
            return message("Trace a prompt first."), [], None
        try:
            rows = filter_rows(analysis, mode)
        except Exception as exc:  # noqa: BLE001 - the panel must survive
            log.exception("layer-norm filter failed")
            return message(f"could not compute the filter view: {exc}", error=True), [], None
        options = [{"label": r.site.key, "value": r.site.key} for r in rows]
        keys = {r.site.key for r in rows}
        return ([figure_component(figures.ln_filter_figure(rows, analysis.target.token)),
                 html.Details([html.Summary("every norm"), table_component(figures.ln_filter_table(rows))])],
                options, site if site in keys else rows[-1].site.key)

    @app.callback(Output(SITE_BODY, "children"), Input(SITE, "value"), State(MODE, "value"),
                  State(ids.SESSION, "data"), prevent_initial_call=True)
    def _site(site, mode, session_id):
        analysis = ctx.analysis(session_id)
        if analysis is None or not site:
            return None
        row = next((r for r in filter_rows(analysis, mode) if r.site.key == site), None)
        return None if row is None else site_table(row)

    register_study_callbacks(app, PREFIX, ("ln",), ctx,
                             lambda result: sections_component(figures.ln_study_figures(result.results["ln"])))


def site_table(row):
    columns = [[t["token"] for t in row.before["top"]], [t["token"] for t in row.after["top"]],
               [f"{t['token']}" for t in row.gained], [t["token"] for t in row.lost],
               [t["token"] for t in row.control_gained], [t["token"] for t in row.control_lost]]
    rows = [[display_token(c) for c in cells] for cells in zip(*columns)]
    headers = ["top before", "top after", "gains most", "loses most", "random: gains", "random: loses"]
    caption = f"{row.site.key} (lens {row.lens_mode}): total change {row.total_change:.3g}, " \
              f"random {row.control_total_change:.3g}"
    if row.target:
        t = row.target
        caption += (f"; target p {t['prob_before']:.3g} → {t['prob_after']:.3g}, "
                    f"rank {t['rank_before']} → {t['rank_after']}")
    return table_component(figures.Table(headers, rows, caption))
