"""Words that fit the message: advice for a message with no contact speaks of
no contact, an SMS of a number and of who took it, no "server said" where no
server answered, plurals, one full stop, capitals after a full stop, a Send
outgoing answer with no worker is a warning without backticks, and alert
mails link to the page they are about."""

from __future__ import annotations

import re
import socket
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from outbound.explain import explain_message
from outbound.models import Backend, GlobalSettings, Message, Suppression
from outbound.services import alerts
from outbound.services.backends import test_backend
from outbound.services.intake import queue_email, queue_sms
from outbound.services.validation import validate_due
from outbound.states import Channel, Reason, Status

pytestmark = pytest.mark.django_db(transaction=True)


def _todo(message: Message) -> str:
    message.refresh_from_db()
    return " ".join(explain_message(message).what_to_do)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_refused_address_with_no_contact_is_not_advised_to_fix_the_contact(
    smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    make_backend(smtp_server)
    smtp_server.configure(rcpt_replies={"gone@example.com": "550 5.1.1 No such user"})
    message = queue_email(to="gone@example.com", subject="Hello")
    run_worker()
    todo = _todo(message)
    assert message.status == Status.NOT_SENT
    assert "contact" not in todo.replace("(no contact)", "")
    assert "have the platform that produced the message correct it (no contact)" in todo


def test_a_blocklisted_address_with_no_contact_is_not_advised_to_change_the_contact(
    stored_backend: Any,
) -> None:
    stored_backend()
    Suppression.objects.create(kind="address", value="blocked@example.com", reason="asked to stop")
    message = queue_email(to="blocked@example.com", subject="Hello")
    validate_due()
    todo = _todo(message)
    assert message.reason_code == Reason.RECIPIENT_BLOCKED
    assert "contact's" not in todo
    assert "the platform that produced the message must send it to another one" in todo


def test_an_sms_printed_by_the_console_backend_is_not_accepted_by_a_server(
    stored_backend: Any, run_worker: Any
) -> None:
    gs = GlobalSettings.load()
    gs.sms_enabled = True
    gs.save()
    stored_backend(
        name="Console", channel=Channel.SMS, kind="console", host="", from_address="+447700900001"
    )
    message = queue_sms(to="+447400123456", body="Hello")
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.SENT
    assert "accepted" not in message.reason_text
    assert "no phone received it" in message.reason_text
    e = explain_message(message)
    assert e.why.startswith("Handled by a trial backend.")
    words = e.why + " ".join(e.what_to_do)
    assert "server" not in words and "mailbox" not in words and "address" not in words
    assert "no phone received anything, +447400123456 included" in words
    assert "Provider reply" in dict(e.facts)


def test_a_test_that_found_no_server_does_not_say_the_server_said(
    admin_client: Client, stored_backend: Any
) -> None:
    # Settings changed since their last success (version 2), then tested: failed.
    backend = stored_backend(
        host="127.0.0.1", port=_closed_port(), security="none", settings_version=2
    )
    assert not test_backend(backend, actor="admin").ok
    page = admin_client.get("/settings/").content.decode()
    reply = re.search(r'<p class="test-reply">(.*?)</p>', page, re.S)
    assert reply is not None
    assert reply.group(1).startswith("What happened at connect:")
    # A failed test of the current settings is not "not tested".
    assert "(its test failed: its messages are held until a test succeeds)" in page
    assert "(not tested:" not in page


def test_a_reply_ending_with_a_full_stop_gets_no_second_one(
    smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    make_backend(smtp_server)
    smtp_server.configure(data_reply="554 5.7.1 Rejected as spam.")
    message = queue_email(to="anna@example.com")
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.NOT_SENT
    assert message.reason_text.endswith("554 5.7.1 Rejected as spam.")


def test_a_full_mailbox_is_not_advised_as_relay_throttling(
    smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    make_backend(smtp_server)
    smtp_server.configure(rcpt_reply="552 5.2.2 Mailbox full")
    message = queue_email(to="full@example.com")
    run_worker()
    todo = _todo(message)
    assert message.status == Status.TO_SEND
    assert "The recipient's mailbox is full" in todo
    assert "throttling" not in todo


def test_send_outgoing_with_no_worker_is_a_warning_in_plain_words(
    operator_client: Client, stored_backend: Any
) -> None:
    stored_backend()
    message = queue_email(to="late@example.com")
    Message.objects.filter(pk=message.pk).update(
        send_at=timezone.now() - timedelta(hours=3),
        next_attempt_at=timezone.now() + timedelta(hours=1),
    )
    page = operator_client.get("/").content.decode()
    assert "Start a worker first, then" in page
    answer = operator_client.post("/send-outgoing/", follow=True).content.decode()
    flash = re.search(r'<li class="flash-(\w+)">(.*?)</li>', answer, re.S)
    assert flash is not None
    assert flash.group(1) == "warning"
    assert "1 stuck message queued to be sent now." in flash.group(2)
    assert "`" not in flash.group(2)


def test_alert_mails_link_to_the_page_and_call_a_refused_connection_no_reply(
    system_mail: Any, stored_backend: Any, settings: Any
) -> None:
    settings.OUTBOUND_PUBLIC_URL = "https://outbound.example.com/"
    backend = stored_backend(host="127.0.0.1", port=_closed_port(), security="none", limit=1)
    assert not test_backend(backend, actor="admin").ok
    queue_email(to="anna@example.com")
    validate_due()
    Backend.objects.filter(pk=backend.pk).update(sent_count=1)
    alerts.check_alerts()
    failing = next(m.raw.decode() for m in system_mail.messages if b"is failing" in m.raw)
    assert f"https://outbound.example.com/settings/#backend-{backend.pk}" in failing
    assert "What happened: " in failing
    assert "Server reply" not in failing


def test_a_limit_of_one_is_one_message_in_the_reason() -> None:
    Backend.objects.create(
        name="Relay",
        host="smtp.example.com",
        from_address="noreply@example.com",
        is_default=True,
        health="ok",
        tested_version=1,
        limit=1,
        sent_count=1,
    )
    message = queue_email(to="anna@example.com")
    validate_due()
    message.refresh_from_db()
    assert "has used its allowance (1 message)." in message.reason_text
