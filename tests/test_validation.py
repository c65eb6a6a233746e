"""Validation: Waiting becomes To send, Not sent or Backend test required with
a reason that names the facts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from django.utils import timezone

from outbound.models import Backend, Contact, Event, GlobalSettings, Message, Recipient, Suppression
from outbound.services import validation
from outbound.services.intake import queue_email
from outbound.services.validation import validate_due
from outbound.states import Channel, Reason, Status

pytestmark = pytest.mark.django_db


@pytest.fixture
def healthy_backend(stored_backend: Any) -> Backend:
    return stored_backend()


def _validated(message: Message) -> Message:
    validate_due()
    message.refresh_from_db()
    return message


def test_a_valid_message_is_to_send_with_its_recipients(healthy_backend: Backend) -> None:
    m = _validated(queue_email(to="ann@example.com", cc="bob@example.com", subject="x"))
    assert m.status == Status.TO_SEND
    assert m.backend == healthy_backend
    assert m.from_address == "noreply@example.com"
    assert sorted(m.recipients.values_list("kind", "address")) == [
        ("cc", "bob@example.com"),
        ("to", "ann@example.com"),
    ]
    assert Event.objects.filter(message=m, to_status=Status.TO_SEND).exists()


def test_message_to_is_resolved_from_the_contact_at_validation_time(
    healthy_backend: Backend,
) -> None:
    contact = Contact.objects.create(name="Ann", email="old@example.com")
    message = queue_email(contact=contact, subject="x")
    contact.email = "new@example.com"
    contact.save()
    m = _validated(message)
    assert m.message_to == "new@example.com"
    assert m.status == Status.TO_SEND


@pytest.mark.parametrize(
    ("to", "needle"),
    [
        ("not an address", "not an email address"),
        ("ann@", "ann@"),
        ("a@b, c@example.com", "several addresses"),
        ("ann@exa mple.com", "ann@exa mple.com"),
    ],
)
def test_an_invalid_address_is_not_sent_naming_it(
    healthy_backend: Backend, to: str, needle: str
) -> None:
    m = _validated(queue_email(to=to))
    assert m.status == Status.NOT_SENT
    assert m.reason_code == Reason.RECIPIENT_INVALID
    assert needle in m.reason_text


def test_internationalised_addresses_are_accepted(healthy_backend: Backend) -> None:
    m = _validated(queue_email(to="jörg@bücher.de"))
    assert m.status == Status.TO_SEND
    assert m.recipients.get().address == "jörg@bücher.de"


def test_contact_without_email_is_not_sent(healthy_backend: Backend) -> None:
    contact = Contact.objects.create(name="Ann")
    m = _validated(queue_email(contact=contact))
    assert (m.status, m.reason_code) == (Status.NOT_SENT, Reason.RECIPIENT_MISSING)
    assert "Ann" in m.reason_text and "no email address" in m.reason_text


def test_contact_with_notifications_off_is_not_sent(healthy_backend: Backend) -> None:
    contact = Contact.objects.create(name="Ann", email="a@example.com", notifications_enabled=False)
    m = _validated(queue_email(contact=contact))
    assert (m.status, m.reason_code) == (Status.NOT_SENT, Reason.NOTIFICATIONS_OFF)


def test_inactive_contact_is_not_sent(healthy_backend: Backend) -> None:
    contact = Contact.objects.create(name="Ann", email="a@example.com", active=False)
    m = _validated(queue_email(contact=contact))
    assert (m.status, m.reason_code) == (Status.NOT_SENT, Reason.CONTACT_INACTIVE)


def test_blocked_address_is_not_sent_naming_the_entry(healthy_backend: Backend) -> None:
    Suppression.objects.create(kind="address", value="ann@example.com", reason="bounced")
    m = _validated(queue_email(to="Ann@Example.com"))
    assert (m.status, m.reason_code) == (Status.NOT_SENT, Reason.RECIPIENT_BLOCKED)
    assert "bounced" in m.reason_text


def test_blocked_domain_covers_subdomains(healthy_backend: Backend) -> None:
    Suppression.objects.create(kind="domain", value="example.org", reason="customer left")
    m = _validated(queue_email(to="x@mail.example.org"))
    assert m.reason_code == Reason.RECIPIENT_BLOCKED
    ok = _validated(queue_email(to="x@notexample.org"))
    assert ok.status == Status.TO_SEND


def test_a_blocked_cc_is_left_out_and_the_rest_is_sent(healthy_backend: Backend) -> None:
    Suppression.objects.create(kind="address", value="cc@example.com")
    m = _validated(queue_email(to="a@example.com", cc="cc@example.com"))
    assert m.status == Status.TO_SEND
    assert "cc@example.com" in m.reason_text
    assert m.recipients.get(address="cc@example.com").outcome == Recipient.Outcome.BLOCKED


def test_no_backend_means_backend_test_required() -> None:
    m = _validated(queue_email(to="a@example.com", from_address="x@example.com"))
    assert (m.status, m.reason_code) == (Status.BACKEND_TEST_REQUIRED, Reason.BACKEND_MISSING)


@pytest.mark.django_db(transaction=True)
def test_without_a_backend_a_message_without_sender_is_held_not_refused(
    smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    # No backend and no default from address yet: the from address will come
    # with the backend settings, so the message waits for them.
    GlobalSettings.load()
    m = _validated(queue_email(to="a@example.com", subject="Welcome"))
    assert (m.status, m.reason_code) == (Status.BACKEND_TEST_REQUIRED, Reason.BACKEND_MISSING)
    # The backend is set (with its from address) and passes its test: the
    # message goes out from that address.
    make_backend(smtp_server, from_address="platform@example.com")
    run_worker()
    m.refresh_from_db()
    assert m.status == Status.SENT
    assert m.from_address == "platform@example.com"
    assert smtp_server.messages[-1].mail_from == "platform@example.com"


def test_untested_backend_holds_the_message(healthy_backend: Backend) -> None:
    Backend.objects.filter(pk=healthy_backend.pk).update(settings_version=2)
    m = _validated(queue_email(to="a@example.com"))
    assert (m.status, m.reason_code) == (Status.BACKEND_TEST_REQUIRED, Reason.BACKEND_UNTESTED)
    assert "version 2" in m.reason_text


def test_missing_sender_is_not_sent() -> None:
    Backend.objects.create(name="R", is_default=True, health="ok", tested_version=1)
    GlobalSettings.load()
    m = _validated(queue_email(to="a@example.com"))
    assert (m.status, m.reason_code) == (Status.NOT_SENT, Reason.SENDER_INVALID)


def test_used_up_allowance_keeps_the_message_waiting_with_the_reason(
    healthy_backend: Backend,
) -> None:
    Backend.objects.filter(pk=healthy_backend.pk).update(limit=10, sent_count=10)
    m = _validated(queue_email(to="a@example.com"))
    assert (m.status, m.reason_code) == (Status.WAITING, Reason.ALLOWANCE_EXHAUSTED)
    assert "10 messages" in m.reason_text
    events = Event.objects.filter(message=m).count()
    # Checked again later without a history line each time.
    Message.objects.filter(pk=m.pk).update(next_attempt_at=m.created_at)
    validate_due()
    assert Event.objects.filter(message=m).count() == events


def test_scheduled_messages_wait_for_their_time(healthy_backend: Backend) -> None:
    from datetime import timedelta

    from django.utils import timezone

    m = queue_email(to="a@example.com", send_at=timezone.now() + timedelta(hours=1))
    assert validate_due() == 0
    m.refresh_from_db()
    assert m.status == Status.WAITING


@dataclass
class _DecidedBatch:
    """The due messages read and decided as validate_due does, before the
    write transaction opens."""

    messages: list[Message]
    plan: Any
    seen: dict[int | str, tuple[Any, ...]]
    settings: GlobalSettings
    now: datetime

    @classmethod
    def read(cls) -> _DecidedBatch:
        settings = GlobalSettings.load()
        now = timezone.now()
        defaults = validation._default_backends()
        messages = validation._due(now, 100)
        plan = validation._plan(messages, settings=settings, defaults=defaults, now=now)
        seen = validation._backends_as_read(messages, defaults, plan.allowance)
        return cls(messages, plan, seen, settings, now)

    def as_stored(self) -> Any:
        """The plan checked against the backends as stored now."""
        return validation._as_stored(
            self.messages, self.plan, self.seen, settings=self.settings, now=self.now, claim=None
        )


def test_a_backend_tested_while_a_batch_is_being_decided_is_not_missed(
    smtp_server: Any, make_backend: Any
) -> None:
    """The batch is decided with no default backend; before its write, a
    backend passes its test (releasing what it held: nothing yet, the message
    is still Waiting). The write must not hold the message on the stale
    decision, where no later test would release it."""
    from django.db import transaction

    m = queue_email(to="a@example.com", from_address="x@example.com")
    batch = _DecidedBatch.read()
    assert [c.to for c in batch.plan.changes] == [Status.BACKEND_TEST_REQUIRED]
    # Nothing changed yet: the plan stands as decided, with no second look.
    assert batch.as_stored() is batch.plan

    make_backend(smtp_server)
    with transaction.atomic():
        validation._write(batch.as_stored())
    m.refresh_from_db()
    assert (m.status, m.reason_code) == (Status.TO_SEND, Reason.VALIDATED)


def test_a_batch_whose_backends_did_not_change_is_written_as_decided(
    healthy_backend: Backend, stored_backend: Any
) -> None:
    """The check before the write finds every backend the decisions read
    as it was, the chosen one and the default alike: no second decision."""
    other = stored_backend(name="Other", is_default=False)
    queue_email(to="a@example.com", from_address="x@example.com")
    queue_email(to="b@example.com", from_address="x@example.com", backend=other)
    batch = _DecidedBatch.read()
    assert set(batch.seen) == {healthy_backend.pk, other.pk, *Channel.values}
    assert batch.as_stored() is batch.plan
    Backend.objects.filter(pk=other.pk).update(health="failing")
    assert batch.as_stored() is not batch.plan
