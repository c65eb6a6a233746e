"""Several real worker processes on one database: nothing lost, nothing sent
twice except what a killed worker may have sent, clean SIGTERM."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outbound.models import Message, WorkerHeartbeat
from outbound.services.intake import queue_emails
from outbound.states import Status
from tests.dburl import database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

OUTBOUND = str(Path(sys.executable).with_name("outbound"))


@pytest.fixture
def spawn() -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str, lease: float = 30) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "OUTBOUND_LEASE_SECONDS": str(lease),
            "OUTBOUND_POLL_INTERVAL": "0.1",
            "OUTBOUND_HEARTBEAT_INTERVAL": "0.5",
            "OUTBOUND_LOG_LEVEL": "WARNING",
        }
        proc = subprocess.Popen(
            [OUTBOUND, "worker", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        procs.append(proc)
        return proc

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def _wait(predicate: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.fixture
def relay(make_smtp_server: Any, make_backend: Any) -> Any:
    """Start a test SMTP server (its keyword options) as the backend workers send through."""

    def start(**options: Any) -> Any:
        server = make_smtp_server(**options)
        make_backend(server)
        return server

    return start


def _queue(n: int) -> list[Message]:
    return queue_emails([{"to": f"user{i}@example.com", "subject": f"m{i}"} for i in range(n)])


def _ids(messages: list[Message]) -> set[str]:
    return {m.message_id for m in messages}


def _sent_count() -> int:
    return Message.objects.filter(status=Status.SENT).count()


def _stderr(proc: subprocess.Popen[bytes]) -> str:
    return proc.stderr.read().decode() if proc.stderr else ""


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM the process and return its exit code, waiting at most `timeout`."""
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout)


def _received(server: Any) -> collections.Counter[str]:
    return collections.Counter(m.message_id for m in server.messages)


def _assert_received_exactly_once(server: Any, expected: set[str]) -> None:
    received = _received(server)
    assert set(received) == expected
    assert max(received.values()) == 1


def _assert_all_received_and_only_possibly_delivered_repeat(
    server: Any, messages: list[Message]
) -> None:
    received = _received(server)
    assert set(received) == _ids(messages)
    repeated = {mid for mid, n in received.items() if n > 1}
    possibly = set(
        Message.objects.filter(possibly_delivered=True).values_list("message_id", flat=True)
    )
    assert repeated <= possibly


def test_four_workers_drain_5000_messages_each_received_exactly_once(
    relay: Any, spawn: Any
) -> None:
    server = relay()
    messages = _queue(5000)
    workers = [spawn("--once", "--concurrency", "4") for _ in range(4)]
    for w in workers:
        assert w.wait(timeout=300) == 0, _stderr(w)
    assert _sent_count() == 5000
    _assert_received_exactly_once(server, _ids(messages))


# The killed worker delivers from its main thread (concurrency 1) or from
# delivery threads (4).
@pytest.mark.parametrize("killed_concurrency", ["1", "4"])
def test_a_killed_worker_loses_nothing_and_only_possibly_delivered_ones_repeat(
    relay: Any, spawn: Any, killed_concurrency: str
) -> None:
    server = relay(delay=0.004)
    messages = _queue(1500)
    workers = [spawn("--concurrency", killed_concurrency, lease=3)]
    workers += [spawn("--concurrency", "4", lease=3) for _ in range(3)]
    assert _wait(lambda: len(server.messages) >= 300, 120)
    workers[0].send_signal(signal.SIGKILL)
    workers[0].wait()
    assert _wait(lambda: _sent_count() == 1500, 240), collections.Counter(
        Message.objects.values_list("status", flat=True)
    )
    for w in workers[1:]:
        assert _terminate(w, timeout=60) == 0
    _assert_all_received_and_only_possibly_delivered_repeat(server, messages)


@pytest.mark.parametrize("concurrency", ["1", "2"])
def test_sigterm_finishes_in_flight_and_releases_the_rest(
    relay: Any, spawn: Any, concurrency: str
) -> None:
    server = relay(delay=0.05)
    _queue(200)
    worker = spawn("--concurrency", concurrency)
    assert _wait(lambda: len(server.messages) >= 10, 60)
    assert _terminate(worker, timeout=30) == 0
    assert not Message.objects.filter(claim_token__isnull=False).exists()
    sent = set(Message.objects.filter(status=Status.SENT).values_list("message_id", flat=True))
    # Claimed but not started: handed back To send. Not yet validated (the
    # worker validates as its delivery threads get ready): still Waiting.
    released = Message.objects.filter(status=Status.TO_SEND).count()
    waiting = Message.objects.filter(status=Status.WAITING).count()
    assert len(sent) + released + waiting == 200
    assert released > 0
    _assert_received_exactly_once(server, sent)


def test_a_slow_server_does_not_let_the_lease_of_a_message_being_sent_lapse(
    relay: Any, spawn: Any
) -> None:
    # Each message takes longer than a lease. At concurrency 1 the main
    # thread waits on the server while the heartbeat thread keeps the
    # lease; otherwise the other worker would reap the message and send it
    # again, marked possibly delivered.
    server = relay(delay=2.5)
    messages = _queue(3)
    sender = spawn("--once", "--concurrency", "1", lease=1.5)
    assert _wait(lambda: not Message.objects.filter(claim_token__isnull=True).exists(), 30)
    # Claims nothing (all three are claimed), but reaps leases that lapse.
    reaper = spawn("--concurrency", "1", lease=1.5)
    assert sender.wait(timeout=60) == 0, _stderr(sender)
    assert _terminate(reaper, timeout=30) == 0
    assert _sent_count() == 3
    _assert_received_exactly_once(server, _ids(messages))
    assert not Message.objects.filter(possibly_delivered=True).exists()


def test_processes_once_drain_everything_exactly_once(relay: Any, spawn: Any) -> None:
    server = relay()
    messages = _queue(600)
    supervisor = spawn("--once", "--processes", "2", "--concurrency", "2")
    assert supervisor.wait(timeout=120) == 0, _stderr(supervisor)
    assert _sent_count() == 600
    _assert_received_exactly_once(server, _ids(messages))
    # Two worker processes did the work, each under a name of its own.
    assert WorkerHeartbeat.objects.exclude(pid=supervisor.pid).values("pid").distinct().count() == 2


def test_processes_restart_a_killed_child_and_sigterm_stops_them_all(
    relay: Any, spawn: Any
) -> None:
    server = relay(delay=0.004)
    messages = _queue(1000)
    supervisor = spawn("--processes", "2", "--concurrency", "2", lease=3)

    def children() -> set[int]:
        return set(
            WorkerHeartbeat.objects.filter(stopped_at__isnull=True)
            .exclude(pid=supervisor.pid)
            .values_list("pid", flat=True)
        )

    assert _wait(lambda: len(server.messages) >= 100 and len(children()) == 2, 60)
    first = children()
    os.kill(min(first), signal.SIGKILL)
    # A new child takes its place and, with the survivor, sends everything.
    assert _wait(lambda: bool(children() - first), 60)
    assert _wait(lambda: _sent_count() == 1000, 240)
    assert supervisor.poll() is None
    assert _terminate(supervisor, timeout=60) == 0
    assert not Message.objects.filter(claim_token__isnull=False).exists()
    _assert_all_received_and_only_possibly_delivered_repeat(server, messages)


def test_processes_out_of_range_is_bad_usage(spawn: Any) -> None:
    assert spawn("--processes", "0").wait(timeout=60) == 2
