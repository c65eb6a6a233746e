"""The "no worker is running" and "messages are stuck" alerts are raised by
something still alive: the web process (`outbound serve`, a background
thread) and `outbound alerts check`. Real processes, a real SMTP server as
the deployment's system mail; one incident is mailed once whoever sees it
first, and the all-clear follows when a worker comes back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from outbound.models import Alert, GlobalSettings, WorkerHeartbeat
from outbound.services.intake import queue_email
from tests.cli.conftest import SCRIPT
from tests.dburl import database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ops_mail(make_smtp_server: Any) -> Any:
    """The system mail server, ops@example.com as the Backend Failure Email,
    and thresholds of a second so that a stopped worker is missed at once."""
    server = make_smtp_server()
    gs = GlobalSettings.load()
    gs.backend_failure_email = "ops@example.com"
    gs.worker_silence_threshold = timedelta(seconds=1)
    gs.stuck_threshold = timedelta(seconds=1)
    gs.save()
    return server


@pytest.fixture
def start(ops_mail: Any) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "OUTBOUND_SYSTEM_MAIL_URL": f"smtp://{ops_mail.host}:{ops_mail.port}",
        "OUTBOUND_ALERT_CHECK_INTERVAL": "0.3",
        "OUTBOUND_HEARTBEAT_INTERVAL": "0.2",
        "OUTBOUND_POLL_INTERVAL": "0.1",
        "OUTBOUND_LOG_LEVEL": "WARNING",
    }

    def run(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [str(SCRIPT), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc

    yield run
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate()


def _wait(predicate: Callable[[], bool], timeout: float = 60) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _mails(server: Any, subject: str) -> list[Any]:
    return [m for m in server.messages if f"Subject: {subject}".encode() in m.raw]


def _check(start: Callable[..., subprocess.Popen[str]]) -> str:
    proc = start("alerts", "check")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out


def test_serve_alerts_on_a_killed_worker_once_and_mails_the_all_clear_when_one_returns(
    ops_mail: Any, start: Any, make_smtp_server: Any, make_backend: Any
) -> None:
    make_backend(make_smtp_server())
    worker = start("worker", "--concurrency", "1")
    assert _wait(lambda: WorkerHeartbeat.objects.filter(pid=worker.pid).exists())
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    queue_email(to="anna@example.com", subject="Nobody sends me")

    server = start("serve", "--port", str(_free_port()))
    no_worker = "Outbound: no worker is running"
    stuck = "Outbound: messages are stuck"
    assert _wait(lambda: bool(_mails(ops_mail, no_worker) and _mails(ops_mail, stuck))), (
        ops_mail.messages
    )
    body = _mails(ops_mail, no_worker)[0].raw.decode()
    assert "No worker has been seen since" in body
    # Other checkers find the incidents already told.
    assert "nothing new" in _check(start)
    assert "nothing new" in _check(start)
    assert len(_mails(ops_mail, no_worker)) == len(_mails(ops_mail, stuck)) == 1

    start("worker", "--concurrency", "1")
    worker_back = "Outbound: all clear, a worker is running"
    assert _wait(lambda: bool(_mails(ops_mail, worker_back)))
    assert _wait(lambda: bool(_mails(ops_mail, "Outbound: all clear, no message is stuck")))
    _check(start)
    assert len(_mails(ops_mail, worker_back)) == 1
    assert server.poll() is None


def test_alerts_check_processes_at_once_mail_a_stopped_worker_once(
    ops_mail: Any, start: Any
) -> None:
    stopped = start("worker", "--once")
    assert stopped.wait(timeout=60) == 0
    # The stopped worker's last beat passes the 1 s silence threshold.
    assert _wait(lambda: _age_of_newest_beat() > timedelta(seconds=1))
    assert not Alert.objects.exists()
    checks = [start("alerts", "check") for _ in range(4)]
    outputs = []
    for proc in checks:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outputs.append(out)
    opened = [o for o in outputs if "opened: Outbound: no worker is running" in o]
    assert len(opened) == 1, outputs
    assert "Mailed to ops@example.com" in opened[0]
    assert len(_mails(ops_mail, "Outbound: no worker is running")) == 1
    assert Alert.objects.filter(key="workers", closed_at__isnull=True).count() == 1


def _age_of_newest_beat() -> timedelta:
    from django.utils import timezone

    newest = WorkerHeartbeat.objects.order_by("-last_seen").first()
    assert newest is not None
    return timezone.now() - newest.last_seen
