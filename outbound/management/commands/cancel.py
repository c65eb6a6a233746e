from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from outbound.management.commands.messages import get_message
from outbound.services.operations import cancel_group, cancel_message


class Command(BaseCommand):
    help = "Cancel a message that has not left, or with --group every such message of a group."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("id", nargs="?", help="The message id.")
        parser.add_argument("--group", help="Cancel the group with this key instead.")
        parser.add_argument("--actor", default="cli", help="Name written in the history.")

    def handle(self, *args: Any, **options: Any) -> None:
        if bool(options["id"]) == bool(options["group"]):
            raise CommandError("Give a message id or --group KEY (not both).", returncode=2)
        if options["group"]:
            result = cancel_group(options["group"], actor=options["actor"])
        else:
            result = cancel_message(get_message(options["id"]), actor=options["actor"])
        if not result.ok:
            raise CommandError(result.text, returncode=1)
        self.stdout.write(result.text)
