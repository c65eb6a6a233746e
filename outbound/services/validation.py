"""Validation: a due Waiting message becomes To send, Not sent, Backend test
required, or stays Waiting (backend allowance used up).

Contract: ``validate_due`` takes a batch of due Waiting messages (rows locked
with SKIP LOCKED where the database has it), resolves "Message to" from the
contact as it is now, checks every address, the blocklist, the contact's state
and the backend, and applies one transition per message with a reason text
that names the facts. Database work only; never network I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from outbound.formats import plural
from outbound.models import Backend, GlobalSettings, Message, Recipient
from outbound.services import alerts, transitions
from outbound.services.addresses import (
    CheckedAddress,
    check_email,
    check_mobile,
    find_blocks,
    find_number_blocks,
)
from outbound.services.prepared import insert_values
from outbound.services.writegate import GATE
from outbound.sms import analyse
from outbound.states import Channel, Reason, Status
from outbound.text import header_problem

logger = logging.getLogger(__name__)

ALLOWANCE_RECHECK = timedelta(seconds=60)


@dataclass
class Decision:
    to: Status
    reason: str
    text: str
    fields: dict[str, Any] = field(default_factory=dict)
    recipients: list[Recipient] = field(default_factory=list)


def _default_backends() -> dict[str, Backend]:
    return {b.channel: b for b in Backend.objects.filter(is_default=True)}


def backend_block(backend: Backend | None, channel: str) -> tuple[str, str] | None:
    """Why ``backend`` cannot send now (reason, text), or None when it can."""
    if backend is None:
        return (
            Reason.BACKEND_MISSING,
            f"No default {'email' if channel == Channel.EMAIL else 'SMS'} backend is configured. "
            "Set one in the global settings and test it.",
        )
    if backend.health == "failing":
        detail = f": {backend.health_detail}" if backend.health_detail else ""
        return (
            Reason.BACKEND_FAILING,
            f"Backend {backend.name} is failing{detail}. Fix its settings and run the test; "
            "held messages go out when the test succeeds.",
        )
    if not backend.is_usable:
        return (
            Reason.BACKEND_UNTESTED,
            f"The settings of backend {backend.name} (version {backend.settings_version}) "
            "have not been tested. Run the backend test; held messages go out when it "
            "succeeds.",
        )
    return None


def _decide_email(
    message: Message,
    *,
    backend: Backend | None,
    settings: GlobalSettings,
    blocks: dict[str, Any],
    checked: dict[str, CheckedAddress],
) -> Decision:
    contact = message.contact
    fields: dict[str, Any] = {}
    entries: list[tuple[str, str]] = []  # (kind, raw)
    refusal = _contact_refusal(message, fields)
    if refusal is not None:
        return refusal
    if contact is not None and header_problem(contact.name):
        # Saved before names were checked: the To header cannot carry it, and
        # every retry would fail the same way inside the transport.
        fields["to_user"] = ""
        return Decision(
            Status.NOT_SENT,
            Reason.RECIPIENT_INVALID,
            f"The name of contact {contact.pk} ({contact.name!r}) "
            f"{header_problem(contact.name)}. Fix the name on the contact and re-send.",
            fields,
        )
    if contact is not None:
        if not contact.email.strip():
            fields["message_to"] = ""
            return Decision(
                Status.NOT_SENT,
                Reason.RECIPIENT_MISSING,
                f"Contact {contact} has no email address. Add one to the contact and re-send.",
                fields,
            )
        entries.append((Recipient.Kind.TO, contact.email.strip()))
    entries += [(Recipient.Kind.TO, a) for a in message.to]
    entries += [(Recipient.Kind.CC, a) for a in message.cc]
    entries += [(Recipient.Kind.BCC, a) for a in message.bcc]
    if not entries:
        return Decision(
            Status.NOT_SENT,
            Reason.RECIPIENT_MISSING,
            "The message has no recipient: no contact and no address was given.",
            fields,
        )

    recipients: list[Recipient] = []
    problems: list[tuple[str, str]] = []  # (reason, text)
    usable: list[str] = []
    for kind, raw in entries:
        c = checked[raw]
        if c.error:
            recipients.append(
                Recipient(
                    message=message, kind=kind, address=raw[:320], outcome="invalid", reply=c.error
                )
            )
            problems.append((Reason.RECIPIENT_INVALID, c.error))
            continue
        block = blocks.get(c.address.lower())
        if block is not None:
            why = f" ({block.reason})" if block.reason else ""
            text = f"{c.address} is on the blocklist as {block}{why}."
            recipients.append(
                Recipient(
                    message=message,
                    kind=kind,
                    address=c.address,
                    name=c.name,
                    outcome="blocked",
                    reply=text,
                )
            )
            problems.append((Reason.RECIPIENT_BLOCKED, text))
            continue
        recipients.append(Recipient(message=message, kind=kind, address=c.address, name=c.name))
        usable.append(c.address)

    to_addresses = [r.address for r in recipients if r.kind == Recipient.Kind.TO]
    fields["message_to"] = ", ".join(to_addresses)[:1000]
    if not usable:
        reason = problems[0][0] if len({p[0] for p in problems}) == 1 else Reason.RECIPIENT_INVALID
        text = " ".join(p[1] for p in problems)
        return Decision(Status.NOT_SENT, reason, text, fields, recipients)

    block = backend_block(backend, message.channel)
    sender_raw = (
        message.from_address or (backend.from_address if backend else "") or (settings.default_from)
    )
    if not sender_raw:
        if block is not None:
            # The default from address belongs to the backend settings that
            # are missing or being fixed: hold the message for them (it is
            # checked again when they pass their test) rather than refuse it
            # for good.
            fields["backend"] = backend
            return Decision(Status.BACKEND_TEST_REQUIRED, block[0], block[1], fields, recipients)
        return Decision(
            Status.NOT_SENT,
            Reason.SENDER_INVALID,
            "No from address: the message has none, and neither the backend nor the global "
            "settings give a default.",
            fields,
            recipients,
        )
    sender = check_email(sender_raw)
    if sender.error:
        return Decision(
            Status.NOT_SENT,
            Reason.SENDER_INVALID,
            f"From address: {sender.error}",
            fields,
            recipients,
        )
    fields["from_address"] = sender_raw

    if block is not None:
        fields["backend"] = backend
        return Decision(Status.BACKEND_TEST_REQUIRED, block[0], block[1], fields, recipients)
    assert backend is not None
    fields["backend"] = backend
    if backend.left == 0:
        return Decision(
            Status.WAITING,
            Reason.ALLOWANCE_EXHAUSTED,
            f"Backend {backend.name} has used its allowance "
            f"({plural(backend.limit or 0, 'message')}). "
            "Raise the limit or reset the count to release the message.",
            fields,
            recipients,
        )

    skipped = [p[1] for p in problems]
    text = f"Validated; will be sent to {', '.join(usable)} through {backend.name}."
    if skipped:
        text += " Left out: " + " ".join(skipped)
    return Decision(Status.TO_SEND, Reason.VALIDATED, text, fields, recipients)


def _contact_refusal(message: Message, fields: dict[str, Any]) -> Decision | None:
    contact = message.contact
    if contact is None:
        return None
    fields["to_user"] = contact.name or message.to_user
    if not contact.active:
        return Decision(
            Status.NOT_SENT,
            Reason.CONTACT_INACTIVE,
            f"Contact {contact} is inactive; nothing is sent to inactive contacts.",
            fields,
        )
    if not contact.notifications_enabled:
        return Decision(
            Status.NOT_SENT,
            Reason.NOTIFICATIONS_OFF,
            f"Notifications are turned off for contact {contact}.",
            fields,
        )
    return None


def _decide_sms(
    message: Message,
    *,
    backend: Backend | None,
    settings: GlobalSettings,
    numbers: dict[str, tuple[str, str]],
    blocks: dict[str, Any],
) -> Decision:
    fields: dict[str, Any] = {}
    if not settings.sms_enabled:
        return Decision(
            Status.NOT_SENT,
            Reason.CHANNEL_DISABLED,
            "SMS is turned off in the global settings (SMS enabled is unchecked); no SMS "
            "leaves while it is off. Turn it on and re-send.",
        )
    refusal = _contact_refusal(message, fields)
    if refusal is not None:
        return refusal
    contact = message.contact
    raw = message.to[0] if message.to else ""
    if contact is not None:
        raw = contact.mobile.strip()
        if not raw:
            fields["message_to"] = ""
            return Decision(
                Status.NOT_SENT,
                Reason.RECIPIENT_MISSING,
                f"Contact {contact} has no mobile number. Add one to the contact and re-send.",
                fields,
            )
    if not raw:
        return Decision(
            Status.NOT_SENT,
            Reason.RECIPIENT_MISSING,
            "The SMS has no recipient: no contact and no number was given.",
            fields,
        )
    number, error = numbers[raw]
    owner = f" (the mobile of contact {contact})" if contact is not None else ""
    if error:
        fields["message_to"] = raw[:1000]
        recipient = Recipient(message=message, address=raw[:320], outcome="invalid", reply=error)
        return Decision(
            Status.NOT_SENT,
            Reason.RECIPIENT_INVALID,
            f"{error.rstrip('.')}{owner}. Correct the number and re-send.",
            fields,
            [recipient],
        )
    fields["message_to"] = number
    block = blocks.get(number)
    if block is not None:
        why = f" ({block.reason})" if block.reason else ""
        text = f"{number} is on the blocklist as {block}{why}."
        recipient = Recipient(message=message, address=number, outcome="blocked", reply=text)
        return Decision(Status.NOT_SENT, Reason.RECIPIENT_BLOCKED, text, fields, [recipient])
    recipients = [Recipient(message=message, address=number)]
    info = analyse(message.text_body)
    if info.segments == 0:
        return Decision(
            Status.NOT_SENT,
            Reason.MESSAGE_EMPTY,
            "The SMS has no text.",
            fields,
            recipients,
        )
    if info.segments > settings.max_sms_segments:
        return Decision(
            Status.NOT_SENT,
            Reason.MESSAGE_TOO_LONG,
            f"The text needs {info.segments} SMS segments ({info.characters} {info.encoding} "
            f"characters); the global settings allow at most {settings.max_sms_segments}. "
            "Shorten it or raise the maximum, then re-send.",
            fields,
            recipients,
        )
    block_reason = backend_block(backend, message.channel)
    fields["backend"] = backend
    if block_reason is not None:
        return Decision(
            Status.BACKEND_TEST_REQUIRED, block_reason[0], block_reason[1], fields, recipients
        )
    assert backend is not None
    if backend.left is not None and backend.left < info.segments:
        return Decision(
            Status.WAITING,
            Reason.ALLOWANCE_EXHAUSTED,
            f"Backend {backend.name} has {backend.left} of its {backend.limit} credits left; "
            f"this SMS needs {info.segments} (one per segment). Raise the limit or reset the "
            "count to release the message.",
            fields,
            recipients,
        )
    return Decision(
        Status.TO_SEND,
        Reason.VALIDATED,
        f"Validated; will be sent to {number}{owner} through {backend.name} "
        f"({info.segments} segment{'s' if info.segments != 1 else ''}, {info.encoding}).",
        fields,
        recipients,
    )


def _due(now: datetime, limit: int) -> list[Message]:
    """Up to ``limit`` due Waiting messages with their contacts and backends.

    Where the database can (PostgreSQL), the rows are locked with SKIP
    LOCKED, so workers validating at the same time take different ones; the
    caller must then be in a transaction. Elsewhere (SQLite) it is a plain
    read, and the status condition of every write decides.
    """
    qs = Message.objects.filter(status=Status.WAITING, next_attempt_at__lte=now).order_by(
        "next_attempt_at", "id"
    )
    if connection.features.has_select_for_update_skip_locked:
        qs = qs.select_for_update(skip_locked=True, of=("self",))
    ids = list(qs.values_list("id", flat=True)[:limit])
    messages = list(Message.objects.filter(pk__in=ids).select_related("contact"))
    # Oldest first, as they were picked: the allowance goes to them first.
    order = {pk: n for n, pk in enumerate(ids)}
    messages.sort(key=lambda m: order[m.pk])
    # One instance per backend, not one per message.
    _refresh_backends(messages)
    return messages


# What a decision reads of a backend, besides whether its allowance is used
# up (not its count, which every recorded batch changes).
_DECIDING_FIELDS = (
    # These two first: _backend_state reads them by position.
    "is_default",
    "channel",
    "settings_version",
    "tested_version",
    "health",
    "from_address",
)


def _used_up(limit: int | None, sent_count: int) -> bool:
    return limit is not None and sent_count >= limit


def units_of(channel: str, text_body: str) -> int:
    """What a message costs from its backend's allowance: one per email, one
    per segment for an SMS (providers bill SMS credits per segment)."""
    if channel == Channel.SMS:
        return max(analyse(text_body).segments, 1)
    return 1


def allowance_left(
    backend_id: int, *, claimed_only: bool = False, lock: bool = False
) -> int | None:
    """What is left of a backend's allowance once the messages already on
    their way through it are counted, or None when it has no limit.

    The allowance is taken when a message becomes To send, not when it is
    sent: counting only what was sent let one batch validate (and one
    worker send) every message queued together past the limit. With
    ``claimed_only`` only the messages a worker holds count (the claim's
    guard, for a limit lowered under messages already To send). ``lock``
    takes the backend row's lock first (PostgreSQL), so that deciders take
    turns and a recorder cannot move a message to Sent between the two
    reads; SQLite's single write lock does the same for a caller inside a
    write transaction.
    """
    qs = Backend.objects.filter(pk=backend_id)
    if lock and connection.features.has_select_for_update:
        qs = qs.select_for_update()
    row = qs.values_list("limit", "sent_count", "channel").first()
    if row is None:
        return None
    limit, sent, channel = row
    if limit is None:
        return None
    on_the_way = Message.objects.filter(backend_id=backend_id, status=Status.TO_SEND)
    if claimed_only:
        on_the_way = on_the_way.filter(claim_token__isnull=False)
    if channel == Channel.SMS:
        taken = sum(units_of(channel, t) for t in on_the_way.values_list("text_body", flat=True))
    else:
        taken = on_the_way.count()
    return limit - sent - taken


class _Allowance:
    """The allowance a batch may still hand out, per limited backend: read
    once (in backend order, so that deciders lock rows in one order), then
    taken message by message as the batch turns them To send."""

    def __init__(self) -> None:
        self.read: dict[int, int] = {}
        self.left: dict[int, int] = {}

    def read_for(self, backends: list[Backend | None]) -> None:
        locking = connection.in_atomic_block
        for pk in sorted({b.pk for b in backends if b is not None and b.limit is not None}):
            self._read(pk, lock=locking)

    def _read(self, pk: int, *, lock: bool) -> None:
        left = allowance_left(pk, lock=lock)
        if left is not None:
            self.read[pk] = self.left[pk] = left

    def take(self, backend: Backend, message: Message, decision: Decision) -> Decision:
        """``decision`` (To send) when the message fits in what is left,
        else the message waits for allowance."""
        if backend.limit is None:
            return decision
        if backend.pk not in self.left:
            self._read(backend.pk, lock=connection.in_atomic_block)
        left = self.left.get(backend.pk)
        if left is None:
            return decision
        units = units_of(message.channel, message.text_body)
        if units <= left:
            self.left[backend.pk] = left - units
            return decision
        credits = "credits" if message.channel == Channel.SMS else "messages"
        need = f"; this SMS needs {units} (one per segment)" if units > 1 else ""
        return Decision(
            Status.WAITING,
            Reason.ALLOWANCE_EXHAUSTED,
            f"Backend {backend.name} has no allowance left for it: its limit is "
            f"{backend.limit} {credits}, counting those sent and those already on their "
            f"way{need}. Raise the limit or reset the count to release the message.",
            decision.fields,
            decision.recipients,
        )


def _backends_as_read(
    messages: list[Message], defaults: dict[str, Backend], allowance: _Allowance
) -> dict[int | str, tuple[Any, ...]]:
    """The backend facts a batch's decisions rest on, as read: each backend
    used, what was left of its allowance, and which backend is each
    channel's default."""
    seen: dict[int | str, tuple[Any, ...]] = {}
    chosen = [m.backend for m in messages if m.backend_chosen]
    for backend in [*chosen, *defaults.values()]:
        if backend is not None:
            seen[backend.pk] = (
                *(getattr(backend, f) for f in _DECIDING_FIELDS),
                _used_up(backend.limit, backend.sent_count),
                allowance.read.get(backend.pk),
            )
    for channel in Channel.values:
        default = defaults.get(channel)
        seen[channel] = (default.pk if default is not None else None,)
    return seen


def _backend_state(seen: dict[int | str, tuple[Any, ...]]) -> dict[int | str, tuple[Any, ...]]:
    """The same facts as stored now, in one query: the backends read, and
    whichever backends are the defaults now."""
    ids = [key for key in seen if isinstance(key, int)]
    now: dict[int | str, tuple[Any, ...]] = {}
    defaults: dict[str, int] = {}
    rows = Backend.objects.filter(Q(pk__in=ids) | Q(is_default=True)).values_list(
        "id", *_DECIDING_FIELDS, "limit", "sent_count"
    )
    for pk, is_default, channel, *facts in rows:
        if pk in seen:
            left = allowance_left(pk) if seen[pk][-1] is not None else None
            now[pk] = (is_default, channel, *facts[:-2], _used_up(facts[-2], facts[-1]), left)
        if is_default:
            defaults[channel] = pk
    for channel in Channel.values:
        now[channel] = (defaults.get(channel),)
    return now


def _as_stored(
    messages: list[Message],
    plan: _Plan,
    seen: dict[int | str, tuple[Any, ...]],
    *,
    settings: GlobalSettings,
    now: datetime,
    claim: Claim | None,
) -> _Plan:
    """The plan to write, checked in the write transaction against the
    backends as stored now.

    A backend that passed its test (or became the default) since they were
    read has already released what it held, and would never release a
    message held now on what was read before: the batch is then decided
    again on what is stored. On SQLite, where the decisions are made before
    the write lock is taken, this closes the gap; on PostgreSQL it narrows
    it to the moments between this check and the commit.
    """
    if _backend_state(seen) == seen:
        return plan
    _refresh_backends(messages)
    return _plan(messages, settings=settings, defaults=_default_backends(), now=now, claim=claim)


def _refresh_backends(messages: list[Message]) -> None:
    backends = Backend.objects.in_bulk({m.backend_id for m in messages if m.backend_id})
    for m in messages:
        if m.backend_id is not None:
            m.backend = backends.get(m.backend_id)


@dataclass
class Claim:
    """Claim, in the same write, the messages a batch makes To send: for a
    worker whose delivery threads are ready for them (``dispatch.validate_and_claim``).

    ``fields`` are the claim columns to set; messages of ``skip_backends``
    (paused or rate-limited) are left To send for the ordinary claim, which
    counts their allowance. ``start`` runs inside the write transaction with
    the claimed messages (their attempts are journalled there). Afterwards
    ``messages`` and ``recipients`` hold what was claimed, as it now stands.
    """

    fields: dict[str, Any]
    skip_backends: frozenset[int]
    start: Callable[[list[Message]], None]
    messages: list[Message] = field(default_factory=list)
    recipients: dict[int, list[Recipient]] = field(default_factory=dict)


def validate_due(
    *, limit: int = 500, now: datetime | None = None, claim: Claim | None = None
) -> int:
    """Validate up to ``limit`` due Waiting messages; return how many were handled.

    On SQLite the messages are read and decided before the write transaction
    opens, so the one write lock is held only for the writes themselves.
    """
    now = now or timezone.now()
    # A read first: on SQLite every transaction takes the write lock at BEGIN.
    if not Message.objects.filter(status=Status.WAITING, next_attempt_at__lte=now).exists():
        return 0
    settings = GlobalSettings.load()
    defaults = _default_backends()
    if connection.features.has_select_for_update_skip_locked:
        with GATE.writing(), transaction.atomic():
            messages = _due(now, limit)
            plan = _plan(messages, settings=settings, defaults=defaults, now=now, claim=claim)
            seen = _backends_as_read(messages, defaults, plan.allowance)
            plan = _as_stored(messages, plan, seen, settings=settings, now=now, claim=claim)
            _write(plan, claim)
    else:
        messages = _due(now, limit)
        plan = _plan(messages, settings=settings, defaults=defaults, now=now, claim=claim)
        seen = _backends_as_read(messages, defaults, plan.allowance)
        with GATE.writing(), transaction.atomic():
            plan = _as_stored(messages, plan, seen, settings=settings, now=now, claim=claim)
            _write(plan, claim)
    # Told once per incident (raise_alert deduplicates), outside the transaction.
    for backend in plan.exhausted.values():
        alerts.allowance_used(backend)
    return len(messages)


@dataclass
class _Plan:
    """What validating a batch will write."""

    changes: list[transitions.Change] = field(default_factory=list)
    recipients: list[Recipient] = field(default_factory=list)
    # Still held, same reason: (message id, fields), no new history line.
    rechecks: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    exhausted: dict[int, Backend] = field(default_factory=dict)
    # To send and to be claimed: the message and its change.
    claims: list[tuple[Message, transitions.Change]] = field(default_factory=list)
    allowance: _Allowance = field(default_factory=lambda: _Allowance())


def _plan(
    messages: list[Message],
    *,
    settings: GlobalSettings,
    defaults: dict[str, Backend],
    now: datetime,
    claim: Claim | None = None,
) -> _Plan:
    plan = _Plan(allowance=_Allowance())
    allowance = plan.allowance
    allowance.read_for([_backend_for(m, defaults) for m in messages])
    raws: set[str] = set()
    raw_numbers: set[str] = set()
    for m in messages:
        if m.channel == Channel.SMS:
            raw_numbers.update(m.to)
            if m.contact is not None and m.contact.mobile.strip():
                raw_numbers.add(m.contact.mobile.strip())
            continue
        if m.contact is not None and m.contact.email.strip():
            raws.add(m.contact.email.strip())
        raws.update(m.to, m.cc, m.bcc)
    checked = {raw: check_email(raw) for raw in raws}
    blocks = find_blocks(c.address for c in checked.values() if c.address)
    numbers = {raw: check_mobile(raw, region=settings.default_region) for raw in raw_numbers}
    number_blocks = find_number_blocks(n for n, _ in numbers.values())

    for m in messages:
        backend = _backend_for(m, defaults)
        if m.channel == Channel.SMS:
            decision = _decide_sms(
                m, backend=backend, settings=settings, numbers=numbers, blocks=number_blocks
            )
        else:
            decision = _decide_email(
                m, backend=backend, settings=settings, blocks=blocks, checked=checked
            )
        if decision.to == Status.TO_SEND and backend is not None:
            decision = allowance.take(backend, m, decision)
        fields = _changed_fields(m, decision.fields)
        if decision.to == Status.WAITING:
            # Still held: check again later, without a new history line
            # when nothing changed.
            fields["next_attempt_at"] = now + ALLOWANCE_RECHECK
            if m.reason_code == decision.reason:
                plan.rechecks.append((m.pk, fields))
                continue
        elif decision.to == Status.TO_SEND:
            fields["next_attempt_at"] = now
        else:
            fields["next_attempt_at"] = None
        if decision.reason == Reason.ALLOWANCE_EXHAUSTED and backend is not None:
            plan.exhausted[backend.pk] = backend
        claimed = (
            claim is not None
            and decision.to == Status.TO_SEND
            and backend is not None
            and backend.pk not in claim.skip_backends
        )
        if claimed and claim is not None:
            fields.update(claim.fields)
        change = transitions.Change(
            message_id=m.pk,
            to=decision.to,
            reason=decision.reason,
            text=decision.text,
            expect=frozenset({Status.WAITING}),
            fields=fields,
        )
        plan.changes.append(change)
        if claimed:
            plan.claims.append((m, change))
        plan.recipients += decision.recipients
    return plan


def _backend_for(message: Message, defaults: dict[str, Backend]) -> Backend | None:
    """The backend named at intake, else the channel's default as it is now:
    a message held for a default that lost the role goes through the new one."""
    if message.backend_chosen:
        return message.backend
    return defaults.get(message.channel)


def _changed_fields(message: Message, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` without those the message already holds: an UPDATE that
    names a column rewrites its index entries (and the search index) even
    when the value stays the same."""
    changed = {}
    for name, value in fields.items():
        if name == "backend":
            if message.backend_id != (value.pk if value is not None else None):
                changed[name] = value
        elif getattr(message, name) != value:
            changed[name] = value
    return changed


RECIPIENT_FIELDS = ("message", "kind", "address", "name", "outcome", "code", "reply", "updated_at")


def _write(plan: _Plan, claim: Claim | None = None) -> None:
    """Apply a batch's decisions: each only if its message is still Waiting."""
    for message_id, fields in plan.rechecks:
        Message.objects.filter(pk=message_id, status=Status.WAITING).update(**fields)
    changed = set(transitions.apply_changes(plan.changes))
    if not changed:
        return
    Recipient.objects.filter(message_id__in=changed).delete()
    now = timezone.now()
    insert_values(
        Recipient,
        RECIPIENT_FIELDS,
        [
            [r.message_id, r.kind, r.address, r.name, r.outcome, r.code, r.reply, now]
            for r in plan.recipients
            if r.message_id in changed
        ],
    )
    if claim is not None:
        _claimed(plan, changed, claim)


def _claimed(plan: _Plan, changed: set[int], claim: Claim) -> None:
    """Bring the claimed messages up to date in memory (they go to delivery
    as they are) and let the claim journal their attempts."""
    claimed = []
    for m, change in plan.claims:
        if m.pk not in changed:
            continue
        m.status, m.reason_code, m.reason_text = change.to, change.reason, change.text
        for name, value in change.fields.items():
            setattr(m, name, value)
        claimed.append(m)
    if not claimed:
        return
    claim.start(claimed)
    claim.messages = claimed
    ids = {m.pk for m in claimed}
    for r in plan.recipients:
        if r.message_id in ids:
            claim.recipients.setdefault(r.message_id, []).append(r)
