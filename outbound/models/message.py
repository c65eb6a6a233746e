from __future__ import annotations

from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from outbound.states import Channel, Source, Status


class Message(models.Model):
    """One outgoing email or SMS: the single truth about where it is."""

    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.EMAIL)
    contact = models.ForeignKey(
        "outbound.Contact", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Raw recipients given at intake (lists of addresses or numbers); the
    # contact's address, when there is a contact, is resolved at validation.
    to = models.JSONField(default=list, blank=True)
    cc = models.JSONField(default=list, blank=True)
    bcc = models.JSONField(default=list, blank=True)
    reply_to = models.JSONField(default=list, blank=True)
    message_to = models.CharField("Message to", max_length=1000, blank=True)
    to_user = models.CharField("To user", max_length=200, blank=True)
    from_address = models.CharField("From", max_length=320, blank=True)
    subject = models.CharField(max_length=998, blank=True)
    text_body = models.TextField(blank=True)
    html_body = models.TextField(blank=True)
    headers = models.JSONField(default=dict, blank=True)
    # The body as a MIME entity the caller built (Content-* headers, a blank
    # line, the content, CRLF lines): what the text, HTML and attachment
    # fields cannot describe (Django's alternatives, inline parts, charsets).
    # Sent as it is under Outbound's headers; None for most messages.
    mime_body = models.BinaryField(null=True, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.API)
    template = models.CharField(max_length=200, blank=True)
    context = models.JSONField(default=dict, blank=True)
    # No index of its own: msg_backend_status and msg_backend_created begin
    # with it, and each index costs bulk intake.
    backend = models.ForeignKey(
        "outbound.Backend",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    # The backend was named at intake: the message goes through that one
    # only. Otherwise it follows its channel's default backend, which
    # validation reads each time (a held message moves with the role).
    backend_chosen = models.BooleanField(default=False)

    status = models.CharField(
        max_length=30, choices=Status.choices, default=Status.WAITING, db_index=False
    )
    reason_code = models.CharField(max_length=50, blank=True)
    reason_text = models.TextField(blank=True)
    status_changed_at = models.DateTimeField()

    created_at = models.DateTimeField()
    send_at = models.DateTimeField("Due at")
    sent_at = models.DateTimeField(null=True, blank=True)
    attempt_count = models.PositiveIntegerField(default=0)
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Set when a send was interrupted after the body started to leave: the
    # recipient may have it already, so a copy may arrive twice.
    possibly_delivered = models.BooleanField(default=False)
    # The last delivery receipt from an SMS provider (after Sent): delivered,
    # undelivered or failed, with the provider's error code when it gave one.
    receipt_status = models.CharField(max_length=20, blank=True)
    receipt_code = models.CharField(max_length=20, blank=True)
    receipt_at = models.DateTimeField(null=True, blank=True)

    message_id = models.CharField("Message-ID", max_length=255, unique=True)
    # NULL, not "": messages without a key must not collide in the constraint below.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    # Whose key it is (see intake.queue_email): unique together with the key.
    idempotency_scope = models.CharField(max_length=200, blank=True, default="")
    content_hash = models.CharField(max_length=64, blank=True)
    group_key = models.CharField(max_length=200, blank=True)

    claim_token = models.UUIDField(null=True, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("operate_messages", "Can re-send, cancel and send outgoing messages"),
            # Outbound's role: what every page, download and API call needs.
            ("view_outbound", "Can see Outbound's messages, contacts and settings"),
        ]
        indexes = [
            # The worker's claim query and the stuck count.
            models.Index(fields=["status", "next_attempt_at"], name="msg_status_due"),
            models.Index(fields=["status", "send_at"], name="msg_status_send_at"),
            # The Outgoing messages page: newest first, optionally by status.
            models.Index(fields=["-created_at", "-id"], name="msg_created"),
            models.Index(fields=["status", "-created_at", "-id"], name="msg_status_created"),
            models.Index(fields=["group_key"], name="msg_group"),
            models.Index(fields=["claim_token"], name="msg_claim"),
            models.Index(fields=["backend", "status"], name="msg_backend_status"),
            # The page filtered by backend, newest first.
            models.Index(fields=["backend", "-created_at", "-id"], name="msg_backend_created"),
            # Looking a recipient up by address (or its beginning), any case.
            models.Index(Lower("message_to"), name="msg_to_lower"),
        ]
        constraints = [
            # One message per key and caller: two API keys choosing the same
            # Idempotency-Key must neither meet each other's message nor a 409.
            models.UniqueConstraint(
                fields=["idempotency_scope", "idempotency_key"], name="msg_idempotency_scope_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} {self.pk} to {self.message_to or self.to}"

    @property
    def status_label(self) -> str:
        return Status(self.status).label

    @property
    def scheduled(self) -> bool:
        """Still to leave, at a time to come: Re-send would send it early."""
        return (
            self.status in (Status.WAITING, Status.TO_SEND)
            and self.send_at is not None
            and self.send_at > timezone.now()
        )


class Attachment(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=200, default="application/octet-stream")
    content = models.BinaryField()

    def __str__(self) -> str:
        return self.filename


class Recipient(models.Model):
    """One envelope recipient of a message, with its own outcome."""

    class Kind(models.TextChoices):
        TO = "to", "To"
        CC = "cc", "Cc"
        BCC = "bcc", "Bcc"

    class Outcome(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        REFUSED = "refused", "Refused"
        # Refused for now (4xx, or 552 mailbox full) while the message was
        # accepted for the other recipients; not retried.
        DEFERRED = "deferred", "Deferred (temporary refusal)"
        INVALID = "invalid", "Invalid"
        BLOCKED = "blocked", "Blocked"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="recipients")
    kind = models.CharField(max_length=3, choices=Kind.choices, default=Kind.TO)
    address = models.CharField(max_length=320)
    name = models.CharField(max_length=200, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.PENDING)
    code = models.PositiveIntegerField(null=True, blank=True)
    reply = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.address


class Event(models.Model):
    """Append-only history of one message."""

    class Kind(models.TextChoices):
        TRANSITION = "transition", "Status change"
        ACTION = "action", "Operator action"
        NOTE = "note", "Note"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField()
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.TRANSITION)
    from_status = models.CharField(max_length=30, choices=Status.choices, blank=True)
    to_status = models.CharField(max_length=30, choices=Status.choices, blank=True)
    reason_code = models.CharField(max_length=50, blank=True)
    text = models.TextField(blank=True)
    actor = models.CharField(max_length=150, default="system")
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or '-'} -> {self.to_status or '-'} ({self.reason_code})"


class Attempt(models.Model):
    """One delivery try, journalled before the connection is used."""

    class Outcome(models.TextChoices):
        PENDING = "pending", "In progress"
        SENT = "sent", "Sent"
        TRANSIENT = "transient", "Temporary failure"
        PERMANENT = "permanent", "Permanent failure"
        CONFIG = "config", "Backend configuration failure"
        INTERRUPTED = "interrupted", "Interrupted"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attempts")
    # No index of its own: attempt_backend_started begins with it, and every
    # attempt row written pays for each index.
    backend = models.ForeignKey(
        "outbound.Backend", null=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    settings_version = models.PositiveIntegerField(null=True)
    worker = models.CharField(max_length=200, blank=True)
    claim_token = models.UUIDField(null=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    phase = models.CharField(max_length=10, default="connect")
    smtp_code = models.PositiveIntegerField(null=True, blank=True)
    enhanced_code = models.CharField(max_length=20, blank=True)
    reply = models.TextField(blank=True)
    provider_id = models.CharField(max_length=200, blank=True)
    outcome = models.CharField(max_length=12, choices=Outcome.choices, default=Outcome.PENDING)
    error_reason = models.CharField(max_length=50, blank=True)
    recipients = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["started_at", "id"]
        indexes = [
            models.Index(fields=["claim_token"], name="attempt_claim"),
            # Messages per minute of a backend (its rate limit).
            models.Index(fields=["backend", "started_at"], name="attempt_backend_started"),
            # Delivery receipts name the provider's id for the message.
            models.Index(
                fields=["provider_id"],
                name="attempt_provider_id",
                condition=~models.Q(provider_id=""),
            ),
        ]

    def __str__(self) -> str:
        return f"Attempt {self.pk} ({self.outcome})"
