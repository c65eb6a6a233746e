"""Selectors: keyset pages, filters, counts and the overview."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from outbound import selectors
from outbound.models import Attempt, Backend, GlobalSettings, Message, WorkerHeartbeat
from outbound.selectors import Cursor, MessageFilters, message_page, overview, status_counts
from outbound.services.intake import queue_emails
from outbound.states import Status

pytestmark = pytest.mark.django_db


def _fill(n: int) -> list[int]:
    queue_emails([{"to": f"user{i}@example.com", "subject": f"Subject {i}"} for i in range(n)])
    # Same created_at for many rows: the id must break the ties.
    ids = list(Message.objects.order_by("id").values_list("id", flat=True))
    base = timezone.now() - timedelta(days=1)
    for i, pk in enumerate(ids):
        Message.objects.filter(pk=pk).update(created_at=base + timedelta(minutes=i // 3))
    return ids


def _walk_older(filters: MessageFilters, size: int) -> list[int]:
    seen: list[int] = []
    page = message_page(filters, size=size)
    seen += [m.pk for m in page.rows]
    while page.older is not None:
        page = message_page(filters, before=page.older, size=size)
        seen += [m.pk for m in page.rows]
    return seen


def test_keyset_pages_cover_every_row_once_newest_first() -> None:
    _fill(23)
    expected = list(Message.objects.order_by("-created_at", "-id").values_list("id", flat=True))
    assert _walk_older(MessageFilters(), 5) == expected


def test_newer_link_returns_to_the_previous_page() -> None:
    _fill(12)
    first = message_page(MessageFilters(), size=5)
    second = message_page(MessageFilters(), before=first.older, size=5)
    assert first.newer is None
    assert second.newer is not None
    back = message_page(MessageFilters(), after=second.newer, size=5)
    assert [m.pk for m in back.rows] == [m.pk for m in first.rows]
    assert back.newer is None
    assert back.older is not None


def test_cursor_round_trips_and_rejects_garbage() -> None:
    c = Cursor(timezone.now(), 42)
    assert Cursor.decode(c.encode()) == c
    for raw in ["", "x", "2024-01-01~abc", "notadate~3", "2024-01-01T00:00:00~3"]:
        assert Cursor.decode(raw) is None


def test_filters_status_text_and_dates() -> None:
    _fill(6)
    first = Message.objects.order_by("id").first()
    assert first is not None
    Message.objects.filter(pk=first.pk).update(status=Status.SENT, to_user="Zoe Quinn")
    assert [m.pk for m in message_page(MessageFilters(status="sent")).rows] == [first.pk]
    assert [m.pk for m in message_page(MessageFilters(q="zoe")).rows] == [first.pk]
    assert len(message_page(MessageFilters(q="Subject 3")).rows) == 1
    assert len(message_page(MessageFilters(q="user4@")).rows) == 1
    tomorrow = timezone.localdate() + timedelta(days=1)
    assert message_page(MessageFilters(date_from=tomorrow)).rows == []
    assert len(message_page(MessageFilters(date_to=tomorrow)).rows) == 6
    assert message_page(MessageFilters(date_to=date(2000, 1, 1))).rows == []
    assert message_page(MessageFilters(channel="sms")).rows == []


def test_counts_and_overview() -> None:
    _fill(4)
    backend = Backend.objects.create(name="Relay", host="h", limit=10, sent_count=3)
    Message.objects.filter(pk__in=Message.objects.values("pk")[:1]).update(status=Status.SENT)
    counts = status_counts()
    assert counts["sent"] == 1 and counts["waiting"] == 3 and counts["cancelled"] == 0
    now = timezone.now()
    WorkerHeartbeat.objects.create(name="alive", hostname="h", pid=1, started_at=now, last_seen=now)
    WorkerHeartbeat.objects.create(
        name="silent", hostname="h", pid=2, started_at=now, last_seen=now - timedelta(hours=1)
    )
    WorkerHeartbeat.objects.create(
        name="stopped", hostname="h", pid=3, started_at=now, last_seen=now, stopped_at=now
    )
    Message.objects.filter(status=Status.WAITING).update(send_at=now - timedelta(hours=2))
    o = overview()
    assert o.total == 4
    assert o.stuck == 3
    assert {w.worker.name: w.alive for w in o.workers} == {
        "alive": True,
        "silent": False,
        "stopped": False,
    }
    assert o.alive_workers == 1
    row = o.backends[0]
    assert (row.backend, row.limit, row.sent, row.left) == (backend, 10, 3, 7)
    assert o.oldest_due_age is not None and o.oldest_due_age >= timedelta(hours=2)
    assert GlobalSettings.load().stuck_threshold == o.stuck_threshold


def _messages(*fields: tuple[str, str, str]) -> list[int]:
    """Messages with (message_to, to_user, subject), the first the oldest."""
    queue_emails([{"to": to, "subject": subject} for to, _, subject in fields])
    ids = list(Message.objects.order_by("id").values_list("id", flat=True))
    base = timezone.now() - timedelta(days=1)
    for i, (pk, (to, user, _)) in enumerate(zip(ids, fields, strict=True)):
        Message.objects.filter(pk=pk).update(
            message_to=to, to_user=user, created_at=base + timedelta(minutes=i)
        )
    return ids


def _found(q: str) -> list[int]:
    return [m.pk for m in message_page(MessageFilters(q=q)).rows]


def test_text_search_is_a_case_insensitive_substring_of_address_name_or_subject() -> None:
    ann, bob, cid = _messages(
        ("ann.lee@mail.example", "Ann Lee", "Your invoice 2024-17"),
        ("bob@shop.example", "Robert Brown", "Password reset"),
        ("cid@Mail.Example", "", "Welcome, Ann"),
    )
    # A name, anywhere in it and in any case.
    assert _found("robert") == [bob]
    assert _found("BERT BR") == [bob]
    # A word of the subject.
    assert _found("invoice 2024") == [ann]
    assert _found("RESET") == [bob]
    # Part of an address, not its beginning.
    assert _found("shop.exam") == [bob]
    assert _found("MAIL.example") == [cid, ann]
    # Any of the three fields, newest first.
    assert _found("ann") == [cid, ann]
    # Shorter than a trigram still searches.
    assert _found("wN") == [bob]
    assert _found("lee") == [ann]
    # An address or its beginning goes through the address index, any case.
    assert _found("Bob@") == [bob]
    assert _found("ann.lee@mail.example") == [ann]
    assert _found("nobody") == []


def test_search_finds_a_message_by_its_message_id_or_relay_queue_id() -> None:
    ann, bob = _messages(
        ("ann@mail.example", "Ann", "Invoice"), ("bob@mail.example", "Bob", "Reset")
    )
    backend = Backend.objects.create(name="Relay", host="smtp.example.com")
    Attempt.objects.create(
        message_id=bob,
        backend=backend,
        started_at=timezone.now(),
        outcome="sent",
        provider_id="9EA7B1E0AE5",
    )
    message_id = Message.objects.get(pk=ann).message_id
    # As the page shows it, and as a mail log writes it (no angle brackets).
    assert _found(message_id) == [ann]
    assert _found(message_id.strip("<>")) == [ann]
    assert _found("9EA7B1E0AE5") == [bob]
    # Only whole ids: a part of one is an ordinary text search.
    assert _found("9EA7B1E0") == []


def test_text_search_takes_like_wildcards_literally() -> None:
    plain, percent, under = _messages(
        ("a@example.com", "", "Sale 100 today"),
        ("b@example.com", "", "Sale 100% today"),
        ("c@example.com", "first_last", "Hello"),
    )
    assert _found("100%") == [percent]
    assert _found("t_l") == [under]
    assert _found("sale 100") == [percent, plain]
    # Nor is anything else special: FTS5 query syntax, quotes, backslashes.
    for text in ['"Sale" OR', "NEAR(Sale 100)", "subject:Hello", "Sale*", "^Sal", "'", "\\x"]:
        assert _found(text) == [], text


@pytest.mark.parametrize("ids_max", [1000, 5])
def test_text_search_pages_newest_first_with_the_cursor(
    ids_max: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On SQLite, 5 sends this search past the trigram table's id list to
    # the plain newest-first scan.
    monkeypatch.setattr(selectors, "SEARCH_IDS_MAX", ids_max)
    fields = [
        (f"user{i}@example.com", f"Customer {i}", f"Order {i} shipped" if i % 3 else f"Hi {i}")
        for i in range(40)
    ]
    ids = _messages(*fields)
    # Ties on created_at: the id must order them.
    Message.objects.filter(pk__in=ids[10:20]).update(created_at=timezone.now())
    filters = MessageFilters(q="ORDER")
    expected = list(
        Message.objects.filter(subject__startswith="Order")
        .order_by("-created_at", "-id")
        .values_list("id", flat=True)
    )
    assert len(expected) == 26
    assert _walk_older(filters, 7) == expected
    first = message_page(filters, size=7)
    second = message_page(filters, before=first.older, size=7)
    back = message_page(filters, after=second.newer, size=7)
    assert [m.pk for m in back.rows] == [m.pk for m in first.rows]


def test_text_search_uses_the_trigram_index() -> None:
    _messages(("ann@mail.example", "Ann Lee", "Invoice"))
    if connection.vendor == "postgresql":
        # The search's expression must stay the index's (migration 0010).
        qs = MessageFilters(q="Ann Lee").apply(Message.objects.order_by())
        with connection.cursor() as cursor:
            # A handful of rows: make the planner show that it could.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_indexscan = off")
            plan = qs.explain()
        assert "msg_search_trgm" in plan
    else:
        assert selectors._sqlite_search_ids("ann lee") == list(
            Message.objects.values_list("id", flat=True)
        )
        assert selectors._sqlite_search_ids("nobody") == []
        assert selectors._sqlite_search_ids("an") is None
