"""The drop-in sends what Django's own SMTP backend sends.

Each case builds one Django ``EmailMessage`` and sends it twice: through
Django's SMTP backend to one aiosmtpd server, and through
``outbound.mail.EmailBackend`` (the outbox, then a real worker) to another.
Both received messages are parsed and compared: the MIME tree (types,
charsets, dispositions, file names, Content-IDs), decoded headers, decoded
bodies, attachment bytes and the envelope. Every case runs through a relay
that offers SMTPUTF8 and one that does not; so does Django's own password
reset mail (``PasswordResetForm``), the framework mail a project sends most.

Differences by design, compared by rule instead of equality: Message-ID
(Outbound's is made at intake on the sender's domain and kept for retries,
Django's is made per send on the host name; a caller's is kept by both) and
Date (Outbound's is when the message is first handed to its backend). A
message with only Bcc recipients gets ``To: undisclosed-recipients:;`` from
Outbound and no To at all from Django: both show no address. A non-ASCII
local part is where Outbound does better than Django (which writes an
encoded word into the address): it is checked on its own at the end.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage as ParsedMessage
from email.mime.application import MIMEApplication
from email.mime.image import MIMEImage
from email.parser import BytesParser, Parser
from email.utils import parsedate_to_datetime
from typing import Any

import idna
import pytest
import time_machine
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives, get_connection

from outbound.models import Message
from outbound.states import Status
from tests.smtpd import ReceivedMessage, SmtpTestServer

DJANGO_SMTP = "django.core.mail.backends.smtp.EmailBackend"
DROP_IN = "outbound.mail.EmailBackend"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02" + bytes(
    range(256)
)
SENDER = "Bücherei Köln <noreply@shop.example>"


def _plain() -> EmailMessage:
    return EmailMessage(
        "Your order", "Thanks for your order.\n", "shop@shop.example", ["a@x.example"]
    )


def _text_and_html() -> EmailMessage:
    m = EmailMultiAlternatives("Receipt", "Total: 10 €\n", SENDER, ["a@x.example"])
    m.attach_alternative("<p>Total: <b>10 €</b></p>", "text/html")
    return m


def _html_only() -> EmailMessage:
    m = EmailMessage("News", "<h1>Hello</h1><p>Grüße</p>", "shop@shop.example", ["a@x.example"])
    m.content_subtype = "html"
    return m


def _binary_attachment() -> EmailMessage:
    m = EmailMessage("Invoice", "Attached.", "shop@shop.example", ["a@x.example"])
    m.attach("invoice.pdf", b"%PDF-1.4\n" + bytes(range(256)) * 8, "application/pdf")
    return m


def _non_ascii_named_attachment() -> EmailMessage:
    m = EmailMessage("Rechnung", "Anbei.", SENDER, ["a@x.example"])
    m.attach("Rechnung März — Köln.pdf", b"%PDF-1.4\n\x00\xff", "application/pdf")
    return m


def _csv_attachment() -> EmailMessage:
    m = EmailMessage("Export", "The export.", "shop@shop.example", ["a@x.example"])
    m.attach("export.csv", "name,city\nJürgen,Köln\nAnn,Zürich\n", "text/csv")
    return m


def _inline_image() -> EmailMessage:
    m = EmailMultiAlternatives("Logo", "See the logo.", "shop@shop.example", ["a@x.example"])
    m.attach_alternative('<p><img src="cid:logo@shop.example"></p>', "text/html")
    m.mixed_subtype = "related"
    image = MIMEImage(PNG, "png")
    image.add_header("Content-ID", "<logo@shop.example>")
    image.add_header("Content-Disposition", "inline", filename="logo.png")
    m.attach(image)
    return m


def _calendar_alternative() -> EmailMessage:
    m = EmailMultiAlternatives("Meeting", "Meeting on Monday.", SENDER, ["a@x.example"])
    m.attach_alternative("<p>Meeting on Monday.</p>", "text/html")
    m.attach_alternative(
        "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nSUMMARY:Besprechung Köln\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n",
        "text/calendar",
    )
    return m


def _rfc822_attachment() -> EmailMessage:
    inner = EmailMessage("Original", "The forwarded text.", "old@x.example", ["b@x.example"])
    m = EmailMessage("Fwd: Original", "Forwarded.", "shop@shop.example", ["a@x.example"])
    m.attach("original.eml", inner, "message/rfc822")
    return m


def _mimebase_part() -> EmailMessage:
    m = EmailMessage("Data", "Data attached.", "shop@shop.example", ["a@x.example"])
    part = MIMEApplication(b'{"a": 1}', "json")
    part.add_header("Content-Disposition", "attachment", filename="data.json")
    m.attach(part)
    return m


def _utf8_text_attachment() -> EmailMessage:
    m = EmailMessage("Notes", "Notes attached.", "shop@shop.example", ["a@x.example"])
    m.attach("notes.txt", "Grüße aus Köln\nŻółć\n", "text/plain")
    return m


def _non_ascii_names() -> EmailMessage:
    return EmailMessage(
        "Willkommen",
        "Hallo.",
        SENDER,
        ["Jürgen Müller <juergen@x.example>"],
        cc=["Zoë Ærø <zoe@x.example>"],
        reply_to=["Kundenservice Köln <service@shop.example>"],
    )


def _bcc_only() -> EmailMessage:
    return EmailMessage("Hidden", "Hello.", "shop@shop.example", bcc=["hidden@x.example"])


def _custom_headers() -> EmailMessage:
    return EmailMessage(
        "Custom",
        "Hello.",
        "shop@shop.example",
        ["a@x.example"],
        headers={
            "X-Order": "A-1001",
            "X-Note": "Grüße aus Köln",
            "List-Unsubscribe": "<mailto:u@x.example>",
        },
    )


def _idn_domain() -> EmailMessage:
    return EmailMessage("IDN", "Hello.", SENDER, ["Jörg <info@bücher.example>"])


def _long_subject_and_lines() -> EmailMessage:
    subject = "Erinnerung: " + " ".join(["Ihre Bestellung bei der Bücherei Köln"] * 6)
    body = "Lorem ipsum " * 120 + "\n" + "x" * 1200 + "\nEnde ü\n"
    return EmailMessage(subject, body, "shop@shop.example", ["a@x.example"])


def _callers_message_id() -> EmailMessage:
    return EmailMessage(
        "Threaded",
        "Hello.",
        "shop@shop.example",
        ["a@x.example"],
        headers={"Message-ID": "<order-1001.thread@shop.example>"},
    )


def _header_overrides() -> EmailMessage:
    return EmailMessage(
        "Overrides",
        "Hello.",
        "envelope@shop.example",
        ["real@x.example"],
        cc=["copy@x.example"],
        reply_to=["ignored@shop.example"],
        headers={
            "From": "Shop Team <team@shop.example>",
            "To": "Everyone <list@x.example>",
            "Reply-To": "Support <support@shop.example>",
            "Date": "Tue, 01 Dec 2026 10:00:00 +0100",
        },
    )


def _encoding() -> EmailMessage:
    m = EmailMultiAlternatives(
        "Café", "Café crème à Zürich\n", "shop@shop.example", ["a@x.example"]
    )
    m.attach_alternative("<p>Café crème</p>", "text/html")
    m.attach("menu.txt", "Crème brûlée\n", "text/plain")
    m.encoding = "iso-8859-1"
    return m


CASES: dict[str, Callable[[], EmailMessage]] = {
    "plain": _plain,
    "text and html": _text_and_html,
    "html only": _html_only,
    "binary attachment": _binary_attachment,
    "non-ascii file name": _non_ascii_named_attachment,
    "csv attachment": _csv_attachment,
    "inline image": _inline_image,
    "calendar alternative": _calendar_alternative,
    "rfc822 attachment": _rfc822_attachment,
    "mimebase part": _mimebase_part,
    "utf-8 text attachment": _utf8_text_attachment,
    "non-ascii names": _non_ascii_names,
    "bcc only": _bcc_only,
    "custom headers": _custom_headers,
    "idn domain": _idn_domain,
    "long subject and lines": _long_subject_and_lines,
    "caller's message-id": _callers_message_id,
    "header overrides": _header_overrides,
    "encoding": _encoding,
}

ADDRESS_HEADERS = ("from", "to", "cc", "reply-to")
BY_RULE = {"date", "message-id", "mime-version"}
_MSG_ID = re.compile(r"<[^<>@\s]+@[^<>@\s]+>")


def _a_label(address: str) -> str:
    local, _, domain = address.rpartition("@")
    return (
        f"{local}@{idna.encode(domain, uts46=True).decode()}" if not domain.isascii() else address
    )


def _parse(raw: bytes) -> ParsedMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(parsed, ParsedMessage)
    return parsed


def _headers(msg: ParsedMessage) -> dict[str, Any]:
    """Decoded top-level headers, addresses as (name, address) with
    international domains in one form; a header without an address (an
    empty group) counts as absent."""
    view: dict[str, Any] = {}
    for name in {k.lower() for k in msg}:
        if name in BY_RULE or name.startswith("content-"):
            continue
        values = msg.get_all(name) or []
        if name in ADDRESS_HEADERS:
            found = [(a.display_name, _a_label(a.addr_spec)) for v in values for a in v.addresses]
            if found:
                view[name] = found
        else:
            # Django folds a long encoded value from an empty first line,
            # which reads back with a leading space.
            view[name] = [str(v).strip() for v in values]
    return view


def _tree(part: ParsedMessage) -> dict[str, Any]:
    """A part's MIME structure and decoded content."""
    node: dict[str, Any] = {
        "type": part.get_content_type(),
        "charset": part.get_content_charset(),
        "disposition": part.get_content_disposition(),
        "filename": part.get_filename(),
        "content-id": str(part.get("Content-ID", "")).strip() or None,
    }
    if node["type"] == "message/rfc822":
        [inner] = part.get_payload()
        node["message"] = {"headers": _headers(inner), "tree": _tree(inner)}
    elif part.is_multipart():
        node["parts"] = [_tree(p) for p in part.iter_parts()]
    else:
        data = part.get_payload(decode=True)
        if part.get_content_maintype() == "text":
            # Text is compared in its canonical form: line breaks are CRLF
            # on the wire whatever transfer encoding carried them, and the
            # email package ends a body it writes with one.
            text = data.decode(node["charset"] or "ascii").replace("\r\n", "\n")
            node["content"] = text if text.endswith("\n") else text + "\n"
        else:
            node["content"] = data
    return node


def _check_wire(raw: bytes, *, utf8: bool) -> None:
    """What must hold of any message on the wire."""
    lines = raw.split(b"\r\n")
    assert all(len(line) <= 998 for line in lines), "a line over 998 octets"
    assert b"\r" not in b"".join(lines) and b"\n" not in b"".join(lines), "a bare CR or LF"
    head = raw.split(b"\r\n\r\n", 1)[0]
    if not utf8:
        assert head.isascii(), "8-bit headers"
    parsed = _parse(raw)
    for name in ("from", "to", "cc", "reply-to", "subject", "date", "message-id"):
        assert len(parsed.get_all(name) or []) <= 1, f"{name} twice"
    assert "bcc" not in {k.lower() for k in parsed}


@pytest.fixture
def relays(make_smtp_server: Callable[..., SmtpTestServer], make_backend: Any, settings: Any):  # type: ignore[no-untyped-def]
    """(Django's server, Outbound's server) for a relay with or without SMTPUTF8."""

    def start(smtputf8: bool) -> tuple[SmtpTestServer, SmtpTestServer]:
        theirs = make_smtp_server(smtputf8=smtputf8)
        ours = make_smtp_server(smtputf8=smtputf8)
        make_backend(ours)
        settings.EMAIL_BACKEND = DROP_IN
        return theirs, ours

    return start


def _send_both(
    build: Callable[[], EmailMessage],
    theirs: SmtpTestServer,
    ours: SmtpTestServer,
    run_worker: Any,
) -> tuple[ReceivedMessage, ReceivedMessage, datetime]:
    message = build()
    with get_connection(DJANGO_SMTP, host=theirs.host, port=theirs.port, timeout=5) as conn:
        assert conn.send_messages([message]) == 1
    queued = datetime.now(UTC).replace(microsecond=0)
    with get_connection(DROP_IN) as conn:
        assert conn.send_messages([message]) == 1
    run_worker()
    stored = Message.objects.get()
    assert stored.status == Status.SENT, stored.reason_text
    [django_copy] = theirs.messages
    [outbound_copy] = ours.messages
    return django_copy, outbound_copy, queued


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("smtputf8", [True, False], ids=["relay-with-smtputf8", "relay-without"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_drop_in_sends_what_djangos_smtp_backend_sends(
    case: str, smtputf8: bool, relays: Any, run_worker: Any
) -> None:
    theirs, ours = relays(smtputf8)
    django_copy, outbound_copy, queued = _send_both(CASES[case], theirs, ours, run_worker)

    _check_wire(outbound_copy.raw, utf8=False)
    # Nothing in these cases needs SMTPUTF8: Outbound does not ask for it.
    assert "SMTPUTF8" not in outbound_copy.mail_options
    assert (outbound_copy.mail_from, sorted(outbound_copy.rcpt_tos)) == (
        django_copy.mail_from,
        sorted(django_copy.rcpt_tos),
    )
    expected, got = _parse(django_copy.raw), _parse(outbound_copy.raw)
    assert _headers(got) == _headers(expected)
    assert _tree(got) == _tree(expected)

    # Message-ID and Date by rule.
    callers = {k.lower(): v for k, v in CASES[case]().extra_headers.items()}
    assert _MSG_ID.fullmatch(str(got["Message-ID"]))
    if "message-id" in callers:
        assert str(got["Message-ID"]) == str(expected["Message-ID"]) == callers["message-id"]
    else:
        assert str(got["Message-ID"]) == Message.objects.get().message_id
    if "date" in callers:
        assert str(got["Date"]) == str(expected["Date"]) == callers["date"]
    else:
        sent = parsedate_to_datetime(str(got["Date"]))
        assert queued - timedelta(seconds=1) <= sent <= datetime.now(UTC) + timedelta(seconds=1)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("smtputf8", [True, False], ids=["relay-with-smtputf8", "relay-without"])
def test_a_non_ascii_local_part_goes_as_smtputf8_or_is_not_sent_with_the_reason(
    smtputf8: bool, relays: Any, run_worker: Any
) -> None:
    _theirs, ours = relays(smtputf8)
    sent = mail.EmailMessage(
        "Grüße", "Hallo Jürgen.", SENDER, ["Jürgen <jürgen@bücher.example>", "ann@x.example"]
    ).send()
    assert sent == 1
    run_worker()
    stored = Message.objects.get()
    if not smtputf8:
        assert stored.status == Status.NOT_SENT
        assert "SMTPUTF8" in stored.reason_text
        assert ours.messages == []
        return
    assert stored.status == Status.SENT, stored.reason_text
    [received] = ours.messages
    assert "SMTPUTF8" in received.mail_options
    assert sorted(received.rcpt_tos) == ["ann@x.example", "jürgen@bücher.example"]
    _check_wire(received.raw, utf8=True)
    # The header block read as UTF-8 text (RFC 6532), the body as bytes.
    head = received.raw.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    headers = Parser(policy=policy.default).parsestr(head, headersonly=True)
    assert [a.addr_spec for a in headers["To"].addresses] == [
        "jürgen@bücher.example",
        "ann@x.example",
    ]
    assert str(headers["Subject"]) == "Grüße"
    parsed = _parse(received.raw)
    assert parsed.get_payload(decode=True).decode() == "Hallo Jürgen.\r\n"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("smtputf8", [True, False], ids=["relay-with-smtputf8", "relay-without"])
def test_djangos_password_reset_mail_is_the_same_through_the_drop_in(
    smtputf8: bool, relays: Any, run_worker: Any, settings: Any
) -> None:
    from django.contrib.auth.forms import PasswordResetForm
    from django.contrib.auth.models import User

    theirs, ours = relays(smtputf8)
    settings.ROOT_URLCONF = "tests.shop_urls"
    settings.DEFAULT_FROM_EMAIL = SENDER
    User.objects.create_user("jürgen", "juergen@x.example", "a long passphrase")
    form = PasswordResetForm({"email": "juergen@x.example"})
    assert form.is_valid()
    # The link carries a token of the current second: both sends see the same one.
    with time_machine.travel(datetime.now(UTC), tick=False):
        settings.EMAIL_BACKEND = DJANGO_SMTP
        settings.EMAIL_HOST, settings.EMAIL_PORT = theirs.host, theirs.port
        form.save(domain_override="shop.example", use_https=True)
        settings.EMAIL_BACKEND = DROP_IN
        form.save(domain_override="shop.example", use_https=True)
    run_worker()

    assert Message.objects.get().status == Status.SENT
    [django_copy], [outbound_copy] = theirs.messages, ours.messages
    _check_wire(outbound_copy.raw, utf8=False)
    expected, got = _parse(django_copy.raw), _parse(outbound_copy.raw)
    assert _headers(got) == _headers(expected)
    assert _tree(got) == _tree(expected)
    assert "https://shop.example/shop/reset/" in _tree(got)["content"]
