"""The base of every command that stores or reads a secret (or serves the
pages that do): besides Django's own system checks it runs the key checks
(tag ``outbound_keys``, outbound/checks.py), so with DEBUG off it refuses to
start on a missing key or the public development key.

The key checks are deployment checks, not run by every command: `migrate`,
`makemigrations` and the read-only commands work before keys are set, and
`outbound check --deploy` lists them with Django's own."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from outbound.checks import KEYS_TAG


class KeyedCommand(BaseCommand):
    def check(self, *args: Any, **kwargs: Any) -> None:
        super().check(*args, **kwargs)
        super().check(tags=[KEYS_TAG], include_deployment_checks=True)
