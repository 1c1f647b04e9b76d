"""A message from the server to every open page: "the server is shutting down" (and why), shown at the top.

The server sets it (:meth:`ServerNotice.announce`, called by :mod:`visit.serving.gunicorn` on SIGTERM, before it
stops); every page polls it every :data:`POLL_MS` ms with one tiny callback and shows it once set. The poll is
cheap (no model, no session state) and the text is fixed server-side, escaped by Dash like any string child.
"""

from __future__ import annotations

import threading

from dash import Input, Output, dcc, html, no_update

POLL = "visit-server-poll"
NOTICE = "visit-server-notice"
POLL_MS = 4000


class ServerNotice:
    """The server's current notice (None: nothing to say). Thread-safe."""

    def __init__(self):
        self._text: str | None = None
        self._lock = threading.Lock()

    def announce(self, text: str) -> None:
        with self._lock:
            self._text = text

    @property
    def text(self) -> str | None:
        with self._lock:
            return self._text


def components():
    """The page's part: the poll timer and the (hidden until set) notice line."""
    return [dcc.Interval(id=POLL, interval=POLL_MS), html.Div(id=NOTICE, className="server-notice",
                                                             role="alert", style={"display": "none"})]


def register(app, notice: ServerNotice) -> None:
    @app.callback(Output(NOTICE, "children"), Output(NOTICE, "style"), Input(POLL, "n_intervals"),
                  prevent_initial_call=True)
    def show_notice(_):
        text = notice.text
        return (text, {}) if text else (no_update, no_update)
