"""Reads that are more than one filter: the message list, the overview, the
workers. Read-only.

The message list pages by keyset on (created_at, id), newest first, so the
cost of a page does not grow with how far back it is or how many rows the
table holds; no OFFSET and no COUNT over the filtered rows. Counts are a
single grouped COUNT per status.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from email import policy as email_policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from django.db import connection
from django.db.models import Count, F, Func, Q, QuerySet, TextField, Value
from django.db.models.functions import Length, Lower
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from outbound.models import (
    Alert,
    ApiKey,
    Attempt,
    AuditEntry,
    Backend,
    BackendSlot,
    Contact,
    GlobalSettings,
    Message,
    Suppression,
    WorkerHeartbeat,
)
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
    # The messages held as Backend test required that this backend's test
    # releases (``held_for``): the "Held for it" link of its settings card.
    held_for: int | None = None

    def apply(self, qs: QuerySet[Message]) -> QuerySet[Message]:
        if self.status:
            qs = qs.filter(status=self.status)
        if self.held_for is not None:
            backend = Backend.objects.filter(pk=self.held_for).first()
            if backend is None:
                return qs.none()
            qs = qs.filter(held_for(backend), status=Status.BACKEND_TEST_REQUIRED)
        if self.channel:
            qs = qs.filter(channel=self.channel)
        if self.backend is not None:
            qs = qs.filter(backend_id=self.backend)
        tz = timezone.get_current_timezone()
        if self.date_from is not None:
            qs = qs.filter(created_at__gte=datetime.combine(self.date_from, time.min, tz))
        if self.date_to is not None and self.date_to < date.max:
            # The end date is inclusive: everything before the next midnight
            # (the last date there is has no next one: no end then).
            end = datetime.combine(self.date_to + timedelta(days=1), time.min, tz)
            qs = qs.filter(created_at__lt=end)
        text = self.q.strip()
        named = messages_named_by_id(text)
        if named:
            # A Message-ID, or the queue id a relay (or SMS provider) gave:
            # what a mail administrator or a bounce hands back.
            qs = qs.filter(pk__in=named)
        elif "@" in text and not text.startswith("@"):
            # An address, or its beginning: an index range on the lower-cased
            # address, where a substring search would read every row.
            prefix = text.lower()
            found = Q(address__gte=prefix, address__lt=prefix + "\U0010ffff")
            # Also the messages of contacts with that address: one refused
            # before its "Message to" was filled in (notifications off, an
            # inactive contact) names its contact only.
            contacts = list(
                Contact.objects.filter(email__istartswith=text).values_list("id", flat=True)[
                    : SEARCH_IDS_MAX + 1
                ]
            )
            if 0 < len(contacts) <= SEARCH_IDS_MAX:
                found |= Q(contact_id__in=contacts)
            qs = qs.alias(address=Lower("message_to")).filter(found)
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
                self.held_for is not None,
                self.date_from,
                self.date_to,
                self.q.strip(),
            )
        )


def messages_named_by_id(text: str) -> list[int]:
    """The messages whose Message-ID (with or without its angle brackets) or
    relay queue id is exactly ``text``: two indexed lookups."""
    if not text or any(c.isspace() for c in text):
        return []
    ids: list[int] = []
    if "@" in text:
        bare = text.removeprefix("<").removesuffix(">")
        ids += Message.objects.filter(message_id=f"<{bare}>").values_list("id", flat=True)
    ids += Attempt.objects.filter(provider_id=text).values_list("message_id", flat=True)
    return ids


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


def status_counts(filters: MessageFilters | None = None) -> dict[str, int]:
    """Messages per status (every status present, zero when none); with
    ``filters``, of the messages they select whatever their status."""
    counts = {s.value: 0 for s in Status}
    qs = Message.objects.all()
    if filters is not None:
        qs = replace(filters, status="").apply(qs)
    rows = qs.order_by().values("status").annotate(n=Count("id"))
    for row in rows:
        counts[row["status"]] = row["n"]
    return counts


def stuck_messages(now: datetime | None = None) -> QuerySet[Message]:
    """Waiting or To send, and more than the stuck threshold past their due time."""
    now = now or timezone.now()
    threshold = GlobalSettings.load().stuck_threshold
    return Message.objects.filter(
        status__in=[Status.WAITING, Status.TO_SEND], send_at__lt=now - threshold
    )


def held_for(backend: Backend) -> Q:
    """The messages whose hold ``backend`` decides (its successful test
    releases them): those named to it at intake, and, when it is its
    channel's default, every message of the channel that follows the default
    (whichever backend held it before)."""
    q = Q(backend=backend, backend_chosen=True)
    if backend.is_default:
        q |= Q(backend_chosen=False, channel=backend.channel)
    return q


def held_for_backend(backend: Backend) -> QuerySet[Message]:
    """The messages held as Backend test required that wait for this backend."""
    return Message.objects.filter(held_for(backend), status=Status.BACKEND_TEST_REQUIRED)


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
    # What paces the backend now (see services/dispatch.py): its rate limit
    # with the attempts it counts and its next free slot (None while one is
    # free), a pause after repeated throttling, and its open connections.
    rate_per_minute: int | None = None
    rate_used: int = 0
    next_slot_at: datetime | None = None
    paused_until: datetime | None = None
    max_connections: int | None = None
    connections_open: int = 0
    # Messages held as Backend test required that this backend's successful
    # test releases (``held_for``).
    held: int = 0


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
    # Stuck messages that only wait for their backend's pause, rate limit or
    # connection cap, per backend (counted in ``stuck`` too).
    stuck_held: list[HeldStuck] = field(default_factory=list)

    @property
    def alive_workers(self) -> int:
        return sum(1 for w in self.workers if w.alive)

    @property
    def stuck_held_count(self) -> int:
        return sum(h.count for h in self.stuck_held)

    @property
    def stuck_movable(self) -> int:
        """Stuck messages that Send outgoing messages can make leave sooner."""
        return max(self.stuck - self.stuck_held_count, 0)

    @property
    def failing_backends(self) -> list[BackendRow]:
        return [b for b in self.backends if b.health == "failing"]

    @property
    def untested_holding(self) -> list[BackendRow]:
        """Backends not failing that hold messages until a test succeeds
        (never tested, or their settings changed since)."""
        return [b for b in self.backends if b.health != "failing" and b.held]


def backend_rows(now: datetime | None = None) -> list[BackendRow]:
    now = now or timezone.now()
    rows = []
    for b in Backend.objects.order_by("channel", "-is_default", "name"):
        result: dict[str, Any] = b.last_test_result or {}
        summary = ""
        ok: bool | None = None
        if b.last_test_at:
            ok = bool(result.get("ok"))
            reply = " ".join(str(x) for x in (result.get("code") or "", result.get("reply")) if x)
            # A success's last reply is a step of the test (an SMTP server's
            # 354 to DATA): only a failure's reply says something here.
            summary = "Succeeded" if ok else "Failed" + (f": {reply}" if reply else "")
            if ok and b.tested_version != b.settings_version:
                summary = "Succeeded, before the settings changed"
        pace = rate_pace(b.pk, b.rate_per_minute, now) if b.rate_per_minute else None
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
                rate_per_minute=b.rate_per_minute,
                rate_used=pace.started if pace else 0,
                next_slot_at=pace.next_slot if pace and pace.next_slot > now else None,
                paused_until=b.paused_until if _paused(b, now) else None,
                max_connections=b.max_connections if _capped(b) else None,
                connections_open=len(open_slots(b.pk, now)) if _capped(b) else 0,
                held=held_for_backend(b).count(),
            )
        )
    return rows


# ------------------------------------------------------- what holds a message
#
# The claim (services/dispatch.py: claim_batch, _rate_quota, acquire_slot,
# _pause_throttled_backends) holds back a due To send message of a backend
# that is paused, whose rate limit is used up for the minute, or whose
# connections are all open. These reads look at the same rows, so the pages
# can say which of them holds a message and until when.

# The window the rate limit counts attempts in (dispatch._rate_quota).
RATE_WINDOW = timedelta(minutes=1)


def rate_window(backend_id: int, now: datetime) -> list[datetime]:
    """Start times, oldest first, of the backend's attempts that its rate
    limit counts at ``now``: those started in the minute ending then."""
    return list(
        Attempt.objects.filter(backend_id=backend_id, started_at__gt=now - RATE_WINDOW)
        .order_by("started_at")
        .values_list("started_at", flat=True)
    )


@dataclass(frozen=True)
class RatePace:
    """Where a backend's rate limit stands at ``now``, in two cheap reads
    (``rate_pace``) where ``rate_window`` reads every start of the minute."""

    rate: int
    # The attempts the limit counts at ``now``.
    started: int
    # The backend's next free slot: ``now`` while one is free
    # (``rate_slots(rate_window(...), rate, now, 1)[0]``).
    next_slot: datetime
    # While a slot is free: when the oldest free one opened, None when the
    # backend never started ``rate`` attempts (free since ever). Only read
    # with ``free_since=True``.
    free_since: datetime | None = None


def rate_pace(backend_id: int, rate: int, now: datetime, *, free_since: bool = False) -> RatePace:
    """The backend's rate limit at ``now``: one COUNT of the starts in the
    minute, and only when they reach the rate (or ``free_since`` asks when
    the free slots opened) the rate-th newest start, one indexed row. The
    next slot opens a minute after that start, as the claim counts."""
    starts = Attempt.objects.filter(backend_id=backend_id)
    started = starts.filter(started_at__gt=now - RATE_WINDOW).count()
    if started < rate and not free_since:
        return RatePace(rate=rate, started=started, next_slot=now)
    newest = list(
        starts.order_by("-started_at").values_list("started_at", flat=True)[rate - 1 : rate]
    )
    opens = newest[0] + RATE_WINDOW if newest else None
    if started >= rate and opens is not None:
        return RatePace(rate=rate, started=started, next_slot=max(now, opens))
    return RatePace(rate=rate, started=started, next_slot=now, free_since=opens)


def rate_slots(starts: list[datetime], rate: int, now: datetime, count: int) -> list[datetime]:
    """When the next ``count`` messages may start under ``rate`` attempts per
    minute, given ``starts`` (``rate_window``): each one as soon as fewer than
    ``rate`` attempts fall in the minute before it, assuming a worker claims
    at once. The first is the backend's next free slot (``now`` if one is
    free now)."""
    window = sorted(starts)
    slots: list[datetime] = []
    for _ in range(count):
        # The oldest of the last ``rate`` starts must have left the window:
        # the claim counts starts strictly after ``moment - 1 minute``.
        slot = now if len(window) < rate else max(now, window[-rate] + RATE_WINDOW)
        window.append(slot)
        slots.append(slot)
    return slots


def open_slots(backend_id: int, now: datetime) -> list[BackendSlot]:
    """The connection slots of the backend that acquire_slot counts (unexpired)."""
    return list(
        BackendSlot.objects.filter(backend_id=backend_id, lease_until__gte=now).order_by(
            "lease_until", "id"
        )
    )


def _claim_rules() -> tuple[timedelta, frozenset[int]]:
    """The claim's own constants: how long a message waits when its backend
    has no free connection, and the replies that count as throttling.
    Imported here, not at the top: dispatch imports alerts, which reads
    through this module."""
    from outbound.services.dispatch import BUSY_RETRY, THROTTLE_CODES

    return BUSY_RETRY, THROTTLE_CODES


def _paused(backend: Backend, now: datetime) -> bool:
    return backend.paused_until is not None and backend.paused_until > now


def _capped(backend: Backend) -> bool:
    # An SMTP session, or an SMS provider's client, takes a slot.
    return bool(backend.max_connections)


@dataclass(frozen=True)
class BackendHold:
    """What keeps a due To send message from being claimed, and until when.

    ``kind`` is "paused", "rate_limit" or "connections". ``until`` is the end
    of the pause, the backend's next free rate-limit slot, or the earliest
    lease end of the open connections (when a stopped worker's connection
    is freed at the latest; a working one renews it).
    """

    kind: str
    backend: Backend
    until: datetime
    # Rate limit: the attempts it counts, the due messages of the backend the
    # claim takes before this one, and when this one's turn comes at that
    # pace (an estimate: other messages may become due before it).
    rate: int = 0
    started: int = 0
    ahead: int = 0
    turn_at: datetime | None = None
    # Connection cap: the holders of the open connections.
    cap: int = 0
    holders: tuple[str, ...] = ()
    # Pause: the last throttling reply of the backend and when it came.
    throttle_reply: str = ""
    throttle_at: datetime | None = None


def backend_hold(message: Message, now: datetime | None = None) -> BackendHold | None:
    """Which of its backend's pause, rate limit or connection cap holds this
    To send message now, if any (the first that applies, in that order)."""
    if message.status != Status.TO_SEND or message.claim_token is not None:
        return None
    backend = message.backend
    if backend is None:
        return None
    now = now or timezone.now()
    busy_retry, throttle_codes = _claim_rules()
    due_at = message.next_attempt_at or now
    if _paused(backend, now):
        assert backend.paused_until is not None
        if due_at > backend.paused_until:
            return None  # it is not due before the pause ends
        throttle = (
            Attempt.objects.filter(backend_id=backend.pk, smtp_code__in=sorted(throttle_codes))
            .order_by("-started_at", "-id")
            .only("smtp_code", "enhanced_code", "reply", "finished_at", "started_at")
            .first()
        )
        return BackendHold(
            kind="paused",
            backend=backend,
            until=backend.paused_until,
            throttle_reply=_reply_line(throttle) if throttle else "",
            throttle_at=(throttle.finished_at or throttle.started_at) if throttle else None,
        )
    rate = backend.rate_per_minute
    if rate and due_at <= now:
        ahead = (
            _due_unclaimed(backend.pk, now)
            .filter(Q(next_attempt_at__lt=due_at) | Q(next_attempt_at=due_at, id__lt=message.pk))
            .count()
        )
        starts = rate_window(backend.pk, now)
        slots = rate_slots(starts, rate, now, ahead + 1)
        if slots[-1] > now:
            return BackendHold(
                kind="rate_limit",
                backend=backend,
                until=slots[0],
                rate=rate,
                started=len(starts),
                ahead=ahead,
                turn_at=slots[-1],
            )
    if _capped(backend) and due_at <= now + busy_retry:
        assert backend.max_connections is not None
        slots_open = open_slots(backend.pk, now)
        if len(slots_open) >= backend.max_connections:
            return BackendHold(
                kind="connections",
                backend=backend,
                until=slots_open[0].lease_until,
                cap=backend.max_connections,
                holders=tuple(s.holder for s in slots_open),
            )
    return None


def _reply_line(attempt: Attempt) -> str:
    code = str(attempt.smtp_code or "")
    if attempt.reply.startswith(code):
        return attempt.reply
    return " ".join(x for x in (code, attempt.enhanced_code, attempt.reply) if x)


def _due_unclaimed(backend_id: int, now: datetime) -> QuerySet[Message]:
    return Message.objects.filter(
        status=Status.TO_SEND,
        backend_id=backend_id,
        claim_token__isnull=True,
        next_attempt_at__lte=now,
    )


# How long a rate-limit slot may stay free, with a message due for it, before
# that message counts as stuck rather than as the backend's pace: the
# workers claim every poll interval (well under a second by default) and
# check for stuck messages every minute, so a slot still free a minute after
# it opened, for a message due as long, is not being taken.
PACE_GRACE = timedelta(minutes=1)


@dataclass(frozen=True)
class HeldStuck:
    """Stuck messages of one backend that only wait for its pause, rate limit
    or connection cap: making them due now (Send outgoing messages) changes
    nothing for them."""

    hold: BackendHold
    count: int


def held_stuck(now: datetime | None = None) -> list[HeldStuck]:
    """Per backend that holds some, the stuck messages its pause, rate limit
    or connection cap holds. A few reads per paced backend, none per message."""
    now = now or timezone.now()
    busy_retry, _ = _claim_rules()
    groups: list[HeldStuck] = []
    candidates = Backend.objects.filter(
        Q(paused_until__gt=now) | Q(rate_per_minute__isnull=False) | Q(max_connections__gt=0)
    ).order_by("channel", "-is_default", "name")
    stuck_to_send = stuck_messages(now).filter(status=Status.TO_SEND, claim_token__isnull=True)
    for backend in candidates:
        stuck = stuck_to_send.filter(backend_id=backend.pk)
        found: tuple[BackendHold, int] | None = None
        if _paused(backend, now):
            # Nothing of a paused backend is claimed, whatever its rate or cap.
            assert backend.paused_until is not None
            hold = BackendHold(kind="paused", backend=backend, until=backend.paused_until)
            found = (hold, stuck.filter(next_attempt_at__lte=backend.paused_until).count())
        else:
            rate = backend.rate_per_minute
            if rate:
                pace = rate_pace(backend.pk, rate, now, free_since=True)
                # At most the free part of the rate can be claimed now; every
                # other due stuck message waits for a later slot. The claim
                # takes the longest due first, so the free slots are owed to
                # those due for more than PACE_GRACE, and only once the slots
                # themselves have been free that long: a slot that opened
                # moments ago, or a message made due moments ago (validated,
                # released), is for a worker's next round, the pace as well.
                due = stuck.filter(next_attempt_at__lte=now).count()
                free = min(max(rate - pace.started, 0), due)
                if free and pace.free_since is not None and pace.free_since > now - PACE_GRACE:
                    free = 0
                if free:
                    owed = stuck.filter(next_attempt_at__lte=now - PACE_GRACE).count()
                    free = min(free, owed)
                hold = BackendHold(
                    kind="rate_limit",
                    backend=backend,
                    until=pace.next_slot,
                    rate=rate,
                    started=pace.started,
                )
                found = (hold, max(due - free, 0))
            if (found is None or not found[1]) and _capped(backend):
                assert backend.max_connections is not None
                slots_open = open_slots(backend.pk, now)
                if len(slots_open) >= backend.max_connections:
                    hold = BackendHold(
                        kind="connections",
                        backend=backend,
                        until=slots_open[0].lease_until,
                        cap=backend.max_connections,
                        holders=tuple(s.holder for s in slots_open),
                    )
                    found = (hold, stuck.filter(next_attempt_at__lte=now + busy_retry).count())
        if found is not None and found[1]:
            groups.append(HeldStuck(hold=found[0], count=found[1]))
    return groups


@dataclass(frozen=True)
class StuckNow:
    """The stuck messages (``stuck_messages``) and which of them are truly
    stuck: not being sent right now, and not only waiting for their
    backend's pace (``held_stuck``)."""

    stuck: int
    # Claimed by a worker whose lease still runs: leaving right now.
    sending: int
    paced: list[HeldStuck]

    @property
    def truly_stuck(self) -> int:
        return max(self.stuck - self.sending - sum(h.count for h in self.paced), 0)


def stuck_now(now: datetime | None = None) -> StuckNow:
    """One grouped count of the stuck messages, then, when some are not being
    sent, a few reads per paced backend (``held_stuck``): none per message."""
    now = now or timezone.now()
    counts = stuck_messages(now).aggregate(
        stuck=Count("id"),
        sending=Count("id", filter=Q(claim_token__isnull=False, lease_until__gte=now)),
    )
    stuck, sending = counts["stuck"] or 0, counts["sending"] or 0
    return StuckNow(stuck=stuck, sending=sending, paced=held_stuck(now) if stuck > sending else [])


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
    stuck = stuck_messages(now).count()
    return Overview(
        counts=counts,
        total=sum(counts.values()),
        stuck=stuck,
        stuck_threshold=GlobalSettings.load().stuck_threshold,
        backends=backend_rows(now),
        workers=worker_rows(now),
        oldest_due_at=due,
        oldest_due_age=(now - due) if due else None,
        now=now,
        stuck_held=held_stuck(now) if stuck else [],
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
        # A finished attempt stands where its answer came, after the
        # validation that made the message To send (the attempt is started
        # in the same write, a moment before that history line is stamped).
        entries.append(
            TimelineEntry(
                a.finished_at or a.started_at,
                "attempt",
                f"Attempt: {a.get_outcome_display()}",
                a.reply,
                details,
            )
        )
    # An attempt ends before the status change it causes: keep that order.
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


def audit_object_names(entries: list[AuditEntry]) -> dict[tuple[str, int], str]:
    """The current names of the contacts, backends, blocklist entries and API
    keys the entries name: one query per kind of object."""
    wanted: dict[str, set[int]] = {}
    for entry in entries:
        for pk in (entry.object_ids or [])[:10]:
            if isinstance(pk, int):
                wanted.setdefault(entry.object_type, set()).add(pk)
    names: dict[tuple[str, int], str] = {}
    for pk, name, email in Contact.objects.filter(pk__in=wanted.get("contact", ())).values_list(
        "pk", "name", "email"
    ):
        names[("contact", pk)] = name or email or f"#{pk}"
    for pk, name in Backend.objects.filter(pk__in=wanted.get("backend", ())).values_list(
        "pk", "name"
    ):
        names[("backend", pk)] = name
    for pk, value in Suppression.objects.filter(pk__in=wanted.get("suppression", ())).values_list(
        "pk", "value"
    ):
        names[("suppression", pk)] = value
    for key in ApiKey.objects.filter(pk__in=wanted.get("apikey", ())):
        names[("apikey", key.pk)] = str(key)
    return names


@dataclass(frozen=True)
class Part:
    """One part of an email as the message page lists it."""

    name: str
    content_type: str  # with its charset, when it has one
    size: int  # bytes of content, decoded
    disposition: str  # attachment, inline, or "" (an alternative or a body)
    content_id: str


def message_parts(message: Message) -> list[Part]:
    """The alternatives and attachments of an email: from the MIME body the
    caller built (the Django drop-in's), else the stored attachments."""
    if message.mime_body is None:
        rows = (
            message.attachments.annotate(size=Length("content"))
            .order_by("id")
            .values_list("filename", "content_type", "size")
        )
        return [Part(name, ctype, size or 0, "attachment", "") for name, ctype, size in rows]
    parsed = BytesParser(policy=email_policy.default).parsebytes(bytes(message.mime_body))
    parts = []
    for part in parsed.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            first = inner[0] if isinstance(inner, list) and inner else None
            payload = first.as_bytes() if isinstance(first, EmailMessage) else b""
        charset = part.get_param("charset")
        ctype = part.get_content_type() + (f"; charset={charset}" if charset else "")
        parts.append(
            Part(
                name=part.get_filename() or "",
                content_type=ctype,
                size=len(payload) if isinstance(payload, bytes) else 0,
                disposition=part.get_content_disposition() or "",
                content_id=str(part.get("Content-ID", "")).strip(),
            )
        )
    return parts
