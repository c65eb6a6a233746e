"""Reads that are more than one filter: the message list, the overview, the
workers. Read-only.

The message list pages by keyset on (created_at, id), newest first, so the
cost of a page does not grow with how far back it is or how many rows the
table holds; no OFFSET and no COUNT over the filtered rows. Counts are a
single grouped COUNT per status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, F, Func, Q, QuerySet, TextField, Value
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from outbound.models import (
    Alert,
    AuditEntry,
    Backend,
    Contact,
    GlobalSettings,
    Message,
    WorkerHeartbeat,
)
from outbound.services.operations import stuck_messages
from outbound.states import Channel, Status

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


@dataclass(frozen=True)
class MessageFilters:
    status: str = ""
    channel: str = ""
    backend: int | None = None
    date_from: date | None = None
    date_to: date | None = None
    q: str = ""

    def apply(self, qs: QuerySet[Message]) -> QuerySet[Message]:
        if self.status:
            qs = qs.filter(status=self.status)
        if self.channel:
            qs = qs.filter(channel=self.channel)
        if self.backend is not None:
            qs = qs.filter(backend_id=self.backend)
        tz = timezone.get_current_timezone()
        if self.date_from is not None:
            qs = qs.filter(created_at__gte=datetime.combine(self.date_from, time.min, tz))
        if self.date_to is not None:
            # The end date is inclusive: everything before the next midnight.
            end = datetime.combine(self.date_to + timedelta(days=1), time.min, tz)
            qs = qs.filter(created_at__lt=end)
        text = self.q.strip()
        if "@" in text and not text.startswith("@"):
            # An address, or its beginning: an index range on the lower-cased
            # address, where a substring search would read every row.
            prefix = text.lower()
            qs = qs.alias(address=Lower("message_to")).filter(
                address__gte=prefix, address__lt=prefix + "\U0010ffff"
            )
        elif text:
            contains = (
                Q(message_to__icontains=text)
                | Q(to_user__icontains=text)
                | Q(subject__icontains=text)
            )
            # Both databases keep a trigram index (migration 0010).
            if connection.vendor == "postgresql" and "\n" not in text:
                # The same test on the index's expression: the three fields
                # joined by newlines (a search box cannot type one; a text
                # with one takes the plain test, or it could span fields).
                qs = qs.alias(search_text=SearchText()).filter(search_text__icontains=text)
            elif connection.vendor == "sqlite":
                # The trigram table names the messages that can match.
                ids = _sqlite_search_ids(text)
                if ids is not None:
                    qs = qs.filter(pk__in=ids)
                qs = qs.filter(contains)
            else:
                qs = qs.filter(contains)
        return qs

    @property
    def active(self) -> bool:
        return any(
            (
                self.status,
                self.channel,
                self.backend is not None,
                self.date_from,
                self.date_to,
                self.q.strip(),
            )
        )


class SearchText(Func):
    """Message to, To user and Subject joined by newlines: on PostgreSQL the
    expression of the trigram index msg_search_trgm (migration 0010)."""

    template = "(%(expressions)s)"
    arg_joiner = " || "
    output_field = TextField()

    def __init__(self) -> None:
        sep = Value("\n")
        super().__init__(F("message_to"), sep, F("to_user"), sep, F("subject"))


# Up to this many matches the search hands SQLite their ids; beyond it the
# text is common enough that reading the newest rows finds a page at once.
SEARCH_IDS_MAX = 1000


def _sqlite_search_ids(text: str) -> list[int] | None:
    """Ids of the messages that hold every trigram of ``text`` (any case) in
    Message to, To user or Subject, from the FTS5 trigram table of migration
    0010: a superset of the matches, which the caller filters again. None
    when the text is shorter than a trigram or more than SEARCH_IDS_MAX
    messages hold them."""
    if len(text) < 3:
        return None
    trigrams = dict.fromkeys(text[i : i + 3] for i in range(len(text) - 2))
    query = " AND ".join('"' + t.replace('"', '""') + '"' for t in trigrams)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT rowid FROM outbound_message_search WHERE outbound_message_search MATCH %s "
            "LIMIT %s",
            [query, SEARCH_IDS_MAX + 1],
        )
        ids = [row[0] for row in cursor.fetchall()]
    return ids if len(ids) <= SEARCH_IDS_MAX else None


@dataclass(frozen=True)
class Cursor:
    created_at: datetime
    id: int

    def encode(self) -> str:
        return f"{self.created_at.isoformat()}~{self.id}"

    @classmethod
    def decode(cls, raw: str) -> Cursor | None:
        """The cursor in ``raw``, or None when it is missing or malformed."""
        stamp, sep, ident = (raw or "").rpartition("~")
        if not sep or not ident.isdigit():
            return None
        try:
            moment = parse_datetime(stamp)
        except ValueError:
            return None
        if moment is None or timezone.is_naive(moment):
            return None
        return cls(moment, int(ident))


@dataclass
class MessagePage:
    rows: list[Message]
    # Cursors to follow for the next older / newer page; None at either end.
    older: Cursor | None
    newer: Cursor | None


def message_page(
    filters: MessageFilters,
    *,
    before: Cursor | None = None,
    after: Cursor | None = None,
    size: int = PAGE_SIZE,
) -> MessagePage:
    """One page of messages, newest first.

    ``before`` gives the page of rows older than the cursor (the "Older"
    link); ``after`` the page of rows just newer than it ("Newer"). With
    neither, the newest page.
    """
    size = max(1, min(size, MAX_PAGE_SIZE))
    qs = filters.apply(Message.objects.all()).select_related("backend")
    if after is not None:
        # Walk upwards from the cursor, then show the rows newest first.
        newer_qs = qs.filter(
            Q(created_at__gt=after.created_at) | Q(created_at=after.created_at, id__gt=after.id)
        ).order_by("created_at", "id")
        chunk = list(newer_qs[: size + 1])
        more_newer = len(chunk) > size
        rows = list(reversed(chunk[:size]))
        if not rows:
            # Nothing newer (rows were deleted): fall back to the newest page.
            return message_page(filters, size=size)
        return MessagePage(
            rows=rows,
            older=_cursor(rows[-1]) if _exists_older(qs, rows[-1]) else None,
            newer=_cursor(rows[0]) if more_newer else None,
        )
    if before is not None:
        qs_page = qs.filter(
            Q(created_at__lt=before.created_at) | Q(created_at=before.created_at, id__lt=before.id)
        )
    else:
        qs_page = qs
    chunk = list(qs_page.order_by("-created_at", "-id")[: size + 1])
    rows = chunk[:size]
    more_older = len(chunk) > size
    newer: Cursor | None = None
    if before is not None and rows:
        newer = _cursor(rows[0])
    elif before is not None:
        newer = before
    return MessagePage(
        rows=rows,
        older=_cursor(rows[-1]) if more_older and rows else None,
        newer=newer,
    )


def _cursor(message: Message) -> Cursor:
    return Cursor(message.created_at, message.pk)


def _exists_older(qs: QuerySet[Message], last: Message) -> bool:
    return qs.filter(
        Q(created_at__lt=last.created_at) | Q(created_at=last.created_at, id__lt=last.pk)
    ).exists()


def status_counts() -> dict[str, int]:
    """Messages per status (every status present, zero when none)."""
    counts = {s.value: 0 for s in Status}
    rows = Message.objects.order_by().values("status").annotate(n=Count("id"))
    for row in rows:
        counts[row["status"]] = row["n"]
    return counts


@dataclass
class BackendRow:
    backend: Backend
    limit: int | None
    sent: int
    left: int | None
    health: str
    health_label: str
    health_detail: str
    last_test_at: datetime | None
    last_test_ok: bool | None
    last_test_summary: str


@dataclass
class WorkerRow:
    worker: WorkerHeartbeat
    alive: bool
    silent_for: timedelta


@dataclass
class Overview:
    counts: dict[str, int]
    total: int
    stuck: int
    stuck_threshold: timedelta
    backends: list[BackendRow]
    workers: list[WorkerRow]
    oldest_due_at: datetime | None
    oldest_due_age: timedelta | None
    now: datetime = field(default_factory=timezone.now)

    @property
    def alive_workers(self) -> int:
        return sum(1 for w in self.workers if w.alive)

    @property
    def failing_backends(self) -> list[BackendRow]:
        return [b for b in self.backends if b.health == "failing"]


def backend_rows() -> list[BackendRow]:
    rows = []
    for b in Backend.objects.order_by("channel", "-is_default", "name"):
        result: dict[str, Any] = b.last_test_result or {}
        summary = ""
        ok: bool | None = None
        if b.last_test_at:
            ok = bool(result.get("ok"))
            reply = " ".join(str(x) for x in (result.get("code") or "", result.get("reply")) if x)
            summary = ("Succeeded" if ok else "Failed") + (f": {reply}" if reply else "")
        rows.append(
            BackendRow(
                backend=b,
                limit=b.limit,
                sent=b.sent_count,
                left=b.left,
                health=b.health,
                health_label=b.get_health_display(),
                health_detail=b.health_detail,
                last_test_at=b.last_test_at,
                last_test_ok=ok,
                last_test_summary=summary,
            )
        )
    return rows


def worker_rows(now: datetime | None = None) -> list[WorkerRow]:
    now = now or timezone.now()
    silence = GlobalSettings.load().worker_silence_threshold
    rows = []
    for w in WorkerHeartbeat.objects.order_by("-last_seen")[:200]:
        alive = w.stopped_at is None and now - w.last_seen <= silence
        rows.append(
            WorkerRow(worker=w, alive=alive, silent_for=max(now - w.last_seen, timedelta(0)))
        )
    return rows


def recent_alerts(limit: int = 20) -> list[Alert]:
    """Alerts to the Backend Failure Email, open ones first, then the newest."""
    return list(Alert.objects.order_by(F("closed_at").desc(nulls_first=True), "-opened_at")[:limit])


def live_workers(now: datetime | None = None) -> QuerySet[WorkerHeartbeat]:
    """Workers that have not stopped and were heard from within the silence threshold."""
    now = now or timezone.now()
    silence = GlobalSettings.load().worker_silence_threshold
    return WorkerHeartbeat.objects.filter(stopped_at__isnull=True, last_seen__gte=now - silence)


def oldest_due(now: datetime | None = None) -> datetime | None:
    """The due time of the oldest message that may still leave and is due."""
    now = now or timezone.now()
    # One indexed lookup per status (msg_status_send_at) beats an OR over both.
    candidates = [
        Message.objects.filter(status=s, send_at__lte=now)
        .order_by("send_at")
        .values_list("send_at", flat=True)
        .first()
        for s in (Status.WAITING, Status.TO_SEND)
    ]
    found = [c for c in candidates if c is not None]
    return min(found) if found else None


def overview(now: datetime | None = None) -> Overview:
    now = now or timezone.now()
    counts = status_counts()
    due = oldest_due(now)
    return Overview(
        counts=counts,
        total=sum(counts.values()),
        stuck=stuck_messages(now).count(),
        stuck_threshold=GlobalSettings.load().stuck_threshold,
        backends=backend_rows(),
        workers=worker_rows(now),
        oldest_due_at=due,
        oldest_due_age=(now - due) if due else None,
        now=now,
    )


def channel_choices() -> list[tuple[str, str]]:
    return list(Channel.choices)


@dataclass
class TimelineEntry:
    at: datetime
    kind: str  # "event" or "attempt"
    title: str
    text: str
    details: list[tuple[str, str]]
    actor: str = ""


def message_timeline(message: Message) -> list[TimelineEntry]:
    """Events and attempts of ``message`` in one list, oldest first."""
    entries: list[TimelineEntry] = []
    for ev in message.events.order_by("created_at", "id"):
        if ev.to_status:
            source = Status(ev.from_status).label if ev.from_status else "Created"
            title = f"{source} → {Status(ev.to_status).label}"
        elif ev.reason_code.startswith("receipt_"):
            title = f"Delivery receipt: {ev.reason_code.removeprefix('receipt_')}"
        else:
            title = ev.get_kind_display()
        details = [("Reason", ev.reason_code)] if ev.reason_code else []
        entries.append(TimelineEntry(ev.created_at, "event", title, ev.text, details, ev.actor))
    for a in message.attempts.select_related("backend").order_by("started_at", "id"):
        details = [("Phase reached", a.phase)]
        if a.smtp_code or a.enhanced_code:
            code = " ".join(str(x) for x in (a.smtp_code or "", a.enhanced_code) if x)
            details.append(("Code", code))
        if a.provider_id:
            label = "Provider message id" if message.channel == "sms" else "Relay queue id"
            details.append((label, a.provider_id))
        if a.error_reason:
            details.append(("Error", a.error_reason))
        if a.backend is not None:
            details.append(("Backend", a.backend.name))
        details.append(("Settings version", str(a.settings_version or "-")))
        details.append(("Worker", a.worker or "-"))
        if a.finished_at:
            seconds = (a.finished_at - a.started_at).total_seconds()
            details.append(("Duration", f"{seconds:.2f} s"))
        entries.append(
            TimelineEntry(
                a.started_at, "attempt", f"Attempt: {a.get_outcome_display()}", a.reply, details
            )
        )
    # An attempt starts before the status change it causes: keep that order.
    entries.sort(key=lambda e: (e.at, 0 if e.kind == "attempt" else 1))
    return entries


def search_contacts(q: str, *, limit: int = 100) -> list[Contact]:
    qs = Contact.objects.all()
    text = q.strip()
    if text:
        qs = qs.filter(
            Q(name__icontains=text)
            | Q(email__icontains=text)
            | Q(mobile__icontains=text)
            | Q(external_id__icontains=text)
        )
    return list(qs.order_by("name", "id")[:limit])


def audit_page(
    *, before: int | None = None, size: int = PAGE_SIZE
) -> tuple[list[AuditEntry], int | None]:
    """Audit entries newest first, keyset-paged on id; (rows, id to page on)."""
    qs = AuditEntry.objects.order_by("-id")
    if before is not None:
        qs = qs.filter(id__lt=before)
    chunk = list(qs[: size + 1])
    rows = chunk[:size]
    return rows, (rows[-1].pk if len(chunk) > size else None)
