"""The web app in a real headless Chromium (Debian chromium + chromedriver), driven with selenium.

One app server (a tiny random Llama model, in this process so tests can look at the server-side
session state) is shared by the whole module, and the browser by the whole test session (tests/conftest.py,
tests/browser_support.py); the last test loads the real default model. Skipped when chromium or chromedriver
is missing.
"""

from __future__ import annotations

import time
import types

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

import browser_support  # noqa: E402

if not browser_support.available():
    pytest.skip("headless chromium + chromedriver are not installed", allow_module_level=True)

from browser_support import Server, open_page, session_id, severe_errors, wait  # noqa: E402,F401
from dash import Input, Output, State, html  # noqa: E402
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from visit.ui import create_app, ids  # noqa: E402
from visit.ui.panels import PANELS  # noqa: E402
from visit.ui.state import request_graph_update  # noqa: E402

HOSTILE = "<img src=x onerror=alert(1)>"  # the whole corpus: tests/test_hostile_browser.py

GRAPH_JS = "const g = document.querySelector('#%s .js-plotly-plot'); return g && g.data ? g.data.length : 0;" % ids.GRAPH


def make_test_panel():
    """A panel like the ones other engineers add: a button asking the app to highlight a node."""
    panel = types.ModuleType("visit_test_panel")
    panel.TITLE = "Test panel"
    panel.layout = lambda: html.Div([html.Button("highlight", id="testpanel-go", n_clicks=0),
                                     html.Div(id="testpanel-seen")])

    def register_callbacks(app, ctx):
        @app.callback(Output(ids.GRAPH_REQUEST, "data", allow_duplicate=True), Input("testpanel-go", "n_clicks"),
                      State(ids.SESSION, "data"), prevent_initial_call=True)
        def go(_, session_id):
            node = next(iter(ctx.analysis(session_id).graph.nodes))
            return request_graph_update(session_id, highlight=(node,))

        @app.callback(Output("testpanel-seen", "children"), Input(ids.ANALYSIS_VERSION, "data"),
                      State(ids.SESSION, "data"), prevent_initial_call=True)
        def seen(version, session_id):
            a = ctx.analysis(session_id)
            return f"v{version}: {len(a.graph)} nodes, highlight {','.join(a.settings.highlight)}" if a else ""

    panel.register_callbacks = register_callbacks
    return panel


@pytest.fixture(scope="module")
def server(tiny_factory):
    from visit.models import load_model

    app = create_app(model=tiny_factory("llama"), loader=load_model, panels=(*PANELS, make_test_panel()))
    srv = Server(app)
    yield srv
    srv.stop()


# ---- helpers ------------------------------------------------------------------------------------------

def state(server, driver):
    return server.app.visit_sessions.get(session_id(driver))


def trace(driver, server, prompt: str, key=Keys.ENTER):
    """Type the prompt, press Enter, wait until the session's analysis changes and the graph is drawn."""
    before = state(server, driver).version
    box = driver.find_element(By.ID, ids.PROMPT)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(prompt)
    box.send_keys(key)
    wait(driver, lambda d: state(server, d).version > before, what="a new analysis")
    wait(driver, lambda d: d.execute_script(GRAPH_JS) > 0, what="the graph")
    wait(driver, lambda d: d.find_element(By.ID, ids.TRACE).is_enabled(), what="the trace button back")
    return state(server, driver).analysis


def message_text(driver) -> str:
    return driver.find_element(By.ID, ids.MESSAGE).text


def node_point(driver, node_id: str):
    """Viewport coordinates of a node's marker, from plotly's own axes."""
    return driver.execute_script("""
        const gd = document.querySelector('#%s .js-plotly-plot');
        const fl = gd._fullLayout, box = gd.getBoundingClientRect();
        for (const t of gd._fullData) {  // decoded: gd.data may hold base64 typed-array specs
            if (!t.customdata || !String(t.mode).includes('markers')) continue;  // groups: markers+text
            const i = t.customdata.findIndex(c => c[0] === arguments[0]);
            if (i < 0) continue;
            return [box.left + fl.xaxis._offset + fl.xaxis.l2p(t.x[i]),
                    box.top + fl.yaxis._offset + fl.yaxis.l2p(t.y[i])];
        }
        return null;""" % ids.GRAPH, node_id)


def pointer_to(driver, x, y, click=False):
    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(int(x), int(y))
    actions.pointer_action.pause(0.4)
    if click:
        actions.pointer_action.click()
    actions.perform()


def pick_node(analysis) -> str:
    """The last block's residual output: a big node, drawn on the spine, easy to hit."""
    return [n for n, a in analysis.graph.nodes(data=True) if a["kind"] == "resid_post"][-1]


# ---- tests --------------------------------------------------------------------------------------------

def test_page_loads_without_console_errors(browser, server):
    open_page(browser, server)
    assert browser.title == "visit"
    assert "tiny-llama" in browser.find_element(By.ID, ids.MODEL_STATUS).text
    assert browser.find_element(By.ID, ids.TRACE).is_enabled()
    assert session_id(browser)
    assert severe_errors(browser) == []


def shown_errors(driver) -> list[str]:
    """Error texts on the page: the app's messages and the pin bar's note."""
    texts = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".message-error") if e.text.strip()]
    note = driver.find_element(By.ID, "pins-note").text.strip()
    return texts + ([note] if note else [])


def test_the_landing_page_shows_no_error_nobody_asked_for(browser, server):
    """Stores' first values as the page loads used to reach the trace ("the prompt is empty") and the pin bar
    ("'' is not a node id")."""
    open_page(browser, server)
    wait(browser, lambda d: state(server, d) is not None and session_id(d), what="the session")
    time.sleep(2)  # the page's first callbacks have answered
    assert shown_errors(browser) == [] and state(server, browser).analysis is None
    assert severe_errors(browser) == []


def test_reloading_a_linked_view_keeps_it(browser, server):
    """F5 on a page whose URL holds a view: the same tab keeps its session, whose request equals the URL; the
    page used to take the URL for one it had just written itself and leave its blank controls alone."""
    open_page(browser, server, "?prompt=The+capital+of+France+is&layers=0-1")
    wait(browser, lambda d: state(server, d).analysis is not None and d.execute_script(GRAPH_JS) > 0,
         what="the linked view")
    version = state(server, browser).version
    browser.refresh()
    wait(browser, lambda d: d.find_elements(By.ID, ids.PROMPT)
         and d.find_element(By.ID, ids.PROMPT).get_attribute("value") == "The capital of France is",
         what="the prompt restored")
    wait(browser, lambda d: state(server, d).version > version and d.execute_script(GRAPH_JS) > 0,
         what="the view drawn again")
    assert browser.find_element(By.ID, ids.LAYER_END).get_attribute("value") == "1"
    assert shown_errors(browser) == []


def test_trace_draws_graph_strip_and_predictions(browser, server):
    open_page(browser, server)
    analysis = trace(browser, server, "The capital of France is")
    n_traces = browser.execute_script(GRAPH_JS)
    assert n_traces == len(analysis.figure.data)
    chips = browser.find_elements(By.CSS_SELECTOR, f"#{ids.PREDICTIONS} .chip")
    assert len(chips) == len(analysis.top_predictions) == 10
    assert "chip-selected" in chips[0].get_attribute("class")  # blank target = the top prediction
    strip_cells = browser.find_elements(By.CSS_SELECTOR, f"#{ids.LAYER_STRIP} td.strip-cell")
    assert len(strip_cells) == 2 * analysis.trace.n_layers
    tokens = browser.find_elements(By.CSS_SELECTOR, f"#{ids.PROMPT_TOKENS} .tok")
    assert len(tokens) == len(analysis.trace.tokens)
    assert "tok-position" in tokens[-1].get_attribute("class")
    options = browser.find_elements(By.CSS_SELECTOR, f"#{ids.TARGET_SUGGESTIONS} option")
    assert [o.get_attribute("value") for o in options] == [p["token"] for p in analysis.top_predictions]
    assert severe_errors(browser) == []


def test_hover_and_click_a_node_opens_its_details(browser, server):
    open_page(browser, server)
    analysis = trace(browser, server, "The capital of France is")
    node = pick_node(analysis)
    x, y = node_point(browser, node)
    pointer_to(browser, x, y)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"#{ids.GRAPH} .hoverlayer .hovertext"),
         what="a hover label")
    pointer_to(browser, x, y, click=True)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#details-body .details-title"), what="details")
    assert browser.find_element(By.CSS_SELECTOR, "#details-body .details-title").text == node
    body = browser.find_element(By.ID, "details-body").text
    from visit.pipeline import node_details
    from visit.tokens import display_token

    details = node_details(analysis, node)
    assert len(details["top"]) == 20
    for row in details["top"][:3] + details["bottom"][:3]:
        assert display_token(row["token"]).strip() in body
    assert "target rank" in body and "norm" in body and "entropy" in body
    assert severe_errors(browser) == []


def test_click_an_edge_shows_its_coefficient(browser, server):
    open_page(browser, server)
    analysis = trace(browser, server, "The capital of France is")
    u, v = next((u, v) for u, v, e in analysis.graph.edges(data=True)
                if e.get("coefficient") is not None and analysis.graph.nodes[v]["kind"] == "neuron")
    x, y = node_point(browser, f"edge:{u}->{v}")
    pointer_to(browser, x, y, click=True)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#details-body .details-title"), what="edge details")
    assert browser.find_element(By.CSS_SELECTOR, "#details-body .details-title").text == f"{u} → {v}"
    body = browser.find_element(By.ID, "details-body").text
    edge = analysis.graph.edges[u, v]
    assert "coefficient" in body and f"{edge['coefficient']:.4g}" in body


def test_prediction_chip_sets_the_target(browser, server):
    open_page(browser, server)
    analysis = trace(browser, server, "The capital of France is")
    from visit.tokens import resolve_target

    tokenizer = analysis.trace.vm.tokenizer
    # prefer a prediction whose text alone would resolve to another token (a continuation piece like
    # "visors" typed reads as " vis..."): the chip must still pick exactly that token
    preds = analysis.top_predictions
    i = next((i for i, p in enumerate(preds) if i > 0 and resolve_target(tokenizer, p["token"]).id != p["id"]), 1)
    before = state(server, browser).version
    browser.find_elements(By.CSS_SELECTOR, f"#{ids.PREDICTIONS} .chip")[i].click()
    wait(browser, lambda d: state(server, d).version > before, what="a re-trace for the chip's token")
    new = state(server, browser).analysis
    assert new.target.id == analysis.top_predictions[i]["id"]
    wait(browser, lambda d: d.find_element(By.ID, ids.TARGET).get_attribute("value")
         == analysis.top_predictions[i]["token"], what="the target box")
    chips = browser.find_elements(By.CSS_SELECTOR, f"#{ids.PREDICTIONS} .chip")
    assert "chip-selected" in chips[i].get_attribute("class")


def test_clicking_a_prompt_token_traces_at_its_position(browser, server):
    open_page(browser, server)
    trace(browser, server, "The capital of France is")
    before = state(server, browser).version
    browser.find_elements(By.CSS_SELECTOR, f"#{ids.PROMPT_TOKENS} .tok")[2].click()
    wait(browser, lambda d: state(server, d).version > before, what="a re-trace at position 2")
    assert state(server, browser).analysis.trace.position == 2
    wait(browser, lambda d: d.find_element(By.ID, ids.POSITION).get_attribute("value") == "2", what="the position box")
    tokens = browser.find_elements(By.CSS_SELECTOR, f"#{ids.PROMPT_TOKENS} .tok")
    assert ["tok-position" in t.get_attribute("class") for t in tokens].index(True) == 2


def test_each_tab_has_its_own_server_side_session(browser, server):
    open_page(browser, server)
    first = trace(browser, server, "The capital of France is")
    first_id, first_window = session_id(browser), browser.current_window_handle
    browser.switch_to.new_window("tab")
    try:
        open_page(browser, server)
        assert session_id(browser) != first_id
        second = trace(browser, server, "A different prompt")
        assert server.app.visit_sessions.analysis(first_id) is first  # the other tab's analysis is untouched
        assert second.trace.prompt == "A different prompt"
    finally:
        browser.close()
        browser.switch_to.window(first_window)
    browser.refresh()  # a reload keeps the tab's session
    wait(browser, lambda d: d.find_elements(By.ID, ids.PROMPT), what="the page")
    assert session_id(browser) == first_id


def test_trace_button_shows_progress_while_running(browser, server):
    open_page(browser, server)
    trace(browser, server, "The capital of France is")
    box = browser.find_element(By.ID, ids.PROMPT)
    box.send_keys(" and")
    browser.execute_script("""
        window.__seen = [];
        const btn = document.getElementById('%s'), bar = document.getElementById('%s');
        new MutationObserver(() => window.__seen.push([btn.textContent, btn.disabled, bar.className]))
            .observe(document.body, {subtree: true, attributes: true, childList: true, characterData: true});
        """ % (ids.TRACE, ids.PROGRESS))
    before = state(server, browser).version
    browser.find_element(By.ID, ids.TRACE).click()
    wait(browser, lambda d: state(server, d).version > before, what="the trace")
    wait(browser, lambda d: d.find_element(By.ID, ids.TRACE).text == "Trace", what="the button back")
    seen = browser.execute_script("return window.__seen")
    assert ["Tracing…", True, "progress progress-active"] in seen


def test_hostile_prompt_renders_literally(browser, server):
    open_page(browser, server)
    analysis = trace(browser, server, HOSTILE)
    assert analysis.trace.prompt == HOSTILE
    shown = browser.execute_script(  # the token chips' text without their index subscripts
        "return [...document.querySelectorAll('#%s .tok')].map(t => t.lastChild.textContent).join('')"
        % ids.PROMPT_TOKENS).replace("␣", " ")
    assert shown == HOSTILE
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0
    assert browser.execute_script("return document.querySelectorAll('#%s b, #%s i').length"
                                  % (ids.PROMPT_TOKENS, ids.LAYER_STRIP)) == 0
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - accessing it raises when there is none
    assert severe_errors(browser) == []


def test_input_errors_show_a_message_and_keep_the_graph(browser, server, monkeypatch):
    open_page(browser, server)
    analysis = trace(browser, server, "The capital of France is")
    n_traces = browser.execute_script(GRAPH_JS)

    browser.find_element(By.ID, ids.PROMPT).send_keys(Keys.CONTROL, "a")
    browser.find_element(By.ID, ids.PROMPT).send_keys(Keys.DELETE)
    browser.find_element(By.ID, ids.TRACE).click()
    wait(browser, lambda d: "prompt is empty" in message_text(d), what="the empty-prompt message")

    browser.find_element(By.CSS_SELECTOR, ".options summary").click()
    browser.find_element(By.ID, ids.PROMPT).send_keys("The capital of France is")
    for cid, value in ((ids.LAYER_START, "2"), (ids.LAYER_END, "1")):
        box = browser.find_element(By.ID, cid)
        box.send_keys(Keys.CONTROL, "a", Keys.DELETE)  # (clear() bypasses React: Dash would not see it)
        box.send_keys(value, Keys.TAB)
    browser.find_element(By.ID, ids.TRACE).click()
    wait(browser, lambda d: "layer range 2-1 is empty" in message_text(d), what="the layer-range message")

    browser.find_element(By.ID, ids.LAYER_START).send_keys(Keys.BACKSPACE, Keys.TAB)
    browser.find_element(By.ID, ids.LAYER_END).send_keys(Keys.BACKSPACE, "9", Keys.TAB)
    browser.find_element(By.ID, ids.TRACE).click()
    wait(browser, lambda d: "out of range" in message_text(d), what="the out-of-range message")
    browser.find_element(By.ID, ids.LAYER_END).send_keys(Keys.BACKSPACE, Keys.TAB)

    monkeypatch.setenv("VISIT_MAX_PROMPT_TOKENS", "8")
    browser.find_element(By.ID, ids.PROMPT).send_keys(" " + "very " * 20)
    browser.find_element(By.ID, ids.TRACE).click()
    wait(browser, lambda d: "traces at most 8" in message_text(d), what="the too-long message")

    assert state(server, browser).analysis is analysis  # nothing replaced the last good analysis
    assert browser.execute_script(GRAPH_JS) == n_traces
    assert browser.find_element(By.ID, ids.TRACE).is_enabled()
    assert severe_errors(browser) == []


def test_bad_model_shows_message_and_app_keeps_serving(browser, server, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network here: fail fast and say so
    open_page(browser, server)
    browser.find_element(By.CSS_SELECTOR, ".options summary").click()
    box = browser.find_element(By.ID, ids.MODEL_INPUT)
    box.send_keys("no-such-org/no-such-model")
    browser.find_element(By.ID, ids.MODEL_LOAD).click()
    wait(browser, lambda d: "cannot load model 'no-such-org/no-such-model'" in message_text(d),
         what="the model error")
    assert "tiny-llama" in browser.find_element(By.ID, ids.MODEL_STATUS).text
    analysis = trace(browser, server, "Still serving")
    assert analysis.trace.model_name == "tiny-llama"
    assert severe_errors(browser) == []


def test_loading_a_local_model_directory(browser, server, tiny_factory, tmp_path):
    other = tiny_factory("gpt2", seed=3)
    other.model.save_pretrained(tmp_path)
    other.tokenizer.save_pretrained(tmp_path)
    open_page(browser, server)
    trace(browser, server, "The capital of France is")
    browser.find_element(By.CSS_SELECTOR, ".options summary").click()
    box = browser.find_element(By.ID, ids.MODEL_INPUT)
    box.send_keys(Keys.CONTROL, "a", Keys.DELETE)
    box.send_keys(str(tmp_path))
    before = state(server, browser).version
    browser.find_element(By.ID, ids.MODEL_LOAD).click()  # loads, then re-traces the prompt with it
    wait(browser, lambda d: state(server, d).version > before, what="a trace with the loaded model")
    assert state(server, browser).analysis.trace.model_name == str(tmp_path)
    wait(browser, lambda d: str(tmp_path) in d.find_element(By.ID, ids.MODEL_STATUS).text, what="the status line")
    box.send_keys(Keys.CONTROL, "a", Keys.DELETE)  # (clear() bypasses React: Dash would not see it)
    box.send_keys(Keys.ENTER)  # blank: back to the app's default model
    # a model switch drops the old model's graph before the new one is traced: the analysis is None meanwhile
    wait(browser, lambda d: getattr(state(server, d).analysis, "trace", None) is not None
         and state(server, d).analysis.trace.model_name == "tiny-llama", what="the default again")
    # the server's state changes before the callback's response reaches the page: wait for the text too
    wait(browser, lambda d: "tiny-llama" in d.find_element(By.ID, ids.MODEL_STATUS).text, what="the status line")


def test_panel_can_redraw_the_graph(browser, server):
    open_page(browser, server)
    trace(browser, server, "The capital of France is")
    before = state(server, browser).version
    tabs = browser.find_elements(By.CSS_SELECTOR, ".tool-button")
    titles = [t.text for t in tabs]
    assert titles[0] == "Details" and titles[-1] == "Test panel" and len(titles) == len(PANELS) + 1
    tabs[-1].click()
    browser.find_element(By.ID, "testpanel-go").click()
    wait(browser, lambda d: state(server, d).version > before, what="the panel's re-draw")
    analysis = state(server, browser).analysis
    first = next(iter(analysis.graph.nodes))
    assert analysis.settings.highlight == (first,)
    wait(browser, lambda d: f"highlight {first}" in d.find_element(By.ID, "testpanel-seen").text,
         what="the panel seeing the new analysis")
    assert any(t["name"] == "highlighted" for t in browser.execute_script(
        "return document.querySelector('#%s .js-plotly-plot').data.map(t => ({name: t.name}))" % ids.GRAPH))
    # marks stick for the next trace, until cleared
    assert trace(browser, server, "Another prompt").settings.highlight == (first,)
    browser.find_element(By.CSS_SELECTOR, ".options summary").click()
    version_now = state(server, browser).version
    browser.find_element(By.ID, ids.CLEAR_MARKS).click()
    wait(browser, lambda d: state(server, d).version > version_now, what="a re-trace without marks")
    assert state(server, browser).analysis.settings.highlight == ()
    browser.find_elements(By.CSS_SELECTOR, ".tool-button")[0].click()


def test_export_downloads_a_report_holding_the_graph(browser, server, downloads):
    open_page(browser, server)
    analysis = trace(browser, server, "The capital of France is")
    for f in downloads.glob("*"):
        f.unlink()
    browser.find_element(By.ID, ids.EXPORT).click()
    wait(browser, lambda d: [f for f in downloads.glob("*.html")], what="the downloaded report")
    report = next(downloads.glob("*.html"))
    time.sleep(0.5)  # let chromium finish writing
    text = report.read_text(encoding="utf-8")
    assert report.name == "visit-The-capital-of-France-is.html"
    assert "plotly" in text.lower() and len(text) > 1_000_000  # plotly.js embedded: opens offline
    nodes = list(analysis.graph.nodes)
    assert nodes[0] in text and nodes[-1] in text
    assert "The capital of France is" in text
    assert severe_errors(browser) == []


def test_pan_and_zoom_survive_a_new_trace(browser, server):
    open_page(browser, server)
    trace(browser, server, "The capital of France is")
    ranges_js = ("const l = document.querySelector('#%s .js-plotly-plot')._fullLayout;"
                 "return [l.xaxis.range, l.yaxis.range];" % ids.GRAPH)
    initial = browser.execute_script(ranges_js)
    drag = browser.find_element(By.CSS_SELECTOR, f"#{ids.GRAPH} .nsewdrag")
    ActionChains(browser).move_to_element(drag).click_and_hold().move_by_offset(-50, 10).pause(0.1) \
        .move_by_offset(-100, 30).pause(0.2).release().perform()  # a real pan (the figure's drag mode)
    wait(browser, lambda d: d.execute_script(ranges_js) != initial, what="the pan")
    panned = browser.execute_script(ranges_js)
    trace(browser, server, "The capital of Italy is")
    assert browser.execute_script(ranges_js) == panned


@pytest.mark.slow
def test_default_model_paris(browser, default_model):
    """The real model: "The capital of France is" -> the last nodes say " Paris"."""
    app = create_app(model=default_model)
    srv = Server(app)
    try:
        open_page(browser, srv)
        analysis = trace(browser, srv, "The capital of France is")
        assert analysis.target.token == " Paris"
        last = [n for n, a in analysis.graph.nodes(data=True) if a["kind"] == "resid_post"][-1]
        assert analysis.graph.nodes[last]["label"].strip() == "Paris"
        labels = browser.execute_script(  # node id -> label text, as drawn
            "const t = document.querySelector('#%s .js-plotly-plot').data.find(t => t.mode === 'text');"
            "return Object.fromEntries(t.customdata.map((c, i) => [c[0], t.text[i]]));" % ids.GRAPH)
        assert "Paris" in labels[last]
        rightmost = max(labels, key=lambda n: analysis.graph.nodes[n]["x"])
        assert "Paris" in labels[rightmost]
        strip = browser.find_elements(By.CSS_SELECTOR, f"#{ids.LAYER_STRIP} td.strip-cell")
        assert "␣Paris" in strip[-1].text and "#1" in strip[-1].text
        assert severe_errors(browser) == []
    finally:
        srv.stop()


def test_a_double_click_shows_every_layer_and_the_hint_says_so(browser, tokenizer):
    """A graph deeper than the first view's 4 layers opens on its last 4 ("Showing the last 4 of 6"); a
    double-click (autorange) shows all of them, and the hint must stop saying "the last 4"."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from visit.models import wrap_model

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=6,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    srv = Server(create_app(model=wrap_model(model, tokenizer, "tiny-llama-6")))
    try:
        open_page(browser, srv)
        trace(browser, srv, "The capital of France is")
        hint = lambda d: d.find_element(By.ID, ids.GRAPH_HINT).text  # noqa: E731
        assert "last 4 of 6" in hint(browser)
        browser.execute_script("const g = document.querySelector('#%s .js-plotly-plot');"
                               "Plotly.relayout(g, {'xaxis.autorange': true, 'yaxis.autorange': true});" % ids.GRAPH)
        wait(browser, lambda d: "All drawn layers" in hint(d), what="the hint after a double-click")
        assert severe_errors(browser) == []
    finally:
        srv.stop()
