"""Serve the visit web app: ``python app.py`` -> http://127.0.0.1:8050

It runs under gunicorn (visit/serving/gunicorn.py): one worker process that loads and holds the model, a pool of
``--threads`` request threads, graceful shutdown on SIGTERM (pages are told, running jobs cancelled). ``--debug``
runs Flask's development server instead, with Dash's dev tools (loopback only: it can run code for whoever
reaches it).

Options (each also an environment variable):

- ``--host`` / ``VISIT_HOST`` (default 127.0.0.1), ``--port`` / ``VISIT_PORT`` (default 8050);
- ``--model`` / ``VISIT_MODEL``: the model served first (default: the embedded SmolLM2-135M-Instruct);
- ``--models a,b`` / ``VISIT_MODELS``: further models the model box may load (hub ids or directories);
- ``--allow-local-models`` / ``VISIT_ALLOW_LOCAL_MODELS=1``: the model box may load any local directory;
- ``--allow-downloads`` / ``VISIT_ALLOW_DOWNLOADS=1``: the model box may load (download) any hub id;
- ``--device-map`` / ``VISIT_DEVICE_MAP`` and ``--max-memory`` / ``VISIT_MAX_MEMORY``: spread models over
  devices and disk (visit/models/dispatch.py); the model box loads its models with the same setting;
- ``--require-token`` / ``VISIT_REQUIRE_TOKEN=1``: the token gate even on loopback (behind a reverse proxy);
- ``--threads`` / ``VISIT_THREADS`` (default 32): request threads; ``VISIT_BATCH``: traces per batched pass.

On loopback without those three flags nothing is restricted. On any other address every request needs the
access token (``VISIT_TOKEN``, or one generated now and printed once with a ready link) and the model box
loads only the default model, ``--model`` and ``--models`` unless the flags say more (visit/ui/access.py,
visit/ui/policy.py). Server-side caps: visit/limits.py. Debug stays off.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys

from visit import limits
from visit.errors import VisitError
from visit.ui import create_app

TRUE = ("1", "true", "yes", "on")


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in TRUE


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="visit: the forward pass as an interactive flow graph")
    parser.add_argument("--host", default=os.environ.get("VISIT_HOST", "127.0.0.1"),
                        help="address to bind (default 127.0.0.1; any other address requires the access token)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("VISIT_PORT", "8050")))
    parser.add_argument("--model", default=os.environ.get("VISIT_MODEL", "default"),
                        help="'default', a Hugging Face id or a local directory")
    parser.add_argument("--models", default=os.environ.get("VISIT_MODELS", ""),
                        help="comma-separated models (hub ids or directories) the model box may also load")
    parser.add_argument("--allow-local-models", action="store_true", default=env_flag("VISIT_ALLOW_LOCAL_MODELS"),
                        help="let the model box load any local directory")
    parser.add_argument("--allow-downloads", action="store_true", default=env_flag("VISIT_ALLOW_DOWNLOADS"),
                        help="let the model box load (download) any Hugging Face id")
    parser.add_argument("--device-map", default=os.environ.get("VISIT_DEVICE_MAP") or None,
                        help="spread models over devices and disk: auto, balanced, sequential or a JSON map "
                             "{\"module\": device}; the model box uses it too")
    parser.add_argument("--max-memory", default=os.environ.get("VISIT_MAX_MEMORY") or None,
                        help="what each device may hold, e.g. 0=20GiB,cpu=60GiB,disk=200GiB (disk only when named)")
    parser.add_argument("--require-token", action="store_true", default=env_flag("VISIT_REQUIRE_TOKEN"),
                        help="require the access token on loopback too (e.g. behind a reverse proxy)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("VISIT_THREADS", "32")),
                        help="request threads of the production server (default 32)")
    parser.add_argument("--debug", action="store_true",
                        help="Flask's development server with Dash's dev tools (loopback only), not gunicorn")
    return parser.parse_args(argv)


def model_policy(args: argparse.Namespace):
    """Open on loopback when no policy flag is given (nothing changes for a local user); else restricted."""
    from visit.ui.access import is_loopback
    from visit.ui.policy import ModelPolicy, parse_names

    names = parse_names(args.models)
    if is_loopback(args.host) and not (names or args.allow_local_models or args.allow_downloads):
        return ModelPolicy.open()
    return ModelPolicy.restricted(names, args.allow_local_models, args.allow_downloads).with_names(args.model)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    from visit.models import load_model
    from visit.ui import access

    gated = args.require_token or not access.is_loopback(args.host)
    try:
        if args.debug and not access.is_loopback(args.host):
            raise VisitError("--debug serves Flask's development server with Dash's dev tools: only on a loopback "
                             "address (drop --debug to serve others)")
        policy = model_policy(args)
        token = access.resolve_token()[0] if gated else None
        spread = {k: v for k, v in (("device_map", args.device_map), ("max_memory", args.max_memory)) if v}
        load = functools.partial(load_model, **spread)
    except VisitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def build():
        """Load the model and build the app (in gunicorn's worker: visit/serving/gunicorn.py)."""
        model = load(args.model)
        app = create_app(model=model, model_name=args.model, max_sessions=limits.SESSIONS.value())
        app.visit_registry.policy = policy
        if spread:
            app.visit_registry.loader = load  # the model box's models are spread the same way
        access.protect(app, args.host, args.port, token=token, force=gated)
        print(f"visit: serving {model.name} on http://{args.host}:{args.port}", flush=True)
        return app

    print(f"visit: {policy.describe()}", flush=True)
    if token is not None:
        if os.environ.get(access.TOKEN_ENV):
            print(f"visit: access token from {access.TOKEN_ENV}; open http://HOST:{args.port}/?token=<it>", flush=True)
        else:
            print("visit: every request needs this access token; open one of:", flush=True)
            for link in access.links(args.host, args.port, token):
                print(f"    {link}", flush=True)
    if args.debug:
        try:
            app = build()
        except VisitError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        app.run(host=args.host, port=args.port, debug=True, use_reloader=False)
        return 0
    from visit.serving.gunicorn import serve  # gunicorn is imported only when it serves

    print(f"visit: loading the model in the server's worker process ({args.threads} request threads)", flush=True)
    return serve(build, args.host, args.port, threads=args.threads)


if __name__ == "__main__":
    raise SystemExit(main())
