from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from outbound.models import Backend
from outbound.services.backends import test_backend


class Command(BaseCommand):
    help = "Test a backend's settings (connect, TLS, AUTH, MAIL, RCPT, DATA; nothing is sent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="The backend's name.")

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
            return
        raise CommandError(
            f"Backend {backend.name}: test failed ({result.reason}) at the {result.phase} step: "
            f"{result.reply}"
        )
