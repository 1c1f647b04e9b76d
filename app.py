"""Serve the visit web app: ``python app.py`` -> http://127.0.0.1:8050

Options (each also an environment variable):

- ``--host`` / ``VISIT_HOST`` (default 127.0.0.1), ``--port`` / ``VISIT_PORT`` (default 8050);
- ``--model`` / ``VISIT_MODEL``: the model served first (default: the embedded SmolLM2-135M-Instruct);
- ``--models a,b`` / ``VISIT_MODELS``: further models the model box may load (hub ids or directories);
- ``--allow-local-models`` / ``VISIT_ALLOW_LOCAL_MODELS=1``: the model box may load any local directory;
- ``--allow-downloads`` / ``VISIT_ALLOW_DOWNLOADS=1``: the model box may load (download) any hub id;
- ``--device-map`` / ``VISIT_DEVICE_MAP`` and ``--max-memory`` / ``VISIT_MAX_MEMORY``: spread models over
  devices and disk (visit/models/dispatch.py); the model box loads its models with the same setting.

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

    try:
        policy = model_policy(args)
        token = None if access.is_loopback(args.host) else access.resolve_token()[0]
        spread = {k: v for k, v in (("device_map", args.device_map), ("max_memory", args.max_memory)) if v}
        load = functools.partial(load_model, **spread)
        model = load(args.model)
    except VisitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = create_app(model=model, model_name=args.model, max_sessions=limits.SESSIONS.value())
    app.visit_registry.policy = policy
    if spread:
        app.visit_registry.loader = load  # the model box's models are spread the same way
    access.protect(app, args.host, args.port, token=token)
    print(f"visit: serving {model.name} on http://{args.host}:{args.port}", flush=True)
    print(f"visit: {policy.describe()}", flush=True)
    if token is not None:
        if os.environ.get(access.TOKEN_ENV):
            print(f"visit: access token from {access.TOKEN_ENV}; open http://HOST:{args.port}/?token=<it>", flush=True)
        else:
            print("visit: every request needs this access token; open one of:", flush=True)
            for link in access.links(args.host, args.port, token):
                print(f"    {link}", flush=True)
    app.run(host=args.host, port=args.port, debug=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
