"""Regenerate docs/screenshots/ from the real default model in headless Chromium, at 1600x1000 and 1280x800.

    PYTHONPATH=. .venv/bin/python scripts/screenshots.py [--sizes 1600x1000,1280x800] [--out docs/screenshots]

Per size: the empty page (examples), the legend, a traced example ("The capital of France is", clicked on the
empty page), then every tool of the tool bar opened on that trace, and the tools that run work on request run
once with their defaults (causal trace, ROME edit). Each state's text overlaps and unasked error text are
printed (the checks of tests/test_workspace_browser.py); the script exits 1 when any state has one.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the browser helpers the tests use

import browser_support as bs  # noqa: E402
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

from visit.models import load_model  # noqa: E402
from visit.ui import create_app, ids  # noqa: E402
from visit.ui.panels import load_panels, tool_key  # noqa: E402

EXAMPLE = "The capital of France is"
RUN = {"causal_trace": "causal", "editing": "editing"}  # tools whose work the script starts once: their job prefix
FILL = {"editing": {"editing-new": "Rome"}}  # what a tool needs typed before it runs (France -> Rome)  # tools whose work the script starts once
BUSY_JS = "return !!document.querySelector('[data-dash-is-loading=\"true\"], .progress-active');"


def settle(driver, seconds: float = 0.6, timeout: float = 120) -> None:
    """Wait until no Dash request is pending and nothing is re-drawn for ``seconds``."""
    deadline = time.time() + timeout
    quiet = None
    while time.time() < deadline:
        if driver.execute_script(BUSY_JS):
            quiet = None
        elif quiet is None:
            quiet = time.time()
        elif time.time() - quiet >= seconds:
            return
        time.sleep(0.1)


def shoot(driver, path: Path, problems: dict) -> None:
    overlaps, errors = bs.text_overlaps(driver), bs.visible_errors(driver)
    if overlaps or errors:
        problems[path.name] = {"overlaps": overlaps[:8], "errors": errors}
    driver.save_screenshot(str(path))
    print(f"  {path}" + (f"  overlaps {overlaps[:3]} errors {errors}" if overlaps or errors else ""),
          flush=True)


def run_tool(driver, key: str, problems: dict, timeout: float = 300) -> None:
    """Start the tool's work with its defaults and wait until its job is done (a job still running after
    ``timeout`` seconds is photographed as it is, and counted as a problem)."""
    prefix = RUN[key]
    for box, text in FILL.get(key, {}).items():
        bs.set_input(driver, box, text)
    driver.find_element(By.ID, f"{prefix}-start").click()
    time.sleep(1.0)
    try:
        bs.wait(driver, lambda d: d.find_element(By.ID, f"{prefix}-cancel").get_attribute("disabled") is not None,
                timeout=timeout, what=f"the {key} job done")
    except TimeoutException:
        problems[f"{key} job"] = f"still running after {timeout:.0f} s"
        print(f"  the {key} job is still running after {timeout:.0f} s", flush=True)
        return
    settle(driver, 1.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1600x1000,1280x800")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--no-run", action="store_true", help="open the tools only (no causal trace, no edit)")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    vm = load_model()
    app = create_app(model=vm)
    panels = load_panels()
    server = bs.Server(app)
    driver = bs.make_driver(out)
    problems: dict = {}
    try:
        for size in args.sizes.split(","):
            width, height = (int(v) for v in size.split("x"))
            bs.set_viewport(driver, width, height)
            driver.get(server.url)
            bs.wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".example-button"), what="the examples")
            settle(driver)
            shoot(driver, out / f"empty-{size}.png", problems)
            driver.find_element(By.CSS_SELECTOR, ".legend-summary").click()
            time.sleep(0.4)
            shoot(driver, out / f"legend-{size}.png", problems)
            driver.find_element(By.CSS_SELECTOR, ".legend-close").click()
            example = next(b for b in driver.find_elements(By.CSS_SELECTOR, ".example-button") if b.text == EXAMPLE)
            example.click()
            sessions = app.visit_sessions
            bs.wait(driver, lambda d: (a := sessions.analysis(bs.session_id(d))) is not None and not a.partial,
                    timeout=300, what="the whole graph")
            settle(driver, 1.0)
            shoot(driver, out / f"main-{size}.png", problems)
            for panel in panels:
                key = tool_key(panel)
                bs.open_tool(driver, panel.TITLE)
                settle(driver, 1.0)
                if key in RUN and not args.no_run:
                    run_tool(driver, key, problems)
                shoot(driver, out / f"tool-{key}-{size}.png", problems)
            if not args.no_run:  # the edit stays in this session: a fresh page for the next size
                driver.delete_all_cookies()
                driver.execute_script("window.sessionStorage.clear();")
    finally:
        driver.quit()
        server.stop()
    if problems:
        print(f"{len(problems)} screenshot(s) show overlapping text or unasked errors", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
