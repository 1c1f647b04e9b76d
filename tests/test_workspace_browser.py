"""The workspace (visit/ui/workspace.py, visit/ui/welcome.py) on the real default model in headless Chromium, at
1600x1000 and 1280x800: an example prompt clicked on the empty page traces, the legend opens, every tool opens, and
in every state no visible text run is drawn over another, no error text shows unasked and the console stays clean.
The split between the graph and the tool survives a new trace."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

import browser_support as bs  # noqa: E402

if not bs.available():
    pytest.skip("headless chromium + chromedriver are not installed", allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402

from visit.ui import create_app, ids  # noqa: E402
from visit.ui.panels import grouped, load_panels, tool_key  # noqa: E402
from visit.ui.welcome import example_prompts  # noqa: E402

SIZES = ((1600, 1000), (1280, 800))


@pytest.fixture(scope="module")
def server(default_model):
    srv = bs.Server(create_app(model=default_model))
    yield srv
    srv.stop()


@pytest.fixture
def sized(browser):
    yield browser
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def check_state(driver, what: str) -> None:
    """No text over text, no unasked error, no console error, in the page as it is now."""
    assert bs.text_overlaps(driver) == [], f"{what}: text drawn over text"
    assert bs.visible_errors(driver) == [], f"{what}: an error shows nobody asked for"
    assert bs.severe_errors(driver) == [], f"{what}: console errors"


def whole_graph(server, driver, after: int = -1):
    """The session's analysis once the whole graph is drawn, of a trace newer than version ``after``."""
    state = server.app.visit_sessions.get(bs.session_id(driver))
    analysis = state.analysis
    return analysis if analysis is not None and not analysis.partial and state.version > after else None


def version(server, driver) -> int:
    return server.app.visit_sessions.get(bs.session_id(driver)).version


@pytest.mark.parametrize("width,height", SIZES)
def test_every_tool_on_the_real_model(sized, server, width, height):
    driver = sized
    bs.set_viewport(driver, width, height)
    bs.open_page(driver, server)
    examples = bs.wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".example-button"), what="the examples")
    assert [e.text for e in examples] == list(example_prompts())
    check_state(driver, "the empty page")

    driver.find_element(By.CSS_SELECTOR, ".legend-summary").click()
    body = bs.wait(driver, lambda d: [b for b in d.find_elements(By.CSS_SELECTOR, ".legend-body") if b.is_displayed()],
                   what="the legend")[0]
    for words in ("residual stream", "attention head", "rank of the target", "Edges", "Labels"):
        assert words in body.text
    check_state(driver, "the legend")
    driver.find_element(By.CSS_SELECTOR, ".legend-close").click()
    bs.wait(driver, lambda d: not d.find_element(By.CSS_SELECTOR, ".legend-body").is_displayed(), what="closed")

    example, before = examples[0].text, version(server, driver)  # "The capital of France is"
    examples[0].click()
    analysis = bs.wait(driver, lambda d: whole_graph(server, d, before), timeout=300, what="the traced example")
    assert analysis.trace.prompt == example == driver.find_element(By.ID, ids.PROMPT).get_attribute("value")
    assert analysis.target.token == analysis.top_predictions[0]["token"]  # blank target: the top prediction
    assert not driver.find_elements(By.CSS_SELECTOR, ".example-button")[0].is_displayed()  # gone once traced
    check_state(driver, "the traced graph")

    panels = load_panels()
    buttons = bs.tool_buttons(driver)
    assert [b.text for b in buttons] == [p.TITLE for _, members in grouped(panels) for p in members]
    for panel in panels:
        pane = bs.open_tool(driver, panel.TITLE)
        assert pane.get_attribute("data-tool") == tool_key(panel)
        assert driver.find_element(By.ID, ids.TABS).get_attribute("value") == tool_key(panel)
        assert [p for p in driver.find_elements(By.CSS_SELECTOR, ".tool-pane") if p.is_displayed()] == [pane]
        assert pane.find_element(By.CSS_SELECTOR, ".tool-description").text == panel.DESCRIPTION
        for b in bs.tool_buttons(driver):  # every label whole: nothing cut by its button
            assert driver.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth + 1", b), b.text
        bs.wait(driver, lambda d: not d.execute_script(
            "return !!document.querySelector('.tool-pane.tool-open [data-dash-is-loading=\"true\"]')"),
                timeout=120, what=f"{panel.TITLE} drawn")
        check_state(driver, panel.TITLE)


def test_the_split_survives_a_new_trace(sized, server):
    driver = sized
    bs.set_viewport(driver, 1600, 1000)
    bs.open_page(driver, server)
    before = version(server, driver)
    bs.wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".example-button"), what="the examples")[0].click()
    bs.wait(driver, lambda d: whole_graph(server, d, before), timeout=300, what="the traced example")
    handle = driver.find_element(By.CSS_SELECTOR, ".split-handle")
    tools = driver.find_element(By.ID, "visit-tools")
    before = tools.size["width"]
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).click_and_hold(handle).move_by_offset(-200, 0).release().perform()
    widened = tools.size["width"]
    assert widened > before + 150
    bs.open_tool(driver, "Editing")
    assert tools.size["width"] == widened  # a tool switch keeps the split
    before = version(server, driver)
    box = driver.find_element(By.ID, ids.PROMPT)
    bs.set_input(driver, ids.PROMPT, "The capital of Italy is")
    box.send_keys("\n")
    bs.wait(driver, lambda d: whole_graph(server, d, before), timeout=300, what="the new trace")
    assert tools.size["width"] == widened
    assert driver.find_element(By.CSS_SELECTOR, ".tool-pane.tool-open").get_attribute("data-tool") == "editing"
    driver.refresh()  # a reload keeps the split too
    bs.wait(driver, lambda d: d.find_elements(By.ID, "visit-tools"), what="the page")
    assert driver.find_element(By.ID, "visit-tools").size["width"] == widened
    driver.execute_script("window.localStorage.removeItem('visit.workspace')")
