"""Access off loopback (visit/ui/access.py), the model-box policy (visit/ui/policy.py) and app.py's flags."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from visit.errors import VisitError
from visit.ui import access, ids
from visit.ui.model_registry import ModelRegistry
from visit.ui.policy import ModelPolicy, model_kind, parse_names

TOKEN = "t0ken-for-tests-0123456789"


@pytest.fixture(scope="module")
def gated_app(tiny_factory):
    from visit.ui import create_app

    app = create_app(model=tiny_factory("llama"), panels=("visit.ui.panels.details",))
    assert access.protect(app, host="0.0.0.0", port=8050, token=TOKEN) == TOKEN
    return app


def test_loopback_is_unchanged(tiny_factory):
    from visit.ui import create_app

    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2", "[::1]"):
        assert access.is_loopback(host), host
    for host in ("0.0.0.0", "::", "", "192.168.1.5", "example.org", "10.0.0.1"):
        assert not access.is_loopback(host), host
    app = create_app(model=tiny_factory("llama"), panels=("visit.ui.panels.details",))
    wsgi = app.server.wsgi_app
    assert access.protect(app, host="127.0.0.1") is None and app.server.wsgi_app == wsgi
    assert app.server.test_client().get("/").status_code == 200


def test_every_request_needs_the_token(gated_app):
    client = gated_app.server.test_client()
    for path in ("/", "/_dash-layout", "/_dash-dependencies", "/assets/visit.css", "/_favicon.ico",
                 "/_dash-component-suites/dash/deps/react@18.v2_18_2m1.min.js", "/no/such/path"):
        r = client.get(path)
        assert r.status_code == 403, path
        assert b"access token" in r.data and b"visit-prompt" not in r.data
    r = client.post("/_dash-update-component", json={"output": "x", "inputs": []})
    assert r.status_code == 403
    for bad in ("wrong", TOKEN[:-1], TOKEN + "x", "", TOKEN.upper()):
        assert client.get("/", query_string={"token": bad}).status_code == 403, bad
        assert client.get("/", headers={"X-Visit-Token": bad}).status_code == 403
    assert client.get(access.HEALTH_PATH).data == b"ok\n"  # the one open path says nothing else


def test_token_link_sets_a_cookie_and_leaves_the_address_bar(gated_app):
    client = gated_app.server.test_client()
    r = client.get("/", query_string={"token": TOKEN, "x": "1"})
    assert r.status_code == 302 and r.headers["Location"] == "/?x=1"
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith(f"visit-token-8050={TOKEN};") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = client.get("/")  # the test client keeps the cookie
    assert page.status_code == 200 and b"<title>visit</title>" in page.data
    assert page.headers["Referrer-Policy"] == "no-referrer" and page.headers["X-Content-Type-Options"] == "nosniff"
    assert ids.PROMPT in client.get("/_dash-layout").get_data(as_text=True)
    assert client.get("/assets/visit.css").status_code == 200
    fresh = gated_app.server.test_client()
    assert fresh.get("/_dash-layout", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert fresh.get("/_dash-layout", headers={"X-Visit-Token": TOKEN}).status_code == 200
    fresh.set_cookie("visit-token-9999", TOKEN)  # another server's cookie name does not count
    assert fresh.get("/").status_code == 403
    broken = gated_app.server.test_client()
    assert broken.get("/", headers={"Cookie": 'visit-token-8050="; \x00bad'}).status_code == 403


def test_token_over_real_http_and_callbacks(gated_app):
    from werkzeug.serving import make_server

    httpd = make_server("127.0.0.1", 0, gated_app.server, threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_port}"
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + "/", timeout=10)
        assert err.value.code == 403
        key = next(k for k in gated_app.callback_map if f"{ids.DOWNLOAD}.data" in k)  # the export callback
        outputs = [dict(zip(("id", "property"), part.rsplit(".", 1))) for part in key.strip(".").split("...")]
        body = json.dumps({"output": key, "outputs": outputs,
                           "inputs": [{"id": ids.EXPORT, "property": "n_clicks", "value": 1}],
                           "changedPropIds": [f"{ids.EXPORT}.n_clicks"],
                           "state": [{"id": ids.SESSION, "property": "data", "value": "s1"}]}).encode()
        request = urllib.request.Request(base + "/_dash-update-component", data=body,
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=10)
        assert err.value.code == 403
        request.add_header("X-Visit-Token", TOKEN)
        with urllib.request.urlopen(request, timeout=10) as r:  # the callback itself runs with the token
            assert r.status in (200, 204)
        import http.cookiejar

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        with opener.open(f"{base}/?token={TOKEN}", timeout=10) as r:  # redirected, the cookie kept
            assert r.status == 200 and r.url == base + "/" and b"<title>visit</title>" in r.read()
        with opener.open(f"{base}/_dash-layout", timeout=10) as r:  # the cookie alone suffices now
            assert ids.PROMPT in r.read().decode()
    finally:
        httpd.shutdown()


def test_token_from_environment(monkeypatch):
    monkeypatch.delenv(access.TOKEN_ENV, raising=False)
    token, generated = access.resolve_token()
    assert generated and len(token) >= 32 and access.resolve_token()[0] != token
    monkeypatch.setenv(access.TOKEN_ENV, "  a-long-enough-token-value ")
    assert access.resolve_token() == ("a-long-enough-token-value", False)
    monkeypatch.setenv(access.TOKEN_ENV, "short")
    with pytest.raises(VisitError, match="too short"):
        access.resolve_token()
    monkeypatch.setenv(access.TOKEN_ENV, "a-long-enough-token;value")
    with pytest.raises(VisitError, match="printable ASCII"):
        access.resolve_token()
    assert access.links("10.1.2.3", 8050, "T") == ["http://10.1.2.3:8050/?token=T", "http://127.0.0.1:8050/?token=T"]


# ---- model-box policy ------------------------------------------------------------------------------------

def test_model_kinds(tmp_path):
    assert model_kind("default") == model_kind("SmolLM2") == model_kind("") == "shipped"
    assert model_kind(str(tmp_path)) == model_kind("./x") == model_kind("~/m") == model_kind("/etc") == "local"
    assert model_kind("gpt2") == model_kind("EleutherAI/pythia-70m") == "hub"
    assert model_kind("a\x00b") in ("local", "hub")  # never raises
    assert parse_names(" a, b,,c ,") == ("a", "b", "c") and parse_names(None) == ()


def test_policy_allows_shipped_named_and_flagged(tmp_path):
    strict = ModelPolicy.restricted(["org/named", str(tmp_path / "named-dir")])
    strict.check("default")
    strict.check("org/named")
    strict.check(str(tmp_path / "named-dir"))
    with pytest.raises(VisitError, match="does not download models.*--allow-downloads.*org/named"):
        strict.check("gpt2")
    with pytest.raises(VisitError, match="does not load local directories.*--allow-local-models"):
        strict.check(str(tmp_path))
    with pytest.raises(VisitError, match="local directories"):
        strict.check("/etc/passwd")
    ModelPolicy.restricted(allow_local=True).check(str(tmp_path))
    ModelPolicy.restricted(allow_downloads=True).check("gpt2")
    with pytest.raises(VisitError, match="local"):
        ModelPolicy.restricted(allow_downloads=True).check(str(tmp_path))
    ModelPolicy.open().check("/anything")
    assert "any local directory" in ModelPolicy.restricted(allow_local=True).describe()


def test_registry_refuses_before_loading(tiny_factory, tmp_path):
    calls = []

    def loader(name):
        calls.append(name)
        return tiny_factory("gpt2")

    tiny = tiny_factory("llama")
    registry = ModelRegistry(loader=loader, preloaded=tiny, default_name="served/model",
                             policy=ModelPolicy.restricted(["org/ok"]))
    assert registry.get(None) is tiny and registry.get("served/model") is tiny
    for name in ("gpt2", str(tmp_path), "../../etc"):
        with pytest.raises(VisitError, match="this server does not"):
            registry.get(name)
    assert calls == [] and registry.loaded() == ["served/model"]
    registry.get("org/ok")
    assert calls == ["org/ok"]


def load_app_module():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("visit_app_main", Path(__file__).resolve().parents[1] / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_app_flags_pick_the_policy(monkeypatch):
    app_main = load_app_module()
    for name in ("VISIT_MODELS", "VISIT_ALLOW_LOCAL_MODELS", "VISIT_ALLOW_DOWNLOADS", "VISIT_HOST"):
        monkeypatch.delenv(name, raising=False)
    assert app_main.model_policy(app_main.parse_args([])).unrestricted  # loopback, no flags: nothing changes
    off = app_main.model_policy(app_main.parse_args(["--host", "0.0.0.0", "--model", "my/served"]))
    assert not off.unrestricted and not off.allow_local and not off.allow_downloads
    assert off.allowed == {"my/served"}
    args = app_main.parse_args(["--models", "a/b,c/d", "--allow-local-models", "--allow-downloads"])
    policy = app_main.model_policy(args)
    assert not policy.unrestricted and {"a/b", "c/d"} <= policy.allowed and policy.allow_local and policy.allow_downloads
    monkeypatch.setenv("VISIT_ALLOW_DOWNLOADS", "1")
    monkeypatch.setenv("VISIT_MODELS", "x/y")
    env = app_main.model_policy(app_main.parse_args(["--host", "0.0.0.0"]))
    assert env.allow_downloads and "x/y" in env.allowed


def test_app_main_off_loopback_prints_a_link_and_gates(monkeypatch, capsys, tiny_factory):
    import dash

    import visit.models

    app_main = load_app_module()
    served = {}
    monkeypatch.delenv(access.TOKEN_ENV, raising=False)
    monkeypatch.setattr(visit.models, "load_model", lambda name: tiny_factory("llama"))
    import visit.serving.gunicorn

    monkeypatch.setattr(dash.Dash, "run", lambda self, **kw: served.update(app=self, **kw))
    # the production server is gunicorn (tests/test_serving.py runs it); here only the app it would serve is built
    monkeypatch.setattr(visit.serving.gunicorn, "serve", lambda build, host, port, **kw: served.update(app=build()) or 0)
    assert app_main.main(["--host", "0.0.0.0", "--port", "8123"]) == 0
    out = capsys.readouterr().out
    token = served["app"].visit_access_token
    assert f"http://127.0.0.1:8123/?token={token}" in out and out.count(token) == 2  # printed once per link
    assert "model box: the default model" in out
    assert served["app"].server.test_client().get("/").status_code == 403
    assert served["app"].visit_registry.policy.allowed == {"default"}
    monkeypatch.setenv(access.TOKEN_ENV, "short")
    assert app_main.main(["--host", "0.0.0.0"]) == 2
    assert "too short" in capsys.readouterr().err


def test_report_file_names_are_sanitised():
    import re

    from hostile import hostile_strings

    from visit.ui.callbacks import report_filename

    names = [report_filename(s) for s in hostile_strings()]
    for name in names:
        assert re.fullmatch(r"visit-[A-Za-z0-9-]{1,40}\.html", name), name  # no path, quote, CR/LF, dot-dot
    assert report_filename("../../etc/passwd") == "visit-etc-passwd.html"
    assert report_filename("東京\x00\r\n") == "visit-report.html"
