"""The editing panel in a real headless Chromium: the template prefilled, an edit applied as a job, the
before/after table and the graph difference drawn, the graph re-traced on the edited weights, and a second
browser session that traces the same prompt at the same time seeing the unedited model (screenshot for the docs)."""


import pytest

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

from browser_support import SHOTS, Server, open_page, session_id, set_input, severe_errors, wait  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from test_browser import state, trace  # noqa: E402

from visit.ui import create_app  # noqa: E402

SCREENSHOT = SHOTS / "editing_panel.png"
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def server(tiny_factory):
    app = create_app(model=tiny_factory("llama", seed=1),
                     panels=["visit.ui.panels.details", "visit.ui.panels.causal_trace", "visit.ui.panels.editing"])
    srv = Server(app)
    yield srv
    srv.stop()


def final_prob(analysis) -> float:
    return analysis.layer_strip[-1]["mlp"]["target_prob"]


def test_an_edit_in_one_session_only(browser, server):
    open_page(browser, server)
    before = trace(browser, server, PROMPT)
    tab = next(t for t in browser.find_elements(By.CSS_SELECTOR, ".tab") if t.text.strip() == "Editing")
    tab.click()
    wait(browser, lambda d: d.find_element(By.ID, "editing-template").get_attribute("value")
         == "The capital of {} is", what="the template prefilled from the shipped fact")
    set_input(browser, "editing-new", "Rome")
    next(el for el in browser.find_elements(By.CSS_SELECTOR, "#editing-method label") if "KN-E" in el.text).click()
    version = state(server, browser).version
    browser.find_element(By.ID, "editing-start").click()
    wait(browser, lambda d: "applied" in d.find_element(By.ID, "editing-status").text, timeout=240,
         what="the edit applied")
    wait(browser, lambda d: state(server, d).version > version, timeout=60, what="the graph re-traced")
    mine = state(server, browser)
    assert [e.method for e in mine.edits] == ["kn"]
    wait(browser, lambda d: state(server, d).analysis.trace.overlay.key == mine.edits.overlay().key,
         what="the graph traced on the edited weights")
    body = browser.find_element(By.ID, "editing-body").text
    assert "P(Rome)" in body and "before the edit" in body and "after the edit" in body
    assert "revert" in browser.find_element(By.ID, "editing-list").text
    assert severe_errors(browser) == []
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shown = browser.find_element(By.ID, "editing-body")
    browser.execute_script("arguments[0].scrollIntoView()", shown)
    shown.screenshot(str(SCREENSHOT))

    first = browser.current_window_handle
    browser.switch_to.new_window("tab")  # a new tab: its own session
    try:
        open_page(browser, server)
        other = trace(browser, server, PROMPT)
        assert not state(server, browser).edits and not other.trace.overlay
        assert other.target.id == before.target.id
        assert final_prob(other) == pytest.approx(final_prob(before), abs=1e-6)
    finally:
        browser.close()
        browser.switch_to.window(first)
    browser.find_element(By.CSS_SELECTOR, "#editing-list button").click()  # revert
    wait(browser, lambda d: not state(server, d).edits and not state(server, d).analysis.trace.overlay,
         what="the edit reverted and the graph traced again")


@pytest.mark.slow
def test_rome_with_the_panel_defaults_on_the_real_model_and_all_layers_shows_its_result(browser, default_model):
    """Issue 17's blocker: with the graph on all 30 layers the edit's result (a difference graph of a megabyte)
    took longer to send than the poll interval, every poll superseded the last, and the page never showed it."""
    app = create_app(model=default_model)
    srv = Server(app)
    try:
        n = default_model.dims.n_layers
        open_page(browser, srv, f"?prompt=The+capital+of+France+is&layers=0-{n - 1}")
        wait(browser, lambda d: state(srv, d).analysis is not None, timeout=120, what="the linked view traced")
        assert len(state(srv, browser).analysis.settings.layers(n)) == n
        tab = next(t for t in browser.find_elements(By.CSS_SELECTOR, ".tab") if t.text.strip() == "Editing")
        tab.click()
        wait(browser, lambda d: d.find_element(By.ID, "editing-template").get_attribute("value")
             == "The capital of {} is", what="the template prefilled")
        set_input(browser, "editing-new", "Rome")
        browser.find_element(By.ID, "editing-start").click()
        try:
            wait(browser, lambda d: "P(Rome)" in d.find_element(By.ID, "editing-body").text, timeout=900,
                 what="the before/after result shown")
        except Exception:
            job = srv.app.visit_jobs.job(state(srv, browser) and session_id(browser), "edit")
            raise AssertionError(f"page: {browser.find_element(By.ID, 'editing-status').text!r}; "
                                 f"server: {job and (job.status, job.progress_text())}")
        assert "applied" in browser.find_element(By.ID, "editing-status").text
        assert [e.method for e in state(srv, browser).edits] == ["rome"]
        assert severe_errors(browser) == []
    finally:
        srv.stop()
