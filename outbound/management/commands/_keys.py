"""The base of every command that stores or reads a secret (or serves the
pages that do): besides Django's own system checks it runs the key checks
(tag ``outbound_keys``, outbound/checks.py), so with DEBUG off it refuses to
start on a missing key or the public development key.

A command that serves pages always needs both keys: Django's key signs the
sessions and CSRF tokens, and the pages take passwords to store. Any other
command needs them when it would store or read a secret: when one is given
to it to store, or when the database holds one (a worker, a backend test or
a rotation would read it). A worker for backends that have no password (an
internal relay, the console SMS backend) therefore starts without keys, as
`migrate` and the read-only commands do: there is nothing for a key to
protect in it, and no secret can be stored under a default key since every
way to store one is refused. The key checks are deployment checks, so
`outbound check --deploy` lists them with Django's own."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import DatabaseError

from outbound.checks import KEYS_TAG


def secrets_are_stored() -> bool:
    """Whether any backend holds an encrypted secret (password, token or
    receipt secret). A database not migrated yet holds none."""
    from django.db.models import Q

    from outbound.models import Backend

    try:
        return Backend.objects.filter(~Q(secret="") | ~Q(receipt_secret="")).exists()
    except DatabaseError:
        return False


class KeyedCommand(BaseCommand):
    # Whether the command serves the pages (sessions, forms that take secrets).
    serves_pages = False

    def stores_a_secret(self, options: dict[str, Any]) -> bool:
        """Whether this invocation is given a secret to store."""
        return False

    def execute(self, *args: Any, **options: Any) -> Any:
        self._options = options
        return super().execute(*args, **options)

    def check(self, *args: Any, **kwargs: Any) -> None:
        super().check(*args, **kwargs)
        options = getattr(self, "_options", {})
        if self.serves_pages or self.stores_a_secret(options) or secrets_are_stored():
            super().check(tags=[KEYS_TAG], include_deployment_checks=True)
