"""The Attribution panel in a real headless Chromium: charts, the top-neuron grid (sort, filter), click a row to
highlight it in the graph."""

import re

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

from browser_support import SHOTS  # noqa: E402
from test_browser import Server, open_page, severe_errors, state, trace, wait  # noqa: E402,F401
from selenium.webdriver.common.by import By  # noqa: E402

from visit.tokens import display_token  # noqa: E402
from visit.ui import create_app  # noqa: E402


@pytest.fixture(scope="module")
def server(tiny_factory):
    app = create_app(model=tiny_factory("gpt2"), panels=["visit.ui.panels.details", "visit.ui.panels.attribution"])
    srv = Server(app)
    yield srv
    srv.stop()


GRID = "#attribution-table .visit-grid"
HOSTILE_PROMPT = "The <b>capital</b> of <img src=x onerror=alert(1)> France is"
SCREENSHOT = SHOTS / "attribution_grid.png"


def grid_rows(driver) -> list:
    return driver.find_elements(By.CSS_SELECTOR, f"{GRID} .ag-center-cols-container .ag-row")


def column(driver, col_id: str) -> list[str]:
    """The shown cells of one column, top to bottom (AG Grid orders rows by style, not DOM order)."""
    return driver.execute_script("""
        const rows = [...document.querySelectorAll(arguments[0] + ' .ag-center-cols-container .ag-row')];
        rows.sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top);
        return rows.map(r => r.querySelector(".ag-cell[col-id='" + arguments[1] + "']").textContent);""",
        GRID, col_id)


def test_attribution_panel_highlights_a_neuron_in_the_graph(browser, server):
    open_page(browser, server)
    trace(browser, server, HOSTILE_PROMPT)
    tab = next(t for t in browser.find_elements(By.CSS_SELECTOR, ".tab") if t.text.strip() == "Attribution")
    tab.click()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#attribution-layers .js-plotly-plot")) > 0,
         what="the layer bars")
    wait(browser, lambda d: len(grid_rows(d)) == 20, what="the top-neuron grid")
    scores = [float(c) for c in column(browser, "score")]
    assert scores == sorted(scores, reverse=True)
    browser.execute_script("document.querySelector(arguments[0]).scrollIntoView({block: 'center'})", GRID)
    browser.find_element(By.CSS_SELECTOR, f"{GRID} .ag-header-cell[col-id='score']").click()
    wait(browser, lambda d: [float(c) for c in column(d, "score")] == sorted(scores), what="sorted by score")
    names = column(browser, "component")
    name = next(n for n in names[3:] if sum(n in m for m in names) == 1)  # the filter keeps names containing it
    browser.find_element(By.CSS_SELECTOR, f"{GRID} .ag-floating-filter[col-id='component'] input").send_keys(name)
    wait(browser, lambda d: column(d, "component") == [name], what="the grid filtered to one row")
    before = state(server, browser).version
    browser.find_element(By.CSS_SELECTOR, f"{GRID} .ag-center-cols-container .ag-cell[col-id='top']").click()
    wait(browser, lambda d: state(server, d).version > before, what="the graph re-drawn with the neuron")
    analysis = state(server, browser).analysis
    assert name in analysis.settings.highlight and name in analysis.graph
    assert column(browser, "component") == [name]  # the re-drawn graph left the grid's filter alone
    browser.find_element(By.CSS_SELECTOR, GRID).screenshot(str(SCREENSHOT))
    query = browser.find_element(By.ID, "attribution-query")  # the query grids list the prompt's tokens
    query.send_keys("L1.H0.d3\n")
    tokens = [f"{i}: {display_token(t)}" for i, t in enumerate(analysis.trace.tokens)]
    shown = wait(browser, lambda d: d.execute_script(
        "return [...document.querySelectorAll('#attribution-query-out .ag-cell')].map(c => c.textContent)"),
        what="the query grids")
    sources = [t for t in shown if re.match(r"\d+: ", t)]
    assert set(sources) <= set(tokens) and any("<" in t for t in sources)  # markup tokens, shown literally
    assert not browser.find_elements(By.CSS_SELECTOR, "#attribution-query-out img, #attribution-query-out b")
    competitor = browser.find_element(By.ID, "attribution-competitor")
    competitor.send_keys(" London\n")
    wait(browser, lambda d: d.find_element(By.ID, "attribution-contrast").is_displayed(), what="the contrast chart")
    assert severe_errors(browser) == []
