from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from outbound.management.commands.messages import get_message
from outbound.services.operations import resend_message


class Command(BaseCommand):
    help = "Re-send a message (Sent or Not sent), or make a queued one due now."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("id", help="The message id.")
        parser.add_argument("--actor", default="cli", help="Name written in the history.")

    def handle(self, *args: Any, **options: Any) -> None:
        result = resend_message(get_message(options["id"]), actor=options["actor"])
        if not result.ok:
            raise CommandError(result.text, returncode=1)
        self.stdout.write(result.text)
