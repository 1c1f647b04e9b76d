"""The one memo on the trace (visit.memo, Trace.memo): once per key and weights version, never stale after an
edit, gone with its trace, one value for threads that ask at once."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest
import torch

from visit.attribution import head_logprob_increase
from visit.editing.edit import mlp_out_param
from visit.hooks import weights_changed
from visit.memo import Memo
from visit.tracer import trace

PROMPT = "The capital of France is the city of"
TARGET = 7042


@pytest.fixture(scope="module")
def vm(tiny_factory):
    return tiny_factory("llama", seed=4)


def test_computes_once_per_key(vm):
    tr = trace(vm, PROMPT)
    calls = []

    def compute():
        calls.append(1)
        return head_logprob_increase(tr, TARGET)

    first = tr.memo(("heads", TARGET), compute)
    assert tr.memo(("heads", TARGET), compute) is first and len(calls) == 1
    torch.testing.assert_close(first, head_logprob_increase(tr, TARGET))
    assert tr.memo(("heads", TARGET + 1), lambda: head_logprob_increase(tr, TARGET + 1)) is not first


def test_an_edit_never_serves_stale_numbers(vm):
    tr = trace(vm, PROMPT)
    name = mlp_out_param(vm, 0)
    delta = torch.randn_like(dict(vm.model.named_parameters())[name]) * 0.5

    def out_sum():
        return float(vm.weights.W_out(0).sum())

    before = tr.memo("W_out sum", out_sum)
    with weights_changed(vm, {name: delta}):
        edited = tr.memo("W_out sum", out_sum)
        assert edited == pytest.approx(out_sum()) and edited != pytest.approx(before)
    assert tr.memo("W_out sum", lambda: pytest.fail("recomputed")) == before  # the weights at rest again


def test_the_memo_lives_and_dies_with_its_trace(vm):
    tr = trace(vm, PROMPT)
    other = trace(vm, PROMPT)
    tr.memo("k", lambda: 1)
    assert other.memo("k", lambda: 2) == 2  # no table shared between traces
    ref = weakref.ref(tr)
    del tr
    gc.collect()
    assert ref() is None


def test_threads_asking_at_once_get_one_value():
    memo = Memo()
    start = threading.Barrier(4)
    got = []

    def ask():
        start.wait()
        got.append(memo.get("k", object))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and all(v is got[0] for v in got)
    memo.clear()
    assert "k" not in memo and len(memo) == 0
