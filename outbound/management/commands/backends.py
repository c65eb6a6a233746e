from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from outbound.api.render import backend_out
from outbound.management.commands._output import write_json, write_table
from outbound.models import Backend
from outbound.services.backends import test_backend


class Command(BaseCommand):
    help = "List backends or test one (nothing is sent by a test)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="list|test")
        listing = sub.add_parser("list", help="Backends with their health and allowance.")
        listing.add_argument("--json", action="store_true")
        test = sub.add_parser("test", help="Test a backend's settings.")
        test.add_argument("name", help="The backend's name.")
        test.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "list":
            backends = list(Backend.objects.order_by("channel", "-is_default", "name"))
            if options["json"]:
                write_json(self.stdout, [backend_out(b) for b in backends])
                return
            write_table(
                self.stdout,
                ["name", "channel", "default", "server", "security", "password", "health", "left"],
                [
                    [
                        b.name,
                        b.channel,
                        b.is_default,
                        f"{b.host}:{b.port}",
                        b.security,
                        "set" if b.has_secret else "none",
                        b.get_health_display(),
                        "unlimited" if b.left is None else b.left,
                    ]
                    for b in backends
                ],
            )
            if not backends:
                self.stdout.write("No backends are configured.")
            return
        self._test(options["name"], options["json"])

    def _test(self, name: str, as_json: bool) -> None:
        backend = Backend.objects.filter(name=name).first()
        if backend is None:
            names = ", ".join(Backend.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"There is no backend named {name!r} (backends: {names}).")
        result = test_backend(backend, actor="cli")
        if as_json:
            write_json(
                self.stdout,
                {
                    "backend": backend.name,
                    "ok": result.ok,
                    "reason": result.reason,
                    "phase": result.phase,
                    "code": result.code,
                    "reply": result.reply,
                    "transcript": list(result.transcript),
                    "elapsed": result.elapsed,
                },
            )
        else:
            for line in result.transcript:
                self.stdout.write(f"  {line}")
        if result.ok:
            if not as_json:
                self.stdout.write(
                    f"Backend {backend.name}: test succeeded in {result.elapsed:.2f}s."
                )
            return
        raise CommandError(
            f"Backend {backend.name}: test failed ({result.reason}) at the {result.phase} "
            f"step: {result.reply}",
            returncode=1,
        )
