"""The workspace in a real headless Chromium on the default model (issue 17 item 5): Enter -> first drawn graph as a
ratio to one traced forward pass of the same run, a tool switch (click -> the tool's pane painted), and the layout
shift after the first draw.

    PYTHONPATH=. .venv/bin/python benchmarks/workspace_browser.py [--repeats 3] [--size 1600x1000]

Per repeat: type a prompt, press Enter, time Enter -> plotly's first ``plotly_afterplot`` with the new traces; then
wait for the whole graph (patched in after the first view) and sum the page's layout-shift entries from 200 ms after
the first draw on (``PerformanceObserver('layout-shift')``, Chromium's CLS score, inputs excluded; the first draw's
own frame, where the prompt's tokens, the chips and the layer strip arrive with the graph, is the first draw). Then every tool of the tool
bar is opened in turn: click -> the next frame after the tool's pane is shown (``requestAnimationFrame`` +
``setTimeout 0``, so style, layout and paint of the pane are in). Medians; the traced forward pass is the median of
``visit.tracer.trace`` on the same prompt in this process after the browser has closed.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the browser helpers the tests use

import browser_support as bs  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from visit.models import load_model  # noqa: E402
from visit.tracer import trace  # noqa: E402
from visit.ui import create_app, ids  # noqa: E402
from visit.ui.panels import load_panels  # noqa: E402

PROMPTS = ("The capital of France is", "The capital of Italy is")
ARM_JS = """
window.__t0 = performance.now(); window.__drawn = 0; window.__shift = 0;
const gd = document.querySelector('#%s .js-plotly-plot');
if (!gd.__bench) {
    gd.__bench = true;
    gd.on('plotly_afterplot', () => { if (!window.__drawn && gd.data.length) window.__drawn = performance.now(); });
    new PerformanceObserver(list => { for (const e of list.getEntries())
        if (!e.hadRecentInput && window.__drawn && e.startTime > window.__drawn + 200) window.__shift += e.value;
    }).observe({type: 'layout-shift', buffered: false});
}""" % ids.GRAPH
SWITCH_JS = """
const b = [...document.querySelectorAll('.tool-button')].find(x => x.textContent.trim() === arguments[0]);
const t0 = performance.now();
return new Promise(res => { b.click(); requestAnimationFrame(() => setTimeout(() => res(performance.now() - t0), 0)); });
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", default="1600x1000")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    width, height = (int(v) for v in args.size.split("x"))
    vm = load_model(device="cpu")
    app = create_app(model=vm)
    server = bs.Server(app)
    driver = bs.make_driver(Path("/tmp"))
    load_before = os.getloadavg()[0]
    firsts, shifts, switches = [], [], {}
    try:
        bs.set_viewport(driver, width, height)
        bs.open_page(driver, server)
        time.sleep(2)
        for i in range(args.repeats + 1):  # the first is a warm-up
            box = driver.find_element(By.ID, ids.PROMPT)
            box.send_keys(Keys.CONTROL, "a", Keys.DELETE)
            box.send_keys(PROMPTS[i % 2])
            driver.execute_script(ARM_JS)
            box.send_keys(Keys.ENTER)
            bs.wait(driver, lambda d: d.execute_script("return window.__drawn > window.__t0"), timeout=300,
                    what="the first draw")
            first = driver.execute_script("return (window.__drawn - window.__t0) / 1000")
            bs.wait(driver, lambda d: (a := app.visit_sessions.analysis(bs.session_id(d))) is not None
                    and a.trace.prompt == PROMPTS[i % 2] and not a.partial, timeout=300, what="the whole graph")
            time.sleep(3)  # the completion's patch drawn
            if i == 0:
                continue
            firsts.append(first)
            shifts.append(driver.execute_script("return window.__shift"))
            for panel in load_panels():
                switches.setdefault(panel.TITLE, []).append(driver.execute_script(SWITCH_JS, panel.TITLE) / 1000)
                time.sleep(1.5)  # let the tool draw what it computes on opening
            driver.execute_script(SWITCH_JS, load_panels()[0].TITLE)
    finally:
        driver.quit()
        server.stop()
    t_trace = []
    for _ in range(5):
        start = time.perf_counter()
        trace(vm, PROMPTS[0])
        t_trace.append(time.perf_counter() - start)
    t_trace = statistics.median(t_trace)
    first = statistics.median(firsts)
    every = [t for ts in switches.values() for t in ts]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, no GPU, Chromium "
          f"headless (SwiftShader); 1-min load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after")
    print(f"model: {vm.name} ({vm.dims.n_layers} layers); viewport {args.size}; {args.repeats} timed traces")
    print(f"Enter -> first drawn graph: median {first:.2f} s (min {min(firsts):.2f}, max {max(firsts):.2f}); "
          f"one traced forward pass {t_trace:.3f} s; ratio {first / t_trace:.1f}x (target <= 8x)")
    print(f"layout shift after the first draw (CLS): max {max(shifts):.4f} over {len(shifts)} traces (target 0)")
    print(f"tool switch (click -> pane painted): median {statistics.median(every):.3f} s, max {max(every):.3f} s "
          "(target <= 0.3 s)")
    for title, ts in switches.items():
        print(f"    {title:24s} median {statistics.median(ts):.3f} s")


if __name__ == "__main__":
    main()
