"""Deployment settings, read at call time (never at import) so tests and
management commands can change them with ``override_settings``."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class WorkerTuning:
    batch_size: int
    lease_seconds: float
    poll_interval: float
    heartbeat_interval: float


def worker_tuning() -> WorkerTuning:
    return WorkerTuning(
        batch_size=int(getattr(settings, "OUTBOUND_BATCH_SIZE", 100)),
        lease_seconds=float(getattr(settings, "OUTBOUND_LEASE_SECONDS", 120)),
        poll_interval=float(getattr(settings, "OUTBOUND_POLL_INTERVAL", 0.5)),
        heartbeat_interval=float(getattr(settings, "OUTBOUND_HEARTBEAT_INTERVAL", 10)),
    )


def alert_check_interval() -> float:
    """Seconds between the alert checks of the web process (``outbound serve``)."""
    return max(float(getattr(settings, "OUTBOUND_ALERT_CHECK_INTERVAL", 60)), 0.1)


def secret_keys() -> list[str]:
    raw = str(getattr(settings, "OUTBOUND_SECRET_KEYS", "") or "")
    return [k.strip() for k in raw.split(",") if k.strip()]


def django_secret_key() -> str:
    return str(settings.SECRET_KEY)


def default_secret_key() -> str:
    """The public development key of config/settings.py (never a real key)."""
    return str(getattr(settings, "OUTBOUND_DEFAULT_SECRET_KEY", "dev-only-insecure-key-change-me"))


def system_mail_url() -> str:
    return str(getattr(settings, "OUTBOUND_SYSTEM_MAIL_URL", "") or "")


def message_id_domain() -> str:
    return str(getattr(settings, "OUTBOUND_MESSAGE_ID_DOMAIN", "") or "")


def forbid_private_hosts() -> bool:
    return bool(getattr(settings, "OUTBOUND_FORBID_PRIVATE_HOSTS", False))


def allow_loopback_http() -> bool:
    """Whether an SMS provider URL may be plain http on a loopback address."""
    return bool(settings.DEBUG) or bool(getattr(settings, "OUTBOUND_ALLOW_LOOPBACK_HTTP", False))


def public_url() -> str:
    """This service's public base URL without a trailing slash, or ""."""
    return str(getattr(settings, "OUTBOUND_PUBLIC_URL", "") or "").rstrip("/")


def host_policy() -> Callable[[str], bool] | None:
    """The check every backend connection's IP address must pass, or None."""
    return public_address if forbid_private_hosts() else None


def public_address(address: str) -> bool:
    """False for private, loopback, link-local and other non-public addresses."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def smtp_ssl_cafile() -> str:
    """An extra CA bundle for backends (a private relay's CA; the tests' CA)."""
    return str(getattr(settings, "OUTBOUND_SMTP_CAFILE", "") or "")


def ssl_context() -> ssl.SSLContext:
    """A verifying TLS context that also trusts OUTBOUND_SMTP_CAFILE, if set."""
    context = ssl.create_default_context()
    cafile = smtp_ssl_cafile()
    if cafile:
        context.load_verify_locations(cafile=cafile)
    return context
