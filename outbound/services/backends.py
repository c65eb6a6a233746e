"""Backends: build a transport from stored settings, test them, track health,
hold and release messages.

Contract: a backend is usable only when a test succeeded on its current
settings version. ``test_backend`` runs the probe and, on success, releases
every message held as Backend test required for it back to Waiting.
``mark_backend_failing`` records a configuration failure seen while sending
and holds the backend's queued messages; it changes nothing if the settings
were edited since the failing attempt (the new settings await their own test).
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import asdict
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from outbound import conf, secrets
from outbound.models import Backend, Health, Message
from outbound.services import transitions
from outbound.states import Reason, Status
from outbound.transports.smtp import ProbeResult, SmtpConfig, SmtpTransport

logger = logging.getLogger(__name__)

PROBE_RECIPIENT = "postmaster@example.com"

# Transport reason -> the message reason used when holding messages.
CONFIG_REASONS = {
    "auth_failed": Reason.BACKEND_AUTH_FAILED,
    "auth_unsupported": Reason.BACKEND_AUTH_FAILED,
    "tls_failed": Reason.BACKEND_TLS_FAILED,
    "host_not_found": Reason.BACKEND_HOST_NOT_FOUND,
    "secret_unreadable": Reason.BACKEND_SECRET_UNREADABLE,
}


def ssl_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    cafile = conf.smtp_ssl_cafile()
    if cafile:
        context.load_verify_locations(cafile=cafile)
    return context


def smtp_config(backend: Backend) -> SmtpConfig:
    """The transport settings of ``backend``; raises SecretError if its password
    cannot be decrypted."""
    password = secrets.decrypt(backend.secret, owner=f"backend {backend.name}")
    return SmtpConfig(
        host=backend.host,
        port=backend.port,
        security=backend.security,  # type: ignore[arg-type]
        username=backend.username,
        password=password,
        timeout=backend.timeout,
        ssl_context=ssl_context() if backend.security != "none" else None,
    )


def _held_filter(backend: Backend) -> Q:
    q = Q(backend=backend)
    if backend.is_default:
        q |= Q(backend__isnull=True, channel=backend.channel)
    return q


def release_held(backend: Backend, *, actor: str = "system") -> list[int]:
    """Send every message held for ``backend`` back to Waiting."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            Message.objects.filter(_held_filter(backend), status=Status.BACKEND_TEST_REQUIRED)
            .order_by("id")
            .values_list("id", flat=True)
        )
        if not ids:
            return []
        return transitions.transition_where(
            filters={"pk__in": ids},
            to=Status.WAITING,
            reason=Reason.RELEASED,
            text=(
                f"The test of backend {backend.name} succeeded at "
                f"{now.isoformat(timespec='seconds')}; the message is released to be sent."
            ),
            expect=[Status.BACKEND_TEST_REQUIRED],
            fields={"next_attempt_at": now},
            actor=actor,
        )


def hold_queued(backend: Backend, *, reason: str, text: str) -> list[int]:
    """Move the backend's unclaimed To send messages to Backend test required.

    Claimed ones are left to the worker holding them: it knows whether its
    send went through, and its fenced write decides.
    """
    return transitions.transition_where(
        filters={"backend": backend, "claim_token__isnull": True},
        to=Status.BACKEND_TEST_REQUIRED,
        reason=reason,
        text=text,
        expect=[Status.TO_SEND],
        fields={"next_attempt_at": None},
    )


def mark_backend_failing(
    backend_id: int, *, settings_version: int, reason: str, detail: str
) -> bool:
    """Record a configuration failure seen while sending; True if it was news."""
    now = timezone.now()
    changed = (
        Backend.objects.filter(pk=backend_id, settings_version=settings_version)
        .exclude(health=Health.FAILING, health_reason=reason)
        .update(health=Health.FAILING, health_reason=reason, health_detail=detail,
                health_changed_at=now)
    )
    backend = Backend.objects.get(pk=backend_id)
    if backend.settings_version == settings_version:
        hold_queued(
            backend,
            reason=CONFIG_REASONS.get(reason, Reason.BACKEND_FAILING),
            text=f"Backend {backend.name} is failing: {detail}",
        )
    if changed:
        logger.warning("backend %s failing: %s", backend.name, reason)
    return bool(changed)


def test_backend(
    backend: Backend,
    *,
    actor: str = "system",
    deadline: float = 15.0,
    probe_recipient: str = PROBE_RECIPIENT,
) -> ProbeResult:
    """Run the backend test on the current settings and record its result."""
    version = backend.settings_version
    try:
        config = smtp_config(backend)
    except secrets.SecretError as err:
        result = ProbeResult(
            ok=False, reason="secret_unreadable", phase="connect", code=None,
            reply=str(err), transcript=[], elapsed=0.0,
        )
    else:
        sender = backend.from_address or probe_recipient
        result = SmtpTransport(config).probe(
            mail_from=sender, rcpt_to=probe_recipient, deadline=deadline
        )
    _record_test(backend, version, result, actor=actor)
    return result


def _record_test(backend: Backend, version: int, result: ProbeResult, *, actor: str) -> None:
    now = timezone.now()
    summary: dict[str, Any] = asdict(result)
    summary["at"] = now.isoformat()
    summary["settings_version"] = version
    summary["actor"] = actor
    fields: dict[str, Any] = {"last_test_at": now, "last_test_result": summary}
    if result.ok:
        fields.update(
            health=Health.OK, health_reason="", health_detail="", tested_version=version,
            health_changed_at=now,
        )
    else:
        fields.update(
            health=Health.FAILING, health_reason=result.reason,
            health_detail=f"{result.reply}".strip() or result.reason, health_changed_at=now,
        )
    # A test of settings that were edited meanwhile says nothing about the new ones.
    updated = Backend.objects.filter(pk=backend.pk, settings_version=version).update(**fields)
    backend.refresh_from_db()
    if updated and result.ok:
        released = release_held(backend, actor=actor)
        logger.info("backend %s tested ok; %s messages released", backend.name, len(released))
