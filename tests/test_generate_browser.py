"""The Generate panel in a real headless Chromium: generate after the traced prompt, hover data on the tokens,
click a generated token (the graph is traced at that position of prompt + continuation), pin a head, steer it and
see the original and steered continuations side by side (screenshot for the docs)."""


import pytest

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

import browser_support  # noqa: E402

if not browser_support.available():
    pytest.skip("headless chromium + chromedriver are not installed", allow_module_level=True)

from browser_support import SHOTS, Server, open_page, set_input, severe_errors, wait  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from test_browser import node_point, state, trace  # noqa: E402
from test_pins_browser import ctrl_click  # noqa: E402

from visit.ui import create_app  # noqa: E402

SCREENSHOT = SHOTS / "generate_panel.png"
PROMPT = "The capital of France is"
PUSH = "L2.resid_pre += 30 * dir(\" Paris\")"


@pytest.fixture(scope="module")
def server(tiny_factory):
    app = create_app(model=tiny_factory("llama", seed=1), panels=["visit.ui.panels.details",
                                                                  "visit.ui.panels.generate"])
    srv = Server(app)
    yield srv
    srv.stop()


def test_generate_click_a_token_and_steer_a_pinned_head(browser, server):
    open_page(browser, server)
    trace(browser, server, PROMPT)
    next(t for t in browser.find_elements(By.CSS_SELECTOR, ".tab") if t.text.strip() == "Generate").click()
    set_input(browser, "generate-tokens", "4")
    browser.find_element(By.ID, "generate-start").click()
    wait(browser, lambda d: "4 tokens" in d.find_element(By.ID, "generate-status").text, timeout=120,
         what="the generation done")
    gen = server.app.visit_jobs.result(state(server, browser).session_id, "generate")
    tokens = browser.find_elements(By.CSS_SELECTOR, "#generate-body .gen-click")
    assert len(tokens) == 4 and tokens[0].get_attribute("title").startswith(f"p = {gen.tokens[0].p:.4f}; top 5:")

    version = state(server, browser).version
    tokens[1].click()
    wait(browser, lambda d: state(server, d).version > version, timeout=120, what="the clicked token traced")
    traced = state(server, browser).analysis.trace
    assert traced.prompt == PROMPT + gen.text
    assert browser.find_element(By.ID, "visit-prompt").get_attribute("value") == PROMPT + gen.text

    analysis = state(server, browser).analysis
    head = next(n for n, a in analysis.graph.nodes(data=True) if a["kind"] == "head")
    ctrl_click(browser, *node_point(browser, head))
    wait(browser, lambda d: head in state(server, d).curation.pins, what=f"{head} pinned")
    browser.find_element(By.ID, "generate-steer-specs").send_keys(PUSH)
    browser.find_element(By.ID, "generate-steer-start").click()
    wait(browser, lambda d: "done" in d.find_element(By.ID, "generate-steer-status").text, timeout=300,
         what="the steering done")
    original = browser.find_elements(By.CSS_SELECTOR, "#generate-steer-original .gen-token")
    steered = browser.find_elements(By.CSS_SELECTOR, "#generate-steer-steered .gen-token")
    assert len(original) == 4 and len(steered) == 4
    assert browser.find_elements(By.CSS_SELECTOR, "#generate-steer-steered .gen-diff")
    body = browser.find_element(By.ID, "generate-steer-body").text
    assert f"{head}=0" in body and "steered" in body
    assert severe_errors(browser) == []
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shown = browser.find_element(By.ID, "generate-steer-body")
    browser.execute_script("arguments[0].scrollIntoView()", shown)
    shown.screenshot(str(SCREENSHOT))
