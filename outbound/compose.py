"""Turn a stored message into RFC 5322 bytes. Pure: reads the objects given."""

from __future__ import annotations

from collections.abc import Sequence
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from outbound.models import Attachment, Message, Recipient
from outbound.services.addresses import check_email


def _needs_utf8(addresses: Sequence[str]) -> bool:
    return any(not a.split("@", 1)[0].isascii() for a in addresses if "@" in a)


def _mailbox(address: str, name: str = "") -> Address:
    local, _, domain = address.rpartition("@")
    return Address(display_name=name, username=local, domain=domain)


def build_email(
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


def _sender(raw: str) -> str:
    checked = check_email(raw)
    if checked.error:
        return raw
    return str(_mailbox(checked.address, checked.name))


def envelope_sender(raw: str) -> str:
    return check_email(raw).address
