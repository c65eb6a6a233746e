"""Per-message explanations: what a status means, why this message is in it,
and what to check and do next, filled with the message's own facts.

Contract: ``explain_message`` and ``diagnostic_report`` only read. Every
interface (console, REST API, CLI) shows the same words, so an operator gets
the same answer wherever they look. Nothing secret ever appears: a backend is
named by name, host, port and security, never by its username or password.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from outbound import conf
from outbound.formats import stamp
from outbound.models import (
    Attempt,
    Backend,
    Contact,
    Event,
    Message,
    Recipient,
    Suppression,
    WorkerHeartbeat,
)
from outbound.selectors import (
    BackendHold,
    backend_hold,
    live_workers,
    open_slots,
    rate_slots,
    rate_window,
)
from outbound.services.addresses import find_blocks, find_number_blocks
from outbound.services.dispatch import THROTTLE_REPEATS
from outbound.services.receipts import TWILIO_ERRORS, describe
from outbound.services.validation import allowance_left
from outbound.sms import analyse
from outbound.states import Channel, Reason, Status
from outbound.web.test_advice import advice_for


@dataclass
class Explanation:
    status: str
    label: str
    meaning: str
    when: str
    why: str
    what_to_do: list[str]
    facts: list[tuple[str, str]] = field(default_factory=list)
    # The backend as the facts name it, short, for the message's own fields:
    # its name, or that none was chosen and which default would be used.
    backend: str = ""


# General words per status: the same for every message in it.
MEANING: dict[str, tuple[str, str]] = {
    Status.WAITING: (
        "The message was created and is waiting to be able to leave. It has not been "
        "handed to any server yet.",
        "Right after it is generated (by a system message, a workflow step, an operator or "
        "the API) until a worker validates it; while it is scheduled for later; after an "
        "operator re-sends it; after a successful backend test releases it; or while the "
        "backend's allowance of messages is used up.",
    ),
    Status.TO_SEND: (
        "The message was validated and is queued to leave. A worker sends it as soon as it is due.",
        "After validation succeeds; while a worker is sending it; while a new attempt "
        "is scheduled after a temporary failure (a 4xx reply, a timeout, a refused "
        "connection); and while its backend holds it back: the backend's rate limit is "
        "used up for the minute, the backend is paused after repeated throttling, or all "
        "the connections it allows are in use.",
    ),
    Status.SENT: (
        "The next server accepted the message (for email, the relay answered 2xx after the "
        "message body). This is not proof that it reached the recipient's mailbox.",
        "When the mail relay or SMS provider accepts the message.",
    ),
    Status.NOT_SENT: (
        "The message cannot be sent as it is. It will not be tried again unless someone "
        "fixes the cause and re-sends it.",
        "When the recipient is missing, invalid or blocked, the contact is inactive or has "
        "notifications turned off, the sender is invalid, the server refused it for good "
        "(5xx), or temporary failures went on longer than the retry lifetime.",
    ),
    Status.BACKEND_TEST_REQUIRED: (
        "The message is held because the backend (the mail server or SMS provider "
        "settings) cannot be "
        "trusted to send it. It leaves by itself once a backend test succeeds.",
        "When no backend is configured, when the backend's settings changed and were not "
        "tested, or when sending failed on configuration (authentication, TLS, unknown "
        "host).",
    ),
    Status.CANCELLED: (
        "The message was withdrawn and will never be sent.",
        "When an operator cancels it, or cancels the series of messages it belongs to.",
    ),
}


def _fmt(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return stamp(moment)


def _addresses(text: str) -> list[str]:
    return [a.strip() for a in text.split(",") if a.strip()]


def _backend_where(backend: Backend) -> str:
    """Where the backend sends, without credentials."""
    if backend.channel == Channel.SMS:
        where = f", {backend.host}" if backend.host else ""
        return f"{backend.get_kind_display()}{where}"
    where = f"{backend.host}:{backend.port}" if backend.host else "no host"
    return f"{where}, {backend.security_words}"


def _backend_line(backend: Backend) -> str:
    return f"{backend.name} ({_backend_where(backend)})"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _last_test(backend: Backend) -> str:
    result = backend.last_test_result or {}
    if not backend.last_test_at:
        return "never tested"
    if result.get("ok"):
        # Its last reply is only a step of the test (an SMTP server's 354).
        return f"succeeded at {_fmt(backend.last_test_at)}"
    outcome = "failed"
    reply = result.get("reply") or result.get("reason") or ""
    code = result.get("code")
    detail = f": {code} {reply}".rstrip() if code else (f": {reply}" if reply else "")
    return f"{outcome} at {_fmt(backend.last_test_at)}{detail}"


@dataclass
class _Facts:
    """The message's facts, read once and shared by the explanation parts."""

    message: Message
    backend: Backend | None
    contact: Contact | None
    attempts: list[Attempt]
    recipients: list[Recipient]
    blocks: dict[str, Suppression]
    # The backend was not chosen for this message; ``backend`` is the
    # channel's default.
    default_backend: bool = False
    # What holds this To send message back (its backend's pause, rate limit
    # or connection cap), if anything.
    hold: BackendHold | None = None
    # For a message that may still leave: whether a worker is alive, and
    # the worker heard from last (None when none ever ran).
    no_worker: bool = False
    last_worker: WorkerHeartbeat | None = None

    @property
    def last_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def queue_id(self) -> str:
        for attempt in reversed(self.attempts):
            if attempt.outcome == Attempt.Outcome.SENT and attempt.provider_id:
                return attempt.provider_id
        return ""

    @property
    def server_reply(self) -> str:
        attempt = self.last_attempt
        if attempt is None or not (attempt.reply or attempt.smtp_code):
            return ""
        if attempt.smtp_code and attempt.reply.startswith(str(attempt.smtp_code)):
            return attempt.reply
        parts = [str(attempt.smtp_code or "")]
        # The transport may keep the enhanced code at the start of the reply.
        if attempt.enhanced_code and not attempt.reply.startswith(attempt.enhanced_code):
            parts.append(attempt.enhanced_code)
        parts.append(attempt.reply)
        return " ".join(p for p in parts if p)

    @property
    def contact_email(self) -> str:
        return self.contact.email if self.contact is not None else ""

    @property
    def is_sms(self) -> bool:
        return self.message.channel == Channel.SMS

    @property
    def contact_address(self) -> str:
        """The contact's current address on the message's channel."""
        if self.contact is None:
            return ""
        return self.contact.mobile if self.is_sms else self.contact.email


def _gather(message: Message) -> _Facts:
    backend = message.backend
    # A message not named to a backend at intake follows its channel's
    # default until it is validated for sending: while it waits or is held,
    # the default as it is now is the one that decides.
    default_backend = not message.backend_chosen and (
        backend is None or message.status in (Status.WAITING, Status.BACKEND_TEST_REQUIRED)
    )
    if default_backend:
        backend = Backend.objects.filter(channel=message.channel, is_default=True).first()
    contact = message.contact
    attempts = list(message.attempts.order_by("started_at", "id"))
    recipients = list(message.recipients.order_by("id"))
    candidates = [r.address for r in recipients] or _addresses(message.message_to)
    if message.channel == Channel.SMS:
        if contact is not None and contact.mobile:
            candidates.append(contact.mobile)
        blocks = find_number_blocks(a for a in candidates if a.startswith("+"))
    else:
        if contact is not None and contact.email:
            candidates.append(contact.email)
        blocks = find_blocks(a for a in candidates if "@" in a)
    no_worker = _no_worker(message)
    return _Facts(
        message,
        backend,
        contact,
        attempts,
        recipients,
        blocks,
        default_backend=default_backend and backend is not None,
        hold=backend_hold(message),
        no_worker=no_worker,
        last_worker=WorkerHeartbeat.objects.order_by("-last_seen").first() if no_worker else None,
    )


def _no_worker(message: Message) -> bool:
    """What the "no worker is running" banner knows, for a message that
    needs a worker to leave: the explanation must say it too."""
    return message.status in (Status.WAITING, Status.TO_SEND) and not live_workers().exists()


def _no_worker_line(f: _Facts) -> str:
    """No worker is alive: since when, and that one must be started."""
    w = f.last_worker
    if w is None:
        seen = "No worker has run yet"
    else:
        how = "stopped" if w.stopped_at is not None else "went silent"
        seen = f"No worker has been seen since {_fmt(w.last_seen)} (the last, {w.name}, {how})"
    return (
        f"{seen}: nothing validates or sends this message until one runs. Start one "
        "(outbound worker, or the worker service) and check the Workers page."
    )


def _backend_name(f: _Facts) -> str:
    """The backend in a few words; the same words in the facts and the fields."""
    if f.backend is None:
        return "none configured"
    if f.default_backend:
        channel = "SMS" if f.is_sms else "email"
        return f"none chosen for this message; the default {channel} backend is {f.backend.name}"
    return f.backend.name


def _facts(f: _Facts) -> list[tuple[str, str]]:
    m = f.message
    rows: list[tuple[str, str]] = []
    if m.reason_code:
        label = Reason(m.reason_code).label if m.reason_code in Reason.values else m.reason_code
        rows.append(("Reason", f"{label} ({m.reason_code})"))
    rows.append(("Status since", _fmt(m.status_changed_at)))
    if f.is_sms:
        rows.append(("Channel", "SMS"))
        rows.append(("Number used (Message to)", m.message_to or "(none)"))
        info = analyse(m.text_body)
        rows.append(
            (
                "Text",
                f"{info.characters} {info.encoding} characters, {info.segments} "
                f"segment{'s' if info.segments != 1 else ''}",
            )
        )
    else:
        rows.append(("Address used (Message to)", m.message_to or "(none)"))
    if m.contact_id is not None and f.contact is not None:
        if not f.is_sms:
            rows.append(("Contact's current email", f.contact.email or "(none)"))
        if f.contact.mobile or f.is_sms:
            rows.append(("Contact's current mobile", f.contact.mobile or "(none)"))
        if not f.contact.active:
            rows.append(("Contact state", "inactive"))
        if not f.contact.notifications_enabled:
            rows.append(("Contact notifications", "turned off"))
    if f.server_reply:
        rows.append(("Provider reply" if f.is_sms else "Server reply", f.server_reply))
    if f.queue_id:
        rows.append(("Provider message id" if f.is_sms else "Relay queue id", f.queue_id))
    if m.receipt_status:
        provider = f.backend.kind if f.backend is not None else ""
        rows.append(
            (
                "Delivery receipt",
                f"{describe(m.receipt_status, m.receipt_code, provider=provider)}, "
                f"at {_fmt(m.receipt_at)}",
            )
        )
    if m.attempt_count or f.attempts:
        rows.append(("Attempts", str(max(m.attempt_count, len(f.attempts)))))
    if m.first_attempt_at:
        rows.append(("First attempt at", _fmt(m.first_attempt_at)))
    if f.last_attempt is not None:
        rows.append(("Last attempt at", _fmt(f.last_attempt.started_at)))
    if m.next_attempt_at and m.status in (Status.WAITING, Status.TO_SEND):
        rows.append(("Next attempt at", _fmt(m.next_attempt_at)))
    if m.sent_at:
        rows.append(("Sent at", _fmt(m.sent_at)))
    for address, entry in sorted(f.blocks.items()):
        why = f" ({entry.reason})" if entry.reason else ""
        rows.append(("Blocklist entry matched", f"{address}: {entry}{why}"))
    if f.backend is not None:
        if f.default_backend:
            rows.append(("Backend", f"{_backend_name(f)} ({_backend_where(f.backend)})"))
        else:
            rows.append(("Backend", _backend_line(f.backend)))
        health = f.backend.get_health_display()
        if f.backend.health_detail:
            health += f": {f.backend.health_detail}"
        rows.append(("Backend health", health))
        rows.append(("Backend last test", _last_test(f.backend)))
        if f.backend.limit is not None:
            rows.append(("Backend allowance", _allowance_used(f)))
        if m.status in (Status.WAITING, Status.TO_SEND):
            rows += _pace_facts(f)
    else:
        rows.append(("Backend", "none configured"))
    if m.possibly_delivered:
        rows.append(("Possibly delivered", "yes: a send was interrupted after the body left"))
    rows.append(("Message-ID", m.message_id))
    return rows


def _allowance_used(f: _Facts) -> str:
    """A limited backend's allowance: sent, on the way (To send, which holds
    its share already), left."""
    b = f.backend
    assert b is not None and b.limit is not None
    left = allowance_left(b.pk)
    left = b.left or 0 if left is None else max(left, 0)
    on_way = max(b.limit - b.sent_count - left, 0)
    unit = "credits (SMS segments)" if f.is_sms else "messages"
    way = f", {on_way} on their way" if on_way else ""
    return f"{b.sent_count} of {b.limit} {unit} sent{way}, {left} left"


def _pace_facts(f: _Facts) -> list[tuple[str, str]]:
    """The backend's rate limit, pause and connection cap as they stand now."""
    b = f.backend
    assert b is not None
    rows: list[tuple[str, str]] = []
    now = timezone.now()
    if b.rate_per_minute:
        starts = rate_window(b.pk, now)
        text = (
            f"{_plural(b.rate_per_minute, 'message')} a minute; "
            f"{len(starts)} started in the last minute"
        )
        slot = rate_slots(starts, b.rate_per_minute, now, 1)[0]
        text += f"; next free slot at {_fmt(slot)}" if slot > now else "; a slot is free now"
        rows.append(("Backend rate limit", text))
    if b.paused_until is not None and b.paused_until > now:
        rows.append(("Backend paused until", _fmt(b.paused_until)))
    if b.max_connections and b.channel == Channel.EMAIL:
        rows.append(
            (
                "Backend connections",
                f"at most {b.max_connections}; {len(open_slots(b.pk, now))} open now",
            )
        )
    return rows


# --------------------------------------------------------------- per status


def _why(f: _Facts) -> str:
    m = f.message
    text = m.reason_text or "No reason was recorded."
    if m.reason_code == Reason.ACCEPTED and f.is_sms:
        # An SMS is taken by a provider, or only printed by a trial backend.
        trial = f.backend is not None and f.backend.kind == "console"
        text = f"{'Handled by a trial backend' if trial else 'Accepted by the provider'}. {text}"
    elif m.reason_code in Reason.values:
        text = f"{Reason(m.reason_code).label}. {text}"
    if f.hold is not None:
        text += f" {_hold_headline(f.hold)}"
    b = f.backend
    if (
        m.status == Status.BACKEND_TEST_REQUIRED
        and m.reason_code == Reason.BACKEND_UNTESTED
        and b is not None
        and b.last_test_at is not None
        and b.last_test_at > m.status_changed_at
        and _tests_current_settings(b)
        and not (b.last_test_result or {}).get("ok")
    ):
        text += f" Since then these settings were tested, at {_fmt(b.last_test_at)}, and failed."
    if m.possibly_delivered and m.status != Status.SENT:
        text += " An earlier send was interrupted after the body left; a copy may arrive twice."
    if f.no_worker:
        text += f" {_no_worker_line(f)}"
    return text


def _tests_current_settings(backend: Backend) -> bool:
    """Whether the backend's last test was of its current settings."""
    if backend.last_test_at is None:
        return False
    # A stored result without a version is from before versions were kept:
    # read it as a test of the settings it stands next to.
    tested = (backend.last_test_result or {}).get("settings_version")
    return tested in (None, backend.settings_version)


def _hold_headline(hold: BackendHold) -> str:
    """One sentence: what holds the message back now, and until when."""
    name = hold.backend.name
    if hold.kind == "paused":
        return f"It is held now: backend {name} is paused until {_fmt(hold.until)}."
    if hold.kind == "rate_limit":
        return (
            f"It is held now by the rate limit of backend {name} "
            f"({_plural(hold.rate, 'message')} a minute); the next slot opens at "
            f"{_fmt(hold.until)}."
        )
    if hold.cap == 1:
        return f"It is held now: the one connection backend {name} allows is in use."
    return f"It is held now: all {hold.cap} connections backend {name} allows are in use."


def _hold_steps(f: _Facts, hold: BackendHold) -> list[str]:
    """What the backend's pause, rate limit or connection cap means for this message."""
    name = hold.backend.name
    no_button = (
        "It leaves by itself; Send outgoing messages cannot make it leave sooner (it is "
        "already due)."
    )
    if hold.kind == "paused":
        throttled = (
            f" (the last one: {hold.throttle_reply}, at {_fmt(hold.throttle_at)})"
            if hold.throttle_reply
            else ""
        )
        return [
            f"Backend {name} is paused until {_fmt(hold.until)}: its server answered "
            f"{THROTTLE_REPEATS} times in a row that it is busy or throttling{throttled}. "
            "No message is started through this backend until the pause ends (the minimum "
            "retry backoff of the global settings).",
            no_button,
            "If the pauses keep coming, set a lower Rate per minute for the backend, or ask "
            "the mail administrator (or the provider) what rate the server accepts.",
        ]
    if hold.kind == "rate_limit":
        rate = _plural(hold.rate, "message")
        steps = [
            f"Backend {name} starts at most {rate} a minute (its Rate per minute, counted "
            f"for all workers together). {_plural(hold.started, 'message')} started through "
            f"it in the last minute, so its next slot opens at {_fmt(hold.until)}."
        ]
        if hold.ahead and hold.turn_at is not None:
            steps.append(
                f"{_plural(hold.ahead, 'other message')} of this backend "
                f"{'is' if hold.ahead == 1 else 'are'} queued ahead of this one; at "
                f"{rate} a minute its turn comes at about {_fmt(hold.turn_at)}."
            )
        else:
            steps.append("It is the next message of this backend to leave.")
        steps.append(no_button)
        steps.append(
            f"If this pace is too slow, raise Rate per minute for backend {name} in the "
            "settings (no higher than the server or provider allows)."
        )
        return steps
    holders = ", ".join(hold.holders)
    one = hold.cap == 1
    return [
        f"Backend {name} allows at most {_plural(hold.cap, 'connection')} at a time, and "
        f"{'it is' if one else 'all are'} open now (held by {holders}). The message goes "
        f"out through {'it' if one else 'one of them'} when its worker takes the message, "
        f"or once {'it is' if one else 'one is'} closed; a connection of a worker that "
        f"stopped is freed when its lease ends ({_fmt(hold.until)}).",
        no_button,
        f"If messages pile up, raise Connections at most for backend {name} in the "
        "settings, if the server allows more.",
    ]


def _where(f: _Facts) -> str:
    """The server the message was sent to, without credentials."""
    b = f.backend
    if b is None:
        return "the server"
    if b.channel == Channel.EMAIL and b.host:
        return f"{b.host}:{b.port} (backend {b.name})"
    return f"backend {b.name} ({_backend_where(b)})"


def _retry_cause(f: _Facts) -> str:
    """What went wrong on the last attempt, for a scheduled retry: the
    temporary reply, or what happened when there was none."""
    attempt = f.last_attempt
    where = _where(f)
    if attempt is None:
        return "The last attempt failed temporarily."
    if attempt.smtp_code:
        return f"{where} answered with a temporary failure: {f.server_reply}."
    # The transport's own words: they say where and, for a timeout, how long.
    detail = f" ({attempt.reply})" if attempt.reply else ""
    step = f" at the {attempt.phase} step" if attempt.phase else ""
    reason = attempt.error_reason
    if reason == "connection_refused":
        return (
            f"{where} refused the connection: nothing accepted connections on that host and "
            "port, so no server answered. The server may be down or restarting, or a "
            "firewall rejects the connection."
        )
    if reason == "timeout":
        return (
            f"No answer came from {where} in time{step}{detail}. The server may be "
            "overloaded, or a firewall drops the connection silently."
        )
    if reason in ("connection_lost", "interrupted"):
        return f"The connection to {where} was cut{step} before an answer came{detail}."
    if reason == "journal":
        return (
            "The attempt was stopped before the text left: Outbound could not record that "
            f"it was about to send it{detail}. Nothing reached the server."
        )
    if reason == "internal_error":
        return f"An internal error stopped the attempt{step}{detail}; no reply came."
    return f"The attempt with {where} ended{step} without a reply{detail}."


def _todo_waiting(f: _Facts) -> list[str]:
    m = f.message
    steps = [_no_worker_line(f)] if f.no_worker else []
    if m.reason_code == Reason.ALLOWANCE_EXHAUSTED and f.backend is not None:
        return [
            *steps,
            f"Backend {f.backend.name} has used its allowance: {_allowance_used(f)}.",
            "Raise the backend's limit or reset its count in the settings; held messages "
            "are checked again every minute and leave by themselves.",
        ]
    if m.send_at and m.send_at > timezone.now():
        then = "a worker must be running by then" if f.no_worker else "nothing needs to be done"
        steps.append(f"It is scheduled for {_fmt(m.send_at)}; {then}.")
    elif not f.no_worker:
        steps.append(
            "A running worker validates it within seconds, or, when many messages are "
            "queued, as soon as it has sent those ahead of it. If it stays Waiting, open "
            "the Workers page and check that a worker is alive."
        )
        steps.append(
            "If it is stuck (long past its due time), use Send outgoing messages on the "
            "Outgoing messages page."
        )
    return steps


def _todo_to_send(f: _Facts) -> list[str]:
    m = f.message
    steps: list[str] = []
    if m.claim_token is not None:
        steps.append(
            f"Worker {m.claimed_by or '(unknown)'} is sending it right now; wait a moment "
            "and reload."
        )
    if m.reason_code == Reason.RETRY_SCHEDULED and m.claim_token is None:
        due = m.next_attempt_at
        if due is not None and due > timezone.now():
            when = f"The next attempt is at {_fmt(due)}"
        else:
            when = f"Its next attempt was due at {_fmt(due)}"
        steps.append(f"{_retry_cause(f)} {when}; nothing needs to be done unless it keeps failing.")
        attempt = f.last_attempt
        answered = attempt is not None and bool(attempt.smtp_code)
        if f.is_sms:
            steps.append(
                "If every message fails this way, check the provider's status page and that "
                "this machine can reach the provider."
            )
        elif attempt is not None and _mailbox_full(attempt):
            steps.append(
                "The recipient's mailbox is full: the relay is fine and the message is tried "
                "again until the retry lifetime ends. Ask the recipient to make room in their "
                "mailbox."
            )
        elif answered:
            steps.append(
                "If every message fails this way, ask the mail administrator whether the relay "
                "is throttling or down."
            )
        else:
            steps.append(
                "If every message fails this way, check that the server is running, that the "
                "backend's host and port are right, and that this machine may connect to it."
            )
    elif m.reason_code in (Reason.INTERRUPTED, Reason.LEASE_EXPIRED):
        steps.append(
            "A worker stopped while handling it; it is tried again automatically. Check the "
            "Workers page for the worker that stopped."
        )
    if f.hold is not None:
        steps += _hold_steps(f, f.hold)
    if f.no_worker:
        steps.insert(0, _no_worker_line(f))
    if not steps:
        steps.append(
            "A running worker sends it within seconds. If it stays To send, check the "
            "Workers page and the backend's health on this page."
        )
    if m.possibly_delivered:
        steps.append(
            "An earlier send was interrupted after the body left: the recipient may get a "
            "copy twice (same Message-ID, so most mail systems keep only one)."
        )
    return steps


def _mailbox_full(attempt: Attempt) -> bool:
    """552 to a recipient, or the enhanced code for a full mailbox (x.2.2)."""
    return attempt.smtp_code == 552 or attempt.enhanced_code in ("4.2.2", "5.2.2")


def _todo_sent_sms(f: _Facts) -> list[str]:
    m = f.message
    provider_id = f" (provider message id {f.queue_id})" if f.queue_id else ""
    if f.backend is not None and f.backend.kind == "console":
        return [
            f"Backend {f.backend.name} printed it in the worker's output at "
            f"{_fmt(m.sent_at)}: it is a trial backend, so no phone received anything, "
            f"{m.message_to or 'the number'} included.",
            "To reach phones, make a Twilio or HTTP gateway backend the default SMS backend, "
            "then Re-send.",
        ]
    steps = [
        f"The SMS provider accepted the message at {_fmt(m.sent_at)}{provider_id}. That "
        "means it left Outbound; the receipt below says whether the handset got it."
    ]
    code = m.receipt_code
    if m.receipt_status == "delivered" or m.receipt_status == "read":
        steps.append(
            f"The provider reported it delivered at {_fmt(m.receipt_at)}: it reached the "
            f"phone with the number {m.message_to}. If the person says they did not get it, "
            "check that this number is really theirs."
        )
    elif m.receipt_status in ("undelivered", "failed"):
        known = TWILIO_ERRORS.get(code, "") if f.backend and f.backend.kind == "twilio" else ""
        steps.append(
            f"The provider reported it {m.receipt_status} at {_fmt(m.receipt_at)}"
            + (f" with error {code}" if code else "")
            + (f" ({known})" if known else "")
            + "."
        )
        steps.append(
            "Check the number with the person (switched off, abroad, a landline, "
            "unsubscribed); "
            + (
                "fix the contact's mobile number, then Re-send."
                if f.contact is not None
                else "the number was given directly (no contact), so the platform that "
                "produced the message must send it to the right one."
            )
        )
    elif m.receipt_status:
        steps.append(
            f"The last receipt says {describe(m.receipt_status, code, provider='')}; a final "
            "one (delivered or undelivered) usually follows within minutes."
        )
    elif conf.public_url():
        steps.append(
            "No delivery receipt has arrived yet; they usually come within minutes. If none "
            "ever comes, check that the provider can reach this service's public address."
        )
    else:
        steps.append(
            "No delivery receipts are asked for, because this deployment has no public "
            "address (OUTBOUND_PUBLIC_URL) the provider could post them to."
        )
    if f.contact is not None and f.contact.mobile and f.contact.mobile != m.message_to:
        steps.append(f"The contact's mobile is now {f.contact.mobile}; Re-send uses it.")
    if m.possibly_delivered:
        steps.append("An earlier send was interrupted; the phone may have received it twice.")
    steps.append(
        "If it must be sent again, use Re-send (it uses the contact's current data)."
        if f.contact is not None
        else "If it must be sent again, use Re-send (to the same number)."
    )
    return steps


def _todo_sent(f: _Facts) -> list[str]:
    m = f.message
    if f.is_sms:
        return _todo_sent_sms(f)
    queue = f" (relay queue id {f.queue_id})" if f.queue_id else ""
    steps = [
        f"The mail server accepted the message at {_fmt(m.sent_at)}{queue}. That means it "
        "left Outbound; it is not proof that it reached the mailbox.",
        f"Ask the recipient to look in their junk or spam folder for the subject “{m.subject}”."
        if m.subject
        else "Ask the recipient to look in their junk or spam folder.",
        f"Check that the address is right: it went to {_went_to(f)}."
        + (
            f" The contact's address is now {f.contact_email}."
            if f.contact is not None and f.contact_email and f.contact_email != m.message_to
            else ""
        ),
        "The recipient's mail server or their administrator may block the sender address or "
        "domain; ask them to check their quarantine and blocklists.",
    ]
    if f.queue_id:
        steps.append(
            f"Give the relay queue id {f.queue_id} and the Message-ID {m.message_id} to the "
            "mail administrator: the relay's log shows where the message went after us."
        )
    else:
        steps.append(
            f"Give the Message-ID {m.message_id} to the mail administrator to trace it in the "
            "relay's log."
        )
    refused = [r for r in f.recipients if r.outcome == Recipient.Outcome.REFUSED]
    if refused:
        steps.append(
            "Some recipients were refused: "
            + "; ".join(
                f"{r.address} ({r.code or ''} {r.reply})".replace("( ", "(") for r in refused
            )
            + ". Fix those addresses and re-send if they must get it."
        )
    deferred = [r for r in f.recipients if r.outcome == Recipient.Outcome.DEFERRED]
    if deferred:
        who = ", ".join(r.address for r in deferred)
        steps.append(
            "Deferred, not refused: the server answered "
            + "; ".join(f"{r.address} with {r.code or ''} {r.reply}".rstrip() for r in deferred)
            + ", a temporary refusal, while it accepted the message for the others. "
            f"Outbound does not try a single recipient of a sent message again, so {who} "
            "did not get it. If they must, send them a new message once their server takes "
            "mail again (Re-send would send a second copy to everyone)."
        )
    if m.possibly_delivered:
        steps.append(
            "An earlier send was interrupted after the body left, so a copy may have arrived twice."
        )
    steps.append(
        "If it must be sent again, use Re-send (it uses the contact's current data)."
        if f.contact is not None
        else "If it must be sent again, use Re-send (to the same addresses)."
    )
    return steps


def _went_to(f: _Facts) -> str:
    """The addresses the server accepted the message for, or "Message to"
    when no recipient outcome was recorded."""
    accepted = [r.address for r in f.recipients if r.outcome == Recipient.Outcome.ACCEPTED]
    if accepted:
        return ", ".join(accepted)
    return f.message.message_to or "(none)"


def _todo_not_sent(f: _Facts) -> list[str]:
    m = f.message
    code = m.reason_code
    current = f.contact_address
    what = "mobile number" if f.is_sms else "address"
    if code in (Reason.RECIPIENT_INVALID, Reason.RECIPIENT_MISSING):
        used = m.message_to or "(none)"
        invalid = [r for r in f.recipients if r.outcome == Recipient.Outcome.INVALID]
        if invalid:
            used = ", ".join(r.address for r in invalid)
        steps = [f"The {'number' if f.is_sms else 'address'} used was {used}."]
        if f.is_sms and invalid and invalid[0].reply:
            steps.append(invalid[0].reply)
        if f.contact is not None:
            if current and current != used:
                steps.append(
                    f"The contact {f.contact} now has the {what} {current}: it may already "
                    "be fixed."
                )
            else:
                steps.append(f"The contact {f.contact} currently has {current or 'no ' + what}.")
            if f.is_sms:
                steps.append(
                    "An SMS needs a mobile number; a number without a country code is read "
                    "in the default region of the global settings. Fix the contact's mobile "
                    "number, then Re-send."
                )
            else:
                steps.append("Fix the contact, then Re-send.")
        else:
            steps.append(
                "The address was given directly by the sender (no contact): correct it in "
                "the platform that produced the message and send it again."
            )
        return steps
    if code == Reason.RECIPIENT_BLOCKED:
        steps = [
            f"{address} matches the blocklist entry {entry}"
            + (f" (reason: {entry.reason})" if entry.reason else "")
            + "."
            for address, entry in sorted(f.blocks.items())
        ] or ["A recipient is on the blocklist."]
        what = "number" if f.is_sms else "address"
        steps.append(
            "If the block is no longer wanted, remove the entry on the Blocklist page, then "
            + (
                f"Re-send. Otherwise change the contact's {what}, then Re-send."
                if f.contact is not None
                else f"Re-send. Otherwise the {what} was given directly (no contact): the "
                "platform that produced the message must send it to another one."
            )
        )
        return steps
    if code == Reason.CONTACT_INACTIVE:
        return [
            f"The contact {f.contact or ''} is inactive.".replace("  ", " "),
            "If they should receive messages, mark the contact active, then Re-send.",
        ]
    if code == Reason.NOTIFICATIONS_OFF:
        return [
            f"The contact {f.contact or ''} has notifications turned off.".replace("  ", " "),
            "Only if they asked to receive messages again: turn notifications on for the "
            "contact, then Re-send.",
        ]
    if code in (Reason.SENDER_INVALID, Reason.SENDER_REFUSED):
        return [
            f"The sender address {m.from_address or '(none)'} was not accepted."
            + (f" The server replied: {f.server_reply}." if f.server_reply else ""),
            "Set a valid from address on the backend or in the global settings (the relay "
            "may only allow addresses of its own domain), then Re-send.",
        ]
    if code in (Reason.REJECTED, Reason.RECIPIENTS_REFUSED) and f.is_sms:
        return [
            f"The SMS provider refused the message for good: {f.server_reply or m.reason_text}",
            f"Check the number {m.message_to or '(none)'} with the person"
            + (" and fix the contact's mobile number." if f.contact is not None else ".")
            + " A refusal of the text or the sender needs the provider's support; give them "
            "the reply above.",
            "Then Re-send.",
        ]
    if code in (Reason.REJECTED, Reason.RECIPIENTS_REFUSED):
        fix = (
            "and fix the contact"
            if f.contact is not None
            else "and have the platform that produced the message correct it (no contact)"
        )
        return [
            f"The server refused the message for good: {f.server_reply or m.reason_text}",
            "A 550/551/553 to an address usually means the mailbox does not exist: check the "
            f"address {m.message_to or '(none)'} with the recipient {fix}.",
            "A refusal of the content (spam, policy, size) needs the mail administrator; give "
            "them the reply above and the Message-ID.",
            "Then Re-send.",
        ]
    if code == Reason.RETRY_LIFETIME_OVER:
        return [
            f"Every attempt failed temporarily until the retry lifetime ran out. Last reply: "
            f"{f.server_reply or '(none)'}.",
            "Check the provider's status page and that this machine can reach it, then Re-send."
            if f.is_sms
            else "Check with the mail administrator that the relay accepts mail, then Re-send.",
        ]
    if code == Reason.CHANNEL_DISABLED:
        return ["This channel is not enabled in the global settings; enable it, then Re-send."]
    if code == Reason.MESSAGE_TOO_LONG:
        return [
            m.reason_text,
            "Shorten the text in the platform that produced it, or raise Maximum SMS "
            "segments in the global settings, then Re-send.",
        ]
    if code == Reason.MESSAGE_EMPTY:
        return ["The SMS has no text; the platform that produced it must send one with text."]
    return ["Read the reason above, fix its cause, then Re-send."]


def _todo_backend(f: _Facts) -> list[str]:
    b = f.backend
    if b is None:
        return [
            "No backend is configured for this channel. Add one in the global settings, "
            "run its Test; held messages go out by themselves when it succeeds.",
        ]
    health = b.get_health_display()
    if b.health_detail:
        health += f" ({b.health_detail})"
    steps = [
        f"Backend {_backend_line(b)} is {health}; "
        + (f"its last test {_last_test(b)}." if b.last_test_at else "it was never tested."),
    ]
    result = b.last_test_result or {}
    tests_current = _tests_current_settings(b)
    failed_now = tests_current and not result.get("ok")
    advice = advice_for(str(result.get("reason", "")), kind=b.kind) if failed_now else None
    if f.message.reason_code == Reason.BACKEND_AUTH_FAILED:
        steps.append(
            "The provider refused the account SID or auth token (or API secret): correct them."
            if b.channel == Channel.SMS
            else "The server refused the user name or password: correct them."
        )
    elif f.message.reason_code == Reason.BACKEND_TLS_FAILED and b.health_reason == "tls_wrong_host":
        # The transport read the names from the certificate the server presented.
        steps.append(
            f"The server's certificate is for another host name ({b.health_detail}). Set the "
            f"backend's host to a name the certificate is for, or have the certificate "
            f"reissued to include {b.host}; then run the Test."
        )
    elif f.message.reason_code == Reason.BACKEND_TLS_FAILED:
        steps.append("The secure connection failed: check the port and the security setting.")
    elif f.message.reason_code == Reason.BACKEND_HOST_NOT_FOUND:
        steps.append(f"The host name {b.host} could not be found: check its spelling.")
    elif f.message.reason_code == Reason.BACKEND_SECRET_UNREADABLE:
        steps.append("The stored password cannot be decrypted: enter it again.")
    elif f.message.reason_code == Reason.BACKEND_UNTESTED:
        if b.last_test_at is None:
            steps.append("These settings were never tested.")
        elif failed_now:
            assert advice is not None
            steps.append(
                f"The current settings were tested at {_fmt(b.last_test_at)} and the test "
                f"failed: {advice.headline}. {advice.explanation}"
            )
        elif tests_current:
            steps.append(
                f"The current settings passed their test at {_fmt(b.last_test_at)}; the held "
                "messages are being released."
            )
        else:
            outcome = "succeeded" if result.get("ok") else "failed"
            steps.append(
                f"The settings changed after the last test (which {outcome} at "
                f"{_fmt(b.last_test_at)}) and were not tested since."
            )
    if advice is not None and not advice.ok:
        steps.append(f"{advice.next_step} Held messages go out by themselves once it succeeds.")
    else:
        steps.append("Fix the settings, run the Test; held messages go out by themselves.")
    return steps


def _todo_cancelled(f: _Facts) -> list[str]:
    m = f.message
    cancel = (
        Event.objects.filter(message=m, to_status=Status.CANCELLED).order_by("-created_at").first()
    )
    who = f" by {cancel.actor} at {_fmt(cancel.created_at)}" if cancel else ""
    steps = [f"It was cancelled{who}; nothing will be sent."]
    if m.group_key:
        steps.append(f"It belongs to the series {m.group_key}.")
    steps.append("If it is still needed, the platform must generate a new message.")
    return steps


_TODO = {
    Status.WAITING: _todo_waiting,
    Status.TO_SEND: _todo_to_send,
    Status.SENT: _todo_sent,
    Status.NOT_SENT: _todo_not_sent,
    Status.BACKEND_TEST_REQUIRED: _todo_backend,
    Status.CANCELLED: _todo_cancelled,
}


def explain_message(message: Message) -> Explanation:
    """The explanation of ``message``'s current status, with its own facts."""
    f = _gather(message)
    status = Status(message.status)
    meaning, when = MEANING[status]
    return Explanation(
        status=status.value,
        label=status.label,
        meaning=meaning,
        when=when,
        why=_why(f),
        what_to_do=_TODO[status](f),
        facts=_facts(f),
        backend=_backend_name(f),
    )


def diagnostic_report(message: Message) -> str:
    """Plain text for a support ticket: fields, explanation, history, attempts,
    recipients. Bodies are left out (they may hold personal data) and the
    backend is named without credentials."""
    e = explain_message(message)
    m = message
    lines = [
        f"Outbound diagnostic report for message {m.pk}",
        f"Generated at {_fmt(timezone.now())}",
        "",
        "== Message ==",
        f"Status: {e.label} ({e.status})",
        f"Reason: {m.reason_code or '-'}: {m.reason_text or '-'}",
        f"Channel: {m.get_channel_display()}",
        f"Source: {m.get_source_display()}",
        f"Created at: {_fmt(m.created_at)}",
        f"Due at: {_fmt(m.send_at)}",
        f"Sent at: {_fmt(m.sent_at) or '-'}",
        f"Message to: {m.message_to or '-'}",
        f"To user: {m.to_user or '-'}",
        f"From: {m.from_address or '-'}",
        f"Subject: {m.subject or '-'}",
        f"Message-ID: {m.message_id}",
        f"Group: {m.group_key or '-'}",
        f"Template: {m.template or '-'}",
        f"Attempt count: {m.attempt_count}",
        f"Possibly delivered: {'yes' if m.possibly_delivered else 'no'}",
        "",
        "== Explanation ==",
        f"What it means: {e.meaning}",
        f"When it happens: {e.when}",
        f"Why this message: {e.why}",
        "What to check and do:",
        *[f"  - {step}" for step in e.what_to_do],
        "",
        "== Facts ==",
        *[f"{label}: {value}" for label, value in e.facts],
        "",
        "== History ==",
    ]
    for ev in m.events.order_by("created_at", "id"):
        change = f"{ev.from_status or 'created'} -> {ev.to_status}" if ev.to_status else ev.kind
        lines.append(
            f"{_fmt(ev.created_at)}  {change}  [{ev.reason_code or '-'}]  by {ev.actor}: {ev.text}"
        )
    lines += ["", "== Attempts =="]
    attempts = list(m.attempts.select_related("backend").order_by("started_at", "id"))
    if not attempts:
        lines.append("(none)")
    for a in attempts:
        backend = a.backend.name if a.backend is not None else "-"
        code = " ".join(str(x) for x in (a.smtp_code or "", a.enhanced_code) if x) or "-"
        lines.append(
            f"{_fmt(a.started_at)} -> {_fmt(a.finished_at) or '...'}  {a.get_outcome_display()}"
            f"  phase {a.phase}  code {code}  backend {backend} v{a.settings_version or '-'}"
            f"  worker {a.worker or '-'}"
        )
        if a.reply:
            lines.append(f"    reply: {a.reply}")
        if a.provider_id:
            lines.append(f"    relay queue id: {a.provider_id}")
    lines += ["", "== Recipients =="]
    recipients = list(m.recipients.order_by("id"))
    if not recipients:
        lines.append("(none)")
    for r in recipients:
        detail = " ".join(str(x) for x in (r.code or "", r.reply) if x)
        lines.append(
            f"{r.get_kind_display()}: {r.address}  {r.get_outcome_display()}"
            + (f"  ({detail})" if detail else "")
        )
    return "\n".join(lines) + "\n"
