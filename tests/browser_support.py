"""What browser tests share: an app server in a thread, one headless Chromium, and page helpers.

The ``browser`` and ``downloads`` fixtures (tests/conftest.py) are session-scoped: one Chromium serves
every browser test module that does not define its own. Chromium + chromedriver come from Debian
(``scripts/setup.sh --dev``); ``available()`` is False without them and the fixtures skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path

CHROMIUM = os.environ.get("VISIT_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("VISIT_CHROMEDRIVER", shutil.which("chromedriver") or "/usr/bin/chromedriver")
# what browser tests photograph (to look at after a run); docs/screenshots/ comes from the real model only
# (scripts/screenshots.py)
SHOTS = Path(os.environ.get("VISIT_TEST_SHOTS", Path(tempfile.gettempdir()) / "visit-test-screenshots"))
SHOTS.mkdir(parents=True, exist_ok=True)
WAIT = 60  # seconds; tracing on a busy 2-core machine can be slow
CHROME_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
               "--enable-unsafe-swiftshader", "--window-size=1500,1000")


def available() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A Dash app (or any WSGI app) served by werkzeug in a thread of this process, on loopback."""

    def __init__(self, app):
        from werkzeug.serving import make_server

        self.app = app
        wsgi = getattr(app, "server", app)
        self.httpd = make_server("127.0.0.1", 0, wsgi, threaded=True)
        self.port = self.httpd.server_port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.port}/"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def make_driver(downloads: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    return driver


def wait(driver, condition, timeout=WAIT, what="condition"):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: condition(d), message=what)


def severe_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def open_page(driver, server, path: str = ""):
    from selenium.webdriver.common.by import By

    from visit.ui import ids

    driver.get(server.url + path)
    wait(driver, lambda d: d.find_elements(By.ID, ids.PROMPT), what="the prompt box")
    severe_errors(driver)  # drain the log


def session_id(driver) -> str:
    from visit.ui import ids

    return driver.execute_script("return JSON.parse(window.sessionStorage.getItem('%s'))" % ids.SESSION)


def set_input(driver, element_id: str, value: str) -> str:
    """Put ``value`` into a text box the way typing does for React (any characters, even ones a keyboard
    cannot type); returns what the box holds afterwards (browsers strip line breaks from one-line inputs)."""
    return driver.execute_script("""
        const el = document.getElementById(arguments[0]);
        const setter = Object.getOwnPropertyDescriptor(window.HTMLInputElement.prototype, 'value').set;
        setter.call(el, arguments[1]);
        el.dispatchEvent(new Event('input', {bubbles: true}));
        return el.value;""", element_id, value)


def count_alerts(driver) -> int:
    """Install (once per page) a counter behind alert/confirm/prompt; returns the count so far."""
    return driver.execute_script("""
        if (window.__alerts === undefined) {
            window.__alerts = 0;
            for (const f of ['alert', 'confirm', 'prompt']) window[f] = () => { window.__alerts += 1; };
        }
        return window.__alerts;""")


# ---- the workspace (visit/ui/workspace.py): tools, sizes, what a page shows ----------------------------

def set_viewport(driver, width: int, height: int) -> None:
    """The page's CSS viewport exactly ``width`` x ``height`` (window sizes include the browser's own frame)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def tool_buttons(driver) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, ".tool-button")


def open_tool(driver, title: str):
    """Click the tool bar's button titled ``title``; returns the tool's open pane."""
    from selenium.webdriver.common.by import By

    button = next(b for b in tool_buttons(driver) if b.text.strip() == title)
    button.click()
    wait(driver, lambda d: "tab-selected" in button.get_attribute("class")
         and d.find_elements(By.CSS_SELECTOR, ".tool-pane.tool-open"), timeout=10, what=f"the {title} tool open")
    return driver.find_element(By.CSS_SELECTOR, ".tool-pane.tool-open")


# Every visible text run outside SVG (plotly draws its own text in SVG): its client rectangles, counted only where
# the text is painted (document.elementFromPoint at the rectangle's centre is the text's own element) and cut to
# what its scrolling ancestors show; returns the pairs of runs whose rectangles overlap by more than a pixel each way.
OVERLAPS_JS = r"""
// the part of a rectangle its scrolling or clipping ancestors let through
function painted(el, rect) {
    let l = rect.left, t = rect.top, r = rect.right, b = rect.bottom;
    for (let a = el.parentElement; a; a = a.parentElement) {
        const s = getComputedStyle(a);
        if (s.overflowX === 'visible' && s.overflowY === 'visible') continue;
        const c = a.getBoundingClientRect();
        l = Math.max(l, c.left); t = Math.max(t, c.top); r = Math.min(r, c.right); b = Math.min(b, c.bottom);
    }
    return {left: l, top: t, right: r, bottom: b};
}
const runs = [];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!node.textContent.trim() || !el || el.closest('svg, script, style, option, datalist')) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    for (const r of range.getClientRects()) {
        if (r.width < 1 || r.height < 1) continue;
        const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
        if (hit !== el) continue;
        runs.push({text: node.textContent.trim().slice(0, 40), r: painted(el, r), node: node});
    }
}
const out = [];
for (let i = 0; i < runs.length; i++) for (let j = i + 1; j < runs.length; j++) {
    const a = runs[i], b = runs[j];
    if (a.node === b.node) continue;
    const w = Math.min(a.r.right, b.r.right) - Math.max(a.r.left, b.r.left);
    const h = Math.min(a.r.bottom, b.r.bottom) - Math.max(a.r.top, b.r.top);
    if (w > 1 && h > 1) out.push([a.text, b.text, Math.round(a.r.left), Math.round(a.r.top)]);
}
return out;
"""

# Visible error text nobody asked for: the page's and the panels' error classes, with text, on screen.
ERRORS_JS = r"""
const out = [];
for (const el of document.querySelectorAll('.message-error, .error, .pins-note, .job-error, [class*="-error"]')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.height > 0 && el.innerText && el.innerText.trim()) out.push(el.innerText.trim().slice(0, 200));
}
return out;
"""


def text_overlaps(driver) -> list:
    return driver.execute_script(OVERLAPS_JS)


def visible_errors(driver) -> list:
    return driver.execute_script(ERRORS_JS)
