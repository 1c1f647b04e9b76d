"""The Attribution panel in a real headless Chromium: charts, table, click a row to highlight in the graph."""

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

from test_browser import Server, open_page, severe_errors, state, trace, wait  # noqa: E402,F401
from selenium.webdriver.common.by import By  # noqa: E402

from visit.ui import create_app  # noqa: E402


@pytest.fixture(scope="module")
def server(tiny_factory):
    app = create_app(model=tiny_factory("gpt2"), panels=["visit.ui.panels.details", "visit.ui.panels.attribution"])
    srv = Server(app)
    yield srv
    srv.stop()


def test_attribution_panel_highlights_a_neuron_in_the_graph(browser, server):
    open_page(browser, server)
    trace(browser, server, "The capital of France is")
    tab = next(t for t in browser.find_elements(By.CSS_SELECTOR, ".tab") if t.text.strip() == "Attribution")
    tab.click()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#attribution-layers .js-plotly-plot")) > 0,
         what="the layer bars")
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#attribution-table tbody tr")) == 20,
         what="the top-neuron table")
    first = browser.find_element(By.CSS_SELECTOR, "#attribution-table tbody tr")
    name = first.find_elements(By.TAG_NAME, "td")[1].text
    before = state(server, browser).version
    first.find_element(By.TAG_NAME, "button").click()
    wait(browser, lambda d: state(server, d).version > before, what="the graph re-drawn with the neuron")
    analysis = state(server, browser).analysis
    assert name in analysis.settings.highlight and name in analysis.graph
    competitor = browser.find_element(By.ID, "attribution-competitor")
    competitor.send_keys(" London\n")
    wait(browser, lambda d: d.find_element(By.ID, "attribution-contrast").is_displayed(), what="the contrast chart")
    assert severe_errors(browser) == []
