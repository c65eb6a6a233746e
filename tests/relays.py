"""The settings of an email backend pointing at a test SMTP server, as the
tests of backends and alerts save them."""

from __future__ import annotations

from typing import Any


def relay_settings(server: Any, **extra: Any) -> dict[str, Any]:
    """Backend settings for ``server`` (a tests/smtpd.py server): the default
    email backend "Relay", no TLS, 5 s timeout; ``extra`` overrides."""
    return {
        "name": "Relay",
        "host": server.host,
        "port": server.port,
        "security": "none",
        "from_address": "noreply@example.com",
        "is_default": True,
        "timeout": 5,
        **extra,
    }
