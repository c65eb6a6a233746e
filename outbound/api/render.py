"""Model rows to the API's response dicts (and small input helpers shared by
the routers). Reads only."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from outbound.api.errors import ApiError
from outbound.explain import Explanation
from outbound.models import Attempt, Backend, Contact, Event, Message, Recipient, Suppression
from outbound.services.sms_backends import status_callback_url


def message_out(m: Message) -> dict[str, Any]:
    return {
        "id": m.pk,
        "channel": m.channel,
        "status": m.status,
        "status_label": m.status_label,
        "reason_code": m.reason_code,
        "reason_text": m.reason_text,
        "status_changed_at": m.status_changed_at,
        "message_to": m.message_to,
        "to_user": m.to_user,
        "to": list(m.to or []),
        "cc": list(m.cc or []),
        "bcc": list(m.bcc or []),
        "from_address": m.from_address,
        "subject": m.subject,
        "source": m.source,
        "contact_id": m.contact_id,
        "backend": m.backend.name if m.backend_id and m.backend else None,
        "group_key": m.group_key,
        "idempotency_key": m.idempotency_key,
        "message_id": m.message_id,
        "created_at": m.created_at,
        "send_at": m.send_at,
        "sent_at": m.sent_at,
        "next_attempt_at": m.next_attempt_at,
        "attempt_count": m.attempt_count,
        "possibly_delivered": m.possibly_delivered,
        "receipt_status": m.receipt_status,
        "receipt_code": m.receipt_code,
        "receipt_at": m.receipt_at,
    }


def explanation_out(e: Explanation) -> dict[str, Any]:
    return {
        "status": e.status,
        "label": e.label,
        "meaning": e.meaning,
        "when": e.when,
        "why": e.why,
        "what_to_do": list(e.what_to_do),
        "facts": [{"name": k, "value": v} for k, v in e.facts],
    }


def event_out(e: Event) -> dict[str, Any]:
    return {
        "id": e.pk,
        "created_at": e.created_at,
        "kind": e.kind,
        "from_status": e.from_status,
        "to_status": e.to_status,
        "reason_code": e.reason_code,
        "text": e.text,
        "actor": e.actor,
    }


def attempt_out(a: Attempt) -> dict[str, Any]:
    return {
        "id": a.pk,
        "backend": a.backend.name if a.backend_id and a.backend else None,
        "started_at": a.started_at,
        "finished_at": a.finished_at,
        "phase": a.phase,
        "smtp_code": a.smtp_code,
        "enhanced_code": a.enhanced_code,
        "reply": a.reply,
        "provider_id": a.provider_id,
        "outcome": a.outcome,
        "error_reason": a.error_reason,
        "worker": a.worker,
    }


def recipient_out(r: Recipient) -> dict[str, Any]:
    return {
        "id": r.pk,
        "kind": r.kind,
        "address": r.address,
        "name": r.name,
        "outcome": r.outcome,
        "code": r.code,
        "reply": r.reply,
    }


def contact_out(c: Contact) -> dict[str, Any]:
    return {
        "id": c.pk,
        "name": c.name,
        "email": c.email,
        "mobile": c.mobile,
        "preferred_channel": c.preferred_channel,
        "notifications_enabled": c.notifications_enabled,
        "active": c.active,
        "external_id": c.external_id,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    }


def block_out(s: Suppression) -> dict[str, Any]:
    return {
        "id": s.pk,
        "kind": s.kind,
        "value": s.value,
        "reason": s.reason,
        "source": s.source,
        "created_by": s.created_by,
        "created_at": s.created_at,
    }


def backend_out(b: Backend) -> dict[str, Any]:
    return {
        "id": b.pk,
        "name": b.name,
        "channel": b.channel,
        "kind": b.kind,
        "is_default": b.is_default,
        "host": b.host,
        "port": b.port,
        "security": b.security,
        "username": b.username,
        "has_password": b.has_secret,
        "from_address": b.from_address,
        "timeout": b.timeout,
        "health": b.health,
        "health_reason": b.health_reason,
        "health_detail": b.health_detail,
        "usable": b.is_usable,
        "settings_version": b.settings_version,
        "tested_version": b.tested_version,
        "last_test_at": b.last_test_at,
        "limit": b.limit,
        "sent": b.sent_count,
        "left": b.left,
        "rate_per_minute": b.rate_per_minute,
        "max_connections": b.max_connections,
        "options": b.options or {},
        "has_receipt_secret": bool(b.receipt_secret),
        "receipt_url": status_callback_url(b),
    }


# An opaque cursor for the id-ordered lists (contacts, blocklist): clients
# must not build them, so the encoding is free to change.
def encode_id_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"id": last_id}).encode()).decode().rstrip("=")


def decode_id_cursor(raw: str | None) -> int | None:
    if not raw:
        return None
    try:
        padded = raw + "=" * (-len(raw) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
        last_id = value["id"]
        if not isinstance(last_id, int) or isinstance(last_id, bool) or last_id < 0:
            raise ValueError(last_id)
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise ApiError(
            400,
            "The cursor is not valid; use next_cursor from a previous page.",
            code="invalid_cursor",
            details={"cursor": ["Not a cursor this API gave out."]},
        ) from err
    return last_id
