"""The web app, prompt to drawn graph in a real headless Chromium, on the default model (all layers,
default pruning, after the model is loaded).

    .venv/bin/python benchmarks/app_roundtrip.py [--repeats 5]

Serves the app in this process, types a prompt, presses Enter and measures, per trace: the browser's
round trip (Enter to plotly's ``plotly_afterplot``), the server's callback time split into
``analyze()`` and the app's own part (copying the figure, view, chips, strip), and the callback's
response size. Reports medians of one run.

Issue 12: the Enter -> first drawn graph is the *first view* (last 4 layers; the rest is patched in after);
after each trace a pruning knob is changed (MLP top neurons) and Enter pressed again: the *change* round trip
(the same trace re-drawn, only the traces sent as a ``dash.Patch``). Both are reported with the median of one
traced forward pass measured in the same process (``visit.tracer.trace``), as a ratio.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import threading
import time

import torch
from flask import request
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from werkzeug.serving import make_server

from visit.models import load_model
from visit.pipeline import analyze
from visit.tracer import trace
from visit.ui import callbacks, create_app, ids

PROMPTS = ("The capital of France is", "The capital of Italy is")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    vm = load_model(device="cpu")
    timings = {"analyze": [], "present": [], "bytes": []}

    def timed(name, fn):
        def wrapper(*a, **kw):
            start = time.perf_counter()
            out = fn(*a, **kw)
            timings[name].append(time.perf_counter() - start)
            return out
        return wrapper

    callbacks.present = timed("present", callbacks.present)  # the app's own share of the callback
    app = create_app(model=vm, analyze=timed("analyze", analyze))

    @app.server.after_request
    def _size(response):
        if request.path == "/_dash-update-component" and b'"output":"..visit-graph.figure' in request.get_data():
            timings["bytes"].append(response.content_length)
        return response

    httpd = make_server("127.0.0.1", 0, app.server, threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                "--enable-unsafe-swiftshader", "--window-size=1500,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    load_before = os.getloadavg()[0]
    round_trips, changes = [], []
    try:
        driver.get(f"http://127.0.0.1:{httpd.server_port}/")
        time.sleep(2)
        for i in range(args.repeats + 1):  # the first is a warm-up
            box = driver.find_element(By.ID, ids.PROMPT)
            box.send_keys(Keys.CONTROL, "a", Keys.DELETE)
            box.send_keys(PROMPTS[i % 2])
            driver.execute_script("""
                window.__t0 = performance.now(); window.__drawn = 0;
                const gd = document.querySelector('#%s .js-plotly-plot');
                if (!gd.__hooked) { gd.on('plotly_afterplot', () => { window.__drawn = performance.now();
                                                                     window.__draws = (window.__draws || 0) + 1; });
                                    gd.__hooked = true; }""" % ids.GRAPH)
            box.send_keys(Keys.ENTER)
            deadline = time.time() + 300
            while time.time() < deadline:
                drawn = driver.execute_script(
                    "const gd = document.querySelector('#%s .js-plotly-plot');"
                    "return window.__drawn > window.__t0 && gd.data.length > 0 && "
                    "document.getElementById('%s').disabled === false ? window.__drawn - window.__t0 : 0"
                    % (ids.GRAPH, ids.TRACE))
                if drawn:
                    break
                time.sleep(0.05)
            if i > 0:
                round_trips.append(drawn / 1000)
            _wait_completion(driver)
            # a change without a forward pass: a pruning knob, then Enter
            driver.execute_script("document.querySelector('details.options').open = true;")
            knob = driver.find_element(By.ID, ids.KNOBS["mlp_top"])
            knob.send_keys(Keys.CONTROL, "a", Keys.DELETE)
            knob.send_keys(str(6 + i % 2), Keys.TAB)
            time.sleep(0.3)
            changed = _enter_and_wait(driver, box)
            if i > 0:
                changes.append(changed / 1000)
            _wait_completion(driver)
    finally:
        driver.quit()
        httpd.shutdown()
    t_trace = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        trace(vm, PROMPTS[0])
        t_trace.append(time.perf_counter() - start)
    t_trace = statistics.median(t_trace)
    load_after = os.getloadavg()[0]
    analyze_s, present_s = timings["analyze"][1:], timings["present"][1:]
    d = vm.dims
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, no GPU; "
          f"1-min load average {load_before:.1f} before / {load_after:.1f} after")
    print(f"model: {vm.name} ({d.n_layers} layers); prompts {PROMPTS}; {args.repeats} timed traces")
    print(f"browser round trip (Enter -> graph drawn) median {statistics.median(round_trips):.2f} s "
          f"(min {min(round_trips):.2f}, max {max(round_trips):.2f})")
    print(f"server: analyze() median {statistics.median(analyze_s):.2f} s; the app's own part (figure copy, "
          f"view, chips, strip) median {statistics.median(present_s):.3f} s")
    first, change = statistics.median(round_trips), statistics.median(changes)
    print(f"one traced forward pass (same process) median {t_trace:.3f} s")
    print(f"first view: Enter -> graph drawn {first:.2f} s = {first / t_trace:.1f} x the traced pass (target <= 1 s)")
    print(f"change (pruning knob, same trace re-drawn, patch): Enter -> drawn {change:.2f} s "
          f"= {change / t_trace:.1f} x the traced pass (target <= 0.3 s)")
    sizes = timings["bytes"][2:]  # (first view, change) pairs after the warm-up pair
    print(f"callback response: first view median {statistics.median(sizes[0::2]) / 1e6:.2f} MB "
          f"(figure of the last 4 layers, strip, chips, tokens); change median "
          f"{statistics.median(sizes[1::2]) / 1e6:.2f} MB (a patch of the traces)")


def _wait_completion(driver, timeout: float = 120) -> None:
    """Wait for the whole graph to be patched in after a first view (one more plotly draw)."""
    seen = driver.execute_script("return window.__draws_seen || 0;")
    deadline = time.time() + timeout
    while time.time() < deadline:
        draws = driver.execute_script("return window.__draws || 0;")
        if draws >= seen + 2:  # the first view's draw and the completion's
            break
        time.sleep(0.05)
    driver.execute_script("window.__draws_seen = window.__draws || 0;")


def _enter_and_wait(driver, box) -> float:
    """Press Enter in the prompt box; milliseconds until plotly drew the answer and Trace is enabled again."""
    driver.execute_script("window.__t0 = performance.now(); window.__drawn = 0;")
    box.send_keys(Keys.ENTER)
    deadline = time.time() + 300
    while time.time() < deadline:
        drawn = driver.execute_script(
            "return window.__drawn > window.__t0 && document.getElementById('%s').disabled === false"
            " ? window.__drawn - window.__t0 : 0" % ids.TRACE)
        if drawn:
            return drawn
        time.sleep(0.02)
    raise TimeoutError("the change was never drawn")


if __name__ == "__main__":
    main()
