"""CounterFact evaluation (Meng et al. 2022; seed 001 section 4.2, Table 3).

A record asks to rewrite one fact (``requested_rewrite``: template with ``{}``, subject, true and new object) and
brings paraphrase prompts (the same fact worded differently) and neighbourhood prompts (other subjects whose true
object is the same old object). The official ``counterfact.json`` format is read as it is; the shipped
``visit/data/counterfact_visit.json`` uses it too.

Scoring: the probability of an object ``o`` after a prompt is ``P = exp(-NLL)`` where NLL is the teacher-forced
*mean per-token* negative log-likelihood of the tokens of ``" " + o`` (ROME's ``summarize``). Per record, over
its prompts of each kind:

- ES = share of rewrite prompts with P(new) > P(true); EM = mean P(new) - P(true);
- PS, PM = the same over the paraphrase prompts;
- NS = share of neighbourhood prompts with P(true) > P(new); NM = mean P(true) - P(new);

then the mean over records, x 100, and S = the harmonic mean of ES, PS and NS. Intervals: 95% of the mean over
records (1.96 x sample std / sqrt(n)). Each record is edited on the unedited model, evaluated with the edit
applied, and restored (``weights_changed``), so every record starts from the same weights; the unedited model is
scored as its own row.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from visit.editing.edit import check_editable
from visit.editing.editors import editor
from visit.editing.request import EditRequest, object_ids
from visit.errors import VisitError
from visit.hooks import run, weights_changed
from visit.hooks.batch import _cache, check_window, left_padded, pad_id
from visit.models.overlay import NONE, bind_session

METRICS = ("S", "ES", "EM", "PS", "PM", "NS", "NM")
_DATA = Path(__file__).resolve().parent.parent / "data"
Progress = Callable[[int, int, str], None]


def default_records_path() -> Path:
    """The shipped records: facts the default model knows, CounterFact's format."""
    return _DATA / "counterfact_visit.json"


@dataclass(frozen=True)
class Record:
    case_id: int | str
    request: EditRequest  # with ``old`` = the true object
    paraphrases: tuple[str, ...]
    neighbours: tuple[str, ...]
    generation_prompts: tuple[str, ...] = ()  # for GE (visit.generation.fluency)

    @classmethod
    def from_json(cls, raw: dict, where: str = "") -> "Record":
        try:
            rr = raw["requested_rewrite"]
            request = EditRequest(rr["prompt"], rr["subject"], rr["target_new"]["str"], rr["target_true"]["str"])
            prompts = [raw.get(k, []) for k in ("paraphrase_prompts", "neighborhood_prompts", "generation_prompts")]
            if any(not isinstance(ps, list) or not all(isinstance(p, str) for p in ps) for ps in prompts):
                raise VisitError("paraphrase_prompts, neighborhood_prompts and generation_prompts must be lists "
                                 "of texts")
            return cls(raw.get("case_id", where), request, tuple(prompts[0]), tuple(prompts[1]), tuple(prompts[2]))
        except KeyError as exc:
            raise VisitError(f"record {where}: not in CounterFact's format (missing {exc})") from None
        except (TypeError, AttributeError):
            raise VisitError(f"record {where}: not in CounterFact's format (expected {{\"requested_rewrite\": "
                             f"{{\"prompt\", \"subject\", \"target_new\": {{\"str\"}}, \"target_true\": "
                             f"{{\"str\"}}}}, ...}})") from None
        except VisitError as exc:
            raise VisitError(f"record {where}: {exc}") from None


def load_records(path: str | Path | None = None, limit: int | None = None) -> list[Record]:
    """Records from a CounterFact JSON file (a list of records; JSONL with one record a line works too)."""
    path = Path(path) if path else default_records_path()
    if not path.is_file():
        raise VisitError(f"records file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines()
                                                                        if x.strip()]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise VisitError(f"cannot read records {path}: {exc}") from None
    if not isinstance(raw, list) or not raw:
        raise VisitError(f"records file {path} holds no records (expected a JSON list)")
    if limit is not None:
        if limit < 1:
            raise VisitError(f"--limit must be at least 1, not {limit}")
        raw = raw[:limit]
    return [Record.from_json(r, f"{path.name}[{i}]") for i, r in enumerate(raw)]


def object_nll(vm, prompts: Sequence[str], objects: Sequence[str]) -> torch.Tensor:
    """``[len(prompts), len(objects)]`` teacher-forced mean per-token NLL of ``" " + object`` after each prompt.

    The prompts run once (left-padded batch, next-token logits of the last column); each object's later tokens
    then run after the prompts' cached keys/values.
    """
    tok = vm.tokenizer
    batch = left_padded([tok(p).input_ids for p in prompts], pad_id(tok), vm.device)
    check_window(vm, batch.width + max(len(object_ids(tok, o)) for o in objects))
    n = len(prompts)
    cache = _cache(vm, None)
    logits, _ = run(vm, batch.ids, attention_mask=batch.mask, position_ids=batch.positions, past_key_values=cache,
                    logits_to_keep=1)
    first = logits[:, -1].float().log_softmax(-1)  # [n, vocab]
    kv = [(layer.keys, layer.values) for layer in cache.layers]
    out = torch.zeros(n, len(objects))
    last_pos = batch.positions[:, -1:]
    for j, obj in enumerate(objects):
        ids = torch.tensor(object_ids(tok, obj), device=vm.device)
        total = first[:, ids[0]].clone()
        m = len(ids)
        if m > 1:
            cont = ids[:-1].view(1, -1).expand(n, -1)
            mask = torch.cat([batch.mask, torch.ones(n, m - 1, dtype=batch.mask.dtype, device=vm.device)], 1)
            pos = last_pos + torch.arange(1, m, device=vm.device)
            more, _ = run(vm, cont, attention_mask=mask, position_ids=pos, past_key_values=_cache(vm, kv),
                          logits_to_keep=m - 1)
            total += more.float().log_softmax(-1).gather(-1, ids[1:].view(1, -1, 1).expand(n, -1, 1)).squeeze(-1
                                                                                                         ).sum(1)
        out[:, j] = -total.cpu() / m
    return out


def object_logprob(vm, prompt: str, obj: str) -> float:
    """Mean per-token log-probability of ``" " + obj`` after ``prompt``."""
    return -float(object_nll(vm, [prompt], [obj])[0, 0])


KINDS = (("rewrite", "E"), ("paraphrase", "P"), ("neighbourhood", "N"))


def record_scores(vm, record: Record) -> dict:
    """``{"rewrite"|"paraphrase"|"neighbourhood": [[nll_new, nll_true] per prompt]}`` on the model as it is."""
    groups = {"rewrite": [record.request.prompt], "paraphrase": list(record.paraphrases),
              "neighbourhood": list(record.neighbours)}
    prompts = [p for ps in groups.values() for p in ps]
    nll = object_nll(vm, prompts, [record.request.new, record.request.old]).tolist()
    out, i = {}, 0
    for kind, ps in groups.items():
        out[kind] = nll[i:i + len(ps)]
        i += len(ps)
    return out


def record_metrics(scores: dict) -> dict:
    """One record's ES/EM/PS/PM/NS/NM (fractions and probability differences, not yet x 100; None when the record
    has no prompt of a kind)."""
    out = {}
    for kind, letter in KINDS:
        pairs = scores.get(kind) or []
        if not pairs:
            out[f"{letter}S"] = out[f"{letter}M"] = None
            continue
        new, true = np.array(pairs, dtype=np.float64).T
        sign = -1.0 if kind == "neighbourhood" else 1.0
        out[f"{letter}S"] = float(np.mean(sign * (true - new) > 0))
        out[f"{letter}M"] = float(np.mean(sign * (np.exp(-new) - np.exp(-true))))
    return out


def summarise(per_record: Sequence[dict]) -> tuple[dict, dict]:
    """``(metrics, intervals)`` in percent over records; S = harmonic mean of ES, PS, NS."""
    metrics, intervals = {}, {}
    for name in METRICS[1:]:
        values = np.array([r[name] for r in per_record if r.get(name) is not None], dtype=np.float64) * 100
        metrics[name] = float(values.mean()) if len(values) else None
        intervals[name] = (float(1.96 * values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None)
    parts = [metrics[k] for k in ("ES", "PS", "NS")]
    if any(p is None for p in parts):
        metrics["S"] = None
    else:
        metrics["S"] = 0.0 if min(parts) <= 0 else float(len(parts) / sum(1 / p for p in parts))
    intervals["S"] = None
    return {k: metrics[k] for k in METRICS}, {k: intervals[k] for k in METRICS}


@dataclass
class Evaluation:
    method: str
    layer: int | None
    metrics: dict
    intervals: dict
    unedited: dict
    unedited_intervals: dict
    records: list[dict] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.records)

    def to_json(self) -> dict:
        return {"method": self.method, "layer": self.layer, "n": self.n, "metrics": self.metrics,
                "intervals": self.intervals, "unedited": self.unedited,
                "unedited_intervals": self.unedited_intervals, "seconds": self.seconds, "records": self.records}


def evaluate(vm, records: Sequence[Record], method: str = "rome", layer: int | None = None,
             progress: Progress | None = None, fluency=None, **options) -> Evaluation:
    """Edit, evaluate and restore each record with ``method``; score the unedited model too. Always on the
    model as loaded (a session's own edits are not part of it), as in seed 001's Table 3. ``fluency(vm,
    [record]) -> float | None`` (e.g. :func:`visit.generation.fluency.records_fluency`) adds GE, per record before
    and after its edit, and its mean to the metrics."""
    with bind_session(NONE):
        return _evaluate(vm, records, method, layer, progress, fluency, **options)


def _evaluate(vm, records, method, layer, progress, fluency, **options) -> Evaluation:
    if not records:
        raise VisitError("no records to evaluate")
    check_editable(vm)
    fn = editor(method)
    prepare = getattr(fn, "prepare", None)
    if prepare is not None:  # once for all records (ROME's key statistics of the layer)
        options = prepare(vm, records[0].request, layer=layer, **options)
    elif layer is not None:
        options["layer"] = layer
    rows, before_all, after_all = [], [], []
    t_edit = t_eval = 0.0
    for i, rec in enumerate(records):
        before = record_scores(vm, rec)
        ge_before = fluency(vm, [rec]) if fluency is not None else None
        start = time.perf_counter()
        extra = {"paraphrases": rec.paraphrases} if getattr(fn, "uses_paraphrases", False) else {}
        edit = fn(vm, rec.request, **options, **extra)
        t_edit += time.perf_counter() - start
        start = time.perf_counter()
        with weights_changed(vm, edit.deltas):
            after = record_scores(vm, rec)
            finite = all(math.isfinite(x) for pairs in after.values() for pair in pairs for x in pair)
            ge_after = fluency(vm, [rec]) if fluency is not None else None
        t_eval += time.perf_counter() - start
        m_before, m_after = record_metrics(before), record_metrics(after)
        if fluency is not None:
            m_before["GE"], m_after["GE"] = ge_before, ge_after
        before_all.append(m_before)
        after_all.append(m_after)
        rows.append({"case_id": rec.case_id, "request": rec.request.to_json(), "layer": edit.layer,
                     "metrics": m_after, "unedited": m_before, "scores": after, "unedited_scores": before,
                     "finite": finite, "edit": edit.info})
        if progress is not None:
            progress(i + 1, len(records), f"record {i + 1}/{len(records)}: {rec.request.prompt}")
    metrics, intervals = summarise(after_all)
    unedited, unedited_intervals = summarise(before_all)
    if fluency is not None:
        for out, per in ((metrics, after_all), (unedited, before_all)):
            values = [r["GE"] for r in per if r.get("GE") is not None]
            out["GE"] = sum(values) / len(values) if values else None
    layers = sorted({r["layer"] for r in rows if r["layer"] is not None})
    n = len(records)
    return Evaluation(method, layers[0] if len(layers) == 1 else (layer if layer is not None else None), metrics,
                      intervals, unedited, unedited_intervals, rows,
                      {"edit_per_record": round(t_edit / n, 3), "eval_per_record": round(t_eval / n, 3)})


def format_table(rows: Sequence[tuple[str, dict, dict]]) -> str:
    """Seed 001 Table 3: one line per (name, metrics, intervals), intervals in parentheses."""
    head = f"{'Editor':<22}{'S':>7}" + "".join(f"{m:>15}" for m in METRICS[1:])
    lines = [head]
    for name, metrics, intervals in rows:
        cells = [f"{_fmt(metrics.get('S')):>7}"]
        for m in METRICS[1:]:
            ci = intervals.get(m)
            cells.append(f"{_fmt(metrics.get(m)) + (f' ({ci:.1f})' if ci is not None else ''):>15}")
        lines.append(f"{name:<22}" + "".join(cells))
    return "\n".join(lines)


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.1f}"
