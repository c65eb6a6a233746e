from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from outbound.services.operations import send_outgoing


class Command(BaseCommand):
    help = "Send every stuck message now (outbound send-outgoing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--actor", default="cli", help="Name written in the history.")

    def handle(self, *args: Any, **options: Any) -> None:
        result = send_outgoing(actor=options["actor"])
        if not result.ok:
            raise CommandError(result.text, returncode=1)
        self.stdout.write(result.text)
