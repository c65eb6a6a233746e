"""Backends, global settings, the overview and health."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Path, Router, Status

from outbound.api.auth import ADD_BACKENDS, ADMIN, CHANGE_BACKENDS, READ, principal
from outbound.api.errors import ApiError
from outbound.api.health import health_report
from outbound.api.ratelimit import check_rate
from outbound.api.render import backend_out
from outbound.api.schemas import (
    MAX_ID,
    BackendIn,
    BackendOut,
    ErrorOut,
    HealthOut,
    OverviewOut,
    ProbeOut,
    SettingsIn,
    SettingsOut,
)
from outbound.models import Backend, GlobalSettings
from outbound.selectors import overview as build_overview
from outbound.services.backends import save_backend_settings, test_backend
from outbound.services.global_settings import global_settings_data, save_global_settings

router = Router()

ERRORS: dict[int, Any] = {code: ErrorOut for code in (400, 401, 403, 404, 409, 413, 422, 429)}

BackendId = Path(..., ge=1, le=MAX_ID)


def _backend_or_404(backend_id: int) -> Backend:
    backend = Backend.objects.filter(pk=backend_id).first()
    if backend is None:
        raise ApiError(404, f"There is no backend {backend_id}.")
    return backend


@router.get("/backends", response={200: list[BackendOut], **ERRORS}, auth=READ, tags=["backends"])
def list_backends(request: HttpRequest) -> list[dict[str, Any]]:
    return [backend_out(b) for b in Backend.objects.order_by("channel", "-is_default", "name")]


@router.get(
    "/backends/{backend_id}", response={200: BackendOut, **ERRORS}, auth=READ, tags=["backends"]
)
def get_backend(request: HttpRequest, backend_id: int = BackendId) -> dict[str, Any]:
    return backend_out(_backend_or_404(backend_id))


@router.post(
    "/backends",
    response={201: BackendOut, **ERRORS},
    auth=ADD_BACKENDS,
    tags=["backends"],
    summary="Create a backend, email or SMS (it must be tested before it sends)",
)
def create_backend(request: HttpRequest, payload: BackendIn) -> Status[dict[str, Any]]:
    data = payload.model_dump(exclude_unset=True)
    backend = save_backend_settings(data=data, actor=principal(request).actor)
    return Status(201, backend_out(backend))


@router.patch(
    "/backends/{backend_id}",
    response={200: BackendOut, **ERRORS},
    auth=CHANGE_BACKENDS,
    tags=["backends"],
    summary="Change a backend's settings",
    description=(
        "The password is write-only. Changing a connection setting makes the backend "
        "untested: its queued messages are held until a test of the new settings succeeds."
    ),
)
def update_backend(
    request: HttpRequest, payload: BackendIn, backend_id: int = BackendId
) -> dict[str, Any]:
    backend = _backend_or_404(backend_id)
    data = payload.model_dump(exclude_unset=True)
    return backend_out(
        save_backend_settings(backend=backend, data=data, actor=principal(request).actor)
    )


@router.post(
    "/backends/{backend_id}/test",
    response={200: ProbeOut, **ERRORS},
    auth=CHANGE_BACKENDS,
    tags=["backends"],
    summary="Test the backend's settings (nothing is sent)",
    description=(
        "Connects, negotiates TLS, authenticates and checks MAIL and RCPT. A failed test is "
        "still a 200 answer with ok=false and the step and reply that failed. Rate-limited "
        "per key."
    ),
)
def run_backend_test(request: HttpRequest, backend_id: int = BackendId) -> dict[str, Any]:
    who = principal(request)
    backend = _backend_or_404(backend_id)
    check_rate(who, "backend_test")
    result = test_backend(backend, actor=who.actor)
    return {
        "ok": result.ok,
        "reason": result.reason,
        "phase": result.phase,
        "code": result.code,
        "reply": result.reply,
        "transcript": list(result.transcript),
        "elapsed": result.elapsed,
    }


def settings_out(s: GlobalSettings) -> dict[str, Any]:
    return {
        **global_settings_data(s),
        "backend_failure_email": s.backend_failure_email,
        "default_from": s.default_from,
        "stuck_threshold_seconds": s.stuck_threshold.total_seconds(),
        "retry_lifetime_seconds": s.retry_lifetime.total_seconds(),
        "retry_min_backoff_seconds": s.retry_min_backoff.total_seconds(),
        "retry_max_backoff_seconds": s.retry_max_backoff.total_seconds(),
        "alert_reminder_interval_seconds": s.alert_reminder_interval.total_seconds(),
        "worker_silence_threshold_seconds": s.worker_silence_threshold.total_seconds(),
        "sms_enabled": s.sms_enabled,
        "default_region": s.default_region,
        "max_sms_segments": s.max_sms_segments,
        "retention_days": s.retention_days,
        "updated_at": s.updated_at,
    }


@router.get("/settings", response={200: SettingsOut, **ERRORS}, auth=READ, tags=["settings"])
def get_settings(request: HttpRequest) -> dict[str, Any]:
    return settings_out(GlobalSettings.load())


@router.patch("/settings", response={200: SettingsOut, **ERRORS}, auth=ADMIN, tags=["settings"])
def update_settings(request: HttpRequest, payload: SettingsIn) -> dict[str, Any]:
    data = payload.model_dump(exclude_unset=True)
    return settings_out(save_global_settings(data=data, actor=principal(request).actor))


@router.get("/overview", response={200: OverviewOut, **ERRORS}, auth=READ, tags=["overview"])
def get_overview(request: HttpRequest) -> dict[str, Any]:
    o = build_overview()
    return {
        "counts": o.counts,
        "total": o.total,
        "stuck": o.stuck,
        "stuck_threshold_seconds": o.stuck_threshold.total_seconds(),
        "oldest_due_at": o.oldest_due_at,
        "oldest_due_age_seconds": o.oldest_due_age.total_seconds() if o.oldest_due_age else None,
        "backends": [
            {
                "id": row.backend.pk,
                "name": row.backend.name,
                "channel": row.backend.channel,
                "health": row.health,
                "health_label": row.health_label,
                "health_detail": row.health_detail,
                "limit": row.limit,
                "sent": row.sent,
                "left": row.left,
                "last_test_at": row.last_test_at,
                "last_test_ok": row.last_test_ok,
                "last_test_summary": row.last_test_summary,
            }
            for row in o.backends
        ],
        "workers": [
            {
                "name": w.worker.name,
                "hostname": w.worker.hostname,
                "pid": w.worker.pid,
                "alive": w.alive,
                "last_seen": w.worker.last_seen,
                "silent_for_seconds": w.silent_for.total_seconds(),
                "processed": w.worker.processed,
            }
            for w in o.workers
        ],
        "workers_alive": o.alive_workers,
    }


@router.get(
    "/healthz",
    response={200: HealthOut, 503: HealthOut},
    auth=None,
    tags=["health"],
    operation_id="get_health",
    summary="Health for load balancers (no authentication)",
    description="200 when the database answers and a worker heartbeat is recent, else 503.",
)
def healthz(request: HttpRequest) -> Status[dict[str, Any]]:
    ok, report = health_report()
    return Status(200 if ok else 503, report)
