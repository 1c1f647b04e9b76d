"""``python -m visit`` / ``visit``: a thin layer over the library.

Each subcommand lives in its own module with ``register(subparsers)``, which adds its parser and
sets ``func(args) -> int``; :data:`COMMANDS` lists them (the options they share are in :mod:`visit.cli.options`).
User errors (:class:`~visit.errors.VisitError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from types import ModuleType

from visit.cli import (
    ablate_cmd,
    attribute_cmd,
    causal_trace_cmd,
    edit_cmd,
    edit_eval_cmd,
    graph_cmd,
    knowledge_neurons_cmd,
    study_cmd,
    trace_cmd,
    generate_cmd,
)
from visit.errors import VisitError

COMMANDS: tuple[ModuleType, ...] = (trace_cmd, study_cmd, graph_cmd, attribute_cmd, ablate_cmd, causal_trace_cmd,
                                    knowledge_neurons_cmd, edit_cmd, edit_eval_cmd, generate_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visit", description="An X-ray for transformer language models.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VisitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
