"""Alerts to the Backend Failure Email.

Contract: one alert per incident (a failing backend, a stuck queue, no live
worker, a used-up allowance), a reminder after the configured interval while
it lasts, and an "all clear" when it ends. Alerts go through the deployment's
system mail (``OUTBOUND_SYSTEM_MAIL_URL``), never through a notification
backend, since that may be the thing failing. Every alert is stored, so it is
shown even when no mail could be sent.
"""

from __future__ import annotations

import logging
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from django.db import IntegrityError, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from outbound import conf, selectors
from outbound.errors import OutboundError
from outbound.formats import plural, stamp
from outbound.models import Alert, Backend, GlobalSettings, Message, WorkerHeartbeat
from outbound.services.addresses import check_email
from outbound.services.intake import make_message_id
from outbound.services.operations import held_back_note
from outbound.states import Reason, Status
from outbound.transports.base import Envelope
from outbound.transports.smtp import SmtpConfig, SmtpTransport

logger = logging.getLogger(__name__)


def system_mail_config() -> SmtpConfig | None:
    """Parse ``smtp://[user:password@]host[:port][?security=starttls|tls]``."""
    url = conf.system_mail_url()
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise OutboundError("OUTBOUND_SYSTEM_MAIL_URL must look like smtp://host:port")
    query = parse_qs(parts.query)
    security = query.get("security", ["tls" if parts.scheme == "smtps" else "none"])[0]
    return SmtpConfig(
        host=parts.hostname,
        port=parts.port or (465 if security == "tls" else 25),
        security=security,  # type: ignore[arg-type]
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        timeout=15,
        ssl_context=conf.ssl_context() if security != "none" else None,
    )


def _deliver(subject: str, body: str) -> str:
    """Send one alert; return where it went or why it did not."""
    settings = GlobalSettings.load()
    to = settings.backend_failure_email.strip()
    if not to:
        return "Not mailed: no Backend Failure Email is set in the global settings."
    try:
        config = system_mail_config()
    except OutboundError as err:
        return f"Not mailed: {err}"
    if config is None:
        return "Not mailed: the deployment has no system mail (OUTBOUND_SYSTEM_MAIL_URL)."
    sender = settings.default_from or "outbound@localhost"
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(timezone.now())
    msg["Message-ID"] = make_message_id(sender)
    msg.set_content(body)
    # The default from address may carry a display name; MAIL FROM takes none.
    mail_from = check_email(sender).address or sender
    envelope = Envelope(mail_from=mail_from, recipients=[to], message=msg.as_bytes())
    try:
        with SmtpTransport(config) as transport:
            result = transport.send(envelope)
    except OutboundError as err:
        logger.warning("alert %r could not be mailed: %s", subject, err)
        return f"Not mailed: the system mail server failed: {err}"
    return f"Mailed to {to} at {stamp()} (the server answered {result.code})."


def raise_alert(*, kind: str, key: str, subject: str, body: str) -> Alert | None:
    """Open an incident (and mail it), or remind about an open one when due.

    Returns the alert when a notification was made now, else None.
    """
    now = timezone.now()
    interval = GlobalSettings.load().alert_reminder_interval
    current = Alert.objects.filter(key=key, closed_at__isnull=True).first()
    if current is not None:
        if current.last_notified_at and current.last_notified_at + interval > now:
            return None
        # The reminder is claimed by a conditional UPDATE: the web process,
        # a worker and `outbound alerts check` may all find it due at once,
        # and only the one whose UPDATE matched mails it.
        claimed = Alert.objects.filter(
            pk=current.pk, closed_at__isnull=True, last_notified_at=current.last_notified_at
        ).update(last_notified_at=now, notifications=F("notifications") + 1)
        if not claimed:
            return None
        current.subject, current.body = f"Reminder: {subject}", body
        current.delivery = _deliver(current.subject, body)
        current.last_notified_at = now
        current.notifications += 1
        current.save(update_fields=["subject", "body", "delivery"])
        return current
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                kind=kind,
                key=key,
                opened_at=now,
                last_notified_at=now,
                notifications=1,
                subject=subject,
                body=body,
            )
    except IntegrityError:
        return None  # another process opened it a moment ago
    alert.delivery = _deliver(subject, body)
    alert.save(update_fields=["delivery"])
    return alert


def clear_alert(*, key: str, subject: str, body: str) -> Alert | None:
    alert = Alert.objects.filter(key=key, closed_at__isnull=True).first()
    if alert is None:
        return None
    closed_at = timezone.now()
    updated = Alert.objects.filter(pk=alert.pk, closed_at__isnull=True).update(closed_at=closed_at)
    if not updated:
        return None  # another process closed it a moment ago, and mailed the all-clear
    alert.closed_at = closed_at
    alert.delivery += "\nAll clear: " + _deliver(subject, body)
    Alert.objects.filter(pk=alert.pk).update(delivery=alert.delivery)
    return alert


# Failures found on this side of the connection: no server answered, so
# the alert must not present them as a server's reply.
LOCAL_FAILURES = frozenset(
    {
        "connection_refused",
        "connection_lost",
        "timeout",
        "host_not_found",
        "host_forbidden",
        "secret_unreadable",
        "tls_failed",
        "tls_wrong_host",
    }
)


def page_link(view: str, *args: Any, anchor: str = "") -> str:
    """The console page an alert is about, as a full address when the
    deployment has OUTBOUND_PUBLIC_URL (else its path, to open on the
    console's own host)."""
    path = reverse(f"outbound:{view}", args=args) + (f"#{anchor}" if anchor else "")
    return f"{conf.public_url()}{path}"


def backend_failing(backend: Backend) -> Alert | None:
    """Alert that the backend's settings hold messages back, or remind of it.

    Nothing while no message is held for it: the operator whose own test
    failed sees that on screen, and the minute check (``check_alerts``)
    raises the alert once messages are held.
    """
    held = selectors.held_for_backend(backend).count()
    if not held:
        return None
    # No count in the subject: the alert page keeps the subject of the
    # incident, and the number held changes while it lasts.
    subject = f"Outbound: backend {backend.name} is failing"
    if backend.channel == "sms":
        where = f"{backend.get_kind_display()}{', ' + backend.host if backend.host else ''}"
        check = "the provider account (account SID, auth token or API secret) and its address"
    else:
        where = f"{backend.host}:{backend.port}"
        check = "the server, account, password and security"
    label = "What happened" if backend.health_reason in LOCAL_FAILURES else "Server reply"
    body = (
        f"The notification backend {backend.name} ({where}) is failing.\n\n"
        f"{label}: {backend.health_detail or backend.health_reason}\n"
        f"Messages held as Backend test required at {_at(timezone.now())}: {held}\n\n"
        f"What to do: open the global settings, check {check} of this backend, save, and "
        "run the Test. When the test succeeds the held messages go out by themselves.\n"
        f"Its settings: {page_link('settings', anchor=f'backend-{backend.pk}')}\n"
    )
    return raise_alert(
        kind=Alert.Kind.BACKEND_FAILING, key=f"backend:{backend.pk}", subject=subject, body=body
    )


def _at(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z")


def backend_recovered(backend: Backend) -> Alert | None:
    return clear_alert(
        key=f"backend:{backend.pk}",
        subject=f"Outbound: all clear, backend {backend.name} works again",
        body=(
            f"The test of backend {backend.name} succeeded; held messages were released and "
            "are being sent.\n"
        ),
    )


def _age(moment: datetime) -> str:
    seconds = int((timezone.now() - moment).total_seconds())
    return f"{seconds // 3600}h {seconds % 3600 // 60}m"


def allowance_used(backend: Backend) -> Alert | None:
    waiting = Message.objects.filter(
        backend=backend, status=Status.WAITING, reason_code=Reason.ALLOWANCE_EXHAUSTED
    ).count()
    return raise_alert(
        kind=Alert.Kind.ALLOWANCE_USED,
        key=f"allowance:{backend.pk}",
        subject=f"Outbound: backend {backend.name} has used its allowance",
        body=(
            f"Backend {backend.name} has sent {backend.sent_count} of its "
            f"{plural(backend.limit or 0, 'message')}. {plural(waiting, 'message')} "
            f"{'is' if waiting == 1 else 'are'} waiting for allowance and nothing more "
            "goes out through it.\n\nWhat to do: raise the limit or reset the sent count "
            "in the global settings; the waiting messages then go out by themselves.\n"
            f"Its settings: {page_link('settings', anchor=f'backend-{backend.pk}')}\n"
        ),
    )


def allowance_available(backend: Backend) -> Alert | None:
    return clear_alert(
        key=f"allowance:{backend.pk}",
        subject=f"Outbound: all clear, backend {backend.name} has allowance again",
        body=f"Backend {backend.name} can send again ({plural(backend.left or 0, 'message')} "
        "left).\n",
    )


def check_alerts() -> list[Alert]:
    """Periodic checks: stuck queue, no live worker, reminders of failing
    backends and used-up allowances. Returns the alerts notified by this
    call (opened, reminded or cleared); an incident another process saw
    first is not among them.

    Run by every worker, by the web process (``outbound serve``) and by
    ``outbound alerts check``: the checks for a dead worker and a stuck
    queue must run where something is still alive.
    """
    notified: list[Alert | None] = []
    settings = GlobalSettings.load()
    now = timezone.now()
    # Only truly stuck messages raise it: not those being sent right now, nor
    # those that only wait for their backend's pace (rate limit, pause,
    # connection cap), which is what the administrator configured. The cheap
    # look first: most minutes nothing is past the threshold, and the two
    # indexed reads of oldest_due say so.
    oldest = selectors.oldest_due(now)
    found = selectors.StuckNow(stuck=0, sending=0, paced=[])
    if oldest is not None and now - oldest > settings.stuck_threshold:
        found = selectors.stuck_now(now)
    paced = found.paced
    if oldest is not None and found.truly_stuck > 0:
        held = held_back_note(paced).strip()
        first = (
            Message.objects.filter(status__in=(Status.WAITING, Status.TO_SEND), send_at__lte=now)
            .order_by("send_at", "id")
            .values_list("id", flat=True)
            .first()
        )
        links = f"The Outgoing messages page: {page_link('home')}\n" + (
            f"The oldest stuck message: {page_link('message', first)}\n" if first else ""
        )
        have = "has" if found.stuck == 1 else "have"
        notified.append(
            raise_alert(
                kind=Alert.Kind.QUEUE_STUCK,
                key="queue",
                subject="Outbound: messages are stuck",
                body=(
                    f"{plural(found.stuck, 'message')} {have} been Waiting or To send for "
                    f"more than {settings.stuck_threshold} past their due time; the oldest due "
                    f"message has waited {_age(oldest)}.\n\nWhat to do: check that a worker is "
                    "running (Workers page) and that the backends are healthy, then use Send "
                    "outgoing messages.\n"
                    + (
                        f"\nAmong the stuck messages: {held} If this pace is too slow, raise "
                        "the backend's limits in the settings.\n"
                        if held
                        else ""
                    )
                    + links
                ),
            )
        )
    else:
        # Those past the threshold now (if any) only wait for their backend.
        held = held_back_note(paced).strip() if paced else ""
        notified.append(
            clear_alert(
                key="queue",
                subject="Outbound: all clear, no message is stuck",
                body="The queue is moving again.\n"
                + (
                    f"\n{plural(sum(h.count for h in paced), 'message')} "
                    f"{'is' if sum(h.count for h in paced) == 1 else 'are'} still more than "
                    f"{settings.stuck_threshold} past "
                    f"their due time, at the pace set in the settings: {held}\n"
                    if held
                    else ""
                ),
            )
        )
    alive = selectors.live_workers(now).exists()
    newest = WorkerHeartbeat.objects.order_by("-last_seen").first()
    if not alive and newest is not None:
        how = "stopped" if newest.stopped_at is not None else "went silent"
        notified.append(
            raise_alert(
                kind=Alert.Kind.NO_WORKER,
                key="workers",
                subject="Outbound: no worker is running",
                body=(
                    f"No worker has been seen since {stamp(newest.last_seen)}: the last one, "
                    f"{newest.name}, {how} (the silence threshold is "
                    f"{settings.worker_silence_threshold}). Nothing is being validated or "
                    "sent.\n\n"
                    "What to do: start a worker (outbound worker, see the README) and check "
                    "its logs.\n"
                ),
            )
        )
    elif alive:
        notified.append(
            clear_alert(
                key="workers",
                subject="Outbound: all clear, a worker is running",
                body="A worker is running again.\n",
            )
        )
    for backend in Backend.objects.filter(health="failing"):
        notified.append(backend_failing(backend))
    for backend in Backend.objects.filter(limit__isnull=False):
        if backend.left == 0:
            notified.append(allowance_used(backend))
        else:
            notified.append(allowance_available(backend))
    return [a for a in notified if a is not None]
