"""The Verify panel over real HTTP: predicted and actual change shown, the session's calibration scatter grows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from browser_support import Server  # noqa: E402

from visit.ui import create_app, ids  # noqa: E402
from visit.ui.client import DashClient  # noqa: E402
from visit.ui.panels import verify as panel  # noqa: E402


@pytest.fixture(scope="module")
def served(tiny_factory):
    vm = tiny_factory("qwen2")
    app = create_app(model=vm, panels=("visit.ui.panels.verify",))
    server = Server(app)
    yield server, app, vm
    server.stop()


def test_verify_panel_shows_predicted_and_actual(served):
    server, app, vm = served
    client, session = DashClient(server.url), DashClient.new_session()
    client.trace(session, "The capital of France is")
    analysis = app.visit_sessions.analysis(session)
    node = next(n for n, a in analysis.graph.nodes(data=True) if a["kind"] == "head")
    values = {f"{panel.RUN}.n_clicks": 1, f"{panel.NODES}.value": [node], f"{panel.MODE}.value": "zero",
              f"{ids.SESSION}.data": session}
    out = client.call(f"{panel.RESULT}.children", f"{panel.RUN}.n_clicks", values)
    text = str(out[f"{panel.RESULT}.children"])
    # the actual value is that of an independent forward pass with the head's z zeroed at the position
    layer, head = analysis.graph.nodes[node]["layer"], analysis.graph.nodes[node]["head"]
    o_proj = vm.model.model.layers[layer].self_attn.o_proj
    d_head = vm.dims.d_head

    def zero_head(_module, args):
        x = args[0].clone()
        x[:, analysis.trace.position, head * d_head:(head + 1) * d_head] = 0
        return (x,)

    handle = o_proj.register_forward_pre_hook(zero_head)
    try:
        with torch.no_grad():
            logits = vm.model(input_ids=torch.tensor([analysis.trace.input_ids]), use_cache=False).logits
    finally:
        handle.remove()
    lp = logits[0, analysis.trace.position].float().log_softmax(-1)[analysis.target.id]
    before = analysis.trace["logits"][analysis.trace.position].float().log_softmax(-1)[analysis.target.id]
    assert f"{float(lp - before):+.4f}" in text
    assert "predicted" in text and "actual" in text
    scatter = out[f"{panel.SCATTER}.figure"]
    assert len(scatter["data"][1]["x"]) == 1
    page = client.export(session)[f"{ids.DOWNLOAD}.data"]["content"]  # the report lists the check
    assert "Verify: attribution against knock-outs" in page and f"{float(lp - before):+.4f}" in page
    out = client.call(f"{panel.RESULT}.children", f"{panel.RUN}.n_clicks", {**values, f"{panel.RUN}.n_clicks": 2})
    assert len(out[f"{panel.SCATTER}.figure"]["data"][1]["x"]) == 2  # the session's checks accumulate
    assert "This session's checks (2)" in str(out[f"{panel.RESULT}.children"])  # and are listed in a grid
    bad = client.call(f"{panel.RESULT}.children", f"{panel.RUN}.n_clicks",
                      {**values, f"{panel.NODES}.value": ["L0.resid_post"]})
    assert "cannot verify" in str(bad[f"{panel.RESULT}.children"])
