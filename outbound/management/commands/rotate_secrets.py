from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from outbound.management.commands._keys import KeyedCommand
from outbound.services.backends import rotate_secrets


class Command(KeyedCommand):
    help = "Re-encrypt every stored backend secret under the newest OUTBOUND_SECRET_KEYS key."

    def handle(self, *args: Any, **options: Any) -> None:
        done, failed = rotate_secrets()
        self.stdout.write(f"{done} secret(s) re-encrypted under the newest key.")
        if failed:
            raise CommandError(
                "These backends' secrets cannot be read with the configured keys; enter "
                f"them again: {', '.join(failed)}",
                returncode=1,
            )
