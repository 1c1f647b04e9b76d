"""The Compare tab in a real headless Chromium: two prompts as one difference view (both sides, the difference
graph, the changed nodes' grid), the compared graph beside the main one, and the most changed nodes highlighted
in the main graph (screenshot for the docs)."""


import pytest

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

from browser_support import SHOTS, Server, open_page, set_input, severe_errors, wait  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from test_browser import state, trace  # noqa: E402

from visit.ui import create_app  # noqa: E402
from visit.ui.panels import compare as panel  # noqa: E402

SCREENSHOT = SHOTS / "compare_difference.png"


@pytest.fixture(scope="module")
def server(tiny_factory):
    app = create_app(model=tiny_factory("gpt2", seed=2), panels=["visit.ui.panels.details", "visit.ui.panels.compare"])
    srv = Server(app)
    yield srv
    srv.stop()


def test_the_difference_view_of_two_prompts(browser, server):
    open_page(browser, server)
    trace(browser, server, "The capital of France is")
    next(t for t in browser.find_elements(By.CSS_SELECTOR, ".tab") if t.text.strip() == "Compare").click()
    set_input(browser, panel.PROMPT, "The capital of Italy is")
    version = state(server, browser).version
    browser.find_element(By.ID, panel.RUN).click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"#{panel.RESULT} .diff-view"), timeout=120,
         what="the difference view")
    result = browser.find_element(By.ID, panel.RESULT)
    text = result.text
    assert "The capital of France is" in text and "The capital of Italy is" in text
    assert len(result.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")) == 2  # difference graph + compared graph
    assert result.find_elements(By.CSS_SELECTOR, ".ag-row")  # the changed nodes' grid has rows
    wait(browser, lambda d: state(server, d).version > version, what="the main graph re-drawn with the marks")
    marked = state(server, browser).analysis.settings.highlight
    assert marked and all(m in state(server, browser).analysis.graph for m in marked)
    assert severe_errors(browser) == []
    browser.execute_script("arguments[0].scrollIntoView()", result)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    result.screenshot(str(SCREENSHOT))
