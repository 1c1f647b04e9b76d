"""What the subcommands share: the model options, loading the model they name, a progress bar, writing files."""

from __future__ import annotations

import argparse
import logging
import json
import sys
from pathlib import Path

from tqdm.auto import tqdm

from visit.errors import VisitError
from visit import models  # models.load_model looked up at call time (tests stand a model in for the load)
from visit.models.fit import check_fit
from visit.models.loading import shipped_model
from visit import remote  # importing it registers the ndif: scheme (remote models)


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
    """Load ``--model``, saying first on stderr whether it fits (:mod:`visit.models.fit`; not for the shipped
    models, which are small, so their commands' output stays as it was)."""
    logging.getLogger(remote.__name__).setLevel(logging.INFO)  # a remote model's transfer estimate, before loading
    if shipped_model(args.model) is None and not remote.is_remote(args.model):
        fit = check_fit(args.model, device=args.device, dtype=args.dtype, device_map=args.device_map,
                        max_memory=args.max_memory, download=True)
        if fit.fits is not False:  # a model that will not fit: load_model refuses it with the same line
            print(f"visit: before loading: {fit.text}", file=sys.stderr, flush=True)
    return models.load_model(args.model, device=args.device, dtype=args.dtype, device_map=args.device_map,
                      max_memory=args.max_memory)


def progress_bar(desc: str):
    """``(bar, progress)``: a tqdm bar on stderr and a ``progress(done, total, note="")`` callback for it."""
    bar = tqdm(total=0, desc=desc, file=sys.stderr, leave=False)

    def progress(done: int, total: int, note: str = "") -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(str(note)[:50], refresh=False)
        bar.refresh()

    return bar, progress


def write_text(path: str, text: str) -> None:
    """Write ``text`` as UTF-8 and say so; an unwritable path is a user error."""
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise VisitError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"wrote {path}")


def write_json(path: str, data, indent: int | None = 2) -> None:
    """Write ``data`` as UTF-8 JSON; an unwritable path is a user error."""
    write_text(path, json.dumps(data, indent=indent, ensure_ascii=False))
