from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from outbound.api.render import message_out
from outbound.errors import IntakeError
from outbound.management.commands._output import contact_ref, parse_moment, write_json
from outbound.management.commands.send_email import _read
from outbound.services.intake import queue_sms
from outbound.sms import analyse
from outbound.states import Source


class Command(BaseCommand):
    help = (
        "Queue one SMS (outbound send-sms) to a number or a contact's mobile. The number is "
        "checked, and the SMS sent, by the workers."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--to", help="Mobile number (E.164, or national in the default region)."
        )
        parser.add_argument("--contact", help="Contact id, or ext:EXTERNAL_ID.")
        parser.add_argument("--text", default="", help="The SMS text.")
        parser.add_argument("--text-file", help="Read the text from a file (- stdin).")
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
        if not text.strip():
            raise CommandError("Give the text with --text or --text-file.", returncode=2)
        started = timezone.now()
        try:
            message = queue_sms(
                to=options["to"],
                contact=contact_ref(options["contact"]),
                body=text,
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
                f"SMS {message.pk} already exists with idempotency key "
                f"{options['idempotency_key']!r}; nothing new was queued. It is "
                f"{message.status_label}: {message.reason_text}"
            )
            return
        info = analyse(message.text_body)
        self.stdout.write(
            f"SMS {message.pk} queued ({message.status_label}; {info.segments} segment(s), "
            f"{info.encoding}): {message.reason_text}"
        )
