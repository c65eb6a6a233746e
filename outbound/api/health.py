"""Probes for orchestrators and load balancers, and the health view for monitoring.

Three questions, three answers (no authentication on any: they name no
message, contact or secret):

- `/livez`: is this process serving requests? Touches no database, so a
  database outage never gets a healthy process restarted.
- `/readyz`: can this process do its work? The database answers and every
  migration the code knows is applied; 503 otherwise, so traffic waits.
- `/healthz`: the worker and queue view (workers alive, heartbeat age, oldest
  due message) for monitoring; 503 when no worker runs, which is an alert for
  a person, not a reason to restart or unroute the console.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache

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
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
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


@cache
def _known_migrations() -> dict[tuple[str, str], tuple[tuple[str, str], ...]]:
    """The migrations this code ships, each with the ones it replaces (a squash).

    Read from disk once per process: the code does not change under a running
    process, while the database's record of what is applied is read at every
    probe (a rollback or a restored backup shows at once).
    """
    loader = MigrationLoader(None, ignore_no_migrations=True)
    return {key: tuple(loader.graph.nodes[key].replaces or ()) for key in loader.graph.nodes}


def pending_migrations() -> list[str]:
    """Names of the code's migrations the database has not applied (app.name).

    Raises DatabaseError when the database does not answer.
    """
    applied = set(MigrationRecorder(connections[DEFAULT_DB_ALIAS]).applied_migrations())
    pending = [
        key
        for key, replaces in _known_migrations().items()
        if key not in applied and not (replaces and set(replaces) <= applied)
    ]
    return sorted(f"{app}.{name}" for app, name in pending)


def readiness_report() -> tuple[bool, dict[str, Any]]:
    report: dict[str, Any] = {"ready": False, "database": False, "pending_migrations": None}
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT 1")
        report["database"] = True
        report["pending_migrations"] = pending_migrations()
    except DatabaseError:
        # Not reachable, or reachable without the migrations table: not ready.
        pass
    report["ready"] = report["database"] and report["pending_migrations"] == []
    return report["ready"], report


@never_cache
def livez(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"live": True})


@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    ready, report = readiness_report()
    return JsonResponse(report, status=200 if ready else 503)


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    ok, report = health_report()
    return JsonResponse(report, status=200 if ok else 503)
