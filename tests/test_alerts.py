"""Alerts to the Backend Failure Email that must not cry wolf, and the
reads they rest on. Real SMTP servers, the real worker."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from outbound.models import Attempt, Backend
from outbound.selectors import rate_pace, rate_slots, rate_window
from outbound.services.intake import queue_email

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_rate_pace_agrees_with_the_full_window(
    smtp_server: Any, make_backend: Callable[..., Backend], run_worker: Callable[..., Any]
) -> None:
    """The two reads of ``rate_pace`` say what ``rate_slots`` says from every
    start of the minute: how many it counts and when the next slot opens."""
    backend = make_backend(smtp_server)
    for i in range(4):
        queue_email(to=f"u{i}@example.com")
    run_worker()
    now = timezone.now()
    ids = list(Attempt.objects.order_by("id").values_list("id", flat=True))
    assert len(ids) == 4
    for pk, ago in zip(ids, (70, 50, 30, 10), strict=True):
        Attempt.objects.filter(pk=pk).update(started_at=now - timedelta(seconds=ago))
    for offset in (0, 15, 35, 55, 75):
        at = now + timedelta(seconds=offset)
        for rate in range(1, 7):
            starts = rate_window(backend.pk, at)
            pace = rate_pace(backend.pk, rate, at)
            assert pace.started == len(starts), (offset, rate)
            assert pace.next_slot == rate_slots(starts, rate, at, 1)[0], (offset, rate)
    # Three a minute: the three newest are in the minute, the next slot
    # opens when the oldest of them (50 s ago) leaves it.
    assert rate_pace(backend.pk, 3, now).next_slot == now + timedelta(seconds=10)
    # Four a minute: one is free, since the fourth newest start (70 s ago)
    # left the minute 10 s ago; five a minute: free since ever.
    assert rate_pace(backend.pk, 4, now, free_since=True).free_since == now - timedelta(seconds=10)
    assert rate_pace(backend.pk, 5, now, free_since=True).free_since is None
