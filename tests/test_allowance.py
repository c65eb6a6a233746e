"""A backend's allowance (its limit) holds whatever claims the messages:
validation and claim in one write, the ordinary claim of messages already
To send, several threads and several real worker processes at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from outbound.models import Backend, Message
from outbound.services.intake import queue_emails
from outbound.states import Reason, Status
from tests.dburl import database_url

pytestmark = [pytest.mark.django_db(transaction=True)]

OUTBOUND = str(Path(sys.executable).with_name("outbound"))


def _worker(*args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "OUTBOUND_POLL_INTERVAL": "0.05",
        "OUTBOUND_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [OUTBOUND, "worker", "--once", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _finish(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()


def _queue(n: int) -> list[Message]:
    return queue_emails([{"to": f"user{i}@example.com", "subject": f"m{i}"} for i in range(n)])


@pytest.mark.parametrize("concurrency", [["--concurrency", "1"], []], ids=["c1", "default"])
def test_a_limit_of_one_sends_one_of_three_messages_queued_together(
    make_smtp_server: Any, make_backend: Any, concurrency: list[str]
) -> None:
    server = make_smtp_server()
    backend = make_backend(server, limit=1)
    _queue(3)
    _finish(_worker(*concurrency))
    assert len(server.messages) == 1
    # The allowance goes to the oldest message first.
    assert server.messages[0].rcpt_tos == ["user0@example.com"]
    stored = Backend.objects.get(pk=backend.pk)
    assert (stored.sent_count, stored.left) == (1, 0)
    waiting = Message.objects.filter(status=Status.WAITING)
    assert waiting.count() == 2
    assert set(waiting.values_list("reason_code", flat=True)) == {Reason.ALLOWANCE_EXHAUSTED}
    assert "Raise the limit" in waiting[0].reason_text


def test_worker_processes_at_once_send_no_more_than_the_limit(
    make_smtp_server: Any, make_backend: Any
) -> None:
    server = make_smtp_server(delay=0.01)
    backend = make_backend(server, limit=7)
    _queue(60)
    _finish(
        _worker("--concurrency", "4"),
        _worker("--concurrency", "1"),
        _worker("--processes", "2", "--concurrency", "2"),
    )
    assert len(server.messages) == 7
    assert Backend.objects.get(pk=backend.pk).sent_count == 7
    assert Message.objects.filter(status=Status.SENT).count() == 7
    assert Message.objects.filter(status=Status.WAITING).count() == 53


def test_a_limit_lowered_under_messages_already_to_send_holds_at_the_claim(
    make_smtp_server: Any, make_backend: Any
) -> None:
    # Three messages validated under a limit of 3 are refused with 450 and
    # wait To send for their retry; the limit is then lowered to 1. The
    # retry goes through the ordinary claim, which must send only one.
    server = make_smtp_server()
    backend = make_backend(server, limit=3)
    server.options.rcpt_reply = "450 4.2.0 Mailbox busy, try again later"
    _queue(3)
    _finish(_worker("--concurrency", "1"))
    assert Message.objects.filter(status=Status.TO_SEND).count() == 3
    server.options.rcpt_reply = None
    Backend.objects.filter(pk=backend.pk).update(limit=1)
    Message.objects.update(next_attempt_at=Message.objects.first().created_at)  # type: ignore[union-attr]
    _finish(_worker("--concurrency", "2"))
    assert len(server.messages) == 1
    assert Backend.objects.get(pk=backend.pk).sent_count == 1
    assert Message.objects.filter(status=Status.TO_SEND, claim_token__isnull=True).count() == 2
