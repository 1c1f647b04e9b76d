"""The flow graph in Chromium: labels never overlap (measured on the drawn boxes, also zoomed out), and Verify
shows predicted and actual changes that match an independent forward pass. Screenshots go to docs/screenshots/."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

import browser_support  # noqa: E402

if not browser_support.available():
    pytest.skip("headless chromium + chromedriver are not installed", allow_module_level=True)

from browser_support import Server, open_page, severe_errors, wait  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from test_browser import node_point, pointer_to, trace  # noqa: E402

from visit.ui import create_app, ids  # noqa: E402
from visit.ui.panels import verify as verify_panel  # noqa: E402

SHOTS = browser_support.SHOTS
BOXES_JS = """
    const gd = document.querySelector('#%s .js-plotly-plot');
    return Array.from(gd.querySelectorAll('.scatterlayer .trace text'))
        .filter(t => t.style.display !== 'none' && t.textContent)
        .map(t => { const r = t.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })
        .filter(r => r[2] > r[0]);""" % ids.GRAPH


def overlaps(boxes) -> list:
    return [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:]
            if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]]


@pytest.fixture(scope="module")
def server(tiny_factory):
    app = create_app(model=tiny_factory("llama"), panels=("visit.ui.panels.details", "visit.ui.panels.verify"))
    srv = Server(app)
    yield srv
    srv.stop()


def drawn_labels(driver):
    wait(driver, lambda d: d.execute_script(
        "const g = document.querySelector('#%s .js-plotly-plot'); return g.getAttribute('data-labels-kept');"
        % ids.GRAPH), what="labels placed")
    return driver.execute_script(BOXES_JS)


def test_labels_never_overlap(browser, server):
    open_page(browser, server)
    analysis = trace(browser, server, "The capital of France is the city of")
    n_labels = sum(1 for _, a in analysis.graph.nodes(data=True) if a.get("label") is not None)
    boxes = drawn_labels(browser)
    assert boxes and not overlaps(boxes)
    assert len(boxes) < n_labels  # a dense graph: some labels are left to the hover
    SHOTS.mkdir(exist_ok=True)
    browser.find_element(By.ID, ids.GRAPH).screenshot(str(SHOTS / "graph_labels.png"))
    # zoomed far out (every node in a small area) and in: still no overlap
    for factor in (6.0, 0.3):
        browser.execute_script("""
            const gd = document.querySelector('#%s .js-plotly-plot'), r = gd._fullLayout.xaxis.range;
            const c = (r[0] + r[1]) / 2, h = (r[1] - r[0]) / 2 * arguments[0];
            gd.removeAttribute('data-labels-kept');
            Plotly.relayout(gd, {'xaxis.range': [c - h, c + h]});""" % ids.GRAPH, factor)
        boxes = drawn_labels(browser)
        assert not overlaps(boxes), factor
    assert not severe_errors(browser)


def test_verify_matches_an_independent_forward_pass(browser, server):
    open_page(browser, server)
    analysis = trace(browser, server, "The capital of France is")
    vm, tr = analysis.vm, analysis.trace
    node = next(n for n, a in analysis.graph.nodes(data=True) if a["kind"] == "head")
    browser.find_element(By.XPATH, "//*[contains(@class, 'tab') and normalize-space()='Verify']").click()
    x, y = node_point(browser, node)
    pointer_to(browser, x, y, click=True)
    wait(browser, lambda d: node in d.find_element(By.ID, verify_panel.NODES).text, what="the clicked node picked")
    browser.find_element(By.ID, verify_panel.RUN).click()
    wait(browser, lambda d: d.find_elements(By.CLASS_NAME, "verify-actual"), what="the verify result")
    shown_actual = float(browser.find_element(By.CLASS_NAME, "verify-actual").text)
    shown_predicted = float(browser.find_element(By.CLASS_NAME, "verify-predicted").text)
    # independent: a plain PyTorch hook zeroing the head's slice of o_proj's input at the traced position
    layer, head, d_head = analysis.graph.nodes[node]["layer"], analysis.graph.nodes[node]["head"], vm.dims.d_head

    def zero_head(_module, args):
        x = args[0].clone()
        x[:, tr.position, head * d_head:(head + 1) * d_head] = 0
        return (x,)

    handle = vm.model.model.layers[layer].self_attn.o_proj.register_forward_pre_hook(zero_head)
    try:
        with torch.no_grad():
            logits = vm.model(input_ids=torch.tensor([tr.input_ids]), use_cache=False).logits
    finally:
        handle.remove()
    target = analysis.target.id
    actual = float(logits[0, tr.position].float().log_softmax(-1)[target]
                   - tr["logits"][tr.position].float().log_softmax(-1)[target])
    assert shown_actual == pytest.approx(actual, abs=1e-4)
    from visit.graph.attribution import node_attribution

    assert shown_predicted == pytest.approx(-node_attribution(analysis, [node])[node], abs=1e-4)
    browser.find_element(By.ID, verify_panel.SCATTER).screenshot(str(SHOTS / "verify_calibration.png"))


CHART_BOXES_JS = """
    const out = [];
    for (const gd of document.querySelectorAll(arguments[0] + ' .js-plotly-plot')) {
        for (const sel of ['.gtitle', '.annotation-text', '.legend', '.xtitle', '.ytitle']) {
            for (const el of gd.querySelectorAll(sel)) {
                const r = el.getBoundingClientRect();
                if (r.width > 0) out.push([sel, r.left, r.top, r.right, r.bottom]);
            }
        }
    }
    return out;"""


def test_side_panel_charts_are_readable(browser, tiny_factory):
    app = create_app(model=tiny_factory("llama"), panels=("visit.ui.panels.layer_norm",))
    srv = Server(app)
    try:
        open_page(browser, srv)
        trace(browser, srv, "The capital of France is")
        browser.find_element(By.XPATH, "//*[contains(@class, 'tab') and normalize-space()='Layer norm']").click()
        wait(browser, lambda d: len(d.execute_script(CHART_BOXES_JS, ".panel")) >= 4, what="the layer-norm chart")
        boxes = browser.execute_script(CHART_BOXES_JS, ".panel")
        clashes = overlaps([b[1:] for b in boxes])
        assert not clashes, [b for b in boxes if b[1:] in [c for pair in clashes for c in pair]]
        panel = browser.find_element(By.CLASS_NAME, "panel")
        panel.find_element(By.CLASS_NAME, "js-plotly-plot").screenshot(str(SHOTS / "panel_layer_norm.png"))
    finally:
        srv.stop()


def test_a_copied_link_reproduces_the_view(browser, server):
    from browser_support import count_alerts, session_id

    open_page(browser, server)
    first = trace(browser, server, "The capital of France is")
    browser.execute_script("window.__tmp = 1")
    server.app.visit_sessions.get(session_id(browser)).marks = {}
    wait(browser, lambda d: "prompt=" in d.current_url, what="the view in the URL")
    link = browser.current_url
    browser.execute_script("window.sessionStorage.clear()")  # a new browser session opens the link
    browser.get(link)
    wait(browser, lambda d: server.app.visit_sessions.analysis(session_id(d)) is not None, what="the link's trace")
    again = server.app.visit_sessions.analysis(session_id(browser))
    assert session_id(browser) and again is not first
    assert (again.prompt, again.target.id, again.trace.position) == (first.prompt, first.target.id,
                                                                     first.trace.position)
    assert again.settings == first.settings and set(again.graph) == set(first.graph)
    # a hostile string in a URL lands in the prompt box as text; nothing runs
    hostile = "<img src=x onerror=alert(1)>\"'&"
    from urllib.parse import quote

    browser.execute_script("window.sessionStorage.clear()")
    browser.get(server.url + "?prompt=" + quote(hostile) + "&hl=" + quote("<b>x</b>"))
    wait(browser, lambda d: d.find_element(By.ID, ids.PROMPT).get_attribute("value") == hostile, what="the prompt")
    count_alerts(browser)
    wait(browser, lambda d: server.app.visit_sessions.analysis(session_id(d)) is not None, what="the hostile trace")
    assert count_alerts(browser) == 0 and not browser.find_elements(By.CSS_SELECTOR, "#%s img" % ids.PROMPT_TOKENS)
