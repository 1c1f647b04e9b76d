"""Every Dash callback runs bound to its browser session's weights, so no panel names them.

:func:`bind_callbacks` wraps ``app.callback``: each function registered through it from then on runs inside
``using(session_id)`` (the app passes :meth:`visit.ui.panels.context.PanelContext.using`: the session's edits,
:mod:`visit.models.overlay`), with the session id the request carries for ``ids.SESSION`` (an Input or a State
of the callback). A callback that does not read the session runs bound to the weights at rest.
"""

from __future__ import annotations

import functools
from typing import Callable, ContextManager

from dash import callback_context
from dash.exceptions import MissingCallbackContextException

from visit.ui import ids

SESSION_PROP = f"{ids.SESSION}.data"


def request_session() -> str | None:
    """The session id the current Dash request carries (None outside a request or when it carries none)."""
    try:
        return callback_context.states.get(SESSION_PROP) or callback_context.inputs.get(SESSION_PROP)
    except MissingCallbackContextException:
        return None


def bind_callbacks(app, using: Callable[[str | None], ContextManager]) -> None:
    """From now on, ``app.callback(...)(fn)`` registers ``fn`` run inside ``using(request_session())``."""
    register = app.callback

    @functools.wraps(register)
    def callback(*args, **kwargs):
        decorate = register(*args, **kwargs)

        def bind(fn):
            @functools.wraps(fn)
            def bound(*a, **k):
                with using(request_session()):
                    return fn(*a, **k)
            return decorate(bound)

        return bind

    app.callback = callback


__all__ = ["bind_callbacks", "request_session", "SESSION_PROP"]
