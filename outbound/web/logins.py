"""The console's login, besides Django's LoginView: the address django-axes
counts failures under, and failed logins written to the audit log."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from outbound.services.logins import record_failed_login


def client_address(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR", "") or "")


@receiver(user_login_failed, dispatch_uid="outbound-audit-failed-login")
def _audit_failed_login(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # django-axes marks a request it refused during a lockout.
    locked_out = bool(getattr(request, "axes_locked_out", False))
    record_failed_login(
        username=str(credentials.get("username", "") or ""),
        address=client_address(request) if request is not None else "",
        locked_out=locked_out,
    )
