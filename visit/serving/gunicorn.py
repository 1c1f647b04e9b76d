"""The app under gunicorn: ONE worker process that holds the model, serving requests on a pool of threads.

Why one process: the model is the expensive part (memory, and on a GPU the device), and sessions, jobs, the trace
queue and the batcher (:mod:`visit.batching`) live in that process's memory. Several processes would each load
the model and split the sessions; threads share it, and the model's lock (:mod:`visit.models.overlay`) and the
trace queue (:mod:`visit.ui.queue`) already order the work between them.

The model is loaded in the worker, after gunicorn forks it (``build`` runs there): a CUDA context does not
survive a fork, and neither does OpenMP's thread pool once torch has used it. Until it is loaded the listening
socket (opened by gunicorn's master) holds connections in its backlog, so the health check simply waits.

Graceful shutdown (SIGTERM: ``docker stop``, systemd, ``kill``): the worker

1. tells every page (:class:`visit.ui.notice.ServerNotice`, which the pages poll), cancels every running job
   (:meth:`visit.ui.jobs.JobRunner.shutdown`; a job's page shows why) and refuses new traces and jobs with the
   same one line, including those already waiting in the trace queue;
2. keeps serving for :data:`NOTICE_S` seconds, so the pages' polls (every 4 s) fetch the notice and running
   traces finish;
3. then stops as gunicorn's gthread worker does: no new connections, in-flight requests get
   :data:`FINISH_S` more seconds. Both fit in ``docker stop``'s default 10 s.

Ctrl+C (SIGINT) stops at once, cancelling the jobs first.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Callable

from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker

from visit.errors import VisitError

log = logging.getLogger(__name__)

NOTICE_S = float(os.environ.get("VISIT_SHUTDOWN_NOTICE_S", "5"))  # serve on after SIGTERM, so pages hear of it
FINISH_S = 4.0  # then in-flight requests get this long
THREADS = int(os.environ.get("VISIT_THREADS", "32"))  # request threads (the trace queue bounds the model work)
BOOT_FAILED = 3  # gunicorn's exit status when its worker cannot start (here: the model did not load)
SHUTDOWN_MESSAGE = ("the server is shutting down: running jobs were cancelled; reload this page when it is back "
                    "(what you did here is not kept)")


def shut_down(app, message: str = SHUTDOWN_MESSAGE) -> int:
    """Tell the app's pages, cancel its jobs, refuse new work (see the module doc); returns the jobs cancelled."""
    notice = getattr(app, "visit_notice", None)
    if notice is not None:
        notice.announce(message)
    queue = getattr(app, "visit_queue", None)
    if queue is not None:
        queue.close(message)
    jobs = getattr(app, "visit_jobs", None)
    return jobs.shutdown(message) if jobs is not None else 0


class VisitWorker(ThreadWorker):
    """gunicorn's gthread worker that announces its shutdown before it stops (module doc)."""

    dash_app = None  # set once the worker has built the app

    def handle_exit(self, sig, frame):
        if getattr(self, "_stopping", False) or not self.alive:
            return
        self._stopping = True
        if self.dash_app is not None:
            cancelled = shut_down(self.dash_app)
            self.log.info("visit: shutting down, %d running jobs cancelled; stopping in %.0f s", cancelled, NOTICE_S)
            batcher = getattr(self.dash_app, "visit_batcher", None)
            if batcher is not None and batcher.stats.passes:
                s = batcher.stats
                self.log.info("visit: batched traces: %d rows in %d passes (largest %d, mean %.1f)", s.rows,
                              s.passes, s.largest, s.rows / s.passes)
        stop = threading.Timer(NOTICE_S, ThreadWorker.handle_exit, args=(self, sig, frame))
        stop.daemon = True
        stop.start()

    def handle_quit(self, sig, frame):
        if self.dash_app is not None:
            shut_down(self.dash_app)
        super().handle_quit(sig, frame)


class VisitServer(BaseApplication):
    """A gunicorn application whose WSGI app is ``build()`` (a Dash app), called in the worker process."""

    def __init__(self, build: Callable, bind: str, threads: int = THREADS, options: dict | None = None):
        self.build, self.settings = build, {
            "bind": bind, "workers": 1, "worker_class": f"{__name__}.VisitWorker", "threads": threads,
            "graceful_timeout": int(NOTICE_S + FINISH_S + 1), "timeout": 120, "keepalive": 5,
            "accesslog": None, "errorlog": "-", "loglevel": "info", "proc_name": "visit",
            "control_socket_disable": True,  # gunicorn's control socket is one fixed file per user: servers clash
            **(options or {})}
        super().__init__()

    def load_config(self):
        for key, value in self.settings.items():
            self.cfg.set(key, value)

    def load(self):
        try:
            app = self.build()
        except Exception as exc:  # noqa: BLE001 - one line, and gunicorn stops instead of retrying a doomed boot
            if not isinstance(exc, VisitError):
                log.exception("the app failed to start")
            print(f"error: {exc}", file=sys.stderr, flush=True)
            sys.exit(BOOT_FAILED)
        VisitWorker.dash_app = app
        return app.server  # the Flask app (with the token gate around its wsgi_app when installed)


def serve(build: Callable, host: str, port: int, threads: int = THREADS, options: dict | None = None) -> int:
    """Run ``build()``'s app under gunicorn on ``host:port`` until stopped; the exit status (2: it did not start)."""
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    master = os.getpid()
    try:
        VisitServer(build, bind, threads, options).run()
    except SystemExit as exc:
        if os.getpid() != master:  # the forked worker unwinds through here too: its status must reach the master
            raise
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return 2 if code == BOOT_FAILED else code
    return 0


__all__ = ["BOOT_FAILED", "NOTICE_S", "SHUTDOWN_MESSAGE", "THREADS", "VisitServer", "VisitWorker", "serve",
           "shut_down"]
