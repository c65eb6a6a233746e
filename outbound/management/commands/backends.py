from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import CommandError, CommandParser

from outbound.api.render import backend_out
from outbound.errors import InvalidInput
from outbound.management.commands._keys import KeyedCommand
from outbound.management.commands._output import write_json, write_table
from outbound.models import Backend
from outbound.services.backends import (
    BACKEND_FIELDS,
    save_backend_settings,
    test_backend,
)

# The settings whose option, when given, goes to the service as it was
# parsed; the name, the limit and the secrets are read apart.
PASSED_AS_GIVEN = sorted(
    BACKEND_FIELDS
    - {"name", "limit", "password", "clear_password", "receipt_secret", "clear_receipt_secret"}
)


class Command(KeyedCommand):
    help = "List backends or test one (nothing is sent by a test)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="list|set|test")
        listing = sub.add_parser("list", help="Backends with their health and allowance.")
        listing.add_argument("--json", action="store_true")
        put = sub.add_parser(
            "set",
            help="Create or change an email or SMS backend. The password (or auth token) is read "
            "from standard input (--password-stdin), never from the command line.",
        )
        put.add_argument("name", help="The backend's name.")
        put.add_argument("--create", action="store_true", help="Create it if it does not exist.")
        put.add_argument("--rename", help="A new name.")
        put.add_argument("--host")
        put.add_argument("--port", type=int)
        put.add_argument("--security", choices=["none", "starttls", "tls"])
        put.add_argument("--username")
        put.add_argument("--from", dest="from_address", help="Sender address of its messages.")
        put.add_argument("--timeout", type=float, help="Seconds (1-120).")
        put.add_argument("--limit", help="Allowance of messages; 'none' for unlimited.")
        put.add_argument("--rate-per-minute", type=int)
        put.add_argument("--max-connections", type=int)
        default = put.add_mutually_exclusive_group()
        default.add_argument("--default", dest="is_default", action="store_true", default=None)
        default.add_argument("--no-default", dest="is_default", action="store_false")
        secret = put.add_mutually_exclusive_group()
        secret.add_argument(
            "--password-stdin", action="store_true", help="Read the password from stdin."
        )
        secret.add_argument("--clear-password", action="store_true")
        sms = put.add_argument_group("SMS backends")
        sms.add_argument("--channel", choices=["email", "sms"], help="On --create only.")
        sms.add_argument("--kind", choices=["smtp", "twilio", "http", "console", "locmem"])
        sms.add_argument("--base-url", help="Twilio API address (default https://api.twilio.com).")
        sms.add_argument("--url", help="HTTP gateway: the URL SMS are posted to.")
        sms.add_argument("--method", choices=["POST", "PUT"])
        sms.add_argument("--headers", help='HTTP gateway: JSON object; use "{secret}".')
        sms.add_argument("--body-template", help="HTTP gateway: JSON body with placeholders.")
        sms.add_argument("--id-path", help="HTTP gateway: where the message id is in the answer.")
        sms.add_argument("--error-path")
        sms.add_argument("--error-code-path")
        sms.add_argument("--idempotency-header")
        sms.add_argument("--invalid-number-codes", help="Comma-separated provider codes.")
        sms.add_argument("--probe-url", help="HTTP gateway: the URL the test asks.")
        sms.add_argument("--probe-method", choices=["GET", "HEAD", "POST"])
        sms.add_argument(
            "--receipt-secret-stdin",
            action="store_true",
            help="Read the receipt secret from stdin (after the password, if both).",
        )
        put.add_argument("--json", action="store_true")
        test = sub.add_parser("test", help="Test a backend's settings.")
        test.add_argument("name", help="The backend's name.")
        test.add_argument("--json", action="store_true")

    def stores_a_secret(self, options: dict[str, Any]) -> bool:
        return bool(options.get("password_stdin") or options.get("receipt_secret_stdin"))

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "list":
            backends = list(Backend.objects.order_by("channel", "-is_default", "name"))
            if options["json"]:
                write_json(self.stdout, [backend_out(b) for b in backends])
                return
            write_table(
                self.stdout,
                [
                    "name",
                    "channel",
                    "kind",
                    "default",
                    "server",
                    "security",
                    "password",
                    "health",
                    "left",
                ],
                [
                    [
                        b.name,
                        b.channel,
                        b.kind,
                        b.is_default,
                        f"{b.host}:{b.port}" if b.channel == "email" else (b.host or "-"),
                        b.security if b.channel == "email" else "-",
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
        if options["action"] == "set":
            self._set(options)
            return
        self._test(options["name"], options["json"])

    def _set(self, options: dict[str, Any]) -> None:
        backend = Backend.objects.filter(name=options["name"]).first()
        if backend is None and not options["create"]:
            raise CommandError(
                f"There is no backend named {options['name']!r}; add --create to create it."
            )
        data: dict[str, Any] = {}
        if backend is None or options["rename"]:
            data["name"] = options["rename"] or options["name"]
        for key in PASSED_AS_GIVEN:
            if options[key] is not None:
                data[key] = options[key]
        if options["limit"] is not None:
            data["limit"] = None if options["limit"].lower() == "none" else options["limit"]
        if options["password_stdin"]:
            # Only the first line: a trailing newline from `echo` is not part of it.
            data["password"] = sys.stdin.readline().rstrip("\r\n")
            if not data["password"]:
                raise CommandError("No password on standard input.", returncode=2)
        if options["clear_password"]:
            data["clear_password"] = True
        if options["receipt_secret_stdin"]:
            data["receipt_secret"] = sys.stdin.readline().rstrip("\r\n")
            if not data["receipt_secret"]:
                raise CommandError("No receipt secret on standard input.", returncode=2)
        try:
            saved = save_backend_settings(backend=backend, data=data, actor="cli")
        except InvalidInput as err:
            raise CommandError(str(err), returncode=1) from err
        if options["json"]:
            write_json(self.stdout, backend_out(saved))
            return
        verb = "created" if backend is None else "saved"
        self.stdout.write(
            f"Backend {saved.name} {verb} (settings version {saved.settings_version}, "
            f"{saved.get_health_display().lower()})."
        )
        if not saved.is_usable:
            self.stdout.write(f"Test it: outbound backends test {saved.name!r}")

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
