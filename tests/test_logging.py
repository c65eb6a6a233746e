"""Logs with DEBUG off: Outbound's lines, Django's request errors and its
security logger reach stderr; OUTBOUND_LOG_FORMAT=json writes one JSON object
a line naming the message, backend and worker; no secret in any line."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from outbound.models import GlobalSettings, Message
from outbound.services.intake import queue_email
from outbound.states import Status
from tests.dburl import database_url

OUTBOUND = str(Path(sys.executable).with_name("outbound"))
GOOD_PASSWORD = "Relay-pw-7Qz1x"
OLD_PASSWORD = "Old-relay-pw-3Vk8"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_json_worker_run_names_message_backend_and_worker_and_logs_no_password(
    make_smtp_server: Callable[..., Any], make_backend: Callable[..., Any]
) -> None:
    accepting = make_smtp_server(auth={"mailer": GOOD_PASSWORD})
    good = make_backend(accepting, name="Good", username="mailer", password=GOOD_PASSWORD)
    # Tested fine, then the relay's password changed: its login now fails.
    changed = make_smtp_server(auth={"mailer": OLD_PASSWORD})
    stale = make_backend(
        changed, name="Stale", username="mailer", password=OLD_PASSWORD, is_default=False
    )
    changed.options.auth = {"mailer": "new-password-not-ours"}
    sent = queue_email(to="ann@example.com", subject="Hello", text="Hi", backend=good)
    refused = queue_email(to="bob@example.com", subject="Hello", text="Hi", backend=stale)

    run = subprocess.run(
        [OUTBOUND, "worker", "--once", "--concurrency", "2"],
        env={
            **os.environ,
            "DATABASE_URL": database_url(),
            "OUTBOUND_DEBUG": "0",
            "OUTBOUND_LOG_FORMAT": "json",
            "OUTBOUND_LOG_LEVEL": "DEBUG",
            "OUTBOUND_POLL_INTERVAL": "0.1",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    sent.refresh_from_db()
    refused.refresh_from_db()
    assert sent.status == Status.SENT
    assert refused.status != Status.SENT

    output = run.stdout + run.stderr
    for secret in (GOOD_PASSWORD, OLD_PASSWORD):
        assert secret not in output
    lines: list[dict[str, Any]] = []
    for line in run.stderr.splitlines():
        if line.startswith("worker "):
            continue  # the command's own start and stop words, not log lines
        lines.append(json.loads(line))  # every log line is one JSON object
    assert lines, run.stderr
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in lines)

    def about(message: Message) -> list[dict[str, Any]]:
        return [entry for entry in lines if entry.get("message_id") == str(message.pk)]

    [accepted] = [e for e in about(sent) if "accepted by" in e["message"]]
    assert accepted["logger"] == "outbound.transports.smtp"
    assert accepted["backend_id"] == str(good.pk)
    assert accepted["worker"] and accepted["claim_token"]
    [failed] = [e for e in about(refused) if "failed: auth_failed" in e["message"]]
    assert failed["backend_id"] == str(stale.pk) and failed["worker"] == accepted["worker"]
    # Lines outside a delivery (the worker stopping) carry the worker only.
    stopping = [e for e in lines if "stopping" in e["message"] or "released" in e["message"]]
    assert all("message_id" not in e and e["worker"] == accepted["worker"] for e in stopping)


@pytest.fixture
def stderr_log() -> Iterator[io.StringIO]:
    """What settings.LOGGING's stderr handler writes, read back."""
    [handler] = [h for h in logging.getLogger("django").handlers if h.name == "stderr"]
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        yield stream
    finally:
        handler.setStream(previous)


@pytest.mark.django_db
def test_with_debug_off_a_500_on_a_console_page_writes_its_traceback_to_stderr(
    settings: Any, stderr_log: io.StringIO
) -> None:
    settings.DEBUG = False
    GlobalSettings.load()
    admin = User.objects.create_superuser("admin", "admin@example.com", "pw-admin-1")
    client = Client(raise_request_exception=False)
    client.force_login(admin)
    # A real fault: the table the dashboard reads is dropped inside the
    # test's transaction (rolled back after it).
    with connection.cursor() as cursor:
        cascade = " CASCADE" if connection.vendor == "postgresql" else ""
        cursor.execute(f"DROP TABLE {Message._meta.db_table}{cascade}")
    r = client.get("/")
    assert r.status_code == 500
    text = stderr_log.getvalue()
    assert "ERROR django.request Internal Server Error: /" in text
    assert "Traceback (most recent call last)" in text
    assert "pw-admin-1" not in text


@pytest.mark.django_db
def test_the_security_logger_reaches_stderr_and_a_404_does_not(
    settings: Any, stderr_log: io.StringIO
) -> None:
    settings.DEBUG = False
    assert Client().get("/livez", HTTP_HOST="evil.example").status_code == 400
    assert Client().get("/no-such-page").status_code in (302, 404)
    text = stderr_log.getvalue()
    assert "django.security.DisallowedHost" in text and "evil.example" in text
    assert "Not Found" not in text


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("OUTBOUND_LOG_FORMAT", "xml", "OUTBOUND_LOG_FORMAT must be plain or json, not 'xml'."),
        ("OUTBOUND_LOG_LEVEL", "loud", "OUTBOUND_LOG_LEVEL must be DEBUG, INFO, WARNING"),
    ],
)
def test_a_bad_log_setting_is_bad_usage_naming_the_variable(
    name: str, value: str, words: str
) -> None:
    run = subprocess.run(
        [OUTBOUND, "backends", "list"],
        env={**os.environ, name: value},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert words in run.stderr
    assert "Traceback" not in run.stderr
