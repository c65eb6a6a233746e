"""Failed console logins in the audit log (the throttle itself is
django-axes, configured in config/settings.py)."""

from __future__ import annotations

from outbound.services.audit import record_audit

# AuditEntry.actor's length.
_ACTOR_MAX = 150


def record_failed_login(*, username: str, address: str, locked_out: bool) -> None:
    """One failed login: who was tried (the typed user name, which may not
    exist), from where, and whether the throttle had already refused it.
    Never the password."""
    record_audit(
        actor=(username or "(no user name)")[:_ACTOR_MAX],
        action="login_failed",
        object_type="user",
        ok=False,
        result=(
            "refused: too many failed logins, locked out for the cool-off"
            if locked_out
            else "wrong user name or password"
        ),
        data={"address": address},
    )
