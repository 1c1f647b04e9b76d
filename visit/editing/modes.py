"""CounterFact evaluation of many edits at once: ``independent``, ``batch`` and ``sequential`` modes.

- **independent** (:func:`visit.editing.counterfact.evaluate`, the default): each record is edited on the unedited
  model, scored and restored;
- **batch**: every record's request is written at once, then every record is scored on that one edited model.
  MEMIT and AlphaEdit write the batch as one edit (:func:`apply_batch`); the one-fact editors (ROME, KN-E, CNE)
  compute each record's edit on the unedited model and apply them all together (their deltas summed: what
  the facts cost each other when nothing coordinates them);
- **sequential**: the records are edited one after another, each edit computed on the model with the earlier
  ones applied (:meth:`visit.editing.stack.EditStack.edit`; AlphaEdit preserves the earlier edits' keys), and
  after every ``every``-th edit and after the last, all records edited so far are scored on the current model:
  the *health curve* (ES/PS/NS/S and GE against the number of edits). The final metrics are the last point.
  An edit the stack refuses (its logits NaN/inf: a collapsed model) is listed in ``refused`` and the run goes on
  without it.

In every mode the unedited model is scored too, and the weights at rest are never changed: the edits live in an
:class:`visit.editing.stack.EditStack` that is applied only while scoring (and restored bit-exactly, also when
something raises in the middle of a run).

GE (fluency, the generation entropy of the records' generation prompts) is not computed here: ``fluency`` is a
callable ``fluency(vm, records) -> float | None`` run on the edited model at each point (``None``: the column
stays empty).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from visit.editing.counterfact import (METRICS, Evaluation, Progress, Record, evaluate, record_metrics,
                                       record_scores, summarise)
from visit.editing.edit import Edit, check_editable
from visit.editing.editors import compute_edit, editor
from visit.editing.request import EditRequest
from visit.editing.stack import EditStack
from visit.errors import VisitError
from visit.models.overlay import NONE, bind_session

MODES = ("independent", "batch", "sequential")
CURVE_METRICS = ("ES", "PS", "NS", "S", "GE")
Fluency = Callable[[object, Sequence[Record]], "float | None"]


@dataclass
class ModeEvaluation(Evaluation):
    """An :class:`Evaluation` of a batch or sequential run; ``curve``: ``[{"edits", "ES", "PS", "NS", "S",
    "GE", ...}]`` (sequential: one point per ``every`` edits and the last; batch: one point)."""

    mode: str = "batch"
    every: int | None = None
    curve: list[dict] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)  # sequential edits the stack refused (non-finite logits)

    def to_json(self) -> dict:
        return {**super().to_json(), "mode": self.mode, "every": self.every, "curve": self.curve,
                "refused": self.refused}


def prepared_options(vm, method: str, requests: Sequence[EditRequest], layer: int | None = None,
                     **options) -> dict:
    """The editor's options with its work on the unedited model done once (key statistics)."""
    fn = editor(method)
    prepare = getattr(fn, "prepare", None)
    if prepare is not None:
        with bind_session(NONE):
            return prepare(vm, requests[0], layer=layer, **options)
    return {**options, **({"layer": layer} if layer is not None else {})}


def apply_batch(vm, stack: EditStack, requests: Sequence[EditRequest], method: str, **options) -> list[Edit]:
    """Write every request at once on top of ``stack``: one edit for MEMIT/AlphaEdit, else one edit per request,
    each computed on the model as the stack left it, then all pushed. Returns the edits pushed."""
    if not requests:
        raise VisitError("no requests to edit")
    check_editable(vm)
    fn = editor(method)
    if getattr(fn, "batched", False):
        return [stack.edit(vm, list(requests), method, **options)]
    if getattr(fn, "uses_history", False):
        options["history"] = tuple(stack.edits)
    base = EditStack(list(stack.edits))
    computed = []
    for req in requests:
        extra = dict(options)
        if getattr(fn, "prepare", None) is not None:
            with bind_session(NONE):
                extra = fn.prepare(vm, req, **options)
        with base.applied(vm):
            computed.append(compute_edit(vm, req, method, **extra))
    pushed = []
    try:
        for e in computed:
            pushed.append(stack.push(vm, e))
    except VisitError:
        for e in pushed:
            stack.revert(e.id)
        raise
    return pushed


def _score(vm, stack: EditStack, records: Sequence[Record], fluency: Fluency | None) -> tuple[list, float | None]:
    with stack.applied(vm):
        scores = [record_scores(vm, r) for r in records]
        ge = fluency(vm, records) if fluency is not None else None
    return scores, ge


def _point(n_edits: int, scores: list, ge, seconds: float) -> dict:
    metrics, _ = summarise([record_metrics(s) for s in scores])
    return {"edits": n_edits, **{m: metrics[m] for m in METRICS}, "GE": ge, "seconds": round(seconds, 2)}


def evaluate_mode(vm, records: Sequence[Record], method: str = "rome", mode: str = "independent",
                  layer: int | None = None, every: int | None = None, progress: Progress | None = None,
                  fluency: Fluency | None = None, **options) -> Evaluation:
    """CounterFact metrics of ``method`` on ``records`` in ``mode`` (module doc). ``every``: the health curve's
    step in sequential mode (default: about ten points)."""
    if mode not in MODES:
        raise VisitError(f"unknown mode '{mode}'; choose one of {', '.join(MODES)}")
    if not records:
        raise VisitError("no records to evaluate")
    if every is not None and int(every) < 1:
        raise VisitError(f"--every must be at least 1, not {every}")
    if mode == "independent":
        return evaluate(vm, records, method, layer=layer, progress=progress, fluency=fluency, **options)
    check_editable(vm)
    n = len(records)
    every = int(every) if every else max(1, n // 10)
    options = prepared_options(vm, method, [r.request for r in records], layer=layer, progress=progress,
                               **options)
    before = [record_scores(vm, r) for r in records]
    stack, curve, refused, started = EditStack(), [], [], time.perf_counter()
    t_edit = 0.0
    if mode == "batch":
        if progress is not None:
            progress(0, n, f"editing {n} facts at once")
        start = time.perf_counter()
        apply_batch(vm, stack, [r.request for r in records], method, **options)
        t_edit = time.perf_counter() - start
        after, ge = _score(vm, stack, records, fluency)
        curve.append(_point(n, after, ge, time.perf_counter() - started))
    else:
        for i, rec in enumerate(records):
            start = time.perf_counter()
            try:
                stack.edit(vm, rec.request, method, **options)
            except VisitError as exc:  # refused (NaN/inf after a collapse): the record stays in, unedited
                refused.append({"edits": i + 1, "case_id": rec.case_id, "error": str(exc)})
            t_edit += time.perf_counter() - start
            if (i + 1) % every == 0 or i == n - 1:
                after, ge = _score(vm, stack, records[: i + 1], fluency)
                curve.append(_point(i + 1, after, ge, time.perf_counter() - started))
            if progress is not None:
                progress(i + 1, n, f"edit {i + 1}/{n}: {rec.request.prompt}")
    m_before = [record_metrics(s) for s in before]
    m_after = [record_metrics(s) for s in after]
    metrics, intervals = summarise(m_after)
    unedited, unedited_intervals = summarise(m_before)
    edits = {e.id: e for e in stack}
    rows = [{"case_id": r.case_id, "request": r.request.to_json(), "layer": None, "metrics": a, "unedited": b,
             "scores": s, "unedited_scores": u} for r, a, b, s, u in zip(records, m_after, m_before, after, before)]
    layers = sorted({lay for e in edits.values() for lay in (e.info.get("layers") or [e.layer]) if lay is not None})
    return ModeEvaluation(method, layers[0] if len(layers) == 1 else None, metrics, intervals, unedited,
                          unedited_intervals, rows,
                          {"edit_per_record": round(t_edit / n, 3), "edit_total": round(t_edit, 3),
                           "total": round(time.perf_counter() - started, 3)},
                          mode=mode, every=every if mode == "sequential" else None,
                          curve=curve, refused=refused)


def format_curve(curve: Sequence[dict]) -> str:
    """The health curve as a text table (one line per point)."""
    lines = [f"{'edits':>6}" + "".join(f"{m:>8}" for m in CURVE_METRICS)]
    for p in curve:
        lines.append(f"{p['edits']:>6}" + "".join(f"{'-' if p.get(m) is None else format(p[m], '.1f'):>8}"
                                                  for m in CURVE_METRICS))
    return "\n".join(lines)
