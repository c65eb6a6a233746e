"""Turn a stored message into RFC 5322 bytes. Pure: reads the objects given.

Most messages are plain: ASCII addresses and header values short enough for
one line, and a text or HTML body (encoded by the email package's own body
encoder: 7bit, quoted-printable or base64). For those the bytes
are written directly (``_plain_email``), byte for byte what the standard
library's policy-based ``EmailMessage`` makes of them (tests compare the two
on generated input); building and re-parsing every header through the header
registry cost about a millisecond per message. Everything else (non-ASCII,
header lines that need folding, 8-bit bodies, alternatives,
attachments, custom headers, Reply-To) goes through ``EmailMessage``.

Headers are 7-bit unless an address's local part is not ASCII (then the
SMTPUTF8 policy writes raw UTF-8): RFC 2047 words for names and text,
international domains as A-labels. A caller's From, To, Cc, Reply-To and
Date headers take the place of Outbound's; Date is otherwise the moment the
message was first handed to its backend (``date``). A message with a
``mime_body`` (the Django drop-in's) gets Outbound's header block in front
of that body, which is sent as the caller built it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from email import policy
from email.contentmanager import _encode_text  # type: ignore[attr-defined]
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime, getaddresses
from functools import lru_cache

import idna

from outbound.models import Attachment, Message, Recipient
from outbound.services.addresses import check_email
from outbound.services.intake import ADDRESS_OVERRIDES

# policy.SMTP's line length: a header line or body line longer than this is
# folded or encoded by the email package, so it takes the general path.
_MAX_LINE = 78
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# A dot-atom address with an ASCII domain: rendered as is.
_PLAIN_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
# A display name of atoms separated by single spaces: never quoted.
_PLAIN_NAME = re.compile(rf"{_ATEXT}(?: {_ATEXT})*")
_PLAIN_MAILBOX = re.compile(rf"{_PLAIN_NAME.pattern} <{_PLAIN_ADDRESS.pattern}>")
_PLAIN_MESSAGE_ID = re.compile(rf"<{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*>")
# Printable ASCII words separated by single spaces, nothing that looks like
# an encoded word: the folder leaves such a value alone.
_PLAIN_TEXT = re.compile(r"[!-~]+(?: [!-~]+)*")
_LINE_END = re.compile(r"\r\n|\r|\n")


def _needs_utf8(addresses: Sequence[str]) -> bool:
    """Whether any of these bare addresses has a non-ASCII local part: the
    one thing that needs SMTPUTF8 and raw UTF-8 headers (RFC 6531/6532).
    Everything else goes in 7-bit headers: RFC 2047 words for text, A-labels
    for international domains."""
    return any(not a.rpartition("@")[0].isascii() for a in addresses if "@" in a)


def _ascii_domain(domain: str) -> str:
    """An international domain as its A-label (xn--...), the only form a
    7-bit header may hold: RFC 2047 forbids an encoded word in an address."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        # Validation refuses such a domain first; left as it is, the email
        # package still writes a header the relay can refuse.
        return domain


def _mailbox(address: str, name: str = "", *, utf8: bool = True) -> Address:
    local, _, domain = address.rpartition("@")
    return Address(
        display_name=name, username=local, domain=domain if utf8 else _ascii_domain(domain)
    )


def _mailboxes(value: str, *, utf8: bool) -> list[Address] | str:
    """A caller's address header (From, To, Cc, Reply-To) as mailboxes, or the
    value itself when it does not parse as addresses."""
    pairs = [p for p in getaddresses([value]) if p[1]]
    if not pairs or any("@" not in addr for _, addr in pairs):
        return value
    return [_mailbox(addr, name, utf8=utf8) for name, addr in pairs]


def _override_addresses(headers: dict[str, str]) -> list[str]:
    return [
        addr
        for name, value in headers.items()
        if name.lower() in ADDRESS_OVERRIDES
        for _, addr in getaddresses([value])
    ]


def build_email(
    message: Message,
    recipients: Sequence[Recipient],
    attachments: Sequence[Attachment],
    *,
    date: datetime | None = None,
) -> bytes:
    """The message as it goes on the wire. ``date`` is the Date header: the
    moment the message is first handed to its backend (the dispatcher's);
    without it, the message's first attempt or its creation."""
    if not attachments and message.mime_body is None:
        plain = _plain_email(message, recipients, date)
        if plain is not None:
            return plain
    return _email_package(message, recipients, attachments, date)


def _date_header(message: Message, date: datetime | None) -> str:
    return format_datetime(date or message.first_attempt_at or message.created_at)


def _plain_mailbox(address: str, name: str) -> str | None:
    if not _PLAIN_ADDRESS.fullmatch(address):
        return None
    if not name:
        return address
    if not _PLAIN_NAME.fullmatch(name):
        return None
    return f"{name} <{address}>"


def _plain_body(text: str) -> tuple[str, bytes] | None:
    """The transfer encoding and wire bytes of a text body, as the email
    package encodes it (its own choice between 7bit, quoted-printable and
    base64); None for raw 8-bit, which is left to the email package."""
    cte, data = _encode_text(text, "utf-8", None, policy.SMTP)
    if cte not in ("7bit", "quoted-printable", "base64"):
        return None
    # The generator writes every line with CRLF.
    lines = _LINE_END.split(data)
    body = "\r\n".join(lines)
    return cte, body.encode("ascii")


def _plain_email(
    message: Message, recipients: Sequence[Recipient], date: datetime | None = None
) -> bytes | None:
    """The message's bytes written directly, or None when it is not plain."""
    if message.headers or message.reply_to:
        return None
    if message.text_body and message.html_body:
        return None
    sender = _sender(message.from_address)
    if not _PLAIN_ADDRESS.fullmatch(sender) and not _PLAIN_MAILBOX.fullmatch(sender):
        return None
    lines = [f"From: {sender}"]
    to: list[str] = []
    cc: list[str] = []
    tos = [r for r in recipients if r.kind == Recipient.Kind.TO]
    for r in recipients:
        if r.kind not in (Recipient.Kind.TO, Recipient.Kind.CC):
            continue
        name = r.name
        if len(tos) == 1 and r.kind == Recipient.Kind.TO and not name and message.to_user:
            name = message.to_user
        rendered = _plain_mailbox(r.address, name)
        if rendered is None:
            return None
        (to if r.kind == Recipient.Kind.TO else cc).append(rendered)
    if to:
        lines.append("To: " + ", ".join(to))
    elif not cc:
        lines.append("To: undisclosed-recipients:;")
    if cc:
        lines.append("Cc: " + ", ".join(cc))
    if not _PLAIN_TEXT.fullmatch(message.subject) or "=?" in message.subject:
        return None
    if not _PLAIN_MESSAGE_ID.fullmatch(message.message_id):
        return None
    lines += [
        f"Subject: {message.subject}",
        f"Date: {_date_header(message, date)}",
        f"Message-ID: {message.message_id}",
    ]
    if any(len(line) > _MAX_LINE for line in lines):
        return None
    if message.text_body or not message.html_body:
        subtype, encoded = "plain", _plain_body(message.text_body or "")
    else:
        subtype, encoded = "html", _plain_body(message.html_body)
    if encoded is None:
        return None
    cte, body = encoded
    lines += [
        f'Content-Type: text/{subtype}; charset="utf-8"',
        f"Content-Transfer-Encoding: {cte}",
        "MIME-Version: 1.0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode("ascii") + body


def _email_package(
    message: Message,
    recipients: Sequence[Recipient],
    attachments: Sequence[Attachment],
    date: datetime | None = None,
) -> bytes:
    headers = {str(k): str(v) for k, v in (message.headers or {}).items()}
    overrides = {k.lower(): v for k, v in headers.items() if k.lower() in _OVERRIDDEN}
    addresses = [r.address for r in recipients] + [envelope_sender(message.from_address)]
    utf8 = _needs_utf8(addresses + _override_addresses(headers))
    pol = policy.SMTPUTF8 if utf8 else policy.SMTP
    msg = EmailMessage(policy=pol)
    # A caller's From, To, Cc or Reply-To header replaces the one Outbound
    # would write, as in Django; the envelope stays as it is.
    if "from" in overrides:
        msg["From"] = _mailboxes(overrides["from"], utf8=utf8)
    else:
        msg["From"] = _sender(message.from_address, utf8)
    to = [_mailbox(r.address, r.name, utf8=utf8) for r in recipients if r.kind == Recipient.Kind.TO]
    cc = [_mailbox(r.address, r.name, utf8=utf8) for r in recipients if r.kind == Recipient.Kind.CC]
    if len(to) == 1 and message.to_user and not to[0].display_name:
        to = [_mailbox(to[0].addr_spec, message.to_user)]
    if "to" in overrides:
        msg["To"] = _mailboxes(overrides["to"], utf8=utf8)
    elif to:
        msg["To"] = to
    elif not cc and "cc" not in overrides:
        # Only Bcc recipients: say so rather than leak them.
        msg["To"] = "undisclosed-recipients:;"
    if "cc" in overrides:
        msg["Cc"] = _mailboxes(overrides["cc"], utf8=utf8)
    elif cc:
        msg["Cc"] = cc
    if "reply-to" in overrides:
        msg["Reply-To"] = _mailboxes(overrides["reply-to"], utf8=utf8)
    elif message.reply_to:
        msg["Reply-To"] = [_reply_mailbox(raw, utf8) for raw in message.reply_to]
    msg["Subject"] = _text_header("Subject", message.subject, utf8=utf8)
    msg["Date"] = overrides.get("date") or _date_header(message, date)
    msg["Message-ID"] = message.message_id
    for name, value in headers.items():
        if name.lower() not in _OVERRIDDEN:
            msg[name] = _text_header(name, value, utf8=utf8)
    if message.mime_body is not None:
        # The caller's own MIME body (Django's, from the drop-in) under
        # these headers: the header block, then its Content-* lines and
        # content as they were built.
        head = msg.as_bytes(policy=pol)
        return head[:-2] + b"MIME-Version: 1.0\r\n" + bytes(message.mime_body)
    if message.text_body or not message.html_body:
        msg.set_content(message.text_body or "")
        if message.html_body:
            msg.add_alternative(message.html_body, subtype="html")
    else:
        msg.set_content(message.html_body, subtype="html")
    for a in attachments:
        maintype, _, subtype = a.content_type.partition("/")
        msg.add_attachment(
            bytes(a.content),
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=a.filename,
        )
    return msg.as_bytes(policy=pol)


class _EncodedText(str):
    """A non-ASCII text header (Subject, a custom header) as RFC 2047 words,
    folded by ``email.header.Header``: the email package's own folder drops
    the space where it splits a long value between two encoded words
    ("Bücherei Köln" arrives as "BüchereiKöln"). The policy writes an object
    with a ``name`` through its ``fold``, as it does its own header objects."""

    name: str

    def __new__(cls, name: str, value: str) -> _EncodedText:
        made = super().__new__(cls, value)
        made.name = name
        return made

    def fold(self, *, policy: Policy) -> str:
        linesep = policy.linesep
        words = Header(str(self), "utf-8", header_name=self.name).encode(linesep=linesep)
        return f"{self.name}: {words}{linesep}"


def _text_header(name: str, value: str, *, utf8: bool) -> str:
    if utf8 or value.isascii():
        return value
    return _EncodedText(name, value)


# Headers of the caller's that take the place of Outbound's own.
_OVERRIDDEN = ADDRESS_OVERRIDES | {"date"}


def _reply_mailbox(raw: str, utf8: bool) -> Address | str:
    checked = check_email(raw)
    if checked.error:
        return raw
    return _mailbox(checked.address, checked.name, utf8=utf8)


# Both are pure functions of one string, and a worker sees the same few
# sender addresses over and over.
@lru_cache(maxsize=1024)
def _sender(raw: str, utf8: bool = True) -> str:
    checked = check_email(raw)
    if checked.error:
        return raw
    return str(_mailbox(checked.address, checked.name, utf8=utf8))


@lru_cache(maxsize=1024)
def envelope_sender(raw: str) -> str:
    return check_email(raw).address
