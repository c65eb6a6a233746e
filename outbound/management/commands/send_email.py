from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from outbound.api.render import message_out
from outbound.errors import IntakeError
from outbound.management.commands._output import contact_ref, parse_moment, write_json
from outbound.services.intake import queue_email
from outbound.states import Source


def _read(path: str, option: str) -> str:
    if path == "-":
        try:
            return sys.stdin.read()
        except UnicodeDecodeError as err:
            raise CommandError(
                f"{option}: standard input is not UTF-8 text.", returncode=1
            ) from err
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CommandError(f"{option}: cannot read {path}: {err}", returncode=1) from err


class Command(BaseCommand):
    help = "Queue one email (outbound send-email). It is validated and sent by the workers."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--to", action="append", default=[], help="Recipient (repeatable).")
        parser.add_argument("--cc", action="append", default=[])
        parser.add_argument("--bcc", action="append", default=[])
        parser.add_argument("--subject", default="")
        parser.add_argument("--text", default="", help="Plain text body.")
        parser.add_argument("--text-file", help="Read the plain text body from a file (- stdin).")
        parser.add_argument("--html-file", help="Read the HTML body from a file (- stdin).")
        parser.add_argument("--from", dest="from_address", default="")
        parser.add_argument("--contact", help="Contact id, or ext:EXTERNAL_ID.")
        parser.add_argument("--send-at", help="When to send (ISO 8601).")
        parser.add_argument("--idempotency-key")
        parser.add_argument("--group", default="", help="Group key (to cancel a series).")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["to"] and not options["contact"]:
            raise CommandError("Give --to or --contact.", returncode=2)
        text = options["text"]
        if options["text_file"]:
            text = _read(options["text_file"], "--text-file")
        html = _read(options["html_file"], "--html-file") if options["html_file"] else ""
        started = timezone.now()
        try:
            message = queue_email(
                to=options["to"],
                cc=options["cc"],
                bcc=options["bcc"],
                contact=contact_ref(options["contact"]),
                subject=options["subject"],
                text=text,
                html=html,
                from_address=options["from_address"],
                send_at=parse_moment(options["send_at"], "--send-at"),
                idempotency_key=options["idempotency_key"],
                group_key=options["group"],
                source=Source.MANUAL,
                actor="cli",
            )
        except IntakeError as err:
            raise CommandError(str(err), returncode=1) from err
        if options["json"]:
            write_json(self.stdout, message_out(message))
            return
        if message.created_at < started:
            # The idempotency key was used before: that first message is the answer.
            self.stdout.write(
                f"Message {message.pk} already exists with idempotency key "
                f"{options['idempotency_key']!r}; nothing new was queued. It is "
                f"{message.status_label}: {message.reason_text}"
            )
            return
        self.stdout.write(
            f"Message {message.pk} queued ({message.status_label}): {message.reason_text}"
        )
