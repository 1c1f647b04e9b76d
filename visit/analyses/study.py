"""Prompt-set studies: one forward pass per prompt, feeding the chosen analyses.

As in VISIT's setup, only the prompts the model answers correctly (its top-1 next token is the
target's first token) are kept by default; the result says how many remained.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field

from tqdm.auto import tqdm

from visit.analyses.alignment import AlignmentStudy
from visit.analyses.ln_study import LnFilterStudy
from visit.analyses.regularization import RegularizationStudy
from visit.errors import VisitError
from visit.prompts import PromptCase
from visit.tokens import resolve_target, token_string
from visit.tracer import trace

STUDIES = ("ln", "alignment", "regularization")


def make_study(name: str, vm, options: dict | None = None):
    """The accumulator for one study name; ``options`` are its keyword arguments (k, top_n, ...)."""
    options = options or {}
    if name == "ln":
        return LnFilterStudy(vm, **options)
    if name == "alignment":
        return AlignmentStudy(vm, **options)
    if name == "regularization":
        return RegularizationStudy(vm, **options)
    raise VisitError(f"unknown study '{name}'; choose one of {', '.join(STUDIES)}")


@dataclass
class CaseOutcome:
    prompt: str
    target: str
    relation: str | None
    target_token: str | None = None
    predicted: str | None = None
    correct: bool = False
    kept: bool = False
    error: str | None = None


@dataclass
class StudyResult:
    model: str
    source: str  # where the prompts came from (a path or a description)
    studies: list[str]
    keep_correct: bool
    cases: list[CaseOutcome]
    results: dict[str, dict] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def n_prompts(self) -> int:
        return len(self.cases)

    @property
    def n_correct(self) -> int:
        return sum(c.correct for c in self.cases)

    @property
    def n_kept(self) -> int:
        return sum(c.kept for c in self.cases)

    def summary(self) -> str:
        kept = "answered correctly and kept" if self.keep_correct else "kept (all prompts)"
        return (f"{self.n_kept} of {self.n_prompts} prompts {kept} "
                f"({self.n_correct} correct; model {self.model})")

    def as_dict(self) -> dict:
        return {"model": self.model, "source": self.source, "studies": self.studies,
                "keep_correct": self.keep_correct, "n_prompts": self.n_prompts, "n_correct": self.n_correct,
                "n_kept": self.n_kept, "elapsed_s": self.elapsed_s,
                "cases": [asdict(c) for c in self.cases], "results": self.results}


def run_study(vm, cases: list[PromptCase], studies=("ln",), keep_correct: bool = True,
              progress: bool = True, options: dict | None = None, source: str = "",
              on_progress=None) -> StudyResult:
    """Trace every prompt once and feed the studies.

    ``options``: ``{study name: {keyword: value}}`` for the accumulators. ``on_progress(done, total)``
    is called after each prompt (the app's progress bar); ``progress`` shows a tqdm bar on stderr.
    """
    studies = list(dict.fromkeys(studies))
    accumulators = [make_study(name, vm, (options or {}).get(name)) for name in studies]
    outcomes = []
    start = time.perf_counter()
    for done, case in enumerate(tqdm(cases, desc="study", unit="prompt", disable=not progress, file=sys.stderr), 1):
        outcome = CaseOutcome(case.prompt, case.target, case.relation)
        outcomes.append(outcome)
        try:
            target = resolve_target(vm.tokenizer, case.target)
            traced = trace(vm, case.prompt)
        except VisitError as exc:
            outcome.error = str(exc)
        else:
            predicted = int(traced["logits"][traced.position].argmax())
            outcome.target_token = target.token
            outcome.predicted = token_string(vm.tokenizer, predicted)
            outcome.correct = predicted == target.id
            outcome.kept = outcome.correct or not keep_correct
            if outcome.kept:
                with vm.weights_for():
                    for acc in accumulators:
                        acc.add(traced, target.id)
        if on_progress is not None:
            on_progress(done, len(cases))
    result = StudyResult(vm.name, source, studies, keep_correct, outcomes)
    if result.n_kept == 0:
        raise VisitError(f"none of the {len(cases)} prompts was answered correctly by {vm.name}; "
                         "nothing to study (run with --all to keep every prompt)")
    result.results = {name: acc.result() for name, acc in zip(studies, accumulators)}
    result.elapsed_s = time.perf_counter() - start
    return result
