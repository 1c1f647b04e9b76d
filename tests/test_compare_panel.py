"""The Compare panel over real HTTP: two prompts as one difference view; the most changed nodes marked."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from browser_support import Server  # noqa: E402

from visit.ui import create_app, ids  # noqa: E402
from visit.ui.client import DashClient  # noqa: E402
from visit.ui.panels import compare as panel  # noqa: E402


@pytest.fixture(scope="module")
def served(tiny_factory):
    vm = tiny_factory("gpt2")
    app = create_app(model=vm, panels=("visit.ui.panels.compare",))
    server = Server(app)
    yield server, app, vm
    server.stop()


def call(client, session, **fields):
    values = {f"{panel.RUN}.n_clicks": 1, f"{ids.SESSION}.data": session,
              **{f"{getattr(panel, k.upper())}.value": v for k, v in fields.items()}}
    return client.call(f"{panel.RESULT}.children", f"{panel.RUN}.n_clicks", values)


def test_two_prompts_as_one_difference_view(served):
    server, app, vm = served
    client, session = DashClient(server.url), DashClient.new_session()
    client.trace(session, "The capital of France is")
    out = call(client, session, prompt="The capital of Italy is")
    text = str(out[f"{panel.RESULT}.children"])
    assert "The capital of Italy is" in text and "Δ attribution" in text
    request = out[f"{ids.GRAPH_REQUEST}.data"]
    marked = request["changes"]["highlight"]
    assert marked and all(m in text for m in marked[:3])
    assert "difference: compared − this trace" in text  # the difference graph
    assert "the compared graph" in text and "Italy" in text  # and the compared graph beside the main one


def test_hostile_prompt_stays_text(served):
    server, app, vm = served
    client, session = DashClient(server.url), DashClient.new_session()
    client.trace(session, "The capital of France is")
    hostile = "<img src=x onerror=alert(1)>"
    out = call(client, session, prompt=hostile)
    children = out[f"{panel.RESULT}.children"]
    assert hostile in str(children)  # as a text child (React escapes it), never as markup
    assert "dangerouslySetInnerHTML" not in str(children)
    # the exported report carries the comparison, escaped
    page = client.export(session)[f"{ids.DOWNLOAD}.data"]["content"]
    assert "Compare: this view against another" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and hostile not in page


def test_a_changed_node_row_click_puts_it_into_the_graph(served):
    import json
    import urllib.request

    from visit.ui.diff_view import changed_grid_id
    from visit.ui.grid import grid_rows
    from visit.ui.state import decode_graph_request

    server, app, vm = served
    grid = changed_grid_id(panel.LABELS)
    key = json.dumps(grid, sort_keys=True, separators=(",", ":"))
    rows = grid_rows([{"node": "L0.H1"}, {"node": "L1.H2"}])
    body = {"outputs": {"id": ids.GRAPH_REQUEST, "property": "data"},
            "inputs": [{"id": grid, "property": "cellClicked", "value": {"rowId": "1", "timestamp": 3}}],
            "state": [{"id": grid, "property": "rowData", "value": rows}, {"id": ids.SESSION, "property": "data",
                                                                          "value": "s"}],
            "changedPropIds": [key + ".cellClicked"]}
    dep = next(d for d in DashClient(server.url).dependencies()
               if any(i["id"] == key and i["property"] == "cellClicked" for i in d["inputs"]))
    body["output"] = dep["output"]
    request = urllib.request.Request(server.url + "_dash-update-component", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    response = json.loads(urllib.request.urlopen(request).read())["response"]
    payload = next(v for k, props in response.items() if k == ids.GRAPH_REQUEST for v in props.values())
    changes = decode_graph_request(payload)
    assert changes["include"] == ("L1.H2",) and changes["highlight"] == ("L1.H2",)
