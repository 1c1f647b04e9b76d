"""A minimal HTTP client for the app's Dash callbacks: what a browser tab sends, without the browser.

The load benchmark (``benchmarks/load.py``) and the fault tests drive the real server with it, over
real HTTP, the way the page's JavaScript does: ``POST /_dash-update-component`` with the callback's
inputs and states, found in ``/_dash-dependencies``. Standard library only.

Example::

    client = DashClient("http://127.0.0.1:8050", token=None)
    session = client.new_session()                      # what the page's session store holds
    out = client.trace(session, "The capital of France is")
    out["visit-message.children"]                       # the message area (a Dash component tree)
"""

from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.parse
import urllib.request
import uuid

from visit.ui import ids


class CallbackError(RuntimeError):
    """The server answered a callback with an HTTP error (status in ``.status``)."""

    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status


def _parse_outputs(key: str) -> list[dict]:
    out = []
    for part in key.strip(".").split("..."):
        ident, prop = part.rsplit(".", 1)
        out.append({"id": json.loads(ident) if ident.startswith("{") else ident, "property": prop})
    return out


def _plain(prop: str) -> str:
    return prop.split("@", 1)[0]  # "children@abc123" (allow_duplicate) -> "children"


class DashClient:
    """One client per simulated user (it keeps the access cookie). Thread-safe for separate instances."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 300.0):
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["X-Visit-Token"] = token
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self._deps = None

    # ---- plumbing --------------------------------------------------------------------------------------------

    def get(self, path: str) -> bytes:
        request = urllib.request.Request(self.base + path, headers=self.headers)
        try:
            with self.opener.open(request, timeout=self.timeout) as r:
                return r.read()
        except urllib.error.HTTPError as exc:
            raise CallbackError(exc.code, exc.read().decode("utf-8", "replace")) from None

    def dependencies(self) -> list[dict]:
        if self._deps is None:
            self._deps = json.loads(self.get("/_dash-dependencies"))
        return self._deps

    def find(self, output: str) -> dict:
        """The callback whose output key contains ``output`` (e.g. ``"visit-graph.figure"``)."""
        for dep in self.dependencies():
            if output in dep["output"]:
                return dep
        raise KeyError(f"no callback outputs {output}")

    def call(self, output: str, changed: str, values: dict) -> dict:
        """Fire the callback producing ``output`` as if ``changed`` ("id.prop") had changed.

        ``values`` maps ``"id.prop"`` to the value the page holds (missing: None; pattern-matching
        ``ALL`` inputs: an empty list). Returns ``{"id.prop": value}`` of what the server sent back
        (``{}`` when it sent nothing: 204, no update)."""
        dep = self.find(output)

        def entries(specs):
            out = []
            for spec in specs:
                if spec["id"].startswith("{"):
                    out.append([])  # a pattern-matching ALL input with no matching components
                else:
                    key = f"{spec['id']}.{spec['property']}"
                    out.append({"id": spec["id"], "property": spec["property"], "value": values.get(key)})
            return out

        outputs = _parse_outputs(dep["output"])
        body = {"output": dep["output"], "outputs": outputs if len(outputs) > 1 else outputs[0],
                "inputs": entries(dep["inputs"]), "state": entries(dep["state"]), "changedPropIds": [changed]}
        request = urllib.request.Request(self.base + "/_dash-update-component", data=json.dumps(body).encode(),
                                         headers=self.headers, method="POST")
        try:
            with self.opener.open(request, timeout=self.timeout) as r:
                raw = r.read()
                if r.status == 204 or not raw:
                    return {}
        except urllib.error.HTTPError as exc:
            if exc.code == 204:
                return {}
            raise CallbackError(exc.code, exc.read().decode("utf-8", "replace")) from None
        response = json.loads(raw).get("response", {})
        return {f"{cid}.{_plain(prop)}": value for cid, props in response.items() for prop, value in props.items()}

    # ---- what a user does -------------------------------------------------------------------------------------

    @staticmethod
    def new_session() -> str:
        return uuid.uuid4().hex

    def page(self) -> bytes:
        return self.get("/")

    def trace(self, session: str, prompt: str, target: str = "", clicks: int = 1, **controls) -> dict:
        """Type ``prompt`` (and ``target``) and click Trace. ``controls``: other ``"id.prop"`` values."""
        values = {f"{ids.SESSION}.data": session, f"{ids.PROMPT}.value": prompt, f"{ids.TARGET}.value": target,
                  f"{ids.TRACE}.n_clicks": clicks, f"{ids.SHOW_NORMS}.value": ["on"],
                  f"{ids.PRUNE_BY}.value": "activation", **controls}
        return self.call(f"{ids.GRAPH}.figure", f"{ids.TRACE}.n_clicks", values)

    def load_model(self, session: str, name: str, prompt: str = "") -> dict:
        values = {f"{ids.SESSION}.data": session, f"{ids.MODEL_INPUT}.value": name,
                  f"{ids.MODEL_LOAD}.n_clicks": 1, f"{ids.PROMPT}.value": prompt}
        return self.call(f"{ids.GRAPH}.figure", f"{ids.MODEL_LOAD}.n_clicks", values)

    def export(self, session: str) -> dict:
        values = {f"{ids.SESSION}.data": session, f"{ids.EXPORT}.n_clicks": 1}
        return self.call(f"{ids.DOWNLOAD}.data", f"{ids.EXPORT}.n_clicks", values)


def message_text(response: dict) -> str:
    """All text in the message area of a callback response (errors and notes)."""
    out = []

    def walk(node):
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, list):
            for child in node:
                walk(child)
        elif isinstance(node, dict):
            walk(node.get("props", {}).get("children"))

    walk(response.get(f"{ids.MESSAGE}.children"))
    return " ".join(out)
