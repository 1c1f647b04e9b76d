"""The causal-trace panel in a real headless Chromium: the subject prefilled for a shipped fact, the job's
progress, the three heatmaps drawn, the result in the session (and a screenshot for the docs)."""


import pytest

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

from browser_support import SHOTS, Server, open_page, set_input, severe_errors, wait  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from test_browser import state, trace  # noqa: E402

from visit.ui import create_app  # noqa: E402

SCREENSHOT = SHOTS / "causal_trace_panel.png"


@pytest.fixture(scope="module")
def server(tiny_factory):
    app = create_app(model=tiny_factory("llama", seed=1),
                     panels=["visit.ui.panels.details", "visit.ui.panels.causal_trace"])
    srv = Server(app)
    yield srv
    srv.stop()


def test_causal_trace_panel_draws_the_three_heatmaps(browser, server):
    open_page(browser, server)
    trace(browser, server, "The capital of France is")
    tab = next(t for t in browser.find_elements(By.CSS_SELECTOR, ".tab") if t.text.strip() == "Causal trace")
    tab.click()
    wait(browser, lambda d: d.find_element(By.ID, "causal-subject").get_attribute("value") == "France",
         what="the subject prefilled from the shipped fact")
    set_input(browser, "causal-samples", "2")
    browser.find_element(By.ID, "causal-start").click()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#causal-body .js-plotly-plot")) == 3
         and "done" in d.find_element(By.ID, "causal-status").text, timeout=180, what="three heatmaps, done")
    ct = state(server, browser).analysis.extras["causal_trace"]
    assert ct.samples == 2 and set(ct.kinds) == {"hidden", "mlp", "attn"}
    assert "p(clean)" in browser.find_element(By.ID, "causal-body").text
    assert severe_errors(browser) == []
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.find_element(By.ID, "causal-body").screenshot(str(SCREENSHOT))
