"""Pure functions that decide when a failed message is tried again."""

from __future__ import annotations

import random
from datetime import datetime, timedelta


def backoff(
    *,
    attempt_count: int,
    min_backoff: timedelta,
    max_backoff: timedelta,
    rng: random.Random | None = None,
) -> timedelta:
    """Exponential backoff with +/-20% jitter, clamped to [min, max].

    ``attempt_count`` is the number of attempts made so far (1 after the first).
    """
    rng = rng or random.Random()
    exponent = max(attempt_count - 1, 0)
    base = min_backoff.total_seconds() * (2 ** min(exponent, 30))
    jittered = base * rng.uniform(0.8, 1.2)
    seconds = min(max(jittered, min_backoff.total_seconds()), max_backoff.total_seconds())
    return timedelta(seconds=seconds)


def next_attempt_at(
    *,
    now: datetime,
    attempt_count: int,
    first_attempt_at: datetime,
    min_backoff: timedelta,
    max_backoff: timedelta,
    lifetime: timedelta,
    rng: random.Random | None = None,
) -> datetime | None:
    """When to try again, or None when the retry lifetime is over."""
    deadline = first_attempt_at + lifetime
    if now >= deadline:
        return None
    when = now + backoff(
        attempt_count=attempt_count, min_backoff=min_backoff, max_backoff=max_backoff, rng=rng
    )
    # The last try happens at the deadline rather than never.
    return min(when, deadline)
