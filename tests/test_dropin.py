"""The Django drop-in (outbound.mail.EmailBackend) as a Django project uses it:
header overrides, refusals that are logged, the Date, Django's default
sender, BadHeaderError, and a backend whose from address has a name. Sent
through a real worker to a real SMTP server where it matters."""

from __future__ import annotations

import logging
from datetime import timedelta
from email import policy
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.core.mail import BadHeaderError, EmailMessage, EmailMultiAlternatives
from django.utils import timezone

from outbound.checks import django_senders
from outbound.errors import IntakeError
from outbound.models import Event, GlobalSettings, Message
from outbound.selectors import message_parts
from outbound.services.operations import resend_message
from outbound.states import Reason, Status

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _drop_in(settings: Any) -> None:
    # Django's test set-up swaps in its in-memory backend; put ours back.
    settings.EMAIL_BACKEND = "outbound.mail.EmailBackend"


def _parsed(raw: bytes) -> Any:
    return BytesParser(policy=policy.default).parsebytes(raw)


# ------------------------------------------------------- 3: header overrides


def test_a_callers_message_id_is_kept_for_the_message_and_its_retries(
    smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    make_backend(smtp_server)
    smtp_server.configure(data_reply="451 4.3.0 Try again later")
    EmailMessage(
        "Thread",
        "Hello.",
        "shop@shop.example",
        ["ann@example.com"],
        headers={"Message-ID": "<order-7.thread@shop.example>"},
    ).send()
    message = Message.objects.get()
    assert message.message_id == "<order-7.thread@shop.example>"
    assert "Message-ID" not in message.headers
    run_worker()
    smtp_server.configure(data_reply=None)
    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    run_worker()

    first, second = smtp_server.messages
    assert first.message_id == second.message_id == "<order-7.thread@shop.example>"
    assert _parsed(second.raw).get_all("Message-ID") == ["<order-7.thread@shop.example>"]
    assert Message.objects.get().status == Status.SENT


def test_a_resent_sent_message_gets_a_new_message_id_and_its_history_says_so(
    smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    make_backend(smtp_server)
    EmailMessage(
        "Thread",
        "Hello.",
        "shop@shop.example",
        ["ann@example.com"],
        headers={"Message-ID": "<order-8@shop.example>"},
    ).send()
    run_worker()
    message = Message.objects.get()
    assert message.status == Status.SENT

    assert resend_message(message, actor="ops").ok
    run_worker()

    first, second = smtp_server.messages
    new_id = Message.objects.get().message_id
    assert first.message_id == "<order-8@shop.example>"
    assert second.message_id == new_id != "<order-8@shop.example>"
    note = Event.objects.get(message=message, reason_code=Reason.RESENT).text
    assert f"New Message-ID {new_id} (was <order-8@shop.example>)" in note


def test_header_overrides_change_the_headers_and_not_the_envelope(
    smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    make_backend(smtp_server)
    EmailMessage(
        "Overrides",
        "Hello.",
        "envelope@shop.example",
        ["real@example.com"],
        headers={
            "From": "Team <team@shop.example>",
            "To": "List <list@example.com>",
            "Reply-To": "help@shop.example",
            "Date": "Tue, 01 Dec 2026 10:00:00 +0100",
        },
    ).send()
    run_worker()

    [received] = smtp_server.messages
    parsed = _parsed(received.raw)
    assert (received.mail_from, received.rcpt_tos) == (
        "envelope@shop.example",
        ["real@example.com"],
    )
    assert str(parsed["From"]) == "Team <team@shop.example>"
    assert str(parsed["To"]) == "List <list@example.com>"
    assert str(parsed["Reply-To"]) == "help@shop.example"
    assert str(parsed["Date"]) == "Tue, 01 Dec 2026 10:00:00 +0100"
    for name in ("From", "To", "Reply-To", "Date"):
        assert len(parsed.get_all(name)) == 1


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({"Message-ID": "no-angle-brackets@shop.example"}, "is not valid"),
        ({"Message-ID": "<two@at@shop.example>"}, "is not valid"),
        ({"Date": "yesterday"}, "is not an RFC 5322 date"),
        ({"From": "not an address"}, "not usable"),
        ({"Bcc": "secret@example.com"}, "envelope only"),
    ],
)
def test_a_bad_header_override_is_refused_with_the_header_named(
    headers: dict[str, str], problem: str
) -> None:
    with pytest.raises(IntakeError, match=problem):
        EmailMessage("S", "B", "shop@shop.example", ["ann@example.com"], headers=headers).send()
    assert Message.objects.count() == 0


def test_a_message_id_already_used_is_refused() -> None:
    headers = {"Message-ID": "<once@shop.example>"}
    EmailMessage("S", "B", "shop@shop.example", ["ann@example.com"], headers=headers).send()
    with pytest.raises(IntakeError, match="already the Message-ID of message"):
        EmailMessage("S", "B", "shop@shop.example", ["bob@example.com"], headers=headers).send()
    assert Message.objects.count() == 1


# --------------------------------------------------- 4: refusals are logged


@pytest.mark.parametrize("fail_silently", [True, False])
def test_a_refused_message_is_logged_with_reason_subject_and_recipients(
    fail_silently: bool, caplog: pytest.LogCaptureFixture
) -> None:
    message = EmailMessage(
        "Your reset link",
        "B",
        "shop@shop.example",
        ["ann@example.com"],
        bcc=["audit@example.com"],
        headers={"Bcc": "spy@example.com"},
    )
    with caplog.at_level(logging.WARNING, logger="outbound.mail"):
        if fail_silently:
            assert message.send(fail_silently=True) == 0
        else:
            with pytest.raises(IntakeError, match="Bcc"):
                message.send()
    [record] = [r for r in caplog.records if r.name == "outbound.mail"]
    text = record.getMessage()
    assert "Bcc header cannot be given" in text
    assert "'Your reset link'" in text
    assert "ann@example.com, audit@example.com" in text
    assert Message.objects.count() == 0


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (lambda m: setattr(m, "encoding", "no-such-charset"), "LookupError"),
        (lambda m: m.attach("n.bin", 12345, "application/octet-stream"), "TypeError"),
    ],
    ids=["unknown encoding", "attachment that is not bytes"],
)
def test_a_message_django_cannot_build_is_refused_and_logged_not_raised_silently(
    build: Any, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    quiet, loud = (
        EmailMessage("Odd", "Body", "shop@shop.example", ["ann@example.com"]) for _ in range(2)
    )
    build(quiet)
    build(loud)
    with caplog.at_level(logging.WARNING, logger="outbound.mail"):
        assert quiet.send(fail_silently=True) == 0
        with pytest.raises(IntakeError, match=problem):
            loud.send()
    texts = [r.getMessage() for r in caplog.records if r.name == "outbound.mail"]
    assert len(texts) == 2
    assert all("could not build" in t and "'Odd'" in t and "ann@example.com" in t for t in texts)
    assert Message.objects.count() == 0


# ------------------------------------------------------------- 5: MIME parts


def test_the_message_page_lists_every_part(admin_client: Any) -> None:
    from email.mime.image import MIMEImage

    email = EmailMultiAlternatives("Parts", "Text.", "shop@shop.example", ["ann@example.com"])
    email.attach_alternative("<p>HTML</p>", "text/html")
    email.attach_alternative("BEGIN:VCALENDAR\nEND:VCALENDAR\n", "text/calendar")
    image = MIMEImage(b"\x89PNG\r\n\x1a\n" + b"\x00" * 92, "png")
    image.add_header("Content-ID", "<logo@shop.example>")
    image.add_header("Content-Disposition", "inline", filename="logo.png")
    email.attach(image)
    email.attach("Grüße.txt", "Grüße\n", "text/plain")
    email.mixed_subtype = "related"
    email.send()
    message = Message.objects.get()

    parts = [
        (p.name, p.content_type, p.size, p.disposition, p.content_id)
        for p in message_parts(message)
    ]
    assert parts == [
        ("", "text/plain; charset=utf-8", 5, "", ""),
        ("", "text/html; charset=utf-8", 11, "", ""),
        ("", "text/calendar; charset=utf-8", 32, "", ""),
        ("logo.png", "image/png", 100, "inline", "<logo@shop.example>"),
        ("Grüße.txt", "text/plain; charset=utf-8", 9, "attachment", ""),
    ]
    page = admin_client.get(f"/messages/{message.pk}/").content.decode()
    assert "logo.png: image/png, 100\xa0bytes, inline, Content-ID &lt;logo@shop.example&gt;" in page
    assert "Grüße.txt: text/plain; charset=utf-8" in page
    assert "text/calendar; charset=utf-8" in page


# ------------------------------------------------------------------- 6: Date


def test_date_is_when_the_message_is_first_handed_to_its_backend_and_a_resend_has_its_own(
    smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    make_backend(smtp_server)
    start = timezone.now()
    with time_machine.travel(start - timedelta(days=3), tick=True):
        # Queued three days ago, due now.
        EmailMessage("Reminder", "Hello.", "shop@shop.example", ["ann@example.com"]).send()
    message = Message.objects.get()
    smtp_server.configure(data_reply="451 4.3.0 Try again later")
    run_worker()
    first_try = Message.objects.get().first_attempt_at
    assert first_try is not None and first_try >= start
    smtp_server.configure(data_reply=None)
    with time_machine.travel(start + timedelta(hours=1), tick=True):
        Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
        run_worker()
    with time_machine.travel(start + timedelta(days=1), tick=True):
        assert resend_message(message, actor="ops").ok
        run_worker()

    refused, retried, resent = (
        parsedate_to_datetime(str(_parsed(m.raw)["Date"])) for m in smtp_server.messages
    )
    # The retry carries the Date of the first hand-over, not of the queueing.
    assert refused == retried == first_try.replace(microsecond=0)
    assert resent >= (start + timedelta(days=1)).replace(microsecond=0)


# --------------------------------------------------- 7: Django's default sender


@pytest.mark.parametrize(
    "defaults",
    [("", ""), ("webmaster@localhost", "root@localhost")],
    ids=["outbound's settings", "django's defaults left"],
)
@pytest.mark.parametrize("how", ["from_email=None", "mail_admins"])
def test_mail_from_djangos_default_sender_leaves_from_outbounds_default(
    how: str,
    defaults: tuple[str, str],
    smtp_server: Any,
    make_backend: Any,
    run_worker: Any,
    settings: Any,
) -> None:
    settings.DEFAULT_FROM_EMAIL, settings.SERVER_EMAIL = defaults
    settings.ADMINS = [("Ops", "ops@example.com")]
    make_backend(smtp_server, from_address="")
    gs = GlobalSettings.load()
    gs.default_from = "Bücherei Köln <noreply@shop.example>"
    gs.save()
    if how == "mail_admins":
        mail.mail_admins("Disk full", "The disk is full.")
    else:
        assert mail.send_mail("Reset", "Your link.", None, ["ann@example.com"]) == 1
    run_worker()

    stored = Message.objects.get()
    assert stored.status == Status.SENT, stored.reason_text
    [received] = smtp_server.messages
    assert received.mail_from == "noreply@shop.example"
    assert str(_parsed(received.raw)["From"]) == "Bücherei Köln <noreply@shop.example>"


def test_a_deliverable_default_from_email_is_kept(settings: Any) -> None:
    settings.DEFAULT_FROM_EMAIL = "Shop <shop@shop.example>"
    mail.send_mail("Reset", "Your link.", None, ["ann@example.com"])
    assert Message.objects.get().from_address == "Shop <shop@shop.example>"


def test_the_deploy_check_warns_of_undeliverable_django_senders(settings: Any) -> None:
    # Outbound's own settings leave both empty: Outbound's default sender.
    assert (settings.DEFAULT_FROM_EMAIL, settings.SERVER_EMAIL) == ("", "")
    assert django_senders() == []
    settings.DEFAULT_FROM_EMAIL, settings.SERVER_EMAIL = "webmaster@localhost", "root@localhost"
    warnings = django_senders()
    assert [w.id for w in warnings] == ["outbound.W020", "outbound.W021"]
    assert "DEFAULT_FROM_EMAIL is 'webmaster@localhost'" in warnings[0].msg
    settings.DEFAULT_FROM_EMAIL = "shop@shop.example"
    settings.SERVER_EMAIL = "Ops <ops@shop.example>"
    assert django_senders() == []


# ----------------------------------------------------------------- 8: smaller


def test_header_injection_is_caught_by_except_bad_header_error() -> None:
    caught = None
    try:
        mail.send_mail(
            "Hello\r\nBcc: victim@example.com", "B", "shop@shop.example", ["a@example.com"]
        )
    except BadHeaderError as err:
        caught = err
    assert caught is not None and "header injection" in str(caught)
    assert Message.objects.count() == 0


def test_a_backend_from_address_with_a_display_name_passes_the_backend_test(
    smtp_server: Any, make_backend: Any
) -> None:
    backend = make_backend(smtp_server, from_address="Shop Notifications <notify@shop.example>")
    assert backend.health == "ok"
    assert "MAIL FROM:<notify@shop.example>" in " ".join(smtp_server.lines)
