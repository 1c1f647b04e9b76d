"""Turn the raw values of the page's controls into a validated trace request.

Every problem becomes a one-line :class:`VisitError` the page shows; nothing here touches Dash.
"""

from __future__ import annotations

from dataclasses import fields, replace

from visit import limits
from visit.errors import VisitError
from visit.graph.settings import GraphSettings
from visit.ui.state import TraceRequest


def max_prompt_tokens() -> int:
    """The longest prompt the app traces (eager attention costs pos^2 per head; keep the page snappy)."""
    return limits.PROMPT_TOKENS.value()


def default_settings():
    return GraphSettings()


def parse_int(value, what: str, *, minimum: int | None = None, blank=None):
    if value is None or (isinstance(value, str) and not value.strip()):
        return blank
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise VisitError(f"{what} must be a whole number, not '{value}'") from None
    if number != int(number):
        raise VisitError(f"{what} must be a whole number, not {value}")
    number = int(number)
    if minimum is not None and number < minimum:
        raise VisitError(f"{what} must be at least {minimum}, not {number}")
    return number


def parse_float(value, what: str, *, minimum: float | None = None, blank=None):
    if value is None or (isinstance(value, str) and not value.strip()):
        return blank
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise VisitError(f"{what} must be a number, not '{value}'") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise VisitError(f"{what} must be a finite number")
    if minimum is not None and number < minimum:
        raise VisitError(f"{what} must be at least {minimum}, not {number}")
    return number


def parse_prompt(prompt) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise VisitError("the prompt is empty; type some text to trace")
    limits.PROMPT_CHARS.check_length(prompt, "the prompt")
    return prompt


def check_prompt_length(tokenizer, prompt: str) -> None:
    limits.check_prompt(prompt, tokenizer)


def parse_layer_range(start, end, n_layers: int) -> tuple[int | None, int | None]:
    """Inclusive layer range; blanks mean the first / the last layer. Negative numbers count from the end."""
    start = parse_int(start, "the first layer")
    end = parse_int(end, "the last layer")
    resolved = []
    for value, what in ((start, "first"), (end, "last")):
        if value is not None:
            if not -n_layers <= value < n_layers:
                raise VisitError(f"the {what} layer {value} is out of range: this model has layers 0..{n_layers - 1}")
            value %= n_layers
        resolved.append(value)
    start, end = resolved
    if start is not None and end is not None and start > end:
        raise VisitError(f"the layer range {start}-{end} is empty: the first layer must not come after the last")
    return start, end


def build_settings(base, *, layer_start=None, layer_end=None, knobs: dict | None = None,
                   prune_by=None, show_norms=None, marks: dict | None = None):
    """``base`` (a GraphSettings) with the controls' values and the session's sticky marks applied."""
    knobs = knobs or {}
    changes = {"layer_start": layer_start, "layer_end": layer_end}
    if "heads_per_layer" in knobs:
        changes["heads_per_layer"] = parse_int(knobs["heads_per_layer"], "heads per layer", minimum=0)
    for name, what in (("memory_per_head", "memory values per head"), ("wo_neurons", "W_O neurons"),
                       ("mlp_top", "top MLP neurons"), ("mlp_bottom", "bottom MLP neurons")):
        if name in knobs:
            changes[name] = parse_int(knobs[name], what, minimum=0, blank=getattr(base, name))
    if "min_edge_score" in knobs:
        changes["min_edge_score"] = parse_float(knobs["min_edge_score"], "the minimum edge score", minimum=0.0,
                                                blank=0.0)
    if prune_by is not None:
        if prune_by not in ("activation", "attribution", "circuit"):
            raise VisitError(f"prune by '{prune_by}'? choose activation, attribution or circuit")
        changes["prune_by"] = prune_by
    if knobs.get("circuit_share") is not None:
        changes["circuit_share"] = parse_float(knobs["circuit_share"], "the circuit share", minimum=0.01,
                                               blank=0.8)
        if changes["circuit_share"] > 1:
            raise VisitError("the circuit share is at most 1 (100%)")
    if show_norms is not None:
        changes["show_norms"] = bool(show_norms)
    changes.update(marks or {})
    known = {f.name for f in fields(base)}
    return replace(base, **{k: v for k, v in changes.items() if k in known})


def parse_target(target) -> str | None:
    """Blank means the model's top prediction. A leading space is kept: it is part of the token."""
    if target is None or target == "":
        return None
    if not isinstance(target, str):
        target = str(target)
    limits.TARGET_CHARS.check_length(target, "the target")
    return target


def make_request(vm, *, prompt, target, position, layer_start, layer_end, knobs, prune_by, show_norms,
                 marks, base_settings=None) -> TraceRequest:
    prompt = parse_prompt(prompt)
    check_prompt_length(vm.tokenizer, prompt)
    start, end = parse_layer_range(layer_start, layer_end, vm.dims.n_layers)
    settings = build_settings(base_settings or default_settings(), layer_start=start, layer_end=end, knobs=knobs,
                              prune_by=prune_by, show_norms=show_norms, marks=marks)
    limits.check_graph_settings(settings)
    return TraceRequest(prompt, parse_target(target), parse_int(position, "the position"), settings)
