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


def test_a_lent_turn_admits_the_next_and_comes_back_before_later_arrivals():
    queue, order, lent_now, back = TraceQueue(slots=1, max_waiting=10), [], threading.Event(), threading.Event()

    def first():
        with queue.turn("a"):
            with queue.lent():  # waiting for a shared forward pass: the turn goes to the next in line
                lent_now.set()
                assert back.wait(10)
            order.append("a-graph")

    def other(name, hold=None):
        with queue.turn(name):
            order.append(name)
            if hold is not None:
                assert hold.wait(10)

    gate = threading.Event()
    threads = [threading.Thread(target=first)]
    threads[0].start()
    assert lent_now.wait(10)
    threads.append(threading.Thread(target=other, args=("b", gate)))
    threads[-1].start()
    wait_until(lambda: queue.position("b") == 0)  # admitted while a's turn is lent
    assert status_text(queue, "a") == "waiting for the model: 1 trace ahead of yours (position 1 in the queue)"
    back.set()  # a's pass is done: it waits for the turn again, ahead of c who arrives now
    wait_until(lambda: queue.counts() == (1, 1))
    threads.append(threading.Thread(target=other, args=("c",)))
    threads[-1].start()
    wait_until(lambda: queue.position("c") == 2)
    gate.set()
    for t in threads:
        t.join(10)
    assert order == ["b", "a-graph", "c"] and queue.counts() == (0, 0)
    with queue.lent():  # no turn held: nothing to lend
        pass


def test_close_refuses_new_and_waiting_turns():
    queue, gate, refused = TraceQueue(slots=1, max_waiting=10), threading.Event(), []

    def hold():
        with queue.turn("a"):
            gate.wait(10)

    def wait_in_line():
        try:
            with queue.turn("b"):
                pass
        except VisitError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=hold), threading.Thread(target=wait_in_line)]
    threads[0].start()
    wait_until(lambda: queue.position("a") == 0)
    threads[1].start()
    wait_until(lambda: queue.position("b") == 1)
    queue.close("the server is shutting down")
    threads[1].join(10)
    assert refused == ["the server is shutting down"]
    with pytest.raises(VisitError, match="shutting down"):
        with queue.turn("c"):
            pass
    gate.set()
    threads[0].join(10)
