"""The SMS channel through the real pipeline: intake, validation of numbers and
text, delivery through a stored SMS backend, and the explanation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from outbound.explain import explain_message
from outbound.models import Backend, Contact, Event, GlobalSettings, Message, Suppression
from outbound.services import intake
from outbound.services.validation import validate_due
from outbound.states import Channel, Reason, Status
from outbound.transports import locmem

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sms_on(db: None) -> GlobalSettings:
    settings = GlobalSettings.load()
    settings.sms_enabled = True
    settings.default_region = "GB"
    settings.save()
    return settings


@pytest.fixture
def sms_backend(stored_backend: Callable[..., Backend]) -> Backend:
    return stored_backend(
        name="Phones",
        channel=Channel.SMS,
        kind="locmem",
        host="",
        from_address="+447700900001",
    )


@pytest.fixture(autouse=True)
def _empty_outbox() -> None:
    locmem.outbox.clear()


def _validated(message: Message) -> Message:
    validate_due()
    message.refresh_from_db()
    return message


def test_sms_disabled_makes_the_message_not_sent(db: None, sms_backend: Backend) -> None:
    message = _validated(intake.queue_sms(to="+447400123456", body="Hello"))
    assert message.status == Status.NOT_SENT
    assert message.reason_code == Reason.CHANNEL_DISABLED
    assert "SMS is turned off" in message.reason_text


@pytest.mark.parametrize(
    ("number", "problem"),
    [
        ("12", "is too short"),
        ("+44 121 234 5678", "is a landline"),
        ("+44 7400 1234", "has the wrong length"),
        ("call me", "is not a phone number"),
        ("+999 1234 5678", "has no valid country code"),
    ],
)
def test_an_unusable_number_is_not_sent_with_the_number_and_the_problem(
    sms_on: GlobalSettings, sms_backend: Backend, number: str, problem: str
) -> None:
    message = _validated(intake.queue_sms(to=number, body="Hello"))
    assert message.status == Status.NOT_SENT
    assert message.reason_code == Reason.RECIPIENT_INVALID
    assert number in message.reason_text
    assert problem in message.reason_text


def test_a_national_number_is_read_in_the_default_region_and_stored_in_e164(
    sms_on: GlobalSettings, sms_backend: Backend
) -> None:
    message = _validated(intake.queue_sms(to="07400 123456", body="Hello"))
    assert message.status == Status.TO_SEND
    assert message.message_to == "+447400123456"
    assert "1 segment, GSM-7" in message.reason_text


def test_a_contact_without_mobile_is_recipient_missing(
    sms_on: GlobalSettings, sms_backend: Backend
) -> None:
    ann = Contact.objects.create(name="Ann", email="ann@example.com")
    message = _validated(intake.queue_sms(contact=ann, body="Hello"))
    assert message.status == Status.NOT_SENT
    assert message.reason_code == Reason.RECIPIENT_MISSING
    assert "Ann has no mobile number" in message.reason_text
    steps = " ".join(explain_message(message).what_to_do)
    assert "mobile number" in steps


def test_the_contacts_mobile_is_used_and_named(
    sms_on: GlobalSettings, sms_backend: Backend
) -> None:
    ann = Contact.objects.create(name="Ann", mobile="+447400123456")
    message = _validated(intake.queue_sms(contact=ann, body="Hello"))
    assert message.status == Status.TO_SEND
    assert message.message_to == "+447400123456"
    assert "the mobile of contact Ann" in message.reason_text


def test_a_blocked_number_is_not_sent(sms_on: GlobalSettings, sms_backend: Backend) -> None:
    Suppression.objects.create(kind="number", value="+447400123456", reason="asked to stop")
    message = _validated(intake.queue_sms(to="+447400123456", body="Hello"))
    assert message.status == Status.NOT_SENT
    assert message.reason_code == Reason.RECIPIENT_BLOCKED
    assert "asked to stop" in message.reason_text


def test_too_many_segments_is_not_sent_and_names_the_count(
    sms_on: GlobalSettings, sms_backend: Backend
) -> None:
    sms_on.max_sms_segments = 2
    sms_on.save()
    long_text = "é" * 200  # é is GSM-7; 200 characters need 2 segments
    ok = _validated(intake.queue_sms(to="+447400123456", body=long_text))
    assert ok.status == Status.TO_SEND
    too_long = _validated(intake.queue_sms(to="+447400123456", body="ł" * 140))
    assert too_long.status == Status.NOT_SENT
    assert too_long.reason_code == Reason.MESSAGE_TOO_LONG
    assert "needs 3 SMS segments (140 UCS-2 characters)" in too_long.reason_text
    assert "at most 2" in too_long.reason_text


def test_no_sms_backend_holds_the_message(sms_on: GlobalSettings) -> None:
    message = _validated(intake.queue_sms(to="+447400123456", body="Hello"))
    assert message.status == Status.BACKEND_TEST_REQUIRED
    assert message.reason_code == Reason.BACKEND_MISSING
    assert "No default SMS backend" in message.reason_text


def test_notify_contact_picks_the_channel(sms_on: GlobalSettings, sms_backend: Backend) -> None:
    texter = Contact.objects.create(
        name="Tex", email="tex@example.com", mobile="+447400123456", preferred_channel="sms"
    )
    mailer = Contact.objects.create(name="Mai", email="mai@example.com", mobile="+447400123457")
    assert intake.notify_contact(texter, subject="Task", text="Do it").channel == Channel.SMS
    assert intake.notify_contact(mailer, subject="Task", text="Do it").channel == Channel.EMAIL
    sms_on.sms_enabled = False
    sms_on.save()
    assert intake.notify_contact(texter, subject="Task", text="Do it").channel == Channel.EMAIL


def test_sms_idempotency_key_replays_and_conflicts(sms_on: GlobalSettings) -> None:
    first = intake.queue_sms(to="+447400123456", body="Hi", idempotency_key="k1")
    again = intake.queue_sms(to="+447400123456", body="Hi", idempotency_key="k1")
    assert again.pk == first.pk
    from outbound.errors import IdempotencyConflict

    with pytest.raises(IdempotencyConflict):
        intake.queue_sms(to="+447400123456", body="Other", idempotency_key="k1")
    assert Message.objects.count() == 1


def test_sms_intake_refuses_control_characters_in_the_number(sms_on: GlobalSettings) -> None:
    from outbound.errors import HeaderInjection

    with pytest.raises(HeaderInjection):
        intake.queue_sms(to="+44770\n0900123", body="Hi")
    assert not Message.objects.exists()


def test_a_worker_sends_an_sms_through_the_in_memory_backend(
    sms_on: GlobalSettings, sms_backend: Backend, run_worker: Callable[..., Any]
) -> None:
    message = intake.queue_sms(to="07400 123456", body="Your code is 1234", group_key="otp")
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.SENT, message.reason_text
    assert [(e.to, e.sender, e.body) for e in locmem.outbox] == [
        ("+447400123456", "+447700900001", "Your code is 1234")
    ]
    attempt = message.attempts.get()
    assert attempt.provider_id.startswith("LOCMEM-")
    assert attempt.provider_id in message.reason_text
    assert message.reason_text.startswith("Phones accepted the message")
    statuses = list(Event.objects.filter(message=message).values_list("to_status", flat=True))
    assert statuses == [Status.WAITING, Status.TO_SEND, Status.SENT]
    explanation = explain_message(message)
    facts = dict(explanation.facts)
    assert facts["Number used (Message to)"] == "+447400123456"
    assert facts["Provider message id"] == attempt.provider_id
    assert facts["Text"] == "17 GSM-7 characters, 1 segment"
    assert "No delivery receipts are asked for" in " ".join(explanation.what_to_do)


def test_sms_credits_count_segments(
    sms_on: GlobalSettings, sms_backend: Backend, run_worker: Callable[..., Any]
) -> None:
    Backend.objects.filter(pk=sms_backend.pk).update(limit=10)
    intake.queue_sms(to="+447400123456", body="x" * 200)  # two GSM-7 segments
    intake.queue_sms(to="+447400123457", body="short")
    run_worker()
    sms_backend.refresh_from_db()
    assert sms_backend.sent_count == 3
    assert sms_backend.left == 7


def test_an_sms_needing_more_credits_than_are_left_waits(
    sms_on: GlobalSettings, sms_backend: Backend
) -> None:
    Backend.objects.filter(pk=sms_backend.pk).update(limit=5, sent_count=4)
    message = _validated(intake.queue_sms(to="+447400123456", body="x" * 200))
    assert message.status == Status.WAITING
    assert message.reason_code == Reason.ALLOWANCE_EXHAUSTED
    assert "1 of its 5 credits left; this SMS needs 2" in message.reason_text
