"""The explanation of a message names its own facts and what to do."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from outbound.explain import diagnostic_report, explain_message
from outbound.formats import stamp
from outbound.models import Attempt, Backend, Contact, Message, Suppression, WorkerHeartbeat
from outbound.services.intake import queue_email
from outbound.services.validation import validate_due
from outbound.states import Reason, Status

pytestmark = pytest.mark.django_db


@pytest.fixture
def backend(stored_backend: Any) -> Backend:
    return stored_backend(username="relayuser", secret="ENCRYPTED-SECRET-VALUE")


def _validated(message: Message) -> Message:
    validate_due()
    message.refresh_from_db()
    return message


def test_not_sent_invalid_names_address_used_and_contact_current_one(backend: Backend) -> None:
    contact = Contact.objects.create(name="Ann", email="ann@@example")
    m = _validated(queue_email(contact=contact, subject="Invoice"))
    assert m.status == Status.NOT_SENT
    contact.email = "ann@example.com"
    contact.save()
    e = explain_message(m)
    assert e.label == "Not sent"
    todo = " ".join(e.what_to_do)
    assert "ann@@example" in todo
    assert "ann@example.com" in todo
    assert "Fix the contact, then Re-send" in todo
    assert ("Contact's current email", "ann@example.com") in e.facts


def test_sent_says_accepted_not_delivered_and_gives_queue_id(backend: Backend) -> None:
    m = _validated(queue_email(to="bob@example.com", subject="Hello"))
    Attempt.objects.create(
        message=m,
        backend=backend,
        settings_version=1,
        started_at=m.created_at,
        finished_at=m.created_at,
        phase="done",
        smtp_code=250,
        enhanced_code="2.0.0",
        reply="Ok: queued as 9EA7B1E0AE5",
        provider_id="9EA7B1E0AE5",
        outcome="sent",
    )
    Message.objects.filter(pk=m.pk).update(
        status=Status.SENT,
        reason_code=Reason.ACCEPTED,
        sent_at=m.created_at,
        possibly_delivered=True,
    )
    m.refresh_from_db()
    e = explain_message(m)
    todo = " ".join(e.what_to_do)
    assert "not proof" in todo
    assert "junk" in todo
    assert "9EA7B1E0AE5" in todo
    assert "twice" in todo
    assert ("Relay queue id", "9EA7B1E0AE5") in e.facts


def test_blocked_names_the_entry(backend: Backend) -> None:
    Suppression.objects.create(kind="domain", value="blocked.example", reason="complaint")
    m = _validated(queue_email(to="x@sub.blocked.example"))
    assert m.reason_code == Reason.RECIPIENT_BLOCKED
    e = explain_message(m)
    assert "blocked.example" in " ".join(e.what_to_do)
    assert "complaint" in " ".join(e.what_to_do)


def test_backend_test_required_names_backend_health_and_test(backend: Backend) -> None:
    Backend.objects.filter(pk=backend.pk).update(
        health="failing", health_detail="535 5.7.8 Authentication credentials invalid"
    )
    m = _validated(queue_email(to="c@example.com"))
    assert m.status == Status.BACKEND_TEST_REQUIRED
    e = explain_message(m)
    todo = " ".join(e.what_to_do)
    assert "Relay" in todo and "Failing" in todo and "535" in todo
    assert "held messages go out by themselves" in todo


def test_allowance_exhausted_names_the_limit(backend: Backend) -> None:
    Backend.objects.filter(pk=backend.pk).update(limit=10, sent_count=10)
    m = _validated(queue_email(to="d@example.com"))
    assert m.reason_code == Reason.ALLOWANCE_EXHAUSTED
    todo = " ".join(explain_message(m).what_to_do)
    assert "10 of 10" in todo


def test_a_message_over_the_allowance_counts_those_on_their_way(backend: Backend) -> None:
    Backend.objects.filter(pk=backend.pk).update(limit=2)
    *_, third = [queue_email(to=f"{n}@example.com") for n in "abc"]
    validate_due()
    third.refresh_from_db()
    assert (third.status, third.reason_code) == (Status.WAITING, Reason.ALLOWANCE_EXHAUSTED)
    e = explain_message(third)
    used = "0 of 2 messages sent, 2 on their way, 0 left"
    assert f"Backend Relay has used its allowance: {used}." in e.what_to_do
    assert ("Backend allowance", used) in e.facts


def test_every_status_has_an_explanation(backend: Backend) -> None:
    m = queue_email(to="e@example.com")
    for status in Status:
        Message.objects.filter(pk=m.pk).update(status=status)
        m.refresh_from_db()
        e = explain_message(m)
        assert e.meaning and e.when and e.what_to_do and e.label == status.label


def test_diagnostic_report_has_history_and_no_secret(backend: Backend) -> None:
    m = _validated(queue_email(to="f@example.com", subject="Report me"))
    report = diagnostic_report(m)
    assert "Report me" in report
    assert "== History ==" in report and "validated" in report
    assert "ENCRYPTED-SECRET-VALUE" not in report
    assert "relayuser" not in report
    assert "smtp.example.com:587" in report


@pytest.mark.django_db(transaction=True)
def test_a_waiting_message_says_since_when_no_worker_was_seen_and_to_start_one(
    backend: Backend, run_worker: Any
) -> None:
    run_worker()  # a real worker that found nothing to do and stopped
    beat = WorkerHeartbeat.objects.get()
    assert beat.stopped_at is not None
    m = queue_email(to="bob@example.com", subject="Hello")
    e = explain_message(m)
    line = f"No worker has been seen since {stamp(beat.last_seen)} (the last, {beat.name}, stopped)"
    assert line in e.why
    assert e.what_to_do[0].startswith(line)
    assert "Start one (outbound worker, or the worker service)" in e.what_to_do[0]
    assert not any("validates it within seconds" in step for step in e.what_to_do)


def test_a_to_send_message_with_no_worker_ever_says_so(backend: Backend) -> None:
    m = _validated(queue_email(to="bob@example.com", subject="Hello"))
    assert m.status == Status.TO_SEND
    e = explain_message(m)
    assert e.what_to_do[0].startswith("No worker has run yet: nothing validates or sends")
    assert not any("sends it within seconds" in step for step in e.what_to_do)


def test_a_live_worker_keeps_the_no_worker_words_out(backend: Backend) -> None:
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        name="host:1", hostname="host", pid=1, started_at=now, last_seen=now
    )
    e = explain_message(queue_email(to="bob@example.com", subject="Hello"))
    assert "No worker" not in e.why + " ".join(e.what_to_do)
    assert "validates it within seconds" in e.what_to_do[0]
