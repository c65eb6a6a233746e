"""Intake: what producers can queue, and what is refused with nothing written."""

from __future__ import annotations

import itertools
import re
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail import EmailMultiAlternatives
from django.utils import timezone

from outbound.errors import HeaderInjection, IdempotencyConflict, IntakeError, UnknownContact
from outbound.models import Attachment, Contact, Event, Message
from outbound.selectors import message_parts
from outbound.services.intake import AttachmentIn, queue_email, queue_emails, queue_sms
from outbound.states import Reason, Source, Status

pytestmark = pytest.mark.django_db

# RFC 5322 dot-atom-text: the id-left and id-right of a msg-id.
DOT_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"


def test_a_queued_email_is_waiting_with_a_message_id_and_a_first_history_line() -> None:
    message = queue_email(
        to=["ann@example.com"],
        cc="cc@example.com",
        bcc=["bcc@example.com"],
        reply_to=["desk@example.com"],
        subject="Your task",
        text="Hello",
        html="<p>Hello</p>",
        from_address="Platform <noreply@platform.example>",
        headers={"X-Workflow": "42"},
        attachments=[AttachmentIn("a.txt", b"data", "text/plain")],
        group_key="reminders-42",
        source=Source.WORKFLOW,
    )
    stored = Message.objects.get(pk=message.pk)
    assert stored.status == Status.WAITING
    assert stored.message_id.startswith("<") and stored.message_id.endswith("@platform.example>")
    assert stored.cc == ["cc@example.com"] and stored.bcc == ["bcc@example.com"]
    assert stored.headers == {"X-Workflow": "42"}
    assert Attachment.objects.get(message=stored).content == b"data"
    event = Event.objects.get(message=stored)
    assert event.to_status == Status.WAITING and "Queued by a workflow" in event.text


def test_send_at_in_the_future_is_scheduled() -> None:
    later = timezone.now() + timedelta(hours=2)
    message = queue_email(to="a@example.com", send_at=later)
    assert message.reason_code == Reason.SCHEDULED
    assert message.next_attempt_at == later


def test_send_at_years_ahead_is_refused_as_a_mistyped_year() -> None:
    far = timezone.now() + timedelta(days=3653)
    for channel_queue, fields in [
        (queue_email, {"to": "a@example.com"}),
        (queue_sms, {"to": "+4915112345678", "body": "Hi"}),
    ]:
        with pytest.raises(IntakeError, match="more than 10 years ahead; check the year"):
            channel_queue(send_at=far, **fields)
    assert not Message.objects.exists()
    # Nine years ahead is a reminder someone may mean.
    queue_email(to="a@example.com", send_at=timezone.now() + timedelta(days=9 * 365))


def test_same_idempotency_key_returns_the_first_message() -> None:
    first = queue_email(to="a@example.com", subject="s", idempotency_key="k-1")
    again = queue_email(to="a@example.com", subject="s", idempotency_key="k-1")
    assert again.pk == first.pk
    assert again.message_id == first.message_id
    assert Message.objects.count() == 1


def test_reusing_an_idempotency_key_for_other_content_is_refused() -> None:
    queue_email(to="a@example.com", subject="s", idempotency_key="k-2")
    with pytest.raises(IdempotencyConflict):
        queue_email(to="a@example.com", subject="different", idempotency_key="k-2")
    assert Message.objects.count() == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"subject": "Hi\r\nBcc: victim@example.com"},
        {"to": ["a@example.com\r\nRCPT TO:<x@example.com>"]},
        {"from_address": "x@example.com\nBcc: y@example.com"},
        {"headers": {"X-Test": "a\r\nBcc: z@example.com"}},
        {"headers": {"Bad Name": "v"}},
        {"to_user": "Ann\u2028Bcc: z@example.com"},
    ],
)
def test_header_injection_is_refused_and_nothing_is_written(kwargs: dict) -> None:
    kwargs.setdefault("to", "a@example.com")
    with pytest.raises(HeaderInjection):
        queue_email(**kwargs)
    assert Message.objects.count() == 0
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Bcc", "envelope only"),
        ("bcc", "envelope only"),
        ("Subject", "own field"),
        ("Content-Type", "MIME structure"),
        ("MIME-Version", "MIME structure"),
        ("Return-Path", "envelope sender"),
    ],
)
def test_reserved_headers_cannot_be_overridden(header: str, reason: str) -> None:
    # Message-ID, From, To, Cc, Reply-To and Date may be given (as Django
    # takes them); these still may not, each with its reason.
    with pytest.raises(IntakeError, match=reason) as caught:
        queue_email(to="a@example.com", headers={header: "x@example.com"})
    assert caught.value.field == f"headers.{header}"
    assert Message.objects.count() == 0


def test_unknown_contact_is_refused() -> None:
    with pytest.raises(UnknownContact, match="999"):
        queue_email(contact=999)
    assert Message.objects.count() == 0


def test_an_invalid_address_is_stored_not_raised() -> None:
    message = queue_email(to="not an address")
    assert Message.objects.filter(pk=message.pk, status=Status.WAITING).exists()


def test_contact_message_takes_the_contacts_name() -> None:
    contact = Contact.objects.create(name="Ann Lee", email="ann@example.com")
    message = queue_email(contact=contact, subject="x")
    assert message.to_user == "Ann Lee"


def test_bulk_intake_writes_messages_and_events() -> None:
    messages = queue_emails([{"to": f"u{i}@example.com", "subject": str(i)} for i in range(50)])
    assert len(messages) == 50
    assert Message.objects.count() == 50
    assert Event.objects.count() == 50
    assert len({m.message_id for m in messages}) == 50


@pytest.fixture
def outbox_backend(settings) -> None:  # type: ignore[no-untyped-def]
    # Django's test set-up swaps in its in-memory backend; put ours back.
    settings.EMAIL_BACKEND = "outbound.mail.EmailBackend"


@pytest.mark.usefixtures("outbox_backend")
def test_djangos_send_mail_lands_in_the_outbox() -> None:
    sent = mail.send_mail("Subject", "Body", "from@example.com", ["to@example.com"])
    assert sent == 1
    message = Message.objects.get()
    assert message.source == Source.DJANGO
    assert (message.subject, message.text_body, message.to) == (
        "Subject",
        "Body",
        ["to@example.com"],
    )


@pytest.mark.usefixtures("outbox_backend")
def test_django_email_message_with_html_and_attachment_lands_in_the_outbox() -> None:
    email = EmailMultiAlternatives(
        "S", "text", "from@example.com", ["to@example.com"], cc=["c@example.com"]
    )
    email.attach_alternative("<b>html</b>", "text/html")
    email.attach("r.csv", "a,b\n", "text/csv")
    assert email.send() == 1
    message = Message.objects.get()
    assert message.html_body == "<b>html</b>"
    assert message.cc == ["c@example.com"]
    # Django's MIME body is kept as Django built it; the page lists its parts.
    [_text, _html, csv] = message_parts(message)
    assert (csv.name, csv.content_type, csv.size) == (
        "r.csv",
        "text/csv; charset=utf-8",
        5,
    )  # a,b CRLF


def test_bulk_intake_ids_follow_on_and_are_never_reused(db: None) -> None:
    from outbound.services.intake import queue_email, queue_emails

    first = queue_emails([{"to": f"u{i}@example.com", "subject": "s"} for i in range(3)])
    ids = [m.pk for m in first]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert all(Message.objects.filter(pk=i).exists() for i in ids)
    assert Event.objects.filter(message_id__in=ids).count() == 3
    Message.objects.filter(pk=ids[-1]).delete()
    [again] = queue_emails([{"to": "v@example.com", "subject": "s"}])
    assert again.pk > ids[-1]
    single = queue_email(to="w@example.com", subject="s")
    assert single.pk > again.pk
    [after] = queue_emails([{"to": "x@example.com", "subject": "s"}])
    assert after.pk > single.pk
    assert Message.objects.get(pk=after.pk).message_to == "x@example.com"


@pytest.mark.django_db(transaction=True)
def test_bulk_insert_refuses_to_run_outside_a_transaction() -> None:
    from outbound.services.bulk import insert_rows

    with pytest.raises(RuntimeError):
        insert_rows(Message, [Message()])
    assert not Message.objects.exists()


def test_message_ids_are_valid_msg_ids_that_sort_in_the_order_they_were_made() -> None:
    from email import policy

    from outbound.services.intake import make_message_id

    made: list[tuple[int, str, int]] = []
    for i in range(200):
        before = time.time_ns() // 1000
        message_id = make_message_id(
            "noreply@platform.example" if i % 2 else "Platform <noreply@platform.example>"
        )
        made.append((before, message_id, time.time_ns() // 1000))
    ids = [message_id for _, message_id, _ in made]
    for message_id in ids:
        assert re.fullmatch(rf"<{DOT_ATOM}@platform\.example>", message_id)
        assert not policy.default.header_factory("Message-ID", message_id).defects
    assert len(set(ids)) == 200
    # Each one starts with the microsecond it was made in, not a coarser
    # clock's tick: IDs made within one tick would sort at random.
    stamps = [int(message_id[1:15], 16) for message_id in ids]
    for (before, _, after), stamp in zip(made, stamps, strict=True):
        assert before <= stamp <= after
    # So, over the whole run, an ID sorts after every one made in an earlier
    # microsecond.
    assert stamps == sorted(stamps)
    assert all(a < b for a, b in itertools.pairwise(ids) if a[1:15] != b[1:15])


def test_a_sender_domain_that_is_no_domain_name_gives_the_default_one() -> None:
    message = queue_email(to="a@example.com", from_address="x@" + "ä" * 70)
    assert message.message_id.endswith("@outbound.local>")
    unicode = queue_email(to="a@example.com", from_address="x@bücher.example")
    assert unicode.message_id.endswith("@xn--bcher-kva.example>")


def test_without_a_from_address_the_message_id_takes_the_default_senders_domain() -> None:
    from outbound.models import Backend, GlobalSettings

    settings = GlobalSettings.load()
    settings.default_from = "robot@settings.example"
    settings.save()
    # No backend yet: the global settings' default from address.
    assert queue_email(to="a@example.com").message_id.endswith("@settings.example>")
    Backend.objects.create(name="Relay", is_default=True, from_address="noreply@relay.example")
    # The default email backend's from address comes first, for one message
    # and for bulk intake alike.
    assert queue_email(to="a@example.com").message_id.endswith("@relay.example>")
    bulk = queue_emails([{"to": "b@example.com"}, {"to": "c@example.com"}])
    assert all(m.message_id.endswith("@relay.example>") for m in bulk)
    # A from address of the message's own still decides.
    own = queue_email(to="a@example.com", from_address="Shop <shop@shop.example>")
    assert own.message_id.endswith("@shop.example>")
    # An SMS has no sender address: the same domain as the platform's email.
    assert queue_sms(to="+4915112345678", body="Hi").message_id.endswith("@relay.example>")


def test_bulk_intake_of_more_rows_than_one_statement_holds() -> None:
    from outbound.selectors import MessageFilters
    from outbound.services.prepared import ROWS_PER_STATEMENT

    count = 2 * ROWS_PER_STATEMENT + 50
    messages = queue_emails(
        [{"to": f"u{i}@example.com", "subject": f"Number {i:04d}"} for i in range(count)]
    )
    ids = [m.pk for m in messages]
    assert ids == list(range(ids[0], ids[0] + count))
    stored = dict(Message.objects.values_list("pk", "subject"))
    assert [stored[pk] for pk in ids] == [f"Number {i:04d}" for i in range(count)]
    assert Event.objects.filter(message_id__in=ids).count() == count
    # Every statement's rows reach the text search (a trigger on SQLite).
    for i in (0, ROWS_PER_STATEMENT, count - 1):
        found = MessageFilters(q=f"Number {i:04d}").apply(Message.objects.all())
        assert list(found.values_list("pk", flat=True)) == [ids[i]]


def _raw_rows(table: str, ids: list[int]) -> list[dict[str, object]]:
    from django.db import connection

    with connection.cursor() as cursor:
        marks = ", ".join(["%s"] * len(ids))
        cursor.execute(f"SELECT * FROM {table} WHERE id IN ({marks}) ORDER BY id", ids)  # noqa: S608
        columns = [c[0] for c in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def test_bulk_intake_writes_the_rows_djangos_own_insert_writes() -> None:
    from outbound.models import Backend

    contact = Contact.objects.create(name="Ann Lee", email="ann@example.com")
    backend = Backend.objects.create(name="Relay", host="smtp.example.com")
    later = timezone.now() + timedelta(hours=1)
    items = [
        {
            "to": ["a@example.com", "b@example.com"],
            "cc": "c@example.com",
            "contact": contact,
            "backend": backend,
            "headers": {"X-Workflow": "42"},
            "context": {"task": 7, "flags": [True, None]},
            "subject": "Grüße",
            "text": "Hello",
            "html": "<p>Hello</p>",
            "from_address": "Platform <noreply@platform.example>",
            "group_key": "g-1",
            "send_at": later,
        },
        {"to": "d@example.com", "send_at": later},
        # Equal values of other types (True == 1) must not share a conversion.
        {"to": "e@example.com", "send_at": later, "context": True},
        {"to": "e@example.com", "send_at": later, "context": 1},
    ]
    bulk = queue_emails(items, actor="ann")
    single = [queue_email(**item, actor="ann") for item in items]
    own = {"id", "message_id", "created_at", "status_changed_at"}
    bulk_rows = _raw_rows("outbound_message", [m.pk for m in bulk])
    single_rows = _raw_rows("outbound_message", [m.pk for m in single])
    for b, s in zip(bulk_rows, single_rows, strict=True):
        assert {k: v for k, v in b.items() if k not in own} == {
            k: v for k, v in s.items() if k not in own
        }
    assert [m.context for m in Message.objects.filter(pk__in=[bulk[2].pk, bulk[3].pk])] == [
        True,
        1,
    ]
    assert type(Message.objects.get(pk=bulk[3].pk).context) is int
    events = {"id", "message_id", "created_at"}
    bulk_events = Event.objects.filter(message_id__in=[m.pk for m in bulk]).order_by("id")
    single_events = Event.objects.filter(message_id__in=[m.pk for m in single]).order_by("id")
    for b, s in zip(
        _raw_rows("outbound_event", [e.pk for e in bulk_events]),
        _raw_rows("outbound_event", [e.pk for e in single_events]),
        strict=True,
    ):
        assert {k: v for k, v in b.items() if k not in events} == {
            k: v for k, v in s.items() if k not in events
        }


def test_the_first_history_line_names_who_queued_it_and_when_it_is_due() -> None:
    due = timezone.now().replace(microsecond=0) + timedelta(days=3)
    scheduled = queue_email(to="a@example.com", source="manual", send_at=due)
    now = queue_email(to="b@example.com", source="api")
    stamp = timezone.localtime(due).strftime("%Y-%m-%d %H:%M:%S %Z")
    assert Event.objects.get(message=scheduled).text == (
        f"Queued by hand (console or command line); due at {stamp}."
    )
    assert Event.objects.get(message=now).text == (
        "Queued by the API; waiting for a worker to validate and send it."
    )
