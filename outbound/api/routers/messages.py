"""Messages: create one or many, list, detail, and the operator actions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Field, Header, Path, Query, Router, Schema, Status

from outbound.api.auth import READ, WRITE, principal
from outbound.api.errors import ApiError
from outbound.api.filters import TimedMessageFilters
from outbound.api.ratelimit import check_rate
from outbound.api.render import (
    attempt_out,
    event_out,
    explanation_out,
    message_out,
    recipient_out,
)
from outbound.api.schemas import (
    MAX_ID,
    ActionOut,
    BatchIn,
    BatchOut,
    ChannelName,
    Checked,
    ErrorOut,
    MessageDetailOut,
    MessageIn,
    MessageOut,
    MessagePageOut,
    StatusName,
)
from outbound.errors import IntakeError, UnknownContact
from outbound.explain import explain_message
from outbound.models import Backend, Contact, Message
from outbound.selectors import PAGE_SIZE, Cursor, message_page
from outbound.services import intake, operations, replays
from outbound.states import Source

router = Router(tags=["messages"])

ERRORS: dict[int, Any] = {code: ErrorOut for code in (400, 401, 403, 404, 409, 413, 422, 429)}


def _message_or_404(message_id: int) -> Message:
    message = Message.objects.select_related("backend").filter(pk=message_id).first()
    if message is None:
        raise ApiError(404, f"There is no message {message_id}.")
    return message


def _contact_ref(payload: MessageIn) -> int | None:
    if payload.contact_external_id is not None:
        pk = (
            Contact.objects.filter(external_id=payload.contact_external_id)
            .values_list("pk", flat=True)
            .first()
        )
        if pk is None:
            raise UnknownContact(
                f"There is no contact with external id {payload.contact_external_id!r}."
            )
        return pk
    return payload.contact_id


# Fields an SMS has no use for; giving one is a mistake worth saying.
EMAIL_ONLY = ("cc", "bcc", "reply_to", "subject", "html", "headers", "from_")


def _intake(payload: MessageIn) -> tuple[Callable[..., Message], dict[str, Any]]:
    """The intake service and its arguments for one message of the API."""
    channel = payload.channel
    if channel == "auto":
        if payload.contact_id is None and payload.contact_external_id is None:
            raise ApiError(
                422,
                "The channel auto picks a contact's channel; give contact_id or "
                "contact_external_id.",
                details={"channel": ["auto needs a contact."]},
            )
        unused = {
            ("from" if name == "from_" else name): ["Not used with channel auto."]
            for name in ("to", "cc", "bcc", "reply_to", "headers", "from_", "to_user")
            if getattr(payload, name)
        }
        if unused:
            raise ApiError(
                422,
                "The channel auto writes to the contact, with a subject and text only.",
                details=unused,
            )
        return intake.notify_contact, {
            "contact": _contact_ref(payload),
            "subject": payload.subject,
            "text": payload.text,
            "html": payload.html,
            "sms_text": payload.sms_text,
            "send_at": payload.send_at,
            "group_key": payload.group_key,
            "source": Source.API,
        }
    if channel == "sms":
        errors = {
            ("from" if name == "from_" else name): ["Not used by an SMS."]
            for name in EMAIL_ONLY
            if getattr(payload, name)
        }
        if len(payload.to) > 1:
            errors["to"] = ["An SMS goes to one number; send one message per number."]
        if payload.to and (payload.contact_id or payload.contact_external_id):
            errors["to"] = ["Give a contact or a number, not both."]
        if payload.sms_text is not None:
            errors["sms_text"] = ["Only for channel auto; put the SMS text in text."]
        if errors:
            raise ApiError(422, "The SMS has fields it cannot use.", details=errors)
        return intake.queue_sms, {
            "to": payload.to[0] if payload.to else None,
            "contact": _contact_ref(payload),
            "body": payload.text,
            "to_user": payload.to_user,
            "send_at": payload.send_at,
            "group_key": payload.group_key,
            "source": Source.API,
        }
    if payload.sms_text is not None:
        raise ApiError(
            422,
            "sms_text is only for channel auto.",
            details={"sms_text": ["Only for channel auto."]},
        )
    return intake.queue_email, _email_kwargs(payload)


def _email_kwargs(payload: MessageIn) -> dict[str, Any]:
    return {
        "to": payload.to,
        "contact": _contact_ref(payload),
        "cc": payload.cc,
        "bcc": payload.bcc,
        "reply_to": payload.reply_to,
        "subject": payload.subject,
        "text": payload.text,
        "html": payload.html,
        "headers": payload.headers,
        "from_address": payload.from_,
        "to_user": payload.to_user,
        "send_at": payload.send_at,
        "group_key": payload.group_key,
        "source": Source.API,
    }


IDEMPOTENCY_KEY = Header(
    None,
    alias="Idempotency-Key",
    min_length=1,
    max_length=255,
    description="Makes a retry safe: see the operation's description.",
)


def _idempotent(
    request: HttpRequest,
    response: HttpResponse,
    key: str | None,
    produce: Callable[[], tuple[int, Any]],
) -> Status[Any]:
    """Run ``produce`` once per (caller, Idempotency-Key); a replay gets the first answer."""
    if key is None:
        status, body = produce()
        return Status(status, body)
    answer = replays.answer_once(
        owner=principal(request).rate_key,
        key=key,
        method=request.method or "POST",
        path=request.path,
        request_hash=replays.request_hash(request.body),
        produce=produce,
    )
    if answer.replayed:
        response["Idempotent-Replayed"] = "true"
    return Status(answer.status, answer.body)


def _json(schema: type[Schema], data: dict[str, Any]) -> dict[str, Any]:
    # What is stored for a replay is what the client was sent: the response
    # schema's JSON form.
    return schema.model_validate(data).model_dump(mode="json")


@router.post(
    "/messages",
    response={201: MessageOut, 200: MessageOut, **ERRORS},
    auth=WRITE,
    summary="Create a message",
    description=(
        "Queue one message. With an `Idempotency-Key` header, a repeat of the same request "
        "by the same caller (API key or console user) within 24 hours answers with the first "
        "response, the same status code and body, and the header `Idempotent-Replayed: true`; "
        "the same key with a different body is 409. A refused request stores nothing. The key "
        "is also kept on the message: after 24 hours a repeat answers 200 with the message in "
        "its current state."
    ),
)
def create_message(
    request: HttpRequest,
    response: HttpResponse,
    payload: MessageIn,
    idempotency_key: str | None = IDEMPOTENCY_KEY,
) -> Status[Any]:
    who = principal(request)

    def produce() -> tuple[int, Any]:
        started = timezone.now()
        queue, kwargs = _intake(payload)
        message = queue(
            **kwargs,
            idempotency_key=idempotency_key,
            idempotency_scope=who.rate_key,
            actor=who.actor,
        )
        # The message table knows the key too (any producer may use it): a
        # message made before this request is a replay the store had forgotten.
        replayed = message.created_at < started
        if replayed:
            response["Idempotent-Replayed"] = "true"
        return (200 if replayed else 201), _json(MessageOut, message_out(message))

    return _idempotent(request, response, idempotency_key, produce)


@router.post(
    "/messages/batch",
    response={201: BatchOut, **ERRORS},
    auth=WRITE,
    summary="Create many messages",
    description=(
        "All or nothing: if any message is refused, none is stored. With an "
        "`Idempotency-Key` header, a repeat of the same request by the same caller within "
        "24 hours answers with the first response and `Idempotent-Replayed: true`, creating "
        "nothing; the same key with a different body is 409."
    ),
)
def create_messages(
    request: HttpRequest,
    response: HttpResponse,
    payload: BatchIn,
    idempotency_key: str | None = IDEMPOTENCY_KEY,
) -> Status[Any]:
    who = principal(request)

    def produce() -> tuple[int, Any]:
        items: list[tuple[int, dict[str, Any]]] = []
        calls: list[Callable[..., Message]] = []
        errors: dict[str, list[str]] = {}
        for index, message_in in enumerate(payload.messages):
            try:
                queue, kwargs = _intake(message_in)
            except UnknownContact as err:
                errors[f"messages.{index}.contact"] = [str(err)]
            except ApiError as err:
                for field, problems in (err.details or {"channel": [err.message]}).items():
                    errors[f"messages.{index}.{field}"] = list(problems)
            else:
                items.append((index, kwargs))
                calls.append(queue)
        wanted = {item["contact"] for _, item in items if item.get("contact") is not None}
        known = set(Contact.objects.filter(pk__in=wanted).values_list("pk", flat=True))
        for index, item in items:
            if item.get("contact") is not None and item["contact"] not in known:
                errors[f"messages.{index}.contact"] = [
                    f"There is no contact with id {item['contact']}."
                ]
        if errors:
            raise ApiError(
                422,
                "Some messages were refused; none was stored.",
                code="invalid_input",
                details=errors,
            )
        if all(call is intake.queue_email for call in calls):
            messages = intake.queue_emails([item for _, item in items], actor=who.actor)
        else:
            # SMS and channel-picking messages go one by one, all or nothing.
            messages = []
            with transaction.atomic():
                for call, (index, item) in zip(calls, items, strict=True):
                    try:
                        messages.append(call(**item, actor=who.actor))
                    except IntakeError as err:
                        err.index = index
                        raise
        data = {"count": len(messages), "messages": [message_out(m) for m in messages]}
        return 201, _json(BatchOut, data)

    return _idempotent(request, response, idempotency_key, produce)


class MessageQuery(Checked):
    status: StatusName | None = None
    channel: ChannelName | None = None
    backend: str | None = Field(None, max_length=100, description="Backend id or name.")
    created_after: datetime | None = None
    created_before: datetime | None = None
    q: str | None = Field(
        None,
        max_length=200,
        description="Recipient, name or subject; or a whole Message-ID or relay queue id.",
    )
    cursor: str | None = Field(None, max_length=200)
    limit: int = Field(PAGE_SIZE, ge=1, le=200)


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return value
    try:
        aware = value if timezone.is_aware(value) else timezone.make_aware(value)
        # A time near year 1 or 9999 can overflow once the database needs UTC.
        aware.astimezone(UTC)
    except (ValueError, OverflowError) as err:
        raise ApiError(422, f"{name} is not a valid time.", details={name: [str(err)]}) from err
    return aware


def _backend_id(ref: str | None) -> int | None:
    if not ref:
        return None
    if ref.isdigit() and int(ref) <= MAX_ID:
        found = Backend.objects.filter(pk=int(ref)).values_list("pk", flat=True).first()
    else:
        found = Backend.objects.filter(name=ref).values_list("pk", flat=True).first()
    if found is None:
        raise ApiError(422, f"There is no backend {ref!r}.", details={"backend": ["Unknown."]})
    return found


@router.get(
    "/messages",
    response={200: MessagePageOut, **ERRORS},
    auth=READ,
    summary="List messages",
    description="Newest first. Follow `next_cursor` for older pages.",
)
def list_messages(request: HttpRequest, query: MessageQuery = Query(...)) -> dict[str, Any]:  # noqa: B008
    before = None
    if query.cursor:
        before = Cursor.decode(query.cursor)
        if before is None:
            raise ApiError(
                400,
                "The cursor is not valid; use next_cursor from a previous page.",
                code="invalid_cursor",
                details={"cursor": ["Not a cursor this API gave out."]},
            )
    filters = TimedMessageFilters(
        status=query.status or "",
        channel=query.channel or "",
        backend=_backend_id(query.backend),
        q=query.q or "",
        created_after=_aware(query.created_after, "created_after"),
        created_before=_aware(query.created_before, "created_before"),
    )
    page = message_page(filters, before=before, size=query.limit)
    return {
        "items": [message_out(m) for m in page.rows],
        "next_cursor": page.older.encode() if page.older else None,
    }


MessageId = Path(..., ge=1, le=MAX_ID)


@router.get(
    "/messages/{message_id}",
    response={200: MessageDetailOut, **ERRORS},
    auth=READ,
    summary="A message with its explanation, history, attempts and recipients",
)
def get_message(request: HttpRequest, message_id: int = MessageId) -> dict[str, Any]:
    message = _message_or_404(message_id)
    data = message_out(message)
    data.update(
        reply_to=list(message.reply_to or []),
        text_body=message.text_body,
        html_body=message.html_body,
        headers=dict(message.headers or {}),
        explanation=explanation_out(explain_message(message)),
        events=[event_out(e) for e in message.events.all()],
        attempts=[attempt_out(a) for a in message.attempts.select_related("backend")],
        recipients=[recipient_out(r) for r in message.recipients.all()],
    )
    return data


def _action(result: operations.ActionResult) -> dict[str, Any]:
    if not result.ok:
        raise ApiError(409, result.text, code="state_conflict")
    return {"ok": result.ok, "message": result.text, "changed": result.changed}


@router.post(
    "/messages/{message_id}/resend",
    response={200: ActionOut, **ERRORS},
    auth=WRITE,
    summary="Re-send a message (Sent or Not sent), or make a queued one due now",
)
def resend_message(request: HttpRequest, message_id: int = MessageId) -> dict[str, Any]:
    message = _message_or_404(message_id)
    return _action(operations.resend_message(message, actor=principal(request).actor))


@router.post(
    "/messages/{message_id}/cancel",
    response={200: ActionOut, **ERRORS},
    auth=WRITE,
    summary="Cancel a message that has not left",
)
def cancel_message(request: HttpRequest, message_id: int = MessageId) -> dict[str, Any]:
    message = _message_or_404(message_id)
    return _action(operations.cancel_message(message, actor=principal(request).actor))


@router.post(
    "/groups/{group_key}/cancel",
    response={200: ActionOut, **ERRORS},
    auth=WRITE,
    summary="Cancel every message of a group that has not left",
)
def cancel_group(
    request: HttpRequest,
    group_key: str = Path(..., min_length=1, max_length=200),
) -> dict[str, Any]:
    return _action(operations.cancel_group(group_key, actor=principal(request).actor))


@router.post(
    "/send-outgoing",
    response={200: ActionOut, **ERRORS},
    auth=WRITE,
    summary="Send every stuck message now",
    description="Rate-limited per key.",
)
def send_outgoing(request: HttpRequest) -> dict[str, Any]:
    who = principal(request)
    check_rate(who, "send_outgoing")
    return _action(operations.send_outgoing(actor=who.actor))
