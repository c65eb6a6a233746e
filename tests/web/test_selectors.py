"""Selectors: keyset pages, filters, counts and the overview."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.utils import timezone

from outbound.models import Backend, GlobalSettings, Message, WorkerHeartbeat
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
