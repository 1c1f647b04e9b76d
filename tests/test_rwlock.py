"""The readers-writer lock under ``vm.lock``: readers share, a writer is alone, both sides nest, a waiting writer
goes before new readers, and a reader asking for the exclusive side is refused instead of hanging. Threads wait
on events; nothing depends on how long anything takes."""

import threading
import time

import pytest

from visit.models.rwlock import LockOrderError, RWLock

WAIT = 30  # seconds; only reached when something is broken


def until(condition, seconds: float = WAIT) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def hold(lock: RWLock, exclusive: bool, inside: threading.Event, leave: threading.Event, log: list, name: str):
    def run():
        with (lock if exclusive else lock.reading()):
            log.append(f"{name} in")
            inside.set()
            assert leave.wait(WAIT)
            log.append(f"{name} out")
    t = threading.Thread(target=run)
    t.start()
    return t


def test_readers_share_and_a_writer_waits_for_them_then_goes_before_new_readers():
    lock, log = RWLock(), []
    in1, out1, in2, out2 = (threading.Event() for _ in range(4))
    r1 = hold(lock, False, in1, out1, log, "r1")
    r2 = hold(lock, False, in2, out2, log, "r2")
    assert in1.wait(WAIT) and in2.wait(WAIT)  # two readers at once
    w_in, w_out = threading.Event(), threading.Event()
    w = hold(lock, True, w_in, w_out, log, "w")
    assert until(lambda: lock.writers_waiting() == 1)
    r3_in, r3_out = threading.Event(), threading.Event()
    r3 = hold(lock, False, r3_in, r3_out, log, "r3")  # arrives while the writer waits: it waits too
    out1.set()
    out2.set()
    assert w_in.wait(WAIT)
    assert not r3_in.is_set() and "r3 in" not in log  # the writer is alone
    w_out.set()
    assert r3_in.wait(WAIT)
    r3_out.set()
    for t in (r1, r2, w, r3):
        t.join(WAIT)
    assert log.index("w in") > max(log.index("r1 out"), log.index("r2 out")) and log.index("r3 in") > log.index("w out")


def test_both_sides_nest_and_the_writer_may_read():
    lock = RWLock()
    with lock:
        with lock:
            assert lock.held_by_me()
            with lock.reading():
                with lock:
                    assert lock.held_by_me() and not lock.reading_by_me()
        assert lock.held_by_me()
    assert not lock.held_by_me()
    with lock.reading():
        with lock.reading():
            assert lock.reading_by_me()
        assert lock.reading_by_me()
    assert not lock.reading_by_me()
    assert lock.acquire(blocking=False)  # free again on both sides
    lock.release()


def test_a_reader_asking_for_the_exclusive_side_is_refused():
    lock = RWLock()
    with lock.reading():
        with pytest.raises(LockOrderError):
            lock.acquire()
    assert lock.acquire(blocking=False) and lock.held_by_me()
    lock.release()


def test_a_nested_read_does_not_wait_behind_a_waiting_writer():
    """A reader re-entering the shared side while a writer waits must not deadlock (the writer waits for it)."""
    lock, done = RWLock(), threading.Event()
    inside, leave = threading.Event(), threading.Event()

    def reader():
        with lock.reading():
            inside.set()
            assert leave.wait(WAIT)
            with lock.reading():
                done.set()

    r = threading.Thread(target=reader)
    r.start()
    assert inside.wait(WAIT)
    w = threading.Thread(target=lambda: lock.acquire() and lock.release())
    w.start()
    assert until(lambda: lock.writers_waiting() == 1)
    leave.set()
    assert done.wait(WAIT)
    r.join(WAIT)
    w.join(WAIT)
    assert not w.is_alive() and not lock.writers_waiting()


def test_a_writer_that_gives_up_lets_readers_in():
    lock, log = RWLock(), []
    inside, leave = threading.Event(), threading.Event()
    r = hold(lock, False, inside, leave, log, "r")
    assert inside.wait(WAIT)
    assert lock.acquire(blocking=False) is False
    assert lock.acquire(timeout=0.01) is False  # the reader stays until the test lets it go: always too short
    assert not lock.writers_waiting() and not lock.held_by_me()
    with lock.reading():  # not held back by a writer that gave up
        pass
    leave.set()
    r.join(WAIT)
    with pytest.raises(RuntimeError):
        lock.release()  # not held
