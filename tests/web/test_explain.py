"""The explanation of a message names its own facts and what to do."""

from __future__ import annotations

from typing import Any

import pytest

from outbound.explain import diagnostic_report, explain_message
from outbound.models import Attempt, Backend, Contact, Message, Suppression
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
