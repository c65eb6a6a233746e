"""Per-caller limits on costly actions (a backend test opens a connection to
a relay; sending outgoing messages wakes every worker).

Fixed one-minute windows counted in the database (``RateWindow``), so all
processes (every web server process) count against the same limit:
one upsert per call, which two processes calling at once cannot make lose a
count. A call that opens a window deletes the windows that ended, so the
table holds little more than the current ones. Approximate on purpose, since
the point is to stop a looping script, not to meter precisely. Limits are
read at call time from ``OUTBOUND_API_RATE_LIMITS`` ({action: per minute}).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection

from outbound.api.auth import Principal
from outbound.api.errors import ApiError
from outbound.models import RateWindow

DEFAULT_LIMITS = {"backend_test": 6, "send_outgoing": 6}
WINDOW = 60


def check_rate(principal: Principal, action: str) -> None:
    limits = {**DEFAULT_LIMITS, **getattr(settings, "OUTBOUND_API_RATE_LIMITS", {})}
    limit = int(limits.get(action, 0))
    if limit <= 0:
        return
    now = time.time()
    window = int(now // WINDOW)
    key = f"{action}:{principal.rate_key}:{window}"
    count = _count_call(key, datetime.fromtimestamp((window + 1) * WINDOW, UTC))
    if count == 1:
        _delete_ended(datetime.fromtimestamp(now, UTC))
    if count > limit:
        wait = max(1, int((window + 1) * WINDOW - now) + 1)
        raise ApiError(
            429,
            f"At most {limit} {action.replace('_', ' ')} requests a minute; try again in {wait} s.",
            code="rate_limited",
            details={"retry_after": wait, "limit_per_minute": limit},
            headers={"Retry-After": str(wait)},
        )


def _count_call(key: str, ends: datetime) -> int:
    """Count one call in the window ``key`` and return its count so far."""
    quote = connection.ops.quote_name
    table = quote(RateWindow._meta.db_table)
    count = quote("count")
    sql = (
        f"INSERT INTO {table} ({quote('key')}, {count}, {quote('expires_at')}) "  # noqa: S608
        f"VALUES (%s, 1, %s) ON CONFLICT ({quote('key')}) "
        f"DO UPDATE SET {count} = {table}.{count} + 1 RETURNING {count}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [key, connection.ops.adapt_datetimefield_value(ends)])
        row = cursor.fetchone()
    return int(row[0])


def _delete_ended(now: datetime) -> None:
    table = connection.ops.quote_name(RateWindow._meta.db_table)
    expires_at = connection.ops.quote_name("expires_at")
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE {expires_at} <= %s",  # noqa: S608
            [connection.ops.adapt_datetimefield_value(now)],
        )
