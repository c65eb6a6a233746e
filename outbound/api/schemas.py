"""Request and response shapes of the REST API.

Request bodies forbid unknown fields: a misspelt field silently ignored is a
message sent without what the caller thought it set. String limits follow the
database columns so an over-long value is a 422, not a database error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Schema
from pydantic import AwareDatetime, ConfigDict, Field, field_validator, model_validator

from outbound.text import sentence, text_problem

# Ids beyond this cannot exist and would overflow a bigint on PostgreSQL.
MAX_ID = 2**53
Address = Field(max_length=320)

# The values of outbound.states.Status and Channel, spelt out so the schema
# gives them as enums (in answers as in the list's query) and a generated
# client gets a type for them; test_operations.py checks they stay equal.
StatusName = Literal["waiting", "to_send", "sent", "not_sent", "backend_test_required", "cancelled"]
ChannelName = Literal["email", "sms"]
# A header's name and value as a mail header may carry them; the limits sit
# on the key and the value so a refusal names the header in ``details``.
HeaderName = Annotated[str, Field(max_length=100)]
HeaderValue = Annotated[str, Field(max_length=998)]


def _refuse_unstorable(value: Any) -> Any:
    """Refuse a NUL or a lone surrogate in a string field, or in a list's or
    a mapping's strings (nested objects are schemas that check themselves)."""
    items: list[Any] = []
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, list):
        items = [v for v in value if isinstance(v, str)]
    elif isinstance(value, dict):
        items = [v for pair in value.items() for v in pair if isinstance(v, str)]
    for item in items:
        problem = text_problem(item)
        if problem:
            raise ValueError(sentence("The text", problem))
    return value


class Checked(Schema):
    """Every text a request brings (body or query string) is storable text:
    a NUL used to reach PostgreSQL and answer 500, or match everything."""

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return _refuse_unstorable(value)


class In(Checked):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(Schema):
    code: str = Field(description="Machine-readable error code, e.g. invalid_input.")
    message: str = Field(description="What went wrong, in words.")
    details: dict[str, Any] = Field(
        default_factory=dict, description="Field errors: field name -> list of messages."
    )


# ------------------------------------------------------------------ messages


class MessageIn(In):
    channel: Literal["email", "sms", "auto"] = Field(
        "email",
        description="auto: SMS when SMS is enabled and the contact prefers it, else email.",
    )
    to: list[str] = Field(default_factory=list, max_length=50)
    cc: list[str] = Field(default_factory=list, max_length=50)
    bcc: list[str] = Field(default_factory=list, max_length=50)
    reply_to: list[str] = Field(default_factory=list, max_length=10)
    subject: str = Field("", max_length=998)
    text: str = Field("", description="The text body; for an SMS, its text.")
    html: str = ""
    sms_text: str | None = Field(
        None, max_length=5000, description="Channel auto: the text if it goes as an SMS."
    )
    from_: str = Field("", alias="from", max_length=320)
    to_user: str = Field("", max_length=200)
    send_at: AwareDatetime | None = Field(None, description="When to send; ISO 8601 with zone.")
    group_key: str = Field("", max_length=200)
    contact_id: int | None = Field(None, ge=1, le=MAX_ID)
    contact_external_id: str | None = Field(None, min_length=1, max_length=200)
    headers: dict[HeaderName, HeaderValue] = Field(default_factory=dict, max_length=50)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _check(self) -> MessageIn:
        if self.contact_id is not None and self.contact_external_id is not None:
            raise ValueError("Give contact_id or contact_external_id, not both.")
        for name in ("to", "cc", "bcc", "reply_to"):
            for item in getattr(self, name):
                if len(item) > 320:
                    raise ValueError(f"{name}: an address is at most 320 characters.")
        if len(", ".join(self.to)) > 1000:
            raise ValueError("to: the recipients together are at most 1000 characters.")
        return self


class BatchIn(In):
    messages: list[MessageIn] = Field(min_length=1, max_length=1000)


class MessageOut(Schema):
    id: int
    channel: ChannelName
    status: StatusName
    status_label: str
    reason_code: str
    reason_text: str
    status_changed_at: datetime
    message_to: str
    to_user: str
    to: list[str]
    cc: list[str]
    bcc: list[str]
    from_address: str
    subject: str
    source: str
    contact_id: int | None
    backend: str | None
    group_key: str
    idempotency_key: str | None
    message_id: str
    created_at: datetime
    send_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None
    attempt_count: int
    possibly_delivered: bool
    receipt_status: str = Field("", description="SMS: the provider's last delivery receipt.")
    receipt_code: str = ""
    receipt_at: datetime | None = None


class BatchOut(Schema):
    count: int
    messages: list[MessageOut]


class MessagePageOut(Schema):
    items: list[MessageOut]
    next_cursor: str | None = Field(
        None, description="Pass as ?cursor= for the next (older) page; null on the last page."
    )


class FactOut(Schema):
    name: str
    value: str


class ExplanationOut(Schema):
    status: StatusName
    label: str
    meaning: str
    when: str
    why: str
    what_to_do: list[str]
    facts: list[FactOut]


class EventOut(Schema):
    id: int
    created_at: datetime
    kind: str
    from_status: StatusName | Literal[""] = Field(
        description="Empty when the event moved no status."
    )
    to_status: StatusName | Literal[""] = Field(description="Empty when the event moved no status.")
    reason_code: str
    text: str
    actor: str


class AttemptOut(Schema):
    id: int
    backend: str | None
    started_at: datetime
    finished_at: datetime | None
    phase: str
    smtp_code: int | None
    enhanced_code: str
    reply: str
    provider_id: str
    outcome: str
    error_reason: str
    worker: str


class RecipientOut(Schema):
    id: int
    kind: str
    address: str
    name: str
    outcome: str
    code: int | None
    reply: str


class MessageDetailOut(MessageOut):
    reply_to: list[str]
    text_body: str
    html_body: str
    headers: dict[str, Any]
    explanation: ExplanationOut
    events: list[EventOut]
    attempts: list[AttemptOut]
    recipients: list[RecipientOut]


class ActionOut(Schema):
    ok: bool
    message: str
    changed: list[int]


# ------------------------------------------------------------------ contacts


class ContactIn(In):
    name: str | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=320)
    mobile: str | None = Field(None, max_length=40)
    preferred_channel: Literal["email", "sms"] | None = None
    notifications_enabled: bool | None = None
    active: bool | None = None
    external_id: str | None = Field(None, max_length=200)


class ContactUpsertIn(In):
    name: str | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=320)
    mobile: str | None = Field(None, max_length=40)
    preferred_channel: Literal["email", "sms"] | None = None
    notifications_enabled: bool | None = None
    active: bool | None = None


class ContactOut(Schema):
    id: int
    name: str
    email: str
    mobile: str
    preferred_channel: ChannelName
    notifications_enabled: bool
    active: bool
    external_id: str | None
    created_at: datetime
    updated_at: datetime


class ContactPageOut(Schema):
    items: list[ContactOut]
    next_cursor: str | None = None


# ----------------------------------------------------------------- blocklist


class BlockIn(In):
    kind: Literal["address", "domain", "number"]
    value: str = Field(min_length=1, max_length=320)
    reason: str = Field("", max_length=500)


class BlockOut(Schema):
    id: int
    kind: str
    value: str
    reason: str
    source: str
    created_by: str
    created_at: datetime


class BlockPageOut(Schema):
    items: list[BlockOut]
    next_cursor: str | None = None


# ------------------------------------------------------------------ backends


class BackendOut(Schema):
    id: int
    name: str
    channel: ChannelName
    kind: str
    is_default: bool
    host: str
    port: int
    security: str
    username: str
    has_password: bool = Field(description="Whether a secret is stored; it is never returned.")
    from_address: str
    timeout: float
    health: str
    health_reason: str
    health_detail: str
    usable: bool
    settings_version: int
    tested_version: int | None
    last_test_at: datetime | None
    limit: int | None
    sent: int
    left: int | None
    rate_per_minute: int | None
    max_connections: int | None
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="SMS backends: base_url (Twilio); url, method, headers, body_template, "
        "id_path, error_path, error_code_path, idempotency_header, invalid_number_codes, "
        "probe_url, probe_method (HTTP gateway). Header values hold {secret}, never a secret.",
    )
    has_receipt_secret: bool = False
    receipt_url: str = Field("", description="Where the provider posts delivery receipts.")


class BackendIn(In):
    name: str | None = Field(None, max_length=100)
    host: str | None = Field(None, max_length=255)
    port: int | None = Field(None, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] | None = None
    username: str | None = Field(None, max_length=255)
    password: str | None = Field(
        None, max_length=1000, description="Write-only; absent or empty keeps the stored one."
    )
    clear_password: bool | None = Field(None, description="Remove the stored password.")
    from_address: str | None = Field(None, max_length=320)
    timeout: float | None = Field(None, ge=1, le=120)
    limit: int | None = Field(None, ge=0, le=10**9, description="null for unlimited.")
    rate_per_minute: int | None = Field(None, ge=1, le=10**6)
    max_connections: int | None = Field(None, ge=1, le=1000)
    is_default: bool | None = None
    channel: Literal["email", "sms"] | None = Field(None, description="On creation only.")
    kind: Literal["smtp", "twilio", "http", "console", "locmem"] | None = None
    base_url: str | None = Field(None, max_length=255, description="Twilio API address.")
    url: str | None = Field(None, max_length=255, description="HTTP gateway URL.")
    method: Literal["POST", "PUT"] | None = None
    headers: dict[str, str] | None = Field(None, max_length=30)
    body_template: str | None = Field(None, max_length=5000)
    id_path: str | None = Field(None, max_length=200)
    error_path: str | None = Field(None, max_length=200)
    error_code_path: str | None = Field(None, max_length=200)
    idempotency_header: str | None = Field(None, max_length=100)
    invalid_number_codes: list[str] | None = Field(None, max_length=100)
    probe_url: str | None = Field(None, max_length=255)
    probe_method: Literal["GET", "HEAD", "POST"] | None = None
    receipt_secret: str | None = Field(
        None, max_length=1000, description="HTTP gateway receipts' shared secret; write-only."
    )
    clear_receipt_secret: bool | None = None


class ProbeOut(Schema):
    ok: bool
    reason: str
    phase: str
    code: int | None
    reply: str
    transcript: list[str]
    elapsed: float


# ------------------------------------------------------------------ settings


class SettingsOut(Schema):
    backend_failure_email: str
    default_from: str
    stuck_threshold_seconds: float
    retry_lifetime_seconds: float
    retry_min_backoff_seconds: float
    retry_max_backoff_seconds: float
    alert_reminder_interval_seconds: float
    worker_silence_threshold_seconds: float
    stuck_threshold_minutes: int
    retry_lifetime_hours: int
    alert_reminder_interval_hours: int
    worker_silence_threshold_minutes: int
    sms_enabled: bool
    default_region: str
    max_sms_segments: int
    retention_days: int
    updated_at: datetime


class SettingsIn(In):
    backend_failure_email: str | None = Field(None, max_length=320)
    default_from: str | None = Field(None, max_length=320)
    stuck_threshold_minutes: int | None = Field(None, ge=1, le=7 * 24 * 60)
    retry_lifetime_hours: int | None = Field(None, ge=1, le=30 * 24)
    alert_reminder_interval_hours: int | None = Field(None, ge=1, le=30 * 24)
    worker_silence_threshold_minutes: int | None = Field(None, ge=1, le=24 * 60)
    sms_enabled: bool | None = None
    default_region: str | None = Field(None, min_length=2, max_length=2)
    max_sms_segments: int | None = Field(None, ge=1, le=50)


# ------------------------------------------------------------------ overview


class OverviewBackendOut(Schema):
    id: int
    name: str
    channel: ChannelName
    health: str
    health_label: str
    health_detail: str
    limit: int | None
    sent: int
    left: int | None
    last_test_at: datetime | None
    last_test_ok: bool | None
    last_test_summary: str


class WorkerOut(Schema):
    name: str
    hostname: str
    pid: int
    alive: bool
    last_seen: datetime
    silent_for_seconds: float
    processed: int


class OverviewOut(Schema):
    counts: dict[str, int]
    total: int
    stuck: int
    stuck_threshold_seconds: float
    oldest_due_at: datetime | None
    oldest_due_age_seconds: float | None
    backends: list[OverviewBackendOut]
    workers: list[WorkerOut]
    workers_alive: int


class HealthOut(Schema):
    ok: bool
    database: bool
    workers_alive: int
    last_heartbeat_age_seconds: float | None
    oldest_due_age_seconds: float | None
