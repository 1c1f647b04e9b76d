"""The knowledge-neurons panel without a browser: input checks, the job, its rendering, the graph request,
the report section (every prompt and token escaped)."""

from __future__ import annotations

import pytest

from dash_helpers import grids, texts
from visit.errors import VisitError

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def app_and_analysis(tiny_factory):
    from visit.pipeline import analyze
    from visit.ui import create_app

    app = create_app(model=tiny_factory("llama"), panels=["visit.ui.panels.details",
                                                          "visit.ui.panels.knowledge_neurons"])
    return app, analyze(app.visit_registry.get(), "The capital of France is")


def test_inputs_are_checked_before_any_work(app_and_analysis):
    from visit.ui.panels.knowledge_neurons import make_job

    _, analysis = app_and_analysis
    with pytest.raises(VisitError, match="trace a prompt first"):
        make_job(None, "", 20, 0.3, 0.5)
    with pytest.raises(VisitError, match="at most 64"):
        make_job(analysis, "", 65, 0.3, 0.5)
    with pytest.raises(VisitError, match="between 0 and 1"):
        make_job(analysis, "", 20, 1.5, 0.5)
    with pytest.raises(VisitError, match="at most"):
        make_job(analysis, "x" * 30_000, 20, 0.3, 0.5)


def test_job_result_render_graph_request_and_report(app_and_analysis):
    from visit.report import render_report
    from visit.ui.panels.knowledge_neurons import KIND, make_job, render
    from visit.ui.state import decode_graph_request, request_graph_update

    app, analysis = app_and_analysis
    app.visit_context.state("s").analysis = analysis
    runner = app.visit_jobs
    job = runner.wait(runner.submit("s", KIND, make_job(analysis, f"France's capital is\n{HOSTILE}", 3, 0.3, 0.5)),
                      120)
    assert job.status == "done", job.error
    kn = runner.result("s", KIND)
    assert analysis.extras["knowledge_neurons"] is kn and kn.prompts[2] == HOSTILE
    assert job.total > 0 and job.done == job.total
    view = render(kn, True)
    assert any("suppress" in t for t in texts(view))
    # these three prompts share neurons on this tiny model (4 at threshold 0.3, share 0.5): a non-empty refined set,
    # so the grid's rows and the graph request below check something
    assert kn.refined and [r["neuron"] for r in grids(view)[0].rowData] == [n.node for n in kn.refined]
    changes = decode_graph_request(request_graph_update("s", include=(kn.refined[0].node,)))
    assert kn.refined[0].node in changes["include"]
    page = render_report(analysis)
    assert "Knowledge neurons" in page and HOSTILE not in page and "&lt;img src=x" in page


def test_a_grid_row_click_puts_the_neuron_into_the_graph(app_and_analysis):
    """The panel's click callback over HTTP: a cellClicked event and the grid's rows -> a graph request."""
    import json
    import urllib.request

    from browser_support import Server
    from visit.ui import ids
    from visit.ui.grid import grid_rows
    from visit.ui.panels.knowledge_neurons import GRID, NOTE, SHOW_ALL
    from visit.ui.state import decode_graph_request

    app, _ = app_and_analysis
    server = Server(app)
    try:
        deps = json.loads(urllib.request.urlopen(server.url + "_dash-dependencies").read())
        dep = next(d for d in deps if f"{NOTE}.children" in d["output"])
        rows = grid_rows([{"neuron": "L0.N3"}, {"neuron": "L1.N5"}])
        click = {"rowId": "1", "colId": "promotes", "rowIndex": 0, "timestamp": 5}
        body = {"output": dep["output"], "outputs": [{"id": o.rsplit(".", 1)[0], "property": o.rsplit(".", 1)[1]}
                                                     for o in dep["output"].strip(".").split("...")],
                "inputs": [[{"id": GRID, "property": "cellClicked", "value": click}],
                           {"id": SHOW_ALL, "property": "n_clicks", "value": None}],
                "state": [[{"id": GRID, "property": "rowData", "value": rows}],
                          {"id": ids.SESSION, "property": "data", "value": "s"}],
                "changedPropIds": [json.dumps(GRID, sort_keys=True, separators=(",", ":")) + ".cellClicked"]}
        request = urllib.request.Request(server.url + "_dash-update-component", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        response = json.loads(urllib.request.urlopen(request).read())["response"]
    finally:
        server.stop()
    payload = next(v for k, props in response.items() if k == ids.GRAPH_REQUEST for v in props.values())
    changes = decode_graph_request(payload)
    assert changes["include"] == ("L1.N5",) and changes["highlight"] == ("L1.N5",)
