"""Statuses, reason codes and the transition table.

The six statuses are the platform's own words; their labels must not change.
``TRANSITIONS`` is the only place that says which status may follow which;
``services.transitions`` is the only code that applies it.
"""

from __future__ import annotations

from django.db import models


class Status(models.TextChoices):
    WAITING = "waiting", "Waiting"
    TO_SEND = "to_send", "To send"
    SENT = "sent", "Sent"
    NOT_SENT = "not_sent", "Not sent"
    BACKEND_TEST_REQUIRED = "backend_test_required", "Backend test required"
    CANCELLED = "cancelled", "Cancelled"


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"


class Source(models.TextChoices):
    SYSTEM = "system", "System"
    WORKFLOW = "workflow", "Workflow"
    MANUAL = "manual", "Manual"
    API = "api", "API"
    DJANGO = "django", "Django mail"


class Reason(models.TextChoices):
    # Into Waiting
    QUEUED = "queued", "Queued"
    SCHEDULED = "scheduled", "Scheduled for later"
    RESENT = "resent", "Re-sent by an operator"
    RELEASED = "released", "Released after a successful backend test"
    ALLOWANCE_EXHAUSTED = "allowance_exhausted", "Backend allowance used up"
    # Into To send
    VALIDATED = "validated", "Validated"
    RETRY_SCHEDULED = "retry_scheduled", "Retry scheduled"
    INTERRUPTED = "interrupted", "Send interrupted; retrying"
    LEASE_EXPIRED = "lease_expired", "Worker lost; retrying"
    SEND_NOW = "send_now", "Made due now by an operator"
    # Into Sent
    ACCEPTED = "accepted", "Accepted by the server"
    PARTIALLY_ACCEPTED = "partially_accepted", "Accepted for some recipients only"
    # Into Not sent
    RECIPIENT_MISSING = "recipient_missing", "Recipient missing"
    RECIPIENT_INVALID = "recipient_invalid", "Recipient invalid"
    RECIPIENT_BLOCKED = "recipient_blocked", "Recipient blocked"
    CONTACT_INACTIVE = "contact_inactive", "Contact inactive"
    NOTIFICATIONS_OFF = "notifications_off", "Notifications off for the contact"
    SENDER_INVALID = "sender_invalid", "Sender address invalid"
    SENDER_REFUSED = "sender_refused", "Sender refused by the server"
    RECIPIENTS_REFUSED = "recipients_refused", "Recipients refused by the server"
    REJECTED = "rejected", "Rejected by the server"
    RETRY_LIFETIME_OVER = "retry_lifetime_over", "Retry lifetime over"
    CHANNEL_DISABLED = "channel_disabled", "Channel disabled"
    MESSAGE_TOO_LONG = "message_too_long", "Message too long"
    MESSAGE_EMPTY = "message_empty", "Message empty"
    # Into Backend test required
    BACKEND_MISSING = "backend_missing", "No backend configured"
    BACKEND_UNTESTED = "backend_untested", "Backend settings not tested"
    BACKEND_FAILING = "backend_failing", "Backend failing"
    BACKEND_AUTH_FAILED = "backend_auth_failed", "Backend authentication failed"
    BACKEND_TLS_FAILED = "backend_tls_failed", "Backend TLS failed"
    BACKEND_HOST_NOT_FOUND = "backend_host_not_found", "Backend host not found"
    BACKEND_SECRET_UNREADABLE = "backend_secret_unreadable", "Backend secret cannot be read"
    BACKEND_HOST_FORBIDDEN = "backend_host_forbidden", "Backend host forbidden by policy"
    # Into Cancelled
    CANCELLED = "cancelled", "Cancelled by an operator"
    GROUP_CANCELLED = "group_cancelled", "Group cancelled"


S = Status

# from status -> statuses it may move to. ``None`` stands for "created".
TRANSITIONS: dict[Status | None, frozenset[Status]] = {
    None: frozenset({S.WAITING}),
    S.WAITING: frozenset({S.WAITING, S.TO_SEND, S.NOT_SENT, S.BACKEND_TEST_REQUIRED, S.CANCELLED}),
    S.TO_SEND: frozenset({S.TO_SEND, S.SENT, S.NOT_SENT, S.BACKEND_TEST_REQUIRED, S.CANCELLED}),
    S.SENT: frozenset({S.WAITING}),
    S.NOT_SENT: frozenset({S.WAITING}),
    # Cancelling a held message must be possible: otherwise a cancelled group of
    # reminders would still go out, late, once the backend test succeeds.
    S.BACKEND_TEST_REQUIRED: frozenset({S.WAITING, S.CANCELLED}),
    S.CANCELLED: frozenset(),
}

# Statuses in which a message may still leave.
PENDING = frozenset({S.WAITING, S.TO_SEND})
# Statuses an operator's "re-send" applies to.
RESENDABLE = frozenset({S.SENT, S.NOT_SENT})


def sources_for(target: Status) -> frozenset[Status]:
    """Every status from which ``target`` may be reached."""
    return frozenset(
        src for src, dests in TRANSITIONS.items() if src is not None and target in dests
    )


def is_allowed(source: Status | None, target: Status) -> bool:
    return target in TRANSITIONS.get(source, frozenset())
