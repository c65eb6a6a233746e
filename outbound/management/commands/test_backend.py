from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from outbound.errors import InvalidInput
from outbound.management.commands._keys import KeyedCommand
from outbound.models import Backend
from outbound.services.backends import send_test_message, send_test_sms, test_backend


class Command(KeyedCommand):
    help = "Test a backend's settings (connect, TLS, AUTH, MAIL, RCPT, DATA; nothing is sent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="The backend's name.")
        parser.add_argument(
            "--send-to",
            metavar="ADDRESS",
            help="After a successful test, send one real test message to this address (an "
            "email address, or a mobile number for an SMS backend).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            backend = Backend.objects.get(name=options["name"])
        except Backend.DoesNotExist as err:
            names = ", ".join(Backend.objects.values_list("name", flat=True)) or "none"
            raise CommandError(
                f"There is no backend named {options['name']!r} (backends: {names})."
            ) from err
        result = test_backend(backend, actor="cli")
        for line in result.transcript:
            self.stdout.write(f"  {line}")
        if result.ok:
            self.stdout.write(f"Backend {backend.name}: test succeeded in {result.elapsed:.2f}s.")
            if options["send_to"]:
                backend.refresh_from_db()
                try:
                    send = send_test_sms if backend.channel == "sms" else send_test_message
                    sent = send(backend, to=options["send_to"], actor="cli")
                except InvalidInput as err:
                    raise CommandError(str(err), returncode=2) from err
                if not sent.ok:
                    raise CommandError(sent.text, returncode=1)
                self.stdout.write(sent.text)
            return
        raise CommandError(
            f"Backend {backend.name}: test failed ({result.reason}) at the {result.phase} step: "
            f"{result.reply}"
        )
