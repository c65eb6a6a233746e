"""Health for load balancers: the database answers and a worker is alive.

Reads only, no authentication: it names no message, contact or secret.
"""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from outbound.models import WorkerHeartbeat
from outbound.selectors import live_workers, oldest_due


def health_report() -> tuple[bool, dict[str, Any]]:
    now = timezone.now()
    report: dict[str, Any] = {
        "ok": False,
        "database": False,
        "workers_alive": 0,
        "last_heartbeat_age_seconds": None,
        "oldest_due_age_seconds": None,
    }
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        report["database"] = True
        report["workers_alive"] = live_workers(now).count()
        # The newest heartbeat of any worker, stopped ones included: when
        # every worker is gone, how long ago the last one was heard from is
        # what the person paged needs first.
        last = (
            WorkerHeartbeat.objects.order_by("-last_seen")
            .values_list("last_seen", flat=True)
            .first()
        )
        if last is not None:
            report["last_heartbeat_age_seconds"] = max((now - last).total_seconds(), 0.0)
        due = oldest_due(now)
        if due is not None:
            report["oldest_due_age_seconds"] = max((now - due).total_seconds(), 0.0)
    except DatabaseError:
        # Unreachable database: the report says so instead of failing.
        pass
    report["ok"] = bool(report["database"] and report["workers_alive"] > 0)
    return report["ok"], report


def healthz(request: HttpRequest) -> JsonResponse:
    ok, report = health_report()
    return JsonResponse(report, status=200 if ok else 503)
