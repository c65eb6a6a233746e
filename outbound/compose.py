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
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from email import policy
from email.contentmanager import _encode_text  # type: ignore[attr-defined]
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from functools import lru_cache

from outbound.models import Attachment, Message, Recipient
from outbound.services.addresses import check_email

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
    return any(not a.split("@", 1)[0].isascii() for a in addresses if "@" in a)


def _mailbox(address: str, name: str = "") -> Address:
    local, _, domain = address.rpartition("@")
    return Address(display_name=name, username=local, domain=domain)


def build_email(
    message: Message, recipients: Sequence[Recipient], attachments: Sequence[Attachment]
) -> bytes:
    if not attachments:
        plain = _plain_email(message, recipients)
        if plain is not None:
            return plain
    return _email_package(message, recipients, attachments)


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


def _plain_email(message: Message, recipients: Sequence[Recipient]) -> bytes | None:
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
        f"Date: {format_datetime(message.created_at)}",
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
    message: Message, recipients: Sequence[Recipient], attachments: Sequence[Attachment]
) -> bytes:
    addresses = [r.address for r in recipients] + [message.from_address]
    pol = policy.SMTPUTF8 if _needs_utf8(addresses) else policy.SMTP
    msg = EmailMessage(policy=pol)
    sender = _sender(message.from_address)
    msg["From"] = sender
    to = [_mailbox(r.address, r.name) for r in recipients if r.kind == Recipient.Kind.TO]
    cc = [_mailbox(r.address, r.name) for r in recipients if r.kind == Recipient.Kind.CC]
    if to:
        if len(to) == 1 and message.to_user and not to[0].display_name:
            to = [_mailbox(to[0].addr_spec, message.to_user)]
        msg["To"] = to
    elif not cc:
        # Only Bcc recipients: say so rather than leak them.
        msg["To"] = "undisclosed-recipients:;"
    if cc:
        msg["Cc"] = cc
    if message.reply_to:
        msg["Reply-To"] = ", ".join(message.reply_to)
    msg["Subject"] = message.subject
    msg["Date"] = format_datetime(message.created_at)
    msg["Message-ID"] = message.message_id
    for name, value in message.headers.items():
        msg[name] = value
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


# Both are pure functions of one string, and a worker sees the same few
# sender addresses over and over.
@lru_cache(maxsize=1024)
def _sender(raw: str) -> str:
    checked = check_email(raw)
    if checked.error:
        return raw
    return str(_mailbox(checked.address, checked.name))


@lru_cache(maxsize=1024)
def envelope_sender(raw: str) -> str:
    return check_email(raw).address
