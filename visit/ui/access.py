"""Who may use the app: nobody but the machine's own users on loopback, token holders anywhere else.

Bound to a loopback address (``127.0.0.1``, ``::1``, ``localhost``) the app is open, as before: only
people logged in on this machine can reach it. Bound to any other address (``0.0.0.0`` in Docker, a LAN
address) every request (the page, Dash's callbacks, scripts and assets, downloads, unknown paths) must
carry the server's token, the way Jupyter does it:

- the token is ``VISIT_TOKEN`` when set (at least :data:`MIN_TOKEN_CHARS` characters), otherwise a fresh
  random one made at start and printed once with a ready link ``http://HOST:PORT/?token=...``;
- a request proves it with ``?token=...`` in the URL, an ``Authorization: Bearer ...`` or
  ``X-Visit-Token`` header, or the cookie the first successful visit sets (HttpOnly, SameSite=Strict);
  a page visit with ``?token=`` is redirected to the same URL without it, so the token does not stay in
  the address bar, the history or a Referer;
- tokens are compared in constant time (:func:`hmac.compare_digest`);
- anything else gets ``403 Forbidden`` and a one-line explanation, nothing of the app.

The one exception is :data:`HEALTH_PATH`, which answers ``ok`` and nothing else, so that Docker's
health check needs no secret. The gate is WSGI middleware around the Flask server (``app.server``), so
it sees every request before Flask or Dash routes it.

Use::

    from visit.ui import access
    token = access.protect(app, host="0.0.0.0", port=8050)   # None on loopback; else the token in force
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import socket
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from visit.errors import VisitError

TOKEN_ENV = "VISIT_TOKEN"
MIN_TOKEN_CHARS = 16
HEALTH_PATH = "/_visit/health"
HEADER = "HTTP_X_VISIT_TOKEN"
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
SECURITY_HEADERS = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
                    ("X-Frame-Options", "SAMEORIGIN")]


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach. ``0.0.0.0`` / ``::`` / names are not loopback."""
    host = (host or "").strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(environ: dict | None = None) -> tuple[str, bool]:
    """``(token, generated)``: ``VISIT_TOKEN`` when set (checked), else a new random one."""
    env = os.environ if environ is None else environ
    given = env.get(TOKEN_ENV, "")
    if given:
        given = given.strip()
        if len(given) < MIN_TOKEN_CHARS:
            raise VisitError(f"{TOKEN_ENV} is too short: use at least {MIN_TOKEN_CHARS} characters "
                             f"(or unset it and a random token is made at start)")
        if not all(c.isascii() and c.isprintable() and c not in ' ;,"\\' for c in given):
            raise VisitError(f"{TOKEN_ENV} must be printable ASCII without spaces, quotes, commas or semicolons")
        return given, False
    return secrets.token_urlsafe(32), True


def cookie_name(port: int | None) -> str:
    """One cookie per port: cookies ignore ports, and two servers on one host must not clobber each other."""
    return f"visit-token-{port}" if port else "visit-token"


def tokens_equal(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8"))


class TokenGate:
    """WSGI middleware: pass requests carrying ``token``, answer 403 to the rest (see the module doc)."""

    def __init__(self, app, token: str, cookie: str = "visit-token", health_path: str = HEALTH_PATH):
        if not token:
            raise ValueError("TokenGate needs a non-empty token")
        self.app, self.token, self.cookie, self.health_path = app, token, cookie, health_path

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == self.health_path:
            return self._respond(start_response, "200 OK", "ok\n")
        query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        from_query = next((v for k, v in query if k == "token"), None)
        if tokens_equal(from_query, self.token):
            if environ.get("REQUEST_METHOD", "GET") in ("GET", "HEAD"):  # drop it from the address bar
                rest = urlencode([(k, v) for k, v in query if k != "token"])
                location = (environ.get("SCRIPT_NAME", "") + path) or "/"
                return self._respond(start_response, "302 Found", "", [
                    ("Location", location + ("?" + rest if rest else "")), self._set_cookie(environ)])
            return self.app(environ, self._with_headers(start_response, [self._set_cookie(environ)]))
        if (tokens_equal(self._from_cookie(environ), self.token) or tokens_equal(self._from_header(environ), self.token)):
            return self.app(environ, self._with_headers(start_response, []))
        return self._respond(start_response, "403 Forbidden",
                             "visit: this server needs its access token. Open the link it printed at start "
                             "(http://HOST:PORT/?token=...), or ask whoever runs it.\n")

    # ---- helpers ---------------------------------------------------------------------------------------------

    def _from_cookie(self, environ) -> str | None:
        raw = environ.get("HTTP_COOKIE")
        if not raw:
            return None
        jar = SimpleCookie()
        try:
            jar.load(raw)
        except Exception:  # noqa: BLE001 - a malformed Cookie header is just "no token"
            return None
        morsel = jar.get(self.cookie)
        return morsel.value if morsel is not None else None

    @staticmethod
    def _from_header(environ) -> str | None:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        return environ.get(HEADER)

    def _set_cookie(self, environ) -> tuple[str, str]:
        secure = "; Secure" if environ.get("wsgi.url_scheme") == "https" else ""
        return ("Set-Cookie", f"{self.cookie}={self.token}; Path=/; HttpOnly; SameSite=Strict{secure}")

    @staticmethod
    def _with_headers(start_response, extra: list):
        def wrapped(status, headers, exc_info=None):
            present = {name.lower() for name, _ in headers}
            headers = list(headers) + extra + [h for h in SECURITY_HEADERS if h[0].lower() not in present]
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)
        return wrapped

    @staticmethod
    def _respond(start_response, status: str, body: str, headers: list | None = None):
        data = body.encode("utf-8")
        start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data))),
                                ("Cache-Control", "no-store"), *SECURITY_HEADERS, *(headers or [])])
        return [data]


def protect(app, host: str, port: int | None = None, token: str | None = None, force: bool = False) -> str | None:
    """Install the token gate on a Dash ``app`` unless ``host`` is loopback (and not ``force``); return the
    token in force.

    ``token`` overrides ``VISIT_TOKEN`` / the generated one (tests pass their own). ``force``: gate loopback
    too (``app.py --require-token``, for a server behind a reverse proxy on the same machine).
    """
    if is_loopback(host) and not force:
        return None
    if token is None:
        token, _ = resolve_token()
    server = app.server
    server.wsgi_app = TokenGate(server.wsgi_app, token, cookie_name(port))
    app.visit_access_token = token
    return token


def links(host: str, port: int, token: str) -> list[str]:
    """Ready links to print: the bound address (the machine's name for a wildcard bind) and loopback."""
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    out = [f"http://{shown}:{port}/?token={token}"]
    local = f"http://127.0.0.1:{port}/?token={token}"
    if local not in out:
        out.append(local)
    return out
