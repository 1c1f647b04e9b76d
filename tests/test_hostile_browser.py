"""The hostile-string corpus (tests/hostile_strings.txt) through the real page in headless Chromium.

Every string goes in through the text boxes (prompt, target, model) and the URL; then it comes back in
the prompt's token chips, the messages, the graph's hover labels, a node's details, the panels and the
downloaded HTML report. Nothing may execute (alert/confirm/prompt are counted), no element may be
injected (tag counts compared with a plain trace), and every string must show literally.
"""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

from browser_support import (Server, count_alerts, open_page, session_id, set_input,  # noqa: E402
                             severe_errors, wait)
from hostile import hostile_strings  # noqa: E402

from visit.tokens import display_token  # noqa: E402
from visit.ui import create_app, ids  # noqa: E402
from visit.ui.policy import ModelPolicy  # noqa: E402

HOSTILE = hostile_strings()
HANDLERS = "[onerror], [onload], [ontoggle], [onclick], [onmouseover], a[href^='javascript'], iframe, img, math"
# <details> is the app's own too (tools show some only for some results); an injected one carries its ontoggle
# handler, which HANDLERS catches
INJECTABLE = "img, iframe, math, circle, a[href^='javascript'], span[style*='99px'], textarea, b, i, em, sup, sub"
# AG Grid (the app's tables, visit/ui/grid.py) injects its theme as <style data-ag-css> elements: not counted
# <style> elements are not counted: Dash's loading spinners and plotly add their own as the page works (timing-
# dependent); a style from the corpus is caught by its text instead (INJECTED_STYLE_JS)
COUNT_JS = ("const out = {}; for (const el of document.querySelectorAll(\"%s, script\")) "
            "{ const k = el.tagName.toLowerCase(); out[k] = (out[k] || 0) + 1; } return out;" % INJECTABLE)
INJECTED_STYLE_JS = ("return Array.from(document.querySelectorAll('style')).filter("
                     "s => s.textContent.includes('body{display:none}')).length;")
GRAPH_JS = "const g = document.querySelector('#%s .js-plotly-plot'); return g && g.data ? g.data.length : 0;" % ids.GRAPH


def test_corpus_is_big_and_varied():
    assert len(HOSTILE) >= 30 and len(set(HOSTILE)) == len(HOSTILE)
    joined = "".join(HOSTILE)
    for needle in ("<script>", "javascript:", "<b>", "\u202e", "\u200b", "\x00", "{{", "%s", "\r\n"):
        assert needle in joined, needle
    assert max(map(len, HOSTILE)) >= 150


def chunks(strings, tokenizer, budget=480):
    """The corpus joined into a few prompts of at most ``budget`` tokens (the app's cap is 512)."""
    out, current = [], []
    for s in strings:
        if current and len(tokenizer(" ".join(current + [s])).input_ids) > budget:
            out.append(" ".join(current))
            current = []
        current.append(s)
    return out + [" ".join(current)] if current else out


def long_context_tiny(tokenizer):
    """A tiny random Llama with room for 1024 positions, so the corpus fits in two prompts."""
    import torch
    from conftest import tiny_configs
    from transformers import AutoModelForCausalLM

    from visit.models import wrap_model

    torch.manual_seed(0)
    config = tiny_configs(len(tokenizer))["llama"]
    config.max_position_embeddings = 1024
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    return wrap_model(model, tokenizer, "tiny-llama-1k")


@pytest.fixture(scope="module")
def server(tokenizer):
    app = create_app(model=long_context_tiny(tokenizer))
    app.visit_registry.policy = ModelPolicy.restricted()  # as off loopback: the model box refuses names
    srv = Server(app)
    yield srv
    srv.stop()


def state(server, driver):
    return server.app.visit_sessions.get(session_id(driver))


def trace_text(driver, server, prompt: str, target: str = ""):
    """Put text into the prompt and target boxes, click Trace, wait for the new analysis to be drawn."""
    before = state(server, driver).version
    typed = set_input(driver, ids.PROMPT, prompt)
    set_input(driver, ids.TARGET, target)
    driver.find_element("id", ids.TRACE).click()
    wait(driver, lambda d: state(server, d).version > before, what="a new analysis")
    wait(driver, lambda d: d.execute_script(GRAPH_JS) > 0, what="the graph")
    wait(driver, lambda d: d.find_element("id", ids.TRACE).is_enabled(), what="the trace button back")
    analysis = state(server, driver).analysis
    assert analysis.trace.prompt == typed  # the server got exactly what the box held
    return analysis


def chips_text(driver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('#%s .tok')].map(t => t.lastChild.textContent)"
                                 % ids.PROMPT_TOKENS)


def hover_memory_node(driver, analysis):
    """Hover and click a memory-value node whose source token is the most markup-like; its hover text."""
    from test_browser import node_point, pointer_to

    nodes = [(n, a) for n, a in analysis.graph.nodes(data=True) if a.get("source_token") is not None]
    nodes.sort(key=lambda na: -sum(na[1]["source_token"].count(c) for c in "<>&'\"/"))
    box = driver.execute_script(  # the graph scrolled into view (a long prompt's chips push it down)
        "const g = document.querySelector('#%s .nsewdrag'); g.scrollIntoView({block: 'center'});"
        "const r = g.getBoundingClientRect();"
        "return [Math.max(r.left, 0) + 10, Math.max(r.top, 0) + 10, Math.min(r.right, innerWidth) - 10,"
        "        Math.min(r.bottom, innerHeight) - 10];" % ids.GRAPH)
    for node, attrs in nodes:  # the most markup-like source token among the nodes in view
        point = node_point(driver, node)
        if point and box[0] < point[0] < box[2] and box[1] < point[1] < box[3]:
            break
    else:
        raise AssertionError("no memory-value node in view")
    pointer_to(driver, *point)
    label = wait(driver, lambda d: d.find_elements("css selector", f"#{ids.GRAPH} .hoverlayer .hovertext"),
                 what="a hover label")[0]
    hover = label.get_attribute("textContent")
    pointer_to(driver, *point, click=True)
    wait(driver, lambda d: d.find_elements("css selector", "#details-body .details-title"), what="details")
    return attrs, hover


def tag_counts(driver, n_tokens: int) -> dict:
    """Tag counts, less the app's own per-token subscripts (each token chip shows its index in a <sub>)."""
    counts = driver.execute_script(COUNT_JS)
    counts["sub"] = counts.get("sub", 0) - n_tokens
    return counts


def test_hostile_strings_show_literally_and_inert(browser, server, tokenizer):
    open_page(browser, server)
    count_alerts(browser)
    plain = trace_text(browser, server, "The capital of France is")
    for tab in browser.find_elements("css selector", ".tool-button"):  # every tool drawn once, as below: charts
        tab.click()                                                  # and tools add their own tags when shown
    browser.find_elements("css selector", ".tool-button")[0].click()
    baseline = tag_counts(browser, len(plain.trace.tokens))
    hovered = False
    for prompt in chunks(HOSTILE, tokenizer):
        analysis = trace_text(browser, server, prompt)
        assert chips_text(browser) == [display_token(t) for t in analysis.trace.tokens]
        if not hovered:  # one real hover + click: plotly's label and the details show source tokens literally
            attrs, hover = hover_memory_node(browser, analysis)
            assert f"'{display_token(attrs['source_token'])}'" in hover
            details = browser.find_element("id", "details-body").get_attribute("textContent")
            assert display_token(attrs["source_token"]) in details
            hovered = True
            for tab in browser.find_elements("css selector", ".tool-button"):  # every panel, this prompt
                tab.click()
            browser.find_elements("css selector", ".tool-button")[0].click()
        assert tag_counts(browser, len(analysis.trace.tokens)) == baseline, prompt
        assert browser.execute_script(INJECTED_STYLE_JS) == 0, prompt
        assert browser.execute_script("return document.querySelectorAll(arguments[0]).length", HANDLERS) == 0
        assert count_alerts(browser) == 0
    # hover texts carry escaped tokens only: what plotly renders as markup is the app's own <b>/<br>
    hovertexts = browser.execute_script(
        "return document.querySelector('#%s .js-plotly-plot').data.flatMap(t => t.hovertext || t.text || [])"
        % ids.GRAPH)
    for text in hovertexts:
        stripped = str(text).replace("<b>", "").replace("</b>", "").replace("<br>", "")
        assert "<" not in stripped, text
    assert severe_errors(browser) == []


def test_hostile_report_download(browser, server, downloads, tokenizer):
    open_page(browser, server)  # the same tab keeps its session: the last hostile prompt is still there
    analysis = state(server, browser).analysis
    if analysis is None or analysis.trace.prompt not in chunks(HOSTILE, tokenizer):
        analysis = trace_text(browser, server, chunks(HOSTILE, tokenizer)[-1])
    for f in downloads.glob("*"):
        f.unlink()
    browser.find_element("id", ids.EXPORT).click()
    report = wait(browser, lambda d: next(downloads.glob("*.html"), None), what="the downloaded report")
    time.sleep(0.5)  # let chromium finish writing
    assert report.name.startswith("visit-") and all(c.isalnum() or c in "-._" for c in report.name)
    browser.get(report.as_uri())
    wait(browser, lambda d: d.execute_script("return document.readyState") == "complete", what="the report")
    assert count_alerts(browser) == 0
    assert browser.execute_script("return document.querySelectorAll(arguments[0]).length", HANDLERS) == 0
    text = browser.execute_script("return document.body.textContent")
    prompt = analysis.trace.prompt.replace("\x00", "")  # HTML cannot carry U+0000: browsers drop it
    start = text.find(prompt[:20])
    shown = text[start:start + len(prompt)]
    assert shown == prompt, next((i, prompt[i - 10:i + 10], shown[i - 10:i + 10]) for i in range(len(prompt))
                                 if prompt[i] != shown[i])
    browser.back()


def test_hostile_target_model_name_and_url(browser, server):
    open_page(browser, server, "?prompt=%3Cscript%3Ealert(1)%3C/script%3E#<img src=x onerror=alert(1)>")
    count_alerts(browser)
    # the URL holds a view (visit.ui.url_state): its prompt lands in the box as text and is traced first
    wait(browser, lambda d: d.find_element("id", ids.PROMPT).get_attribute("value") == "<script>alert(1)</script>"
         and d.execute_script(GRAPH_JS) > 0
         and d.find_element("id", ids.TRACE).is_enabled(), what="the URL's view traced")
    plain = trace_text(browser, server, "The capital of France is")
    baseline = tag_counts(browser, len(plain.trace.tokens))
    for text in (HOSTILE[1], HOSTILE[10], HOSTILE[19]):  # markup, plotly's subset, bidi: the target's note
        target = trace_text(browser, server, "The capital of France is", target=text).target
        assert target.n_tokens > 1 and target.typed == text
        wait(browser, lambda d: f"'{text}' is {target.n_tokens} tokens" in
             d.find_element("id", ids.MESSAGE).get_attribute("textContent"), what="the target note, literally")
    browser.find_element("css selector", ".options summary").click()
    for text in ("<img src=x onerror=alert(1)>", "javascript:alert(1)", "{{7*7}} %s\u202eevil"):
        set_input(browser, ids.MODEL_INPUT, text)
        browser.find_element("id", ids.MODEL_LOAD).click()
        wait(browser, lambda d: text in d.find_element("id", ids.MESSAGE).get_attribute("textContent"),
             what="the refusal naming the model literally")
    assert tag_counts(browser, len(plain.trace.tokens)) == baseline
    assert count_alerts(browser) == 0
    for path in ("<script>alert(1)</script>", "%22%3E%3Cimg%20src=x%20onerror=alert(1)%3E"):
        open_page(browser, server, path)
        assert count_alerts(browser) == 0 and browser.execute_script("return document.querySelectorAll('img').length") == 0
    assert severe_errors(browser) == []
