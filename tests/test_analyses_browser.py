"""The analysis panels in a real headless Chromium: compute, run a study, flag neurons in the graph.

Reuses the app's browser-test helpers (server in a thread, selenium on Debian's chromium); skipped
with them when chromium or chromedriver is missing.
"""

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

from test_browser import Server, open_page, severe_errors, state, trace, wait  # noqa: E402,F401
from selenium.webdriver.common.by import By  # noqa: E402

from visit.ui import create_app  # noqa: E402
from visit.ui.panels import PANELS  # noqa: E402


@pytest.fixture(scope="module")
def server(tiny_factory):
    app = create_app(model=tiny_factory("llama"), panels=PANELS)
    srv = Server(app)
    yield srv
    srv.stop()


def open_tab(driver, title: str):
    tab = next(t for t in driver.find_elements(By.CSS_SELECTOR, ".tab") if t.text.strip() == title)
    tab.click()


def plots_in(driver, element_id: str) -> int:
    return len(driver.find_elements(By.CSS_SELECTOR, f"#{element_id} .js-plotly-plot"))


def test_panels_compute_study_and_flag_neurons(browser, server):
    open_page(browser, server)
    trace(browser, server, "The capital of France is")

    open_tab(browser, "Layer norm")  # opening the tab computes for the traced prompt
    wait(browser, lambda d: plots_in(d, "layer-norm-body") > 0, what="the layer-norm figure")
    wait(browser, lambda d: "rank" in d.find_element(By.ID, "layer-norm-site-body").text, what="a norm's tokens")

    open_tab(browser, "Alignment")
    wait(browser, lambda d: plots_in(d, "alignment-body") > 0, what="the alignment figure")
    wait(browser, lambda d: "heads ranked by norm" in d.find_element(By.ID, "alignment-layer-body").text,
         what="the heads table")

    open_tab(browser, "Regularization neurons")
    browser.find_element(By.CSS_SELECTOR, "#regularization-study-correct input").click()  # keep every prompt
    limit = browser.find_element(By.ID, "regularization-study-limit")
    limit.clear()
    limit.send_keys("2")
    browser.find_element(By.ID, "regularization-study-start").click()
    wait(browser, lambda d: "2 of 2 prompts" in d.find_element(By.ID, "regularization-study-status").text,
         timeout=180, what="the study")
    wait(browser, lambda d: plots_in(d, "regularization-study-body") > 0, what="the study figures")
    before = state(server, browser).version
    browser.find_element(By.ID, "regularization-flag").click()
    wait(browser, lambda d: state(server, d).version > before, what="the graph re-drawn with flags")
    flagged = state(server, browser).analysis.settings.flagged_neurons
    assert flagged and set(flagged.values()) == {"regularization"}
    assert severe_errors(browser) == []
