"""Pin, group and label in Chromium, and a copied link that brings the same view back in a new browser session.
The grouped graph's screenshot goes to docs/screenshots/graph_grouped.png."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

import browser_support  # noqa: E402

if not browser_support.available():
    pytest.skip("headless chromium + chromedriver are not installed", allow_module_level=True)

from browser_support import Server, count_alerts, open_page, session_id, set_input, severe_errors, wait  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from test_browser import node_point, pointer_to, trace  # noqa: E402

from visit.ui import create_app, ids, pins  # noqa: E402
from visit.ui.panels import details  # noqa: E402

SHOTS = browser_support.SHOTS
HOSTILE_LABEL = "<img src=x onerror=alert(1)>"
TEXTS_JS = ("return Array.from(document.querySelectorAll('#%s .scatterlayer .trace text'))"
            ".filter(t => t.style.display !== 'none').map(t => t.textContent);" % ids.GRAPH)  # the labels shown


@pytest.fixture(scope="module")
def server(tiny_factory):
    srv = Server(create_app(model=tiny_factory("llama"), panels=("visit.ui.panels.details",)))
    yield srv
    srv.stop()


def fresh_page(driver, server):
    """The page in a new browser session (pins, groups and labels stay with a session, across its traces)."""
    open_page(driver, server)
    driver.execute_script("window.sessionStorage.clear()")
    open_page(driver, server)


def curation(server, driver):
    return server.app.visit_sessions.get(session_id(driver)).curation


def ctrl_click(driver, x, y):
    """A click with Ctrl held (key and pointer actions tick together: pauses keep them in step)."""
    ab = ActionBuilder(driver)
    ab.key_action.key_down(Keys.CONTROL)
    ab.pointer_action.pause(0)
    ab.pointer_action.move_to_location(int(x), int(y))
    ab.key_action.pause(0)
    ab.pointer_action.pause(0.3)
    ab.key_action.pause(0.3)
    ab.pointer_action.click()
    ab.key_action.pause(0)
    ab.key_action.pause(0)
    ab.key_action.key_up(Keys.CONTROL)
    ab.pointer_action.pause(0)
    ab.perform()


def pin_and_group(driver, server, analysis, name: str) -> list[str]:
    """Ctrl-click two heads of the last layer, group them as ``name``; returns the two node ids."""
    last = max(a["layer"] for _, a in analysis.graph.nodes(data=True))
    heads = [n for n, a in analysis.graph.nodes(data=True) if a["kind"] == "head" and a["layer"] == last][:2]
    for i, node in enumerate(heads):
        ctrl_click(driver, *node_point(driver, node))
        wait(driver, lambda d: len(curation(server, d).pins) == i + 1, what=f"{node} pinned")
    assert curation(server, driver).pins == tuple(heads)
    set_input(driver, pins.GROUP_NAME, name)
    driver.find_element(By.ID, pins.GROUP).click()
    wait(driver, lambda d: node_point(d, "G1") is not None, what="the group drawn as one node")
    return heads


def label_selected(driver, server, node: str, text: str) -> None:
    pointer_to(driver, *node_point(driver, node), click=True)  # a plain click selects it
    wait(driver, lambda d: curation(server, d).selected == node, what=f"{node} selected")
    set_input(driver, pins.LABEL_TEXT, text)
    driver.find_element(By.ID, pins.LABEL).click()
    wait(driver, lambda d: dict(curation(server, d).labels).get(node) == text, what="the label kept")


def test_pin_and_group(browser, server):
    fresh_page(browser, server)
    analysis = trace(browser, server, "The capital of France is")
    heads = pin_and_group(browser, server, analysis, "last heads")
    state = server.app.visit_sessions.get(session_id(browser))
    group = state.analysis.graph.nodes["G1"]
    assert group["members"] == heads and not any(h in state.analysis.graph for h in heads)
    from visit.graph.attribution import node_attribution

    parts = node_attribution(analysis, heads)
    assert group["attribution"] == pytest.approx(sum(parts.values()), abs=1e-6)
    label_selected(browser, server, "G1", "movers")
    wait(browser, lambda d: "movers" in d.execute_script(TEXTS_JS), what="the label drawn")
    assert "G1 'last heads' (2) = movers" in browser.find_element(By.ID, pins.LIST).text
    SHOTS.mkdir(exist_ok=True)
    browser.find_element(By.ID, ids.GRAPH).screenshot(str(SHOTS / "graph_grouped.png"))
    # pinned only: just the group and the edges between pins (none here); the whole graph back on untick
    browser.find_element(By.CSS_SELECTOR, f"#{pins.ONLY} input").click()
    wait(browser, lambda d: set(state.analysis.graph) == {"G1"}, what="only the pinned group")
    browser.find_element(By.CSS_SELECTOR, f"#{pins.ONLY} input").click()
    wait(browser, lambda d: len(state.analysis.graph) > 1, what="the whole graph again")
    assert state.analysis.trace is analysis.trace  # no new forward pass for any of it
    assert not severe_errors(browser)


def test_a_copied_url_reproduces_the_view_in_a_new_browser_session(browser, server):
    fresh_page(browser, server)
    analysis = trace(browser, server, "The capital of Italy is")
    pin_and_group(browser, server, analysis, "pair")
    label_selected(browser, server, "L0.resid_post" if "L0.resid_post" in analysis.graph else "G1", HOSTILE_LABEL)
    first = server.app.visit_sessions.get(session_id(browser))
    wait(browser, lambda d: "sel=" in d.current_url and "lbl=" in d.current_url, what="the view in the URL")
    link, want, graph = browser.current_url, first.curation, first.analysis.graph
    browser.execute_script("window.sessionStorage.clear()")  # a new browser session opens the link
    browser.get(link)
    count_alerts(browser)
    wait(browser, lambda d: server.app.visit_sessions.analysis(session_id(d)) is not None and
         "G1" in server.app.visit_sessions.analysis(session_id(d)).graph, what="the link's view traced")
    again = server.app.visit_sessions.get(session_id(browser))
    assert again is not first and again.curation == want
    assert (again.analysis.prompt, again.analysis.target.id) == (first.analysis.prompt, first.analysis.target.id)
    assert set(again.analysis.graph) == set(graph)
    assert again.analysis.graph.nodes["G1"]["members"] == graph.nodes["G1"]["members"]
    wait(browser, lambda d: d.find_element(By.ID, details.BODY).find_elements(By.CLASS_NAME, "details-title")
         and d.find_element(By.CLASS_NAME, "details-title").text == want.selected, what="the selected node's details")
    wait(browser, lambda d: any(HOSTILE_LABEL[:13] in t for t in d.execute_script(TEXTS_JS)), what="the label drawn")
    assert count_alerts(browser) == 0 and not browser.find_elements(By.CSS_SELECTOR, f"#{ids.GRAPH} img")
