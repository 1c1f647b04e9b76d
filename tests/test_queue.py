"""Trace admission (visit/ui/queue.py): FIFO turns, bounded concurrency, positions, a full queue refuses."""

from __future__ import annotations

import threading
import time

import pytest

from visit.errors import VisitError
from visit.ui.queue import TraceQueue, status_text


def wait_until(condition, timeout=10):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)


def test_turns_are_first_come_first_served_one_at_a_time():
    queue, order, gate = TraceQueue(slots=1, max_waiting=10), [], threading.Event()

    def worker(name):
        with queue.turn(name):
            order.append(name)
            if name == "a":
                assert gate.wait(10)

    first = threading.Thread(target=worker, args=("a",))
    first.start()
    wait_until(lambda: queue.position("a") == 0)
    others = []
    for name in ("b", "c", "d"):
        others.append(threading.Thread(target=worker, args=(name,)))
        others[-1].start()
        wait_until(lambda n=name: queue.position(n) is not None)
    assert [queue.position(n) for n in "abcd"] == [0, 1, 2, 3] and queue.counts() == (1, 3)
    assert status_text(queue, "c") == "waiting for the model: 2 traces ahead of yours (position 2 in the queue)"
    assert status_text(queue, "b") == "waiting for the model: 1 trace ahead of yours (position 1 in the queue)"
    assert status_text(queue, "a") == "" and status_text(queue, "zzz") == ""
    gate.set()
    for t in [first, *others]:
        t.join(10)
    assert order == ["a", "b", "c", "d"] and queue.counts() == (0, 0)


def test_slots_errors_and_a_full_queue(monkeypatch):
    queue, gate, inside = TraceQueue(slots=2, max_waiting=1), threading.Event(), []

    def hold(name):
        with queue.turn(name):
            inside.append(name)
            gate.wait(10)

    threads = [threading.Thread(target=hold, args=(n,)) for n in ("a", "b", "c")]
    for t in threads:
        t.start()
    wait_until(lambda: queue.counts() == (2, 1))  # two run at once, the third waits
    with pytest.raises(VisitError, match="busy: 1 traces are waiting"):
        with queue.turn("d"):
            pass
    gate.set()
    for t in threads:
        t.join(10)
    assert sorted(inside) == ["a", "b", "c"]
    with pytest.raises(RuntimeError):  # an error inside gives the turn back
        with queue.turn("e"):
            raise RuntimeError("boom")
    assert queue.counts() == (0, 0)
    monkeypatch.setenv("VISIT_MAX_TRACES", "3")
    assert TraceQueue()._slots() == 3
