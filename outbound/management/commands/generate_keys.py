"""`outbound generate-keys`: print a new DJANGO_SECRET_KEY and a new Fernet key
for OUTBOUND_SECRET_KEYS, in the environment-file form systemd and shells read.

It runs no system checks: it is the command the key checks point to, so it
must work on the very setup they refuse."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.core.management.utils import get_random_secret_key

from outbound import secrets


class Command(BaseCommand):
    help = (
        "Print a new DJANGO_SECRET_KEY and OUTBOUND_SECRET_KEYS as KEY=value lines "
        "(for an environment file); nothing is stored."
    )
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def handle(self, *args: Any, **options: Any) -> None:
        # Letters and digits only: no quoting is needed in an environment file.
        django_key = "".join(ch for ch in get_random_secret_key() if ch.isalnum())
        while len(django_key) < 50:
            django_key += "".join(ch for ch in get_random_secret_key() if ch.isalnum())
        self.stdout.write(f"DJANGO_SECRET_KEY={django_key[:64]}")
        self.stdout.write(f"OUTBOUND_SECRET_KEYS={secrets.generate_key()}")
