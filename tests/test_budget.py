"""The session store's byte budget (visit/ui/budget.py, visit/ui/state.py): oldest analyses dropped first."""

from __future__ import annotations

import threading

import torch

from visit.pipeline import analyze
from visit.ui.budget import ByteBudget, analysis_nbytes
from visit.ui.state import DROPPED_NOTE, SessionStore


def test_byte_budget_drops_oldest_first_never_the_newest():
    budget = ByteBudget(max_bytes=100)
    assert budget.add("a", 40) == [] and budget.add("b", 40) == []
    assert budget.add("c", 40) == ["a"] and budget.total() == 80
    assert budget.add("b", 10) == [] and list(budget.sizes()) == ["c", "b"]  # re-adding makes it the newest
    assert budget.add("huge", 500) == ["c", "b"] and budget.sizes() == {"huge": 500}  # kept, alone over budget
    budget.remove("huge")
    assert budget.total() == 0


def test_budget_reads_the_cap_from_the_environment(monkeypatch):
    monkeypatch.setenv("VISIT_MAX_SESSION_BYTES", "50")
    budget = ByteBudget()
    assert budget.limit == 50 and budget.add("a", 30) == [] and budget.add("b", 30) == ["a"]


def test_analysis_nbytes_counts_its_tensors_not_the_model(tiny_factory):
    vm = tiny_factory("gpt2")
    short, long = analyze(vm, "Hello there"), analyze(vm, "Hello there " * 20)
    values = sum(t.untyped_storage().nbytes() for t in long.trace.values.values())
    weights = sum(p.nbytes for p in vm.model.parameters())
    assert values <= analysis_nbytes(long) < values * 1.5 + 2_000_000  # + graph, figure, strings
    assert analysis_nbytes(long) > 5 * analysis_nbytes(short) - 10_000_000 and analysis_nbytes(short) < weights
    view = torch.zeros(1000)
    assert 4000 < analysis_nbytes({"a": view, "b": view[:10], "c": [view]}) < 4500  # one storage, counted once


def test_store_drops_the_oldest_analysis_and_tells_its_session(tiny_factory):
    vm = tiny_factory("llama")
    one = analyze(vm, "The capital of France is")
    size = analysis_nbytes(one)
    store = SessionStore(max_sessions=10, max_bytes=int(size * 2.5))
    for sid in ("a", "b"):
        store.get(sid).analysis = analyze(vm, "The capital of France is")
    assert store.total_bytes() >= 2 * size * 0.9 and store.notice("a") is None
    store.get("c").analysis = analyze(vm, "The capital of France is")  # over budget: "a" goes
    assert store.analysis("a") is None and store.notice("a") == DROPPED_NOTE
    assert store.analysis("b") is not None and store.analysis("c") is not None
    assert store.total_bytes() <= int(size * 2.5)
    assert store.get("a").analysis_bytes == 0
    store.get("a").analysis = analyze(vm, "Recomputed")  # the session traces again: its note is gone
    assert store.notice("a") is None and store.analysis("b") is None  # now b was the oldest
    store.get("a").analysis = None
    assert "a" not in store.budget.sizes()
    assert store.notice(None) is None and store.notice("nobody") is None


def test_store_budget_under_threads(tiny_factory):
    vm = tiny_factory("llama")
    analyses = [analyze(vm, f"Prompt number {i}") for i in range(4)]
    size = max(analysis_nbytes(a) for a in analyses)
    store = SessionStore(max_sessions=50, max_bytes=size * 3)
    errors = []

    def work(i):
        try:
            for j in range(15):
                store.get(f"s{(i * 5 + j) % 12}").analysis = analyses[j % 4]
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    kept = [sid for sid in (f"s{k}" for k in range(12)) if store.analysis(sid) is not None]
    assert 1 <= len(kept) <= 3 and store.total_bytes() <= size * 3
    assert set(store.budget.sizes()) == set(kept)
    # sessions dropped by the LRU leave the budget too
    small = SessionStore(max_sessions=1, max_bytes=10**9)
    small.get("x").analysis = analyses[0]
    small.get("y")
    assert "x" not in small.budget.sizes()
