"""Delivery receipts: what an SMS provider says happened after it took a message.

Contract: ``record_receipt`` finds the message by the provider's id (the id
kept on the attempt that sent it, for the backend the receipt came through),
writes one history line per receipt and, for the message's latest send, the
receipt status, code and time shown on its page. The status stays Sent: Sent
means the provider took the message, and a receipt only adds what happened
next. A receipt for an unknown id changes nothing and is logged. A final
receipt (delivered, undelivered, failed) is never overwritten by a late
intermediate one (sent, queued), nor by one the provider dated earlier than
the receipt shown: receipts arrive in any order (a retried callback comes
after a later one), so the provider's time decides when both receipts carry
one, the order of arrival otherwise. A receipt recorded already (same send,
status, error code and provider time: a provider's retry, or a replayed
request) is answered as such and recorded once.

``receive_twilio_receipt`` and ``receive_gateway_receipt`` take a receipt as
it arrived at the hooks: they first check that the provider sent it (Twilio's
X-Twilio-Signature, made with the backend's auth token; a gateway's
``Authorization: Bearer <receipt secret>``), raising ``ReceiptRefused``
otherwise, then read its fields (``MalformedReceipt``) and record it. The
secrets are decrypted only to check and are never logged nor put in an
error's text.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import transaction
from django.utils import timezone
from twilio.request_validator import RequestValidator

from outbound import secrets
from outbound.errors import SecretError
from outbound.formats import stamp
from outbound.models import Attempt, Backend, Event, Message

logger = logging.getLogger(__name__)

FINAL = frozenset({"delivered", "undelivered", "failed", "read", "canceled"})
INTERMEDIATE = frozenset(
    {"accepted", "queued", "sending", "sent", "scheduled", "partially_delivered"}
)
KNOWN = FINAL | INTERMEDIATE

MEANING = {
    "accepted": "the provider accepted it",
    "queued": "the provider queued it",
    "sending": "the provider is handing it to the carrier",
    "sent": "the carrier took it; no confirmation from the handset yet",
    "delivered": "the handset received it",
    "read": "the recipient read it",
    "undelivered": "the carrier could not deliver it",
    "failed": "the provider could not send it",
    "canceled": "the provider cancelled it before sending",
    "scheduled": "the provider holds it for a later time",
    "partially_delivered": "some segments reached the handset",
}

# Twilio's commonest delivery error codes, from its public error dictionary.
TWILIO_ERRORS = {
    "30001": "queue overflow at the provider",
    "30002": "the provider account is suspended",
    "30003": "the handset is unreachable (switched off or out of coverage)",
    "30004": "the message was blocked (the recipient or the carrier blocks it)",
    "30005": "unknown destination handset (the number does not exist)",
    "30006": "landline or unreachable carrier",
    "30007": "filtered by the carrier as spam or policy violation",
    "30008": "unknown error from the carrier",
    "30034": "the sender number is not registered for A2P 10DLC",
    "21610": "the recipient replied STOP and unsubscribed",
}


@dataclass(frozen=True)
class ReceiptResult:
    message_id: int | None
    recorded: bool
    text: str


def _stamp(moment: datetime | None) -> str:
    return moment.astimezone(UTC).isoformat() if moment is not None else ""


def _provider_time(data: Mapping[str, object]) -> datetime | None:
    raw = data.get("provider_at")
    if not isinstance(raw, str) or not raw:
        return None
    return datetime.fromisoformat(raw)


class MalformedReceipt(ValueError):
    """A receipt without the fields every receipt has."""


class ReceiptRefused(Exception):
    """The receipt's signature or shared secret does not match, or cannot be
    checked: nothing says the provider sent it."""


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_receipt(provider_id: object, status: object, error_code: object) -> tuple[str, str, str]:
    """The receipt's fields as clean text; raises MalformedReceipt."""
    if isinstance(provider_id, int) and not isinstance(provider_id, bool):
        # Gateways with numeric ids: the send side kept them as text.
        provider_id = str(provider_id)
    if not isinstance(provider_id, str) or not provider_id.strip():
        raise MalformedReceipt("The receipt has no message id.")
    if len(provider_id) > 200:
        raise MalformedReceipt("The message id is longer than 200 characters.")
    if not provider_id.isprintable() or not _encodable(provider_id):
        raise MalformedReceipt("The message id contains control or invalid characters.")
    if not isinstance(status, str) or status.strip().lower() not in KNOWN:
        raise MalformedReceipt(f"The status must be one of {', '.join(sorted(KNOWN))}.")
    if error_code is None:
        error_code = ""
    if isinstance(error_code, int) and not isinstance(error_code, bool):
        error_code = str(error_code)
    if (
        not isinstance(error_code, str)
        or len(error_code) > 20
        or not error_code.isprintable()
        or not _encodable(error_code)
    ):
        raise MalformedReceipt("The error code must be text of at most 20 characters.")
    return provider_id.strip(), status.strip().lower(), error_code.strip()


def describe(status: str, code: str, *, provider: str) -> str:
    text = f"{status}: {MEANING.get(status, status)}"
    if code:
        known = TWILIO_ERRORS.get(code) if provider == "twilio" else None
        text += f" (error {code}{': ' + known if known else ''})"
    return text


def record_receipt(
    backend: Backend,
    *,
    provider_id: str,
    status: str,
    error_code: str = "",
    provider_at: datetime | None = None,
    at: datetime | None = None,
) -> ReceiptResult:
    """Record one delivery receipt for a message sent through ``backend``.

    ``provider_at`` is when the provider says the status was reached (None
    when the receipt does not say); ``at`` is when it arrived.
    """
    now = at or timezone.now()
    attempt = (
        Attempt.objects.filter(backend=backend, provider_id=provider_id)
        .order_by("-started_at", "-id")
        .first()
    )
    if attempt is None:
        logger.info(
            "receipt for unknown provider id %s on backend %s ignored", provider_id, backend.name
        )
        return ReceiptResult(None, False, f"No message was sent with id {provider_id}.")
    text = (
        f"Delivery receipt from {backend.get_kind_display()} ({backend.name}) for "
        f"{provider_id}: {describe(status, error_code, provider=backend.kind)}"
    )
    text += f", at {stamp(provider_at)} by the provider's clock." if provider_at else "."
    with transaction.atomic():
        # The message row's lock orders receipts of one message, so of two
        # copies of the same receipt arriving at once the second sees the first.
        message = Message.objects.select_for_update().get(pk=attempt.message_id)
        receipts_of_send = Event.objects.filter(
            message=message, kind=Event.Kind.NOTE, data__attempt=attempt.pk
        )
        if receipts_of_send.filter(
            data__status=status, data__error_code=error_code, data__provider_at=_stamp(provider_at)
        ).exists():
            logger.info(
                "receipt %s for %s on backend %s already recorded",
                status,
                provider_id,
                backend.name,
            )
            return ReceiptResult(message.pk, False, f"This receipt ({status}) is recorded already.")
        latest = (
            Attempt.objects.filter(message_id=message.pk, outcome=Attempt.Outcome.SENT)
            .order_by("-started_at", "-id")
            .values_list("id", flat=True)
            .first()
        )
        shown_event = (
            receipts_of_send.filter(data__shown=True).order_by("-created_at", "-id").first()
        )
        shown_at = _provider_time(shown_event.data) if shown_event else None
        current_is_final = message.receipt_status in FINAL
        older = provider_at is not None and shown_at is not None and provider_at < shown_at
        shown = (
            latest == attempt.pk and not (current_is_final and status not in FINAL) and not older
        )
        if latest != attempt.pk:
            text += " It is about an earlier send of this message; the page keeps the latest."
        elif older:
            text += (
                f" It is older than the receipt on the page ({message.receipt_status}, at "
                f"{stamp(shown_at)}), which stays."
            )
        elif not shown:
            text += f" The earlier final receipt ({message.receipt_status}) stays on the page."
        Event.objects.create(
            message=message,
            created_at=now,
            kind=Event.Kind.NOTE,
            reason_code=f"receipt_{status}",
            text=text,
            actor=f"{backend.kind}:{backend.name}"[:150],
            data={
                "provider_id": provider_id,
                "status": status,
                "error_code": error_code,
                "provider_at": _stamp(provider_at),
                "attempt": attempt.pk,
                "shown": shown,
            },
        )
        if shown:
            Message.objects.filter(pk=message.pk).update(
                receipt_status=status, receipt_code=error_code, receipt_at=provider_at or now
            )
    return ReceiptResult(message.pk, True, text)


def _stored_secret(backend: Backend, ciphertext: str) -> str:
    """A backend's secret in clear, to check a receipt with; "" when none is set."""
    try:
        return secrets.decrypt(ciphertext, owner=f"backend {backend.name}")
    except SecretError as err:
        logger.error("receipt for backend %s refused: its secret cannot be read", backend.name)
        raise ReceiptRefused("The receipt cannot be checked.") from err


def _check_and_record(
    backend: Backend,
    provider_id: object,
    status: object,
    error_code: object,
    provider_at: datetime | None,
) -> ReceiptResult:
    sid, state, code = check_receipt(provider_id, status, error_code)
    return record_receipt(
        backend, provider_id=sid, status=state, error_code=code, provider_at=provider_at
    )


def twilio_done_date(raw: str | None) -> datetime | None:
    """Twilio's ``RawDlrDoneDate`` (the carrier's ``YYMMDDhhmm``, UTC), sent
    with a delivered or undelivered status; None when absent or unreadable,
    since Twilio would retry a refused callback for hours over it."""
    if not raw:
        return None
    try:
        return datetime.strptime(raw.strip(), "%y%m%d%H%M").replace(tzinfo=UTC)
    except ValueError:
        logger.info("Twilio receipt with an unreadable RawDlrDoneDate ignored its date")
        return None


def gateway_time(raw: object) -> datetime | None:
    """A gateway receipt's ``at``: ISO 8601 with an offset, or Unix seconds."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        try:
            return datetime.fromtimestamp(raw, tz=UTC)
        except (OverflowError, OSError, ValueError) as err:
            raise MalformedReceipt("at is not a time (Unix seconds out of range).") from err
    if not isinstance(raw, str) or len(raw) > 40:
        raise MalformedReceipt("at must be an ISO 8601 time with an offset, or Unix seconds.")
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError as err:
        raise MalformedReceipt(
            "at must be an ISO 8601 time with an offset, e.g. 2026-05-01T10:02:03Z."
        ) from err
    if moment.tzinfo is None:
        raise MalformedReceipt("at needs an offset (Z or +02:00): a bare time is ambiguous.")
    return moment


def receive_twilio_receipt(
    backend: Backend, *, url: str, params: Mapping[str, str], signature: str
) -> ReceiptResult:
    """A status callback Twilio posted to ``url`` (the address it signed) with
    the form ``params``: checked against ``signature``, then recorded.

    Raises ReceiptRefused (the signature is missing or does not match, or the
    auth token cannot be read) or MalformedReceipt.
    """
    token = _stored_secret(backend, backend.secret)
    if (
        not token
        or not signature
        or not RequestValidator(token).validate(url, dict(params), signature)
    ):
        logger.warning("receipt for backend %s refused: bad signature", backend.name)
        raise ReceiptRefused("The request signature does not match.")
    return _check_and_record(
        backend,
        params.get("MessageSid"),
        params.get("MessageStatus") or params.get("SmsStatus"),
        params.get("ErrorCode"),
        twilio_done_date(params.get("RawDlrDoneDate")),
    )


def receive_gateway_receipt(backend: Backend, *, authorization: str, body: bytes) -> ReceiptResult:
    """A receipt an HTTP gateway posted: ``authorization`` (the header) must be
    ``Bearer <receipt secret>``, then ``body`` is read as ``{"id": …,
    "status": …, "error_code": …, "at": …}`` and recorded (``at``, optional,
    is when the gateway saw the status).

    Raises ReceiptRefused (no receipt secret is set, it does not match, or it
    cannot be read) or MalformedReceipt. The secret is checked before the body
    is read, so a stranger learns nothing about what a receipt must look like.
    """
    expected = _stored_secret(backend, backend.receipt_secret)
    if not expected or not hmac.compare_digest(
        authorization.encode(), f"Bearer {expected}".encode()
    ):
        logger.warning("receipt for backend %s refused: wrong shared secret", backend.name)
        raise ReceiptRefused("The shared secret does not match.")
    try:
        fields = json.loads(body)
    except (ValueError, RecursionError) as err:
        # RecursionError: nesting deeper than the parser goes.
        raise MalformedReceipt("The body is not JSON.") from err
    if not isinstance(fields, dict):
        raise MalformedReceipt('The body must be a JSON object: {"id": ..., "status": ...}.')
    return _check_and_record(
        backend,
        fields.get("id"),
        fields.get("status"),
        fields.get("error_code"),
        gateway_time(fields.get("at")),
    )
