"""Per-caller limits on costly actions (a backend test opens a connection to
a relay; sending outgoing messages wakes every worker).

Fixed one-minute windows in Django's cache: approximate on purpose, since the
point is to stop a looping script, not to meter precisely. Limits are read at
call time from ``OUTBOUND_API_RATE_LIMITS`` ({action: per minute}).
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache

from outbound.api.auth import Principal
from outbound.api.errors import ApiError

DEFAULT_LIMITS = {"backend_test": 6, "send_outgoing": 6}
WINDOW = 60


def check_rate(principal: Principal, action: str) -> None:
    limits = {**DEFAULT_LIMITS, **getattr(settings, "OUTBOUND_API_RATE_LIMITS", {})}
    limit = int(limits.get(action, 0))
    if limit <= 0:
        return
    now = time.time()
    window = int(now // WINDOW)
    key = f"outbound:rate:{action}:{principal.rate_key}:{window}"
    cache.add(key, 0, timeout=WINDOW * 2)
    try:
        count = cache.incr(key)
    except ValueError:
        # Evicted between add and incr: count this call as the first.
        cache.set(key, 1, timeout=WINDOW * 2)
        count = 1
    if count > limit:
        wait = max(1, int((window + 1) * WINDOW - now) + 1)
        raise ApiError(
            429,
            f"At most {limit} {action.replace('_', ' ')} requests a minute; try again in {wait} s.",
            code="rate_limited",
            details={"retry_after": wait, "limit_per_minute": limit},
            headers={"Retry-After": str(wait)},
        )
