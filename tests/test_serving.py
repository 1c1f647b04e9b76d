"""The production server (visit/serving/gunicorn.py, app.py): gunicorn serves the page, a Dash callback and the
health endpoint over real HTTP on 127.0.0.1 with the token gate, and a SIGTERM tells the pages, refuses new work
and stops; shutting down cancels running jobs (in process)."""

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import build_tiny
from visit.ui import create_app, ids, notice
from visit.ui.client import DashClient, message_text

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "serving-test-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode("utf-8", "replace")
    finally:
        conn.close()


@pytest.fixture(scope="module")
def server(tokenizer, tmp_path_factory):
    """app.py (gunicorn) on a tiny saved Llama, on a free loopback port, the token required; always stopped."""
    directory = tmp_path_factory.mktemp("tiny-llama")
    vm = build_tiny("llama", tokenizer)
    vm.model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    port = free_port()
    env = {**os.environ, "VISIT_TOKEN": TOKEN, "VISIT_SHUTDOWN_NOTICE_S": "3", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT)}
    log = tmp_path_factory.mktemp("log") / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--model", str(directory),
                                 "--require-token", "--threads", "8"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 300
        while True:
            assert proc.poll() is None, f"app.py exited: {log.read_text()}"
            try:
                if get(port, "/_visit/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline, f"no answer within 300 s: {log.read_text()}"
            time.sleep(0.5)
        yield proc, port, log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def test_gunicorn_serves_page_callback_and_health_behind_the_token(server):
    proc, port, _ = server
    status, headers, body = get(port, "/_visit/health")
    assert (status, body.strip()) == (200, "ok") and headers.get("Server", "").startswith("gunicorn")
    assert get(port, "/")[0] == 403  # no token
    assert get(port, "/", {"X-Visit-Token": "wrong-token-wrong-token"})[0] == 403
    status, headers, _ = get(port, f"/?token={TOKEN}")
    assert status == 302 and f"visit-token-{port}={TOKEN}" in headers["Set-Cookie"]
    client = DashClient(f"http://127.0.0.1:{port}", token=TOKEN, timeout=120)
    assert b"<title>visit</title>" in client.page()
    out = client.trace(client.new_session(), "The Eiffel Tower is in the city of")
    figure = out[f"{ids.GRAPH}.figure"]
    nodes = [c for t in figure["data"] if t.get("mode") == "markers" for c in (t.get("customdata") or [])]
    assert nodes  # a graph of the tiny model came back


def test_sigterm_tells_the_pages_refuses_new_traces_and_stops(server):
    proc, port, log = server
    client = DashClient(f"http://127.0.0.1:{port}", token=TOKEN, timeout=60)
    poll = {f"{notice.POLL}.n_intervals": 1}
    assert client.call(f"{notice.NOTICE}.children", f"{notice.POLL}.n_intervals", poll) == {}  # nothing to say yet
    proc.send_signal(signal.SIGTERM)  # the master passes it on to the worker
    deadline = time.time() + 10
    while True:
        out = client.call(f"{notice.NOTICE}.children", f"{notice.POLL}.n_intervals", poll)
        if out:
            break
        assert time.time() < deadline, "the page was not told"
        time.sleep(0.2)
    assert "shutting down" in out[f"{notice.NOTICE}.children"] and out[f"{notice.NOTICE}.style"] == {}
    refused = client.trace(client.new_session(), "Paris is")
    assert "shutting down" in message_text(refused)
    assert proc.wait(30) == 0, log.read_text()
    assert "shutting down" in log.read_text()


def test_shutting_down_cancels_running_jobs_and_refuses_new_ones(tokenizer):
    from visit.errors import VisitError
    from visit.serving.gunicorn import SHUTDOWN_MESSAGE, shut_down

    app = create_app(model=build_tiny("gpt2", tokenizer))
    started = threading.Event()

    def forever(ctx):
        started.set()
        while True:
            ctx.check()
            time.sleep(0.01)

    job = app.visit_jobs.submit("s1", "forever", forever)
    assert started.wait(30)
    assert shut_down(app) == 1
    assert app.visit_jobs.wait(job, 30).status == "cancelled" and job.note == SHUTDOWN_MESSAGE
    assert app.visit_notice.text == SHUTDOWN_MESSAGE
    with pytest.raises(VisitError, match="shutting down"):
        app.visit_jobs.submit("s2", "later", lambda ctx: 1)
    with pytest.raises(VisitError, match="shutting down"):
        with app.visit_queue.turn("s3"):
            pass


def test_debug_keeps_the_development_server_on_loopback_only(monkeypatch, capsys, tokenizer):
    import importlib.util

    import dash

    import visit.models

    spec = importlib.util.spec_from_file_location("visit_app_main", ROOT / "app.py")
    app_main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app_main)
    served = {}
    monkeypatch.setattr(visit.models, "load_model", lambda name, **kw: build_tiny("gpt2", tokenizer))
    monkeypatch.setattr(dash.Dash, "run", lambda self, **kw: served.update(app=self, **kw))
    assert app_main.main(["--debug", "--port", "8124"]) == 0
    assert served["debug"] is True and served["port"] == 8124  # Flask's development server, not gunicorn
    assert app_main.main(["--debug", "--host", "0.0.0.0"]) == 2
    assert "only on a loopback address" in capsys.readouterr().err
