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


def test_one_writer_at_a_time_and_a_waiting_journal_goes_first() -> None:
    gate = WriteGate(only_sqlite=False)
    order: list[str] = []
    release = threading.Event()
    started: list[str] = []

    def writer(name: str, *, urgent: bool = False, hold: threading.Event | None = None) -> None:
        started.append(name)
        with gate.writing(urgent=urgent):
            order.append(name)
            if hold is not None:
                hold.wait(5)

    holder = threading.Thread(target=writer, args=("recorder",), kwargs={"hold": release})
    holder.start()
    _wait_until(lambda: order == ["recorder"])
    claim = threading.Thread(target=writer, args=("claim",))
    claim.start()
    _wait_until(lambda: "claim" in started)
    time.sleep(0.05)
    journal = threading.Thread(target=writer, args=("journal",), kwargs={"urgent": True})
    journal.start()
    _wait_until(lambda: "journal" in started)
    time.sleep(0.05)
    # Nobody got in while the recorder held the gate.
    assert order == ["recorder"]
    release.set()
    for t in (holder, claim, journal):
        t.join(5)
    # The journal came later than the claim but went before it.
    assert order == ["recorder", "journal", "claim"]


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
