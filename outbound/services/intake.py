"""Intake: every producer's way into the outbox.

Contract: ``queue_email`` stores one message in Waiting, inside the caller's
transaction, with its Message-ID made here once and for all, and writes the
first history line. Input that cannot be stored safely (header injection, an
unknown contact, an idempotency key reused for other content) raises an
``IntakeError`` and writes nothing. An address that is merely wrong is not an
intake error: the message is stored and validation makes it Not sent with the
reason, so the operator can see it and fix it.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import formataddr, getaddresses, parsedate_to_datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from outbound import conf
from outbound.errors import HeaderInjection, IdempotencyConflict, IntakeError, UnknownContact
from outbound.formats import stamp
from outbound.models import Attachment, Backend, Contact, Event, GlobalSettings, Message
from outbound.services.addresses import check_email
from outbound.services.bulk import insert_rows, new_instance
from outbound.states import Channel, Reason, Source, Status
from outbound.text import sentence, text_problem

# Headers a caller may not give, and why (the README lists them): Bcc would
# show the blind copies to every recipient (they go in the envelope only);
# Subject has its own field, and a second one would make two; the MIME
# headers describe the structure Outbound builds from the parts; Return-Path
# is written by the receiving server from the envelope sender.
REFUSED_HEADERS = {
    "bcc": "blind copies go in the envelope only (give them as bcc)",
    "subject": "the subject has its own field",
    "mime-version": "Outbound writes the MIME structure",
    "content-type": "Outbound writes the MIME structure",
    "content-transfer-encoding": "Outbound writes the MIME structure",
    "return-path": "the receiving server writes it from the envelope sender",
}
# Headers a caller may give as Django's EmailMessage(headers=...) does: the
# header changes, the envelope does not. A caller's Message-ID becomes the
# message's own (kept for its retries).
ADDRESS_OVERRIDES = frozenset({"from", "to", "cc", "reply-to"})
# A msg-id (RFC 5322 3.6.4): dot-atom-text @ dot-atom-text or [no-fold-literal].
_MSG_ID = re.compile(
    r"<[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"|\[[!-Z^-~]*\])>"
)
# Looked up once: TextChoices.values builds a new list on every call.
SOURCES = frozenset(Source.values)
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")
# C0 controls (but tab), DEL and the Unicode line separators: any of them in a
# header or an envelope address could start a new header or SMTP command.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029\x85]")


@dataclass(frozen=True)
class AttachmentIn:
    filename: str
    content: bytes
    content_type: str = "application/octet-stream"


def check_header_value(name: str, value: str) -> str:
    if _CONTROL.search(value):
        raise HeaderInjection(
            f"{name} contains a line break or control character; it was refused to prevent "
            "header injection."
        )
    return value


def check_text(name: str, value: str, *, max_length: int | None = None) -> str:
    """Refuse text the databases cannot store: NUL characters and lone UTF-16
    surrogates (PostgreSQL refuses both; SQLite would keep garbage)."""
    if not isinstance(value, str):
        raise IntakeError(f"{name} must be text.")
    problem = text_problem(value)
    if problem:
        raise IntakeError(sentence(name, problem))
    if max_length is not None and len(value) > max_length:
        raise IntakeError(f"{name} is {len(value)} characters long; the most is {max_length}.")
    return value


def check_moment(name: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if timezone.is_naive(value):
        raise IntakeError(f"{name} must carry a time zone.")
    try:
        value.astimezone(UTC)
    except OverflowError as err:
        raise IntakeError(f"{name} is out of range.") from err
    return value


def _address_list(name: str, value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    result = []
    for item in items:
        if not isinstance(item, str):
            raise IntakeError(f"{name} must be a list of text addresses, got {type(item).__name__}")
        check_header_value(name, item)
        check_text(name, item, max_length=998)
        item = item.strip()
        if item:
            result.append(item)
    return result


def _header_error(name: str, text: str, *, injection: bool = False) -> IntakeError:
    err = (HeaderInjection if injection else IntakeError)(text)
    err.field = f"headers.{name}"
    return err


def _check_override(name: str, value: str) -> None:
    """An address header given by the caller must hold addresses."""
    parts = [value] if name.lower() == "from" else _split_addresses(value)
    for part in parts:
        checked = check_email(part)
        if checked.error:
            raise _header_error(name, f"The {name} header is not usable: {checked.error}")


def _split_addresses(value: str) -> list[str]:
    """The entries of an address list, with their display names."""
    return [
        formataddr(pair) if pair[0] else pair[1]
        for pair in getaddresses([value])
        if pair[1] or pair[0]
    ] or [value]


def _headers(headers: Mapping[str, str] | None) -> tuple[dict[str, str], str | None]:
    """The extra headers to store, and the caller's Message-ID (if given)."""
    result: dict[str, str] = {}
    message_id = None
    seen: set[str] = set()
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise _header_error(str(name), f"{name!r} is not a valid header name.", injection=True)
        lower = name.lower()
        if lower in REFUSED_HEADERS:
            raise _header_error(
                name, f"The {name} header cannot be given: {REFUSED_HEADERS[lower]}."
            )
        if lower in seen:
            raise _header_error(name, f"The {name} header is given twice.")
        seen.add(lower)
        if not isinstance(value, str):
            raise _header_error(name, f"The value of header {name} must be text.")
        if _CONTROL.search(value):
            raise _header_error(
                name,
                f"Header {name} contains a line break or control character; it was refused to "
                "prevent header injection.",
                injection=True,
            )
        check_text(f"Header {name}", value, max_length=998)
        if lower == "message-id":
            message_id = _check_message_id(name, value.strip())
            continue
        if lower == "date":
            try:
                parsedate_to_datetime(value)
            except (TypeError, ValueError) as err:
                raise _header_error(
                    name, f"The Date header {value!r} is not an RFC 5322 date."
                ) from err
        elif lower in ADDRESS_OVERRIDES:
            _check_override(name, value)
        result[name] = value
    return result, message_id


def _check_message_id(name: str, value: str) -> str:
    if len(value) > 255 or not _MSG_ID.fullmatch(value):
        raise _header_error(
            name,
            f"The Message-ID {value!r} is not valid: it must look like <unique-part@domain>, "
            "at most 255 characters.",
        )
    used = Message.objects.filter(message_id=value).values_list("pk", flat=True).first()
    if used is not None:
        raise _header_error(
            name, f"The Message-ID {value} is already the Message-ID of message {used}."
        )
    return value


def make_message_id(from_address: str = "") -> str:
    """A new Message-ID: the time in microseconds (fixed-width hex, so a later
    ID sorts after an earlier one), 96 random bits, and the configured domain
    or the sender's.

    Time first, because a new ID then lands next to the last one in the
    unique index: random IDs cost SQLite an index page read and written per
    message once the index outgrows its cache (some 40 µs a message at
    300,000 messages, against 1 µs)."""
    domain = _id_domain(conf.message_id_domain(), from_address)
    return f"<{time.time_ns() // 1000:014x}.{os.urandom(12).hex()}@{domain}>"


def sms_message_id() -> str:
    """A Message-ID for an SMS, which has no sender address: with the domain
    the platform's email leaves from, as for an email without a from."""
    return make_message_id(_default_sender())


@functools.lru_cache(maxsize=256)
def _id_domain(configured: str, from_address: str) -> str:
    domain = configured
    if not domain and "@" in from_address:
        domain = from_address.rsplit("@", 1)[1].strip(" >")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            # Not a domain name (an empty or overlong label): as good as none.
            domain = ""
    if not domain or not re.fullmatch(r"[A-Za-z0-9.-]+", domain):
        domain = "outbound.local"
    return domain


def _content_hash(fields: dict[str, Any], attachments: Sequence[AttachmentIn]) -> str:
    payload = dict(fields)
    payload["attachments"] = [
        [a.filename, a.content_type, hashlib.sha256(a.content).hexdigest()] for a in attachments
    ]
    raw = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(raw).hexdigest()


def _resolve_contact(contact: Contact | int | None) -> Contact | None:
    if contact is None or isinstance(contact, Contact):
        return contact
    try:
        return Contact.objects.get(pk=contact)
    except (Contact.DoesNotExist, ValueError, TypeError) as err:
        raise UnknownContact(f"There is no contact with id {contact}.") from err


def _default_sender() -> str:
    """The from address an email without one will most likely leave with (the
    default email backend's, else the global settings' default), for the
    domain of its Message-ID. Validation decides the real sender later; a
    Message-ID only needs a domain of ours, not the final address."""
    backend_from = (
        Backend.objects.filter(channel=Channel.EMAIL, is_default=True)
        .values_list("from_address", flat=True)
        .first()
    )
    return backend_from or GlobalSettings.load().default_from


def _resolve_backend(backend: Backend | str | None, channel: str) -> Backend | None:
    if backend is None or isinstance(backend, Backend):
        return backend
    try:
        return Backend.objects.get(name=backend, channel=channel)
    except Backend.DoesNotExist as err:
        raise IntakeError(f"There is no {channel} backend named {backend!r}.") from err


# The furthest ahead a message may be scheduled: a reminder a few years out is
# plausible, a date beyond this is a mistyped year, and the message would sit
# in the outbox, counted as Waiting, for ever.
SEND_AT_HORIZON = timedelta(days=3652)


def _check_common(
    *,
    to_user: str,
    group_key: str,
    source: str,
    send_at: datetime | None,
    idempotency_key: str | None,
) -> None:
    """The checks every channel's intake makes of the fields they share."""
    check_header_value("To user", to_user)
    check_text("To user", to_user, max_length=200)
    check_text("The group key", group_key, max_length=200)
    if source not in SOURCES:
        raise IntakeError(f"Unknown source {source!r}; use one of {', '.join(Source.values)}.")
    check_moment("send_at", send_at)
    if send_at is not None and send_at - timezone.now() > SEND_AT_HORIZON:
        raise IntakeError(
            f"send_at {send_at.isoformat()} is more than {SEND_AT_HORIZON.days // 365} years "
            "ahead; check the year."
        )
    if idempotency_key is not None and not (0 < len(idempotency_key) <= 255):
        raise IntakeError("The idempotency key must be 1 to 255 characters long.")


def _build_email(
    *,
    to: str | Iterable[str] | None,
    contact: Contact | int | None,
    cc: str | Iterable[str] | None,
    bcc: str | Iterable[str] | None,
    reply_to: str | Iterable[str] | None,
    subject: str,
    text: str,
    html: str,
    attachments: Sequence[AttachmentIn],
    headers: Mapping[str, str] | None,
    from_address: str,
    to_user: str,
    send_at: datetime | None,
    idempotency_key: str | None,
    group_key: str,
    source: str,
    backend: Backend | str | None,
    template: str,
    context: dict[str, Any] | None,
    now: datetime,
    mime_body: bytes | None = None,
    default_sender: str | None = None,
) -> Message:
    resolved_contact = _resolve_contact(contact)
    to_list = _address_list("To", to)
    cc_list = _address_list("Cc", cc)
    bcc_list = _address_list("Bcc", bcc)
    reply_list = _address_list("Reply-To", reply_to)
    check_header_value("Subject", subject)
    check_header_value("From", from_address)
    check_text("Subject", subject, max_length=998)
    check_text("From", from_address, max_length=320)
    check_text("The text body", text)
    check_text("The HTML body", html)
    if len(", ".join(to_list)) > 1000:
        raise IntakeError("The To addresses together are longer than 1000 characters.")
    extra_headers, caller_message_id = _headers(headers)
    _check_common(
        to_user=to_user,
        group_key=group_key,
        source=source,
        send_at=send_at,
        idempotency_key=idempotency_key,
    )
    for a in attachments:
        check_header_value("Attachment file name", a.filename)
        check_header_value("Attachment content type", a.content_type)
    resolved_backend = _resolve_backend(backend, Channel.EMAIL)
    due = send_at or now
    fields = {
        "channel": Channel.EMAIL,
        "contact": resolved_contact.pk if resolved_contact else None,
        "to": to_list,
        "cc": cc_list,
        "bcc": bcc_list,
        "reply_to": reply_list,
        "from": from_address,
        "to_user": to_user,
        "subject": subject,
        "text": text,
        "html": html,
        "headers": extra_headers,
        "message_id": caller_message_id,
        "mime_body": hashlib.sha256(mime_body).hexdigest() if mime_body else None,
        "send_at": send_at.isoformat() if send_at else None,
        "group_key": group_key,
        "backend": resolved_backend.pk if resolved_backend else None,
    }
    message = new_instance(
        Message,
        channel=Channel.EMAIL,
        contact=resolved_contact,
        to=to_list,
        cc=cc_list,
        bcc=bcc_list,
        reply_to=reply_list,
        to_user=to_user or (resolved_contact.name if resolved_contact else ""),
        message_to=", ".join(to_list),
        from_address=from_address,
        subject=subject,
        text_body=text,
        html_body=html,
        headers=extra_headers,
        mime_body=mime_body,
        source=source,
        template=template,
        context=context or {},
        backend=resolved_backend,
        backend_chosen=resolved_backend is not None,
        status=Status.WAITING,
        reason_code=Reason.SCHEDULED if send_at and send_at > now else Reason.QUEUED,
        reason_text=_queued_text(source, send_at, now),
        status_changed_at=now,
        created_at=now,
        send_at=due,
        next_attempt_at=due,
        message_id=caller_message_id
        or make_message_id(
            from_address
            or (resolved_backend.from_address if resolved_backend else "")
            or (default_sender if default_sender is not None else _default_sender())
        ),
        idempotency_key=idempotency_key,
        content_hash=_content_hash(fields, attachments) if idempotency_key else "",
        group_key=group_key,
    )
    return message


# Who queued a message, as its first history line says it.
_QUEUED_BY = {
    Source.SYSTEM: "the system",
    Source.WORKFLOW: "a workflow",
    Source.MANUAL: "hand (console or command line)",
    Source.API: "the API",
    Source.DJANGO: "Django mail",
}


def _queued_text(source: str, send_at: datetime | None, now: datetime) -> str:
    by = _QUEUED_BY.get(Source(source), source) if source in SOURCES else source
    if send_at and send_at > now:
        return f"Queued by {by}; due at {stamp(send_at)}."
    return f"Queued by {by}; waiting for a worker to validate and send it."


def _creation_event(message: Message, actor: str) -> Event:
    return new_instance(
        Event,
        message_id=message.pk,
        created_at=message.created_at,
        kind=Event.Kind.TRANSITION,
        from_status="",
        to_status=Status.WAITING,
        reason_code=message.reason_code,
        text=message.reason_text,
        actor=actor,
    )


def _replay(scope: str, key: str, content_hash: str) -> Message:
    existing = Message.objects.get(idempotency_scope=scope, idempotency_key=key)
    if existing.content_hash != content_hash:
        raise IdempotencyConflict(
            f"The idempotency key {key!r} was already used for a different message "
            f"(id {existing.pk})."
        )
    return existing


def queue_email(
    *,
    to: str | Iterable[str] | None = None,
    contact: Contact | int | None = None,
    cc: str | Iterable[str] | None = None,
    bcc: str | Iterable[str] | None = None,
    reply_to: str | Iterable[str] | None = None,
    subject: str = "",
    text: str = "",
    html: str = "",
    attachments: Sequence[AttachmentIn] = (),
    headers: Mapping[str, str] | None = None,
    from_address: str = "",
    to_user: str = "",
    send_at: datetime | None = None,
    idempotency_key: str | None = None,
    idempotency_scope: str = "",
    group_key: str = "",
    source: str = Source.API,
    backend: Backend | str | None = None,
    template: str = "",
    context: dict[str, Any] | None = None,
    mime_body: bytes | None = None,
    actor: str = "system",
) -> Message:
    """Queue one email; return it (or, for a replayed idempotency key, the first one).

    ``idempotency_scope`` names whose key it is: the API passes its caller (one
    API key, one console user), so two callers' keys never meet; the CLI and
    Python callers share the empty scope.

    ``mime_body`` is the MIME entity of the body as the caller built it
    (its Content-* headers, a blank line, the content; CRLF lines), for
    structures the text, HTML and attachments fields cannot describe: the
    Django drop-in passes the body Django builds (alternatives, inline
    parts, charsets). It is sent as given under Outbound's headers; ``text``
    and ``html`` are then what the pages show.
    """
    now = timezone.now()
    message = _build_email(
        to=to,
        contact=contact,
        cc=cc,
        bcc=bcc,
        reply_to=reply_to,
        subject=subject,
        text=text,
        html=html,
        attachments=attachments,
        headers=headers,
        from_address=from_address,
        to_user=to_user,
        send_at=send_at,
        idempotency_key=idempotency_key,
        group_key=group_key,
        source=source,
        backend=backend,
        template=template,
        context=context,
        now=now,
        mime_body=mime_body,
    )
    message.idempotency_scope = idempotency_scope if idempotency_key else ""
    return _store_one(message, idempotency_key, actor, attachments)


# queue_email's keyword defaults, which bulk intake fills in the same way.
_EMAIL_DEFAULTS: dict[str, Any] = {
    name: param.default
    for name, param in inspect.signature(queue_email).parameters.items()
    if name not in ("actor", "idempotency_scope")
}


def queue_emails(items: Sequence[Mapping[str, Any]], *, actor: str = "system") -> list[Message]:
    """Queue many emails in one transaction (bulk intake).

    Each item takes the keyword arguments of ``queue_email`` except
    attachments and idempotency keys, which need the one-by-one path.
    """
    now = timezone.now()
    messages = []
    # Read once for the batch, not once per message.
    default_sender = _default_sender()
    for index, item in enumerate(items):
        if item.get("idempotency_key") or item.get("attachments"):
            raise IntakeError("Bulk intake takes no idempotency keys or attachments.")
        kwargs = dict(_EMAIL_DEFAULTS)
        unknown = item.keys() - _EMAIL_DEFAULTS.keys()
        if unknown:
            raise IntakeError(f"Unknown field(s): {', '.join(sorted(unknown))}.")
        kwargs.update(item)
        try:
            messages.append(_build_email(now=now, default_sender=default_sender, **kwargs))
        except IntakeError as err:
            err.index = index
            raise
    # Callers' Message-IDs were checked against the stored ones; two in the
    # same batch would meet only in the unique index.
    first_with: dict[str, int] = {}
    for index, message in enumerate(messages):
        earlier = first_with.setdefault(message.message_id, index)
        if earlier != index:
            twice = _header_error(
                "Message-ID",
                f"The Message-ID {message.message_id} is also given to message {earlier} "
                "of the batch.",
            )
            twice.index = index
            raise twice
    with transaction.atomic():
        insert_rows(Message, messages)
        insert_rows(Event, [_creation_event(m, actor) for m in messages])
    return messages


# ----------------------------------------------------------------------- SMS

# An SMS body is never split by us beyond the provider's own concatenation; a
# body this long is refused at intake rather than stored (the configurable
# segment maximum is checked at validation, where the operator can see it).
MAX_SMS_BODY = 5000


def _build_sms(
    *,
    to: str | None,
    contact: Contact | int | None,
    body: str,
    to_user: str,
    send_at: datetime | None,
    idempotency_key: str | None,
    group_key: str,
    source: str,
    backend: Backend | str | None,
    template: str,
    context: dict[str, Any] | None,
    now: datetime,
) -> Message:
    resolved_contact = _resolve_contact(contact)
    if to is not None and not isinstance(to, str):
        raise IntakeError(f"The number must be text, got {type(to).__name__}.")
    number = check_header_value("Number", check_text("The number", (to or "").strip()))
    if len(number) > 40:
        raise IntakeError("The number is longer than 40 characters.")
    if number and resolved_contact is not None:
        # The contact's mobile is looked up at validation (and again on every
        # re-send, after an operator fixes it); a second number would compete.
        raise IntakeError("Give a contact or a number, not both.")
    check_text("The SMS text", body)
    if len(body) > MAX_SMS_BODY:
        raise IntakeError(f"The SMS body is {len(body)} characters; the most is {MAX_SMS_BODY}.")
    _check_common(
        to_user=to_user,
        group_key=group_key,
        source=source,
        send_at=send_at,
        idempotency_key=idempotency_key,
    )
    resolved_backend = _resolve_backend(backend, Channel.SMS)
    due = send_at or now
    fields = {
        "channel": Channel.SMS,
        "contact": resolved_contact.pk if resolved_contact else None,
        "to": number,
        "to_user": to_user,
        "body": body,
        "send_at": send_at.isoformat() if send_at else None,
        "group_key": group_key,
        "backend": resolved_backend.pk if resolved_backend else None,
    }
    return new_instance(
        Message,
        channel=Channel.SMS,
        contact=resolved_contact,
        to=[number] if number else [],
        to_user=to_user or (resolved_contact.name if resolved_contact else ""),
        message_to=number,
        text_body=body,
        source=source,
        template=template,
        context=context or {},
        backend=resolved_backend,
        backend_chosen=resolved_backend is not None,
        status=Status.WAITING,
        reason_code=Reason.SCHEDULED if send_at and send_at > now else Reason.QUEUED,
        reason_text=_queued_text(source, send_at, now),
        status_changed_at=now,
        created_at=now,
        send_at=due,
        next_attempt_at=due,
        message_id=sms_message_id(),
        idempotency_key=idempotency_key,
        content_hash=_content_hash(fields, ()) if idempotency_key else "",
        group_key=group_key,
    )


def queue_sms(
    *,
    to: str | None = None,
    contact: Contact | int | None = None,
    body: str = "",
    to_user: str = "",
    send_at: datetime | None = None,
    idempotency_key: str | None = None,
    idempotency_scope: str = "",
    group_key: str = "",
    source: str = Source.API,
    backend: Backend | str | None = None,
    template: str = "",
    context: dict[str, Any] | None = None,
    actor: str = "system",
) -> Message:
    """Queue one SMS to a number or to a contact's mobile; return it (or, for a
    replayed idempotency key, the first one).

    The number is checked at validation, not here: a wrong number is stored
    and becomes Not sent with the reason, where the operator can fix it.
    """
    now = timezone.now()
    message = _build_sms(
        to=to,
        contact=contact,
        body=body,
        to_user=to_user,
        send_at=send_at,
        idempotency_key=idempotency_key,
        group_key=group_key,
        source=source,
        backend=backend,
        template=template,
        context=context,
        now=now,
    )
    message.idempotency_scope = idempotency_scope if idempotency_key else ""
    return _store_one(message, idempotency_key, actor)


def _store_one(
    message: Message,
    idempotency_key: str | None,
    actor: str,
    attachments: Sequence[AttachmentIn] = (),
) -> Message:
    """Store one built message with its attachments and first history line; a
    replayed idempotency key returns the first message instead."""
    scope = message.idempotency_scope
    if (
        idempotency_key
        and Message.objects.filter(
            idempotency_scope=scope, idempotency_key=idempotency_key
        ).exists()
    ):
        return _replay(scope, idempotency_key, message.content_hash)
    try:
        with transaction.atomic():
            message.save(force_insert=True)
            Attachment.objects.bulk_create(
                [
                    Attachment(
                        message=message,
                        filename=a.filename,
                        content_type=a.content_type,
                        content=a.content,
                    )
                    for a in attachments
                ]
            )
            _creation_event(message, actor).save(force_insert=True)
    except IntegrityError:
        # Two producers raced on the same key: the winner's message stands.
        if idempotency_key:
            return _replay(scope, idempotency_key, message.content_hash)
        raise
    return message


def choose_channel(contact: Contact) -> str:
    """The channel a notification to ``contact`` takes: SMS when SMS is enabled
    in the global settings and the contact prefers it, email otherwise."""
    if contact.preferred_channel == Channel.SMS and GlobalSettings.load().sms_enabled:
        return Channel.SMS
    return Channel.EMAIL


def notify_contact(
    contact: Contact | int,
    *,
    subject: str = "",
    text: str = "",
    html: str = "",
    sms_text: str | None = None,
    send_at: datetime | None = None,
    idempotency_key: str | None = None,
    idempotency_scope: str = "",
    group_key: str = "",
    source: str = Source.SYSTEM,
    template: str = "",
    context: dict[str, Any] | None = None,
    actor: str = "system",
) -> Message:
    """Tell a contact something on the channel they should get it on.

    ``sms_text`` is the SMS wording; without it the SMS carries the subject
    and the text body.
    """
    resolved = _resolve_contact(contact)
    assert resolved is not None
    if choose_channel(resolved) == Channel.SMS:
        body = sms_text if sms_text is not None else "\n".join(p for p in (subject, text) if p)
        return queue_sms(
            contact=resolved,
            body=body,
            send_at=send_at,
            idempotency_key=idempotency_key,
            idempotency_scope=idempotency_scope,
            group_key=group_key,
            source=source,
            template=template,
            context=context,
            actor=actor,
        )
    return queue_email(
        contact=resolved,
        subject=subject,
        text=text,
        html=html,
        send_at=send_at,
        idempotency_key=idempotency_key,
        idempotency_scope=idempotency_scope,
        group_key=group_key,
        source=source,
        template=template,
        context=context,
        actor=actor,
    )
