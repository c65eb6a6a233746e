"""Dispatch: claim due messages, deliver them, record what happened, reap.

Contract:
- ``claim_batch`` takes due To send messages in one short transaction (SKIP
  LOCKED on PostgreSQL; SQLite's write lock serialises it), stamps them with a
  claim token and a lease, and journals one Attempt per message before any
  connection is used.
- ``Deliverer`` sends claimed jobs over one reused connection per backend
  (one Deliverer per worker thread). Before the body leaves, the attempt
  moves to phase ``data`` (committed), so a crash after that point is known to
  be "possibly delivered". That commit is started with the message's SMTP
  transaction and awaited before the body, and it only goes through while the
  backend is still on the settings version claimed, tested and not failing.
- ``record_outcomes`` writes results; every write is fenced by the claim
  token, so a worker that froze and lost its lease changes nothing.
- ``reap_expired`` takes back expired leases.
- ``release_jobs`` hands back claimed jobs that were never started.
No network I/O happens inside a transaction.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import F, Field, Q
from django.utils import timezone

from outbound import retry
from outbound.compose import build_email, envelope_sender
from outbound.errors import (
    BackendConfigurationError,
    OutboundError,
    PermanentTransportError,
    SecretError,
    TransientTransportError,
    TransportError,
)
from outbound.formats import stamp
from outbound.models import (
    Attachment,
    Attempt,
    Backend,
    BackendSlot,
    GlobalSettings,
    Health,
    Message,
    Recipient,
)
from outbound.services import sms_backends, transitions, validation
from outbound.services.backends import CONFIG_REASONS, mark_backend_failing, smtp_config
from outbound.services.bulk import insert_rows
from outbound.services.prepared import convert_rows, update_converted
from outbound.services.validation import backend_block
from outbound.services.writegate import GATE
from outbound.states import Channel, Reason, Status
from outbound.transports.base import Envelope, SendResult
from outbound.transports.sms_base import SmsEnvelope, SmsTransport
from outbound.transports.smtp import SmtpTransport

logger = logging.getLogger(__name__)


@dataclass
class Job:
    message_id: int
    attempt_id: int
    backend_id: int | None
    settings_version: int | None
    claim_token: uuid.UUID
    started_at: datetime
    # Loaded with its recipients and attachments at claim time, in bulk.
    message: Message | None = None
    recipients: list[Recipient] | None = None
    attachments: list[Attachment] | None = None
    # The message as it goes on the wire, when built ahead (Deliverer.prepare).
    data: bytes | None = None


@dataclass
class Outcome:
    job: Job
    result: SendResult | None = None
    error: TransportError | None = None
    phase: str = "connect"
    backend_name: str = ""
    host: str = ""
    # The backend's kind: a console or in-memory SMS backend reaches no phone.
    kind: str = ""
    # The backend already failed on configuration in this worker: this job was
    # held without connecting, and the failure is recorded once, not per job.
    held_only: bool = False
    # No free connection for a capped backend: not tried, handed back.
    busy: bool = False
    channel: str = Channel.EMAIL
    # What the send costs from the backend's allowance: one per email, one
    # per segment for an SMS (providers bill SMS credits per segment).
    units: int = 1
    finished_at: datetime = field(default_factory=timezone.now)


# --------------------------------------------------------------------- claim


def claim_batch(*, worker: str, limit: int, lease: timedelta) -> list[Job]:
    now = timezone.now()
    token = uuid.uuid4()
    due = Message.objects.filter(
        status=Status.TO_SEND, next_attempt_at__lte=now, claim_token__isnull=True
    )
    # A read first: on SQLite every transaction takes the single write lock
    # at BEGIN, so an empty round must not open one.
    if not due.exists():
        return []
    paused, rated, limited = _paced_backends(now)
    with GATE.writing(), transaction.atomic():
        qs = Message.objects.filter(
            status=Status.TO_SEND, next_attempt_at__lte=now, claim_token__isnull=True
        ).order_by("next_attempt_at", "id")
        if connection.features.has_select_for_update_skip_locked:
            qs = qs.select_for_update(skip_locked=True, of=("self",))
        ids = list(
            qs.exclude(backend_id__in=[*paused, *rated, *limited]).values_list("id", flat=True)[
                :limit
            ]
        )
        # Backends that take messages at their own pace, in id order (the
        # order every claimer locks their rows in).
        for backend_id in sorted((rated.keys() | limited) - paused):
            if len(ids) >= limit:
                break
            quota = limit - len(ids)
            if backend_id in rated:
                quota = min(quota, _rate_quota(backend_id, rated[backend_id], now))
            left = _allowance_quota(backend_id) if backend_id in limited else None
            if left is not None:
                quota = min(quota, left)
            if quota > 0:
                pending = qs.filter(backend_id=backend_id)
                ids += _within_allowance(
                    list(pending.values_list("id", "channel", "text_body")[:quota]), left
                )
        if not ids:
            return []
        Message.objects.filter(pk__in=ids, claim_token__isnull=True).update(
            claim_token=token, claimed_by=worker, lease_until=now + lease
        )
        rows = list(
            Message.objects.filter(claim_token=token)
            .order_by("backend_id", "next_attempt_at", "id")
            .values_list("id", "backend_id", "backend__settings_version")
        )
        attempts = _start_attempts(rows, worker=worker, token=token, now=now)
    loaded, recipients, attachments = load_messages([r[0] for r in rows])
    return [
        Job(
            mid,
            att.pk,
            bid,
            version,
            token,
            now,
            loaded.get(mid),
            recipients.get(mid, []),
            attachments.get(mid, []),
        )
        for (mid, bid, version), att in zip(rows, attempts, strict=True)
    ]


def _paced_backends(now: datetime) -> tuple[set[int], dict[int, int], set[int]]:
    """The backends whose messages leave at their own pace, in one query:
    those paused now, the rate-limited ones with their rate, and those with
    an allowance (a limit)."""
    paused: set[int] = set()
    rated: dict[int, int] = {}
    limited: set[int] = set()
    for pk, paused_until, rate, allowance in Backend.objects.filter(
        Q(paused_until__gt=now) | Q(rate_per_minute__isnull=False) | Q(limit__isnull=False)
    ).values_list("id", "paused_until", "rate_per_minute", "limit"):
        if paused_until is not None and paused_until > now:
            paused.add(pk)
        if rate is not None:
            rated[pk] = rate
        if allowance is not None:
            limited.add(pk)
    return paused, rated, limited


def _allowance_quota(backend_id: int) -> int | None:
    """What is left of a limited backend's allowance for this claim, in
    messages (email) or credits (SMS).

    Validation takes the allowance when it makes a message To send, so this
    only bites when the limit was lowered under messages already To send:
    the messages workers hold count, and only what is left of the allowance
    is claimed (the rest stays To send until the limit is raised or the
    count reset). The backend row is locked first, as for the rate.
    """
    left = validation.allowance_left(backend_id, claimed_only=True, lock=True)
    return None if left is None else max(left, 0)


def _within_allowance(rows: list[tuple[int, str, str]], left: int | None) -> list[int]:
    """The ids of ``rows`` (id, channel, text), in order, whose cost fits in
    ``left`` (None: no limit); an SMS costs one credit per segment."""
    if left is None:
        return [pk for pk, _, _ in rows]
    ids = []
    for pk, channel, text in rows:
        units = validation.units_of(channel, text)
        if units > left:
            break
        left -= units
        ids.append(pk)
    return ids


def _start_attempts(
    rows: Sequence[tuple[int, int | None, int | None]],
    *,
    worker: str,
    token: uuid.UUID,
    now: datetime,
) -> list[Attempt]:
    """Journal one attempt per claimed message: (message id, backend id,
    settings version) rows, in the claim's transaction."""
    attempts = [
        Attempt(
            message_id=mid,
            backend_id=bid,
            settings_version=version,
            worker=worker,
            claim_token=token,
            started_at=now,
            phase="connect",
        )
        for mid, bid, version in rows
    ]
    insert_rows(Attempt, attempts)
    return attempts


def validate_and_claim(*, worker: str, limit: int, lease: timedelta) -> tuple[int, list[Job]]:
    """Validate up to ``limit`` due Waiting messages and claim, in the same
    write, those that become To send; returns how many were validated and
    the claimed jobs.

    For a worker whose delivery threads are ready for more: the messages go
    to them as validation left them in memory, so nothing is read again.
    Messages of paused or rate-limited backends stay To send for
    ``claim_batch``, which counts their allowance.
    """
    now = timezone.now()
    token = uuid.uuid4()
    paused, rated, _ = _paced_backends(now)
    skip = frozenset(paused | rated.keys())
    attempts: dict[int, Attempt] = {}

    def start(messages: list[Message]) -> None:
        rows = [(m.pk, m.backend_id, _backend(m).settings_version) for m in messages]
        for attempt in _start_attempts(rows, worker=worker, token=token, now=now):
            attempts[attempt.message_id] = attempt

    claim = validation.Claim(
        fields={"claim_token": token, "claimed_by": worker, "lease_until": now + lease},
        skip_backends=skip,
        start=start,
    )
    validated = validation.validate_due(limit=limit, now=now, claim=claim)
    if not claim.messages:
        return validated, []
    attachments = _attachments_of(list(attempts))
    messages = sorted(claim.messages, key=lambda m: (m.backend_id or 0, m.pk))
    return validated, [
        Job(
            m.pk,
            attempts[m.pk].pk,
            m.backend_id,
            _backend(m).settings_version,
            token,
            now,
            m,
            claim.recipients.get(m.pk, []),
            attachments.get(m.pk, []),
        )
        for m in messages
    ]


def _backend(message: Message) -> Backend:
    backend = message.backend
    assert backend is not None  # only messages with a backend are claimed
    return backend


def load_messages(
    ids: Sequence[int],
) -> tuple[dict[int, Message], dict[int, list[Recipient]], dict[int, list[Attachment]]]:
    """The messages of a claimed batch, their recipients and attachments
    (by message id), in four queries.

    Messages of one backend share one Backend instance (the Deliverer copies
    it and reads the backend's current state before each message). The
    related rows are grouped here rather than with prefetch_related, which
    builds a related manager and queryset per message.
    """
    loaded = Message.objects.in_bulk(list(ids))
    backends = Backend.objects.in_bulk({m.backend_id for m in loaded.values() if m.backend_id})
    for message in loaded.values():
        if message.backend_id is not None:
            message.backend = backends.get(message.backend_id)
    recipients: dict[int, list[Recipient]] = {}
    for r in Recipient.objects.filter(message_id__in=list(loaded)).order_by("id"):
        recipients.setdefault(r.message_id, []).append(r)
    return loaded, recipients, _attachments_of(list(loaded))


def _attachments_of(message_ids: list[int]) -> dict[int, list[Attachment]]:
    """The attachments of these messages, by message id, in one query."""
    attachments: dict[int, list[Attachment]] = {}
    for a in Attachment.objects.filter(message_id__in=message_ids).order_by("id"):
        attachments.setdefault(a.message_id, []).append(a)
    return attachments


def _rate_quota(backend_id: int, rate: int, now: datetime) -> int:
    """How many more messages the backend may start in the minute ending now.

    The backend row is locked first, so workers claiming for it at the same
    time count one after the other; every claim journals its attempts in the
    same transaction, so the count includes what the others just took.
    """
    if connection.features.has_select_for_update:
        list(Backend.objects.select_for_update().filter(pk=backend_id).values_list("id"))
    started = Attempt.objects.filter(
        backend_id=backend_id, started_at__gt=now - timedelta(minutes=1)
    ).count()
    return max(rate - started, 0)


def extend_leases(tokens: Sequence[uuid.UUID], *, lease: timedelta) -> int:
    """Push back the lease end of this worker's claimed messages.

    Rows the recorder is finishing at this moment are skipped rather than
    waited for: waiting could deadlock with the recorder's own transaction,
    and those rows are about to leave the claim anyway.
    """
    if not tokens:
        return 0
    with GATE.writing(), transaction.atomic():
        qs = Message.objects.filter(claim_token__in=list(tokens), status=Status.TO_SEND)
        if connection.features.has_select_for_update_skip_locked:
            qs = qs.select_for_update(skip_locked=True).order_by("id")
        ids = list(qs.values_list("id", flat=True))
        return Message.objects.filter(pk__in=ids).update(lease_until=timezone.now() + lease)


def release_jobs(jobs: Sequence[Job], *, delay: timedelta | None = None) -> int:
    """Give back claimed jobs that were never started: a worker stopping, or
    (with ``delay``) a backend with no free connection. Nothing was sent, so
    the unused attempt is removed and no attempt is counted."""
    fields: dict[str, Any] = {"claim_token": None, "claimed_by": "", "lease_until": None}
    if delay is not None:
        fields["next_attempt_at"] = timezone.now() + delay
    released = 0
    with GATE.writing(), transaction.atomic():
        for job in jobs:
            released += Message.objects.filter(
                pk=job.message_id, claim_token=job.claim_token, status=Status.TO_SEND
            ).update(**fields)
            Attempt.objects.filter(pk=job.attempt_id, phase="connect", outcome="pending").delete()
    return released


# ------------------------------------------------------------------- deliver


def journal_data_phase(attempt_ids: Sequence[int]) -> set[int]:
    """Commit, in one statement, that these attempts are about to send their
    body; returns the ids journalled.

    Only an attempt whose backend is still on the settings version it was
    claimed with, tested on that version and not failing is journalled: the
    others must not send (an operator changed the backend, or it failed,
    since the claim). Checking here, in the statement the delivery thread
    waits for anyway, spares it reading the backend before every message.
    """
    if not attempt_ids:
        return set()
    db = connections[DEFAULT_DB_ALIAS]
    params: list[str | int] = ["data", *attempt_ids, Health.OK]
    sql = _journal_sql(db.vendor, len(attempt_ids))
    # SQLite has one write lock: this process's writers let the journal go
    # first (services/writegate.py); other processes are waited for by
    # SQLite's busy handler.
    with GATE.writing(urgent=True):
        # This statement stands before the body of every message: it goes
        # to the driver's own connection (in autocommit, as Django leaves
        # it outside a transaction), without Django's cursor layers.
        db.ensure_connection()
        assert db.connection is not None and db.get_autocommit()
        cursor = db.connection.cursor()
        try:
            cursor.execute(sql, params)
            return {row[0] for row in cursor.fetchall()}
        except Exception:
            # Django did not see the error: drop a connection it may have broken.
            db.close()
            raise
        finally:
            cursor.close()


_JOURNAL_SQL: dict[tuple[str, int], str] = {}


def _journal_sql(vendor: str, count: int) -> str:
    """The journal's statement for ``count`` attempts, in the driver's own
    parameter style."""
    sql = _JOURNAL_SQL.get((vendor, count))
    if sql is None:
        quote = connection.ops.quote_name
        attempt = quote(Attempt._meta.db_table)
        backend = quote(Backend._meta.db_table)
        mark = "?" if vendor == "sqlite" else "%s"
        marks = ", ".join([mark] * count)
        sql = (
            f"UPDATE {attempt} SET phase = {mark} WHERE id IN ({marks}) AND EXISTS ("  # noqa: S608
            f"SELECT 1 FROM {backend} b WHERE b.id = {attempt}.backend_id "
            f"AND b.settings_version = {attempt}.settings_version "
            f"AND b.tested_version = b.settings_version AND b.health = {mark}) RETURNING id"
        )
        if count <= 16:
            _JOURNAL_SQL[(vendor, count)] = sql
    return sql


class BackendChanged(BackendConfigurationError):
    """The journal found the backend changed or failing since the claim."""

    def __init__(self) -> None:
        super().__init__(
            "The backend's settings changed, or it started failing, after this message was "
            "claimed; it was held before its text was sent. Run the backend test; held "
            "messages go out when it succeeds.",
            phase="rcpt",
            reason="untested",
        )


class JournalError(OutboundError):
    """The data phase could not be journalled: the body must not be sent."""


# Called with an attempt id once the connection is ready for the message: it
# starts committing that the attempt may send its body from now on, and
# returns a function that waits for that commit (raising JournalError when it
# failed). The transport calls that function just before the body leaves, so
# the commit runs while MAIL FROM and RCPT TO are on the wire.
Journal = Callable[[int], Callable[[], None]]


def _journal_now(attempt_id: int) -> Callable[[], None]:
    """The journal without a worker: one short commit when the body is about to leave."""

    def commit() -> None:
        if attempt_id not in journal_data_phase([attempt_id]):
            raise BackendChanged()

    return commit


class BackendBusy(OutboundError):
    """Every connection the backend allows is in use by some worker."""


# How long a message waits when its backend has no free connection.
BUSY_RETRY = timedelta(seconds=1)


def acquire_slot(backend_id: int, cap: int, *, holder: str, lease: timedelta) -> int | None:
    """Take one of the backend's ``cap`` connections; its id, or None if all are held.

    The backend row is locked while counting, so workers on other hosts
    count one after the other; expired slots (a killed worker's) are freed.
    """
    now = timezone.now()
    with transaction.atomic():
        if connection.features.has_select_for_update:
            list(Backend.objects.select_for_update().filter(pk=backend_id).values_list("id"))
        BackendSlot.objects.filter(backend_id=backend_id, lease_until__lt=now).delete()
        if BackendSlot.objects.filter(backend_id=backend_id).count() >= cap:
            return None
        return BackendSlot.objects.create(
            backend_id=backend_id, holder=holder, lease_until=now + lease
        ).pk


def release_slot(slot_id: int) -> None:
    BackendSlot.objects.filter(pk=slot_id).delete()


def renew_slots(*, holder_prefix: str, lease: timedelta) -> int:
    return BackendSlot.objects.filter(holder__startswith=holder_prefix).update(
        lease_until=timezone.now() + lease
    )


# Clock difference allowed between us and an SMS provider when looking up a
# message an interrupted send may have created.
LOOKUP_MARGIN = timedelta(minutes=5)

# What may change on a backend between the claim and the send.
BACKEND_STATE_FIELDS = ("settings_version", "tested_version", "health", "health_detail")


def backend_state(backend_id: int) -> tuple[Any, ...] | None:
    """The backend's ``BACKEND_STATE_FIELDS`` as they are now, or None if it is gone.

    Read before every message, so in plain SQL: the ORM took half a
    millisecond to build this one-row query.
    """
    with connection.cursor() as cursor:
        cursor.execute(_backend_state_sql(connection.vendor), [backend_id])
        return cast("tuple[Any, ...] | None", cursor.fetchone())


_STATE_SQL: dict[str, str] = {}


def _backend_state_sql(vendor: str) -> str:
    sql = _STATE_SQL.get(vendor)
    if sql is None:
        quote = connection.ops.quote_name
        columns = ", ".join(
            quote(cast("Field[Any, Any]", Backend._meta.get_field(n)).column)
            for n in BACKEND_STATE_FIELDS
        )
        table = quote(Backend._meta.db_table)
        sql = _STATE_SQL[vendor] = f"SELECT {columns} FROM {table} WHERE id = %s"  # noqa: S608
    return sql


# Recipients validation left out (invalid or blocked): not on the envelope.
_LEFT_OUT = frozenset({Recipient.Outcome.INVALID, Recipient.Outcome.BLOCKED})


def _addressed(recipients: list[Recipient]) -> list[Recipient]:
    """The recipients an email goes to."""
    return [r for r in recipients if r.outcome not in _LEFT_OUT]


class Deliverer:
    """Delivers jobs for one worker thread, keeping one open connection per
    backend and settings version."""

    def __init__(
        self,
        *,
        journal: Journal | None = None,
        holder: str = "",
        slot_lease: timedelta = timedelta(minutes=2),
    ) -> None:
        self._journal: Journal = journal or _journal_now
        self._holder = holder or f"deliverer-{uuid.uuid4().hex[:8]}"
        self._slot_lease = slot_lease
        # backend id -> the connection slot held for it (capped backends only)
        self._slots: dict[int, int] = {}
        self._connections: dict[tuple[int, int], SmtpTransport] = {}
        self._sms: dict[tuple[int, int], SmsTransport] = {}

    def close(self) -> None:
        for transport in self._connections.values():
            transport.close()
        self._connections.clear()
        for sms in self._sms.values():
            sms.close()
        self._sms.clear()
        for slot_id in self._slots.values():
            release_slot(slot_id)
        self._slots.clear()

    def deliver(
        self,
        job: Job,
        *,
        failed_backends: dict[int, tuple[int, BackendConfigurationError]] | None = None,
        meanwhile: Callable[[], None] | None = None,
    ) -> Outcome:
        """Send one job; never raises for a delivery problem.

        ``meanwhile`` runs while the server takes in an email's body (see
        ``SmtpTransport.send``), e.g. preparing the next job."""
        outcome = Outcome(job=job)
        try:
            message = job.message or Message.objects.select_related("backend").get(
                pk=job.message_id
            )
            if message.backend is None or job.backend_id != message.backend.pk:
                raise BackendConfigurationError("The message has no backend.", reason="missing")
            backend = message.backend
            outcome.backend_name, outcome.host = backend.name, backend.host
            outcome.kind = backend.kind
            open_transport = self._connected(backend.pk, job.settings_version)
            if open_transport is None:
                # The backend as it is now: an edit since the claim must be
                # seen before connecting. On a connection already open, the
                # journal checks it again before every message body. (A
                # copy: the claimed batch shares one instance between threads.)
                backend = copy.copy(backend)
                values = backend_state(backend.pk)
                if values is None:
                    raise BackendConfigurationError("The backend was deleted.", reason="missing")
                for name, value in zip(BACKEND_STATE_FIELDS, values, strict=True):
                    setattr(backend, name, value)
                block = backend_block(backend, message.channel)
                if block is not None or backend.settings_version != job.settings_version:
                    # Settings changed (or failed) after the claim: never
                    # connect with settings nobody tested.
                    raise BackendConfigurationError(
                        block[1] if block else f"The settings of backend {backend.name} changed.",
                        reason="untested",
                    )
            failed = (failed_backends or {}).get(backend.pk)
            if failed is not None and failed[0] == backend.settings_version:
                outcome.held_only = True
                first = failed[1]
                raise BackendConfigurationError(
                    first.message,
                    phase=first.phase,
                    code=first.code,
                    enhanced_code=first.enhanced_code,
                    reply=first.reply,
                    reason=first.reason,
                )
            outcome.channel = message.channel
            if message.channel == Channel.SMS:
                sms = SmsEnvelope(
                    to=message.message_to,
                    sender=message.from_address or backend.from_address,
                    body=message.text_body,
                    message_id=message.message_id,
                    status_callback=sms_backends.status_callback_url(backend),
                )
                outcome.units = validation.units_of(Channel.SMS, message.text_body)
                sms_transport = self._sms_transport(backend)
                outcome.phase = "connect"

                def before_request() -> None:
                    self._journal(job.attempt_id)()
                    outcome.phase = "data"

                found = None
                finder = getattr(sms_transport, "find_created", None)
                if message.possibly_delivered and finder is not None:
                    # The provider has no idempotency key: an earlier send
                    # whose answer was lost is looked up, not repeated.
                    since = (message.first_attempt_at or message.created_at) - LOOKUP_MARGIN
                    found = finder(sms, since=since)
                outcome.result = found or sms_transport.send(sms, before_data=before_request)
                outcome.phase = "done"
            else:
                if job.message is None or job.recipients is None or job.attachments is None:
                    job.recipients = list(message.recipients.order_by("id"))
                    job.attachments = list(message.attachments.order_by("id"))
                recipients = _addressed(job.recipients)
                data = job.data or build_email(
                    message, recipients, job.attachments, date=_dated(job)
                )
                envelope = Envelope(
                    mail_from=envelope_sender(message.from_address),
                    recipients=[r.address for r in recipients],
                    message=data,
                    message_id=message.message_id,
                )
                transport = (
                    open_transport
                    if isinstance(open_transport, SmtpTransport)
                    else self._transport(backend, outcome)
                )
                # A reused connection reports this message's phases to its outcome.
                transport.on_phase = lambda p: _set_phase(outcome, p)
                outcome.phase = "mail"
                journalled = self._journal(job.attempt_id)
                outcome.result = transport.send(
                    envelope, before_data=journalled, after_body=meanwhile
                )
                outcome.phase = "done"
        except TransportError as err:
            outcome.error = err
            outcome.phase = err.phase if err.phase else outcome.phase
            if (
                isinstance(err, BackendConfigurationError)
                and failed_backends is not None
                and job.backend_id is not None
                and err.reason not in {"untested", "missing"}
            ):
                failed_backends.setdefault(job.backend_id, (job.settings_version or 0, err))
            self._drop_broken()
        except SecretError as err:
            outcome.error = BackendConfigurationError(str(err), reason="secret_unreadable")
        except BackendBusy:
            outcome.busy = True
        except JournalError as err:
            # Nothing left: the body was never sent. The connection is in the
            # middle of a transaction, so it is dropped rather than reused.
            outcome.error = TransientTransportError(str(err), phase="rcpt", reason="journal")
            self.close()
        except OutboundError as err:
            outcome.error = PermanentTransportError(str(err), phase="mail", reason="rejected")
        except Exception as err:
            # A fault of ours or of a library: the message is retried like
            # after a lost connection (marked possibly delivered if its body
            # may have left) instead of staying claimed until its lease ends.
            logger.exception("unexpected error delivering message %s", job.message_id)
            outcome.error = TransientTransportError(
                f"Internal error while sending: {err.__class__.__name__}: {err}"[:500],
                phase=outcome.phase,
                reason="internal_error",
            )
            self.close()
        outcome.finished_at = timezone.now()
        return outcome

    @staticmethod
    def prepare(job: Job) -> None:
        """Build a claimed email's wire text ahead of its turn (it is made
        from what the claim loaded, which does not change). Best effort:
        whatever goes wrong is met again, and reported, when it is sent."""
        message = job.message
        if message is None or job.recipients is None or job.attachments is None:
            return
        if message.channel != Channel.EMAIL or job.data is not None:
            return
        # Deliver builds it again if this fails, and records that error.
        with contextlib.suppress(Exception):
            job.data = build_email(
                message, _addressed(job.recipients), job.attachments, date=_dated(job)
            )

    def _connected(
        self, backend_id: int, settings_version: int | None
    ) -> SmtpTransport | SmsTransport | None:
        """The open connection (or SMS client) this thread holds for the
        backend on that settings version, if any."""
        key = (backend_id, settings_version or 0)
        transport = self._connections.get(key)
        if transport is not None and transport.is_open:
            return transport
        return self._sms.get(key)

    def _transport(self, backend: Backend, outcome: Outcome) -> SmtpTransport:
        key = (backend.pk, backend.settings_version)
        transport = self._connections.get(key)
        if transport is not None and transport.is_open:
            return transport
        # Connections of older settings versions of this backend are stale.
        for old in [k for k in self._connections if k[0] == backend.pk]:
            self._connections.pop(old).close()
        self._hold_slot(backend)
        transport = SmtpTransport(smtp_config(backend), on_phase=lambda p: _set_phase(outcome, p))
        self._connections[key] = transport
        transport.open()
        return transport

    def _sms_transport(self, backend: Backend) -> SmsTransport:
        """The provider client of ``backend`` for its current settings; HTTP
        providers keep their connection pool between messages."""
        key = (backend.pk, backend.settings_version)
        transport = self._sms.get(key)
        if transport is not None:
            return transport
        for old in [k for k in self._sms if k[0] == backend.pk]:
            self._sms.pop(old).close()
        self._hold_slot(backend)
        transport = sms_backends.sms_transport(backend)
        transport.open()
        self._sms[key] = transport
        return transport

    def _hold_slot(self, backend: Backend) -> None:
        """Take one of a capped backend's connection slots for this thread,
        kept while it keeps its connection (an SMTP session, or an SMS
        provider's client: one request at a time); raises BackendBusy when
        all are taken."""
        if not backend.max_connections or backend.pk in self._slots:
            return
        slot = acquire_slot(
            backend.pk, backend.max_connections, holder=self._holder, lease=self._slot_lease
        )
        if slot is None:
            raise BackendBusy(
                f"All {backend.max_connections} connection(s) of backend {backend.name} are in use."
            )
        self._slots[backend.pk] = slot

    def _drop_broken(self) -> None:
        for key in [k for k, t in self._connections.items() if not t.is_open]:
            self._connections.pop(key).close()
            slot = self._slots.pop(key[0], None)
            if slot is not None:
                release_slot(slot)


def _dated(job: Job) -> datetime:
    """The Date of a job's email: the moment the message was first handed to
    its backend (its first attempt; this one, for a first attempt), so a
    scheduled or retried message is not dated when it was queued, and its
    retries carry the same Date. A re-send starts again (resend_message)."""
    first = job.message.first_attempt_at if job.message is not None else None
    return first or job.started_at


def _set_phase(outcome: Outcome, phase: str) -> None:
    outcome.phase = phase


# -------------------------------------------------------------------- record


def _reply_text(err: TransportError) -> str:
    if err.code:
        return f"{err.code} {err.reply}".strip()
    return err.reply or err.message


def _server(outcome: Outcome) -> str:
    return outcome.host or outcome.backend_name or "the server"


def record_outcomes(outcomes: Sequence[Outcome], *, settings: GlobalSettings | None = None) -> None:
    """Write the results of finished jobs, fenced by their claim tokens."""
    busy = [o.job for o in outcomes if o.busy]
    if busy:
        release_jobs(busy, delay=BUSY_RETRY)
        outcomes = [o for o in outcomes if not o.busy]
    if not outcomes:
        return
    settings = settings or GlobalSettings.load()
    changes: list[transitions.Change] = []
    attempt_updates: list[tuple[int, dict[str, Any]]] = []
    recipient_updates: list[tuple[int, list[dict[str, Any]]]] = []
    refused_updates: list[tuple[int, list[dict[str, Any]]]] = []
    sent_per_backend: dict[int, int] = {}
    failing: list[tuple[Outcome, BackendConfigurationError]] = []
    now = timezone.now()
    started = {o.job.message_id: o.job.started_at for o in outcomes}
    # Plain values rather than F() expressions: the claim token fences every
    # write below, so nobody else changes these rows meanwhile (the values
    # loaded with the claimed batch are still the stored ones), and Django
    # compiles plain values far faster.
    known = {
        o.job.message_id: (o.job.message.first_attempt_at, o.job.message.attempt_count)
        for o in outcomes
        if o.job.message is not None
    }
    missing = [mid for mid in started if mid not in known]
    if missing:
        known.update(
            (mid, (first_at, count))
            for mid, first_at, count in Message.objects.filter(pk__in=missing).values_list(
                "id", "first_attempt_at", "attempt_count"
            )
        )
    for o in outcomes:
        job = o.job
        first_at, previous = known.get(job.message_id, (None, 0))
        first_attempt = first_at or job.started_at
        count = previous + 1
        common: dict[str, Any] = {
            "claim_token": None,
            "claimed_by": "",
            "lease_until": None,
            "attempt_count": count,
            "first_attempt_at": first_attempt,
        }
        att: dict[str, Any] = {"finished_at": o.finished_at, "phase": o.phase}
        if o.result is not None:
            r = o.result
            refused = [x for x in r.recipients if not x.accepted]
            att.update(
                outcome=Attempt.Outcome.SENT,
                smtp_code=r.code,
                enhanced_code=r.enhanced_code,
                reply=r.reply,
                provider_id=r.queue_id,
                recipients=[
                    {"address": x.address, "accepted": x.accepted, "code": x.code, "reply": x.reply}
                    for x in r.recipients
                ],
            )
            label = "provider id" if o.channel == Channel.SMS else "queue id"
            queue = f" ({label} {r.queue_id})" if r.queue_id and r.queue_id not in r.reply else ""
            answer = r.reply if r.reply.startswith(str(r.code)) else f"{r.code} {r.reply}"
            text = f"{_server(o)} accepted the message at {stamp(o.finished_at)}: {answer}{queue}."
            if o.kind in TRIAL_KINDS:
                # Nothing left Outbound: no server or provider accepted anything.
                text = (
                    f"The console backend {o.backend_name} {r.reply} at "
                    f"{stamp(o.finished_at)}; no phone received it."
                )
            reason = Reason.ACCEPTED
            if refused:
                reason = Reason.PARTIALLY_ACCEPTED
                deferred = [x for x in refused if temporary_refusal(x.code)]
                refused = [x for x in refused if not temporary_refusal(x.code)]
                if refused:
                    text += (
                        " Refused recipients: "
                        + "; ".join(f"{x.address} ({x.code} {x.reply})" for x in refused)
                        + "."
                    )
                if deferred:
                    text += (
                        " Deferred recipients (a temporary refusal; not retried, since the "
                        "message was accepted for the others): "
                        + "; ".join(f"{x.address} ({x.code} {x.reply})" for x in deferred)
                        + "."
                    )
            changes.append(
                _finish(
                    job,
                    Status.SENT,
                    reason,
                    text,
                    {**common, "sent_at": o.finished_at, "next_attempt_at": None},
                )
            )
            recipient_updates.append((job.message_id, att["recipients"]))
            if job.backend_id is not None:
                sent_per_backend[job.backend_id] = sent_per_backend.get(job.backend_id, 0) + o.units
        else:
            err = o.error
            assert err is not None
            reply = _reply_text(err)
            # For the history line: a reply ending with a full stop gets no second one.
            said = reply.rstrip(". ")
            att.update(
                smtp_code=err.code,
                enhanced_code=err.enhanced_code,
                reply=reply[:5000],
                error_reason=err.reason[:50],
            )
            if isinstance(err, BackendConfigurationError):
                att["outcome"] = Attempt.Outcome.CONFIG
                if err.reason in {"untested", "missing"}:
                    text = str(err)
                    reason = Reason.BACKEND_UNTESTED
                    common.pop("attempt_count")
                    common.pop("first_attempt_at")
                elif o.held_only:
                    reason = CONFIG_REASONS.get(err.reason, Reason.BACKEND_FAILING)
                    text = (
                        f"Not tried: backend {o.backend_name} had just failed at the "
                        f"{err.phase} step: {said}. The backend settings must be fixed and "
                        "tested."
                    )
                    common.pop("attempt_count")
                    common.pop("first_attempt_at")
                else:
                    reason = CONFIG_REASONS.get(err.reason, Reason.BACKEND_FAILING)
                    text = (
                        f"{_server(o)} failed at the {o.phase} step at {stamp(o.finished_at)}: "
                        f"{said}. The backend settings must be fixed and tested."
                    )
                    failing.append((o, err))
                changes.append(
                    _finish(
                        job,
                        Status.BACKEND_TEST_REQUIRED,
                        reason,
                        text,
                        {**common, "next_attempt_at": None},
                    )
                )
            elif isinstance(err, PermanentTransportError):
                att["outcome"] = Attempt.Outcome.PERMANENT
                if err.recipients:
                    # Every recipient refused: each one's own reply.
                    refused_updates.append(
                        (
                            job.message_id,
                            [
                                {"address": a, "accepted": False, "code": c, "reply": r}
                                for a, c, r in err.recipients
                            ],
                        )
                    )
                reason = {
                    "sender_refused": Reason.SENDER_REFUSED,
                    "recipients_refused": Reason.RECIPIENTS_REFUSED,
                    "invalid_number": Reason.RECIPIENT_INVALID,
                }.get(err.reason, Reason.REJECTED)
                text = (
                    f"{_server(o)} refused the message at the {o.phase} step at "
                    f"{stamp(o.finished_at)}: {said}."
                )
                changes.append(
                    _finish(job, Status.NOT_SENT, reason, text, {**common, "next_attempt_at": None})
                )
            else:
                att["outcome"] = Attempt.Outcome.TRANSIENT
                when = retry.next_attempt_at(
                    now=now,
                    attempt_count=count,
                    first_attempt_at=first_attempt,
                    min_backoff=settings.retry_min_backoff,
                    max_backoff=settings.retry_max_backoff,
                    lifetime=settings.retry_lifetime,
                )
                if when is None:
                    text = (
                        f"Gave up after {count} attempts over {stamp(first_attempt)} to "
                        f"{stamp(now)} (retry lifetime {settings.retry_lifetime}). Last reply "
                        f"from {_server(o)} at the {o.phase} step: {said}."
                    )
                    changes.append(
                        _finish(
                            job,
                            Status.NOT_SENT,
                            Reason.RETRY_LIFETIME_OVER,
                            text,
                            {**common, "next_attempt_at": None},
                        )
                    )
                else:
                    text = (
                        f"Temporary failure at the {o.phase} step with {_server(o)} at "
                        f"{stamp(o.finished_at)}: {said}. Attempt {count}; next attempt at "
                        f"{stamp(when)}."
                    )
                    if o.phase == "data" and err.code is None:
                        # The body (or the provider request) had left and no
                        # answer came: it may have arrived, so a copy may
                        # arrive twice.
                        common["possibly_delivered"] = True
                        text += " The message may have reached the recipient already."
                    changes.append(
                        _finish(
                            job,
                            Status.TO_SEND,
                            Reason.RETRY_SCHEDULED,
                            text,
                            {**common, "next_attempt_at": when},
                        )
                    )
        attempt_updates.append((job.attempt_id, att))

    # One lock order for every writer of these rows.
    changes.sort(key=lambda c: c.message_id)
    attempt_rows = _attempt_rows(attempt_updates)
    with GATE.writing(), transaction.atomic():
        changed = set(transitions.apply_changes(changes))
        update_converted(Attempt, ATTEMPT_RESULT_FIELDS, attempt_rows)
        _accept_recipients([m for m, rows in recipient_updates if m in changed])
        for message_id, rows in recipient_updates + refused_updates:
            if message_id not in changed:
                continue
            for row in rows:
                if row["accepted"] and row["code"] == 250:
                    continue
                if row["accepted"]:
                    outcome = Recipient.Outcome.ACCEPTED
                elif temporary_refusal(row["code"]):
                    outcome = Recipient.Outcome.DEFERRED
                else:
                    outcome = Recipient.Outcome.REFUSED
                Recipient.objects.filter(message_id=message_id, address=row["address"]).update(
                    outcome=outcome, code=row["code"], reply=row["reply"][:2000]
                )
        _count_sent(sent_per_backend)
        # In the same transaction: on SQLite a write of its own would take
        # the write lock once more per batch, outside the write gate.
        _pause_throttled_backends(outcomes, settings=settings, now=now)
    lost = [o.job.message_id for o in outcomes if o.job.message_id not in changed]
    if lost:
        logger.warning("claim lost before recording messages %s; results dropped", lost)
    for o, err in failing:
        if o.job.backend_id is not None and o.job.settings_version is not None:
            mark_backend_failing(
                o.job.backend_id,
                settings_version=o.job.settings_version,
                reason=err.reason,
                detail=f"{_server(o)} at the {o.phase} step: {_reply_text(err)}",
            )


def temporary_refusal(code: int | None) -> bool:
    """A recipient refused for now rather than for good: a 4xx reply, or
    552 (mailbox full), which RFC 5321 section 4.5.3.1.10 says to treat as
    temporary."""
    return code is not None and (400 <= code < 500 or code == 552)


def _accept_recipients(message_ids: list[int]) -> None:
    """Mark the still pending recipients of these sent messages accepted (250).

    Plain SQL: it runs inside the recorder's write transaction, which the
    journal waits for.
    """
    if not message_ids:
        return
    quote = connection.ops.quote_name
    marks = ", ".join(["%s"] * len(message_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(Recipient._meta.db_table)} SET outcome = %s, code = 250 "  # noqa: S608
            f"WHERE outcome = %s AND message_id IN ({marks})",
            [Recipient.Outcome.ACCEPTED, Recipient.Outcome.PENDING, *message_ids],
        )


def _count_sent(sent_per_backend: dict[int, int]) -> None:
    """Add what was sent to each backend's count (its allowance)."""
    table = connection.ops.quote_name(Backend._meta.db_table)
    with connection.cursor() as cursor:
        # In id order, the order the claim and validation lock backend rows in.
        for backend_id, n in sorted(sent_per_backend.items()):
            cursor.execute(
                f"UPDATE {table} SET sent_count = sent_count + %s WHERE id = %s",  # noqa: S608
                [n, backend_id],
            )


# The SMS backend for trials: it prints a message, nothing more. (The
# in-memory one stands in for a provider in tests and reads like one.)
TRIAL_KINDS = frozenset({"console"})

THROTTLE_CODES = frozenset({421, 451})
# Throttling replies in a row (across batches and workers) that pause a backend.
THROTTLE_REPEATS = 3


def _pause_throttled_backends(
    outcomes: Sequence[Outcome], *, settings: GlobalSettings, now: datetime
) -> None:
    """Back off a backend as a whole when its relay keeps throttling us.

    Retrying message by message would keep hammering a relay that said "slow
    down"; instead each throttling reply adds a strike on the backend row
    (shared by every worker), an accepted message clears them, and at
    ``THROTTLE_REPEATS`` strikes nothing is claimed for the backend until the
    pause ends.
    """
    strikes: dict[int, int] = {}
    cleared: set[int] = set()
    for o in outcomes:
        backend_id = o.job.backend_id
        if not backend_id:
            continue
        if o.error is not None and o.error.code in THROTTLE_CODES:
            strikes[backend_id] = strikes.get(backend_id, 0) + 1
        elif o.result is not None:
            cleared.add(backend_id)
    for backend_id in cleared - set(strikes):
        Backend.objects.filter(pk=backend_id, throttle_strikes__gt=0).update(throttle_strikes=0)
    until = now + settings.retry_min_backoff
    for backend_id, count in strikes.items():
        Backend.objects.filter(pk=backend_id).update(throttle_strikes=F("throttle_strikes") + count)
        paused = Backend.objects.filter(
            pk=backend_id, throttle_strikes__gte=THROTTLE_REPEATS
        ).update(paused_until=until, throttle_strikes=0)
        if paused:
            logger.warning("backend %s keeps throttling; paused until %s", backend_id, until)


def _finish(
    job: Job, to: Status, reason: str, text: str, fields: dict[str, Any]
) -> transitions.Change:
    """The status change that ends one claimed attempt, fenced by its token."""
    return transitions.Change(
        message_id=job.message_id,
        to=to,
        reason=reason,
        text=text,
        expect=frozenset({Status.TO_SEND}),
        claim_token=job.claim_token,
        fields=fields,
        data={"attempt": job.attempt_id},
    )


ATTEMPT_RESULT_FIELDS = (
    "finished_at",
    "phase",
    "outcome",
    "smtp_code",
    "enhanced_code",
    "reply",
    "provider_id",
    "error_reason",
    "recipients",
)


def _attempt_rows(updates: list[tuple[int, dict[str, Any]]]) -> list[list[Any]]:
    """The attempts' results as ``ATTEMPT_RESULT_FIELDS`` rows (then the id),
    converted for the database: every result sets the same fields."""
    defaults = {
        n: cast("Field[Any, Any]", Attempt._meta.get_field(n)).get_default()
        for n in ATTEMPT_RESULT_FIELDS
    }
    rows = []
    for attempt_id, values in updates:
        merged = {**defaults, **values}
        rows.append([merged[n] for n in ATTEMPT_RESULT_FIELDS] + [attempt_id])
    return convert_rows(Attempt, ATTEMPT_RESULT_FIELDS, rows)


# ---------------------------------------------------------------------- reap


def reap_expired(*, now: datetime | None = None, limit: int = 500) -> int:
    """Take back messages whose worker lost its lease."""
    now = now or timezone.now()
    expired = list(
        Message.objects.filter(
            status=Status.TO_SEND, claim_token__isnull=False, lease_until__lt=now
        ).values_list("id", "claim_token", "claimed_by")[:limit]
    )
    if not expired:
        return 0
    changes = []
    attempt_ids: list[int] = []
    for mid, token, worker in expired:
        attempts = list(
            Attempt.objects.filter(message_id=mid, claim_token=token, outcome="pending")
        )
        attempt_ids += [a.pk for a in attempts]
        reached_data = any(a.phase == "data" for a in attempts)
        fields: dict[str, Any] = {
            "claim_token": None,
            "claimed_by": "",
            "lease_until": None,
            "next_attempt_at": timezone.now(),
        }
        if reached_data:
            fields["possibly_delivered"] = True
            fields["attempt_count"] = F("attempt_count") + 1
            reason = Reason.INTERRUPTED
            text = (
                f"Worker {worker} stopped answering while the message was being transmitted "
                f"(lease ended {stamp(now)}). The server may have received it; it is sent again "
                "with the same Message-ID, so a copy may arrive twice."
            )
        else:
            reason = Reason.LEASE_EXPIRED
            text = (
                f"Worker {worker} stopped answering before the message was transmitted "
                f"(lease ended {stamp(now)}); it is tried again."
            )
        changes.append(
            transitions.Change(
                message_id=mid,
                to=Status.TO_SEND,
                reason=reason,
                text=text,
                expect=frozenset({Status.TO_SEND}),
                claim_token=token,
                fields=fields,
            )
        )
    with GATE.writing(), transaction.atomic():
        changed = transitions.apply_changes(changes)
        Attempt.objects.filter(pk__in=attempt_ids, message_id__in=changed).update(
            outcome=Attempt.Outcome.INTERRUPTED, finished_at=now
        )
    if changed:
        logger.warning("reaped %s messages from lost workers", len(changed))
    return len(changed)
