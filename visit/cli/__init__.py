"""``python -m visit`` / ``visit``: a thin layer over the library.

Each subcommand lives in its own module with ``register(subparsers)``, which adds its parser and
sets ``func(args) -> int``. User errors (:class:`~visit.errors.VisitError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from visit.errors import VisitError

COMMAND_MODULES = ("visit.cli.trace_cmd", "visit.cli.study_cmd", "visit.cli.graph_cmd", "visit.cli.attribute_cmd",
                   "visit.cli.ablate_cmd", "visit.cli.causal_trace_cmd", "visit.cli.knowledge_neurons_cmd",
                   "visit.cli.edit_cmd", "visit.cli.edit_eval_cmd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visit", description="An X-ray for transformer language models.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="default",
                        help="'default' (the embedded SmolLM2-135M-Instruct), 'gemma3-270m', a GGUF file, "
                             "a Hugging Face id or a local directory")
    parser.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    parser.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16 (maths stays in fp32)")
    parser.add_argument("--device-map", default=None,
                        help="spread the model over devices and disk: auto, balanced, sequential, or a JSON object "
                             "(or file) {\"module\": device} with devices 0, cuda:1, cpu, disk")
    parser.add_argument("--max-memory", default=None,
                        help="what each device may hold, e.g. 0=20GiB,cpu=60GiB,disk=200GiB (disk only when named)")


def load_from_args(args):
    import visit.remote  # noqa: F401 - registers the ndif: scheme (remote models)
    from visit.models import load_model

    logging.getLogger("visit.remote").setLevel(logging.INFO)  # a remote model's transfer estimate, before loading
    return load_model(args.model, device=args.device, dtype=args.dtype, device_map=args.device_map,
                      max_memory=args.max_memory)


def progress_bar(desc: str):
    """``(bar, progress)``: a tqdm bar on stderr and a ``progress(done, total, note="")`` callback for it."""
    from tqdm.auto import tqdm

    bar = tqdm(total=0, desc=desc, file=sys.stderr, leave=False)

    def progress(done: int, total: int, note: str = "") -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(str(note)[:50], refresh=False)
        bar.refresh()

    return bar, progress


def write_text(path: str, text: str) -> None:
    """Write ``text`` as UTF-8 and say so; an unwritable path is a user error."""
    from pathlib import Path

    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise VisitError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"wrote {path}")


def write_json(path: str, data, indent: int | None = 2) -> None:
    """Write ``data`` as UTF-8 JSON; an unwritable path is a user error."""
    import json

    write_text(path, json.dumps(data, indent=indent, ensure_ascii=False))


def main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VisitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
