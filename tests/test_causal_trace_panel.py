"""The causal-trace panel without a browser: input checks, the job and its progressive result, the cell click's
graph request (it moves the graph to the token), the report section (every token escaped)."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from visit.errors import VisitError

sys.path.insert(0, str(Path(__file__).parent))

PROMPT = "The Eiffel Tower is located in the city of <b>x</b>"


@pytest.fixture(scope="module")
def app_and_analysis(tiny_factory):
    from visit.pipeline import analyze
    from visit.ui import create_app

    app = create_app(model=tiny_factory("gpt2", seed=5), panels=["visit.ui.panels.details",
                                                                 "visit.ui.panels.causal_trace"])
    return app, analyze(app.visit_registry.get(), PROMPT)


def test_inputs_are_checked_before_any_work(app_and_analysis):
    from visit.ui.panels.causal_trace import start

    app, analysis = app_and_analysis
    ctx = app.visit_context
    with pytest.raises(VisitError, match="trace a prompt first"):
        start(ctx, "nobody", ("Eiffel Tower", "", 2, ["hidden"]))
    ctx.state("s").analysis = analysis
    for values, message in [(("", "", 2, ["hidden"]), "subject"), (("Louvre", "", 2, ["hidden"]), "does not occur"),
                            (("Eiffel Tower", "", 10_000, ["hidden"]), "at most"),
                            (("Eiffel Tower", "", 2, []), "at least one kind")]:
        with pytest.raises(VisitError, match=message):
            start(ctx, "s", values)


def test_job_fills_the_grid_and_the_report(app_and_analysis):
    from visit.report import render_report
    from visit.ui.panels.causal_trace import KIND, cell_request, render, start
    from visit.ui.state import decode_graph_request

    app, analysis = app_and_analysis
    ctx = app.visit_context
    ctx.state("s").analysis = analysis
    job = ctx.jobs.wait(ctx.jobs.submit("s", KIND, start(ctx, "s", ("Eiffel Tower", "", 2, ["hidden", "mlp"]))), 120)
    assert job.status == "done", job.error
    ct = ctx.jobs.result("s", KIND)
    assert analysis.extras["causal_trace"] is ct and set(ct.kinds) == {"hidden", "mlp"}
    assert ct.target.id == analysis.target.id and np.isfinite(ct.kinds["mlp"]).all()
    assert job.done == job.total > 0 and job.partial_count >= 1
    drawn = render(ct, True).children
    assert "p(clean)" in drawn[0].children and [g.id["kind"] for g in drawn[1:]] == ["hidden", "mlp"]
    changes = decode_graph_request(cell_request("s", "mlp", {"x": 2, "y": "5 ␣located", "z": 0.1}, 3))
    assert changes["position"] == 5 and "L2.mlp_out" in changes["highlight"]
    assert changes["layer_start"] == 0 and changes["layer_end"] == 2
    page = render_report(analysis)
    assert "Causal trace" in page and "<b>x</b>" not in page and "&lt;b&gt;x" in page


def test_a_cell_click_moves_the_graph_to_its_token_and_keeps_the_target(tiny_factory):
    """The cell's graph explains the traced target at the cell's token (not that token's top prediction), and
    the Position and Target boxes say so."""
    from browser_support import Server

    from visit.ui import create_app, ids
    from visit.ui.client import DashClient
    from visit.ui.panels.causal_trace import HEAT

    app = create_app(model=tiny_factory("gpt2", seed=5), panels=["visit.ui.panels.details",
                                                                 "visit.ui.panels.causal_trace"])
    server = Server(app)
    try:
        client, session = DashClient(server.url), DashClient.new_session()
        client.trace(session, "The Eiffel Tower is located in the city of")
        before = app.visit_sessions.analysis(session)
        request = client.call(f"{ids.GRAPH_REQUEST}.data", f'{{"kind":"mlp","type":"{HEAT}"}}.clickData',
                              {f"{ids.SESSION}.data": session})
        assert request == {}  # no click value: nothing asked
        dep = next(d for d in client.dependencies()
                   if ids.GRAPH_REQUEST in d["output"] and any(HEAT in i["id"] for i in d["inputs"]))
        body = {"output": dep["output"], "outputs": {"id": ids.GRAPH_REQUEST, "property": "data"},
                "inputs": [[{"id": {"type": HEAT, "kind": "mlp"}, "property": "clickData",
                             "value": {"points": [{"x": 1, "y": "2 ␣Tower", "z": 0.1}]}}]],
                "state": [{"id": ids.SESSION, "property": "data", "value": session}],
                "changedPropIds": [f'{{"kind":"mlp","type":"{HEAT}"}}.clickData']}
        raw = urllib.request.urlopen(urllib.request.Request(
            server.url + "_dash-update-component", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}, method="POST"), timeout=120).read()
        payload = json.loads(raw)["response"][ids.GRAPH_REQUEST]["data"]
        out = client.call(f"{ids.GRAPH}.figure", f"{ids.GRAPH_REQUEST}.data",
                          {f"{ids.SESSION}.data": session, f"{ids.GRAPH_REQUEST}.data": payload,
                           f"{ids.PRUNE_BY}.value": "activation"})
        after = app.visit_sessions.analysis(session)
        assert after.trace.position == 2 and after.target.id == before.target.id
        assert out[f"{ids.POSITION}.value"] == 2 and out[f"{ids.TARGET}.value"] == before.target.token
    finally:
        server.stop()
