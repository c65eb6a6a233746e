"""The in-process write gate: one writer at a time, the journal first."""

from __future__ import annotations

import threading
import time

from outbound.services.writegate import WriteGate


def _wait_until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


CLAIMS = 4
ROUNDS = 10


def _release_to_queued_claims_and_a_journal() -> tuple[list[str], int]:
    """Hold the gate (as the recorder would), queue the claims one after
    another and then a journal write, each only once the one before is seen
    waiting, and release. Returns the order they got in, and the most
    writers ever inside at once."""
    gate = WriteGate(only_sqlite=False)
    order: list[str] = []
    inside = 0
    most_inside = 0
    lock = threading.Lock()

    def writer(name: str, *, urgent: bool = False) -> None:
        nonlocal inside, most_inside
        with gate.writing(urgent=urgent):
            with lock:
                inside += 1
                most_inside = max(most_inside, inside)
            order.append(name)
            with lock:
                inside -= 1

    threads: list[threading.Thread] = []
    with gate.writing():
        for i in range(CLAIMS):
            threads.append(threading.Thread(target=writer, args=(f"claim{i}",)))
            threads[-1].start()
            _wait_until(lambda n=i + 1: gate.waiting == n)
        threads.append(threading.Thread(target=writer, args=("journal",), kwargs={"urgent": True}))
        threads[-1].start()
        _wait_until(lambda: gate.waiting == CLAIMS + 1)
        # Nobody got in while the gate was held.
        assert order == []
    for t in threads:
        t.join(5)
    assert gate.waiting == 0
    return order, most_inside


def test_one_writer_at_a_time_and_a_waiting_journal_goes_first() -> None:
    # Without the urgent-first rule the order after the release is whatever
    # scheduling gives: the journal, queued last, came first in about one
    # release in 70 when measured. Ten rounds make a pass by luck unthinkable.
    for _ in range(ROUNDS):
        order, most_inside = _release_to_queued_claims_and_a_journal()
        # The journal came last but went first; then every claim, one at a time.
        assert order[0] == "journal", order
        assert sorted(order[1:]) == [f"claim{i}" for i in range(CLAIMS)]
        assert most_inside == 1


def test_waiting_counts_the_threads_queued_at_the_gate() -> None:
    gate = WriteGate(only_sqlite=False)
    assert gate.waiting == 0
    entered = threading.Event()

    def other() -> None:
        with gate.writing():
            entered.set()

    with gate.writing(), gate.writing():  # the holder nesting is not waiting
        assert gate.waiting == 0
        t = threading.Thread(target=other)
        t.start()
        _wait_until(lambda: gate.waiting == 1)
        assert not entered.is_set()
    t.join(5)
    assert entered.is_set()
    assert gate.waiting == 0


def test_the_holder_may_nest_without_deadlock() -> None:
    gate = WriteGate(only_sqlite=False)
    with gate.writing(), gate.writing(urgent=True):
        pass
    # Released: another thread gets in at once.
    entered = threading.Event()

    def other() -> None:
        with gate.writing():
            entered.set()

    t = threading.Thread(target=other)
    t.start()
    assert entered.wait(2)
    t.join(2)
