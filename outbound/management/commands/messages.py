from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from outbound.api.filters import TimedMessageFilters
from outbound.api.render import (
    attempt_out,
    event_out,
    explanation_out,
    message_out,
    recipient_out,
)
from outbound.explain import explain_message
from outbound.management.commands._output import cell, parse_moment, write_json, write_table
from outbound.models import Backend, Message
from outbound.selectors import Cursor, message_page
from outbound.sms import analyse
from outbound.states import Channel, Status


def get_message(raw: str) -> Message:
    message = (
        Message.objects.select_related("backend").filter(pk=int(raw)).first()
        if raw.isdigit()
        else None
    )
    if message is None:
        raise CommandError(f"There is no message {raw}.", returncode=1)
    return message


class Command(BaseCommand):
    help = "List messages, show one with its history, or explain its status."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="list|show|explain")
        listing = sub.add_parser("list", help="Messages, newest first.")
        listing.add_argument("--status", choices=Status.values)
        listing.add_argument("--channel", choices=Channel.values)
        listing.add_argument("--backend", help="Backend name.")
        listing.add_argument("--since", help="Created at or after (ISO 8601).")
        listing.add_argument("--until", help="Created before (ISO 8601).")
        listing.add_argument(
            "-q",
            "--search",
            default="",
            help="Recipient, name or subject; or a whole Message-ID or relay queue id.",
        )
        listing.add_argument("--limit", type=int, default=50, help="Rows (1-200, default 50).")
        listing.add_argument("--cursor", help="Continue after this cursor (printed at the end).")
        listing.add_argument("--json", action="store_true")
        for name, text in (("show", "A message and its history."), ("explain", "Why; what to do.")):
            p = sub.add_parser(name, help=text)
            p.add_argument("id")
            p.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "list":
            self._list(options)
        elif action == "show":
            self._show(get_message(options["id"]), options["json"])
        else:
            self._explain(get_message(options["id"]), options["json"])

    def _list(self, options: dict[str, Any]) -> None:
        if not 1 <= options["limit"] <= 200:
            raise CommandError("--limit must be between 1 and 200.", returncode=2)
        backend_id = None
        if options["backend"]:
            backend_id = (
                Backend.objects.filter(name=options["backend"]).values_list("pk", flat=True).first()
            )
            if backend_id is None:
                raise CommandError(f"There is no backend named {options['backend']!r}.")
        before = None
        if options["cursor"]:
            before = Cursor.decode(options["cursor"])
            if before is None:
                raise CommandError("--cursor is not a cursor this command printed.", returncode=2)
        filters = TimedMessageFilters(
            status=options["status"] or "",
            channel=options["channel"] or "",
            backend=backend_id,
            q=options["search"],
            created_after=parse_moment(options["since"], "--since"),
            created_before=parse_moment(options["until"], "--until"),
        )
        page = message_page(filters, before=before, size=options["limit"])
        cursor = page.older.encode() if page.older else None
        if options["json"]:
            write_json(
                self.stdout,
                {"items": [message_out(m) for m in page.rows], "next_cursor": cursor},
            )
            return
        write_table(
            self.stdout,
            ["id", "created", "status", "to", "subject / sms text", "reason"],
            [
                [
                    m.pk,
                    m.created_at,
                    m.status_label,
                    m.message_to or m.to_user,
                    m.subject if m.channel == "email" else f"[SMS] {m.text_body}",
                    m.reason_text,
                ]
                for m in page.rows
            ],
        )
        if not page.rows:
            self.stdout.write("No messages match.")
        if cursor:
            self.stdout.write(f"More: --cursor {cursor}")

    def _show(self, m: Message, as_json: bool) -> None:
        events = list(m.events.all())
        attempts = list(m.attempts.select_related("backend"))
        recipients = list(m.recipients.all())
        if as_json:
            data = message_out(m)
            data.update(
                explanation=explanation_out(explain_message(m)),
                events=[event_out(e) for e in events],
                attempts=[attempt_out(a) for a in attempts],
                recipients=[recipient_out(r) for r in recipients],
            )
            write_json(self.stdout, data)
            return
        rows = [
            ("Id", m.pk),
            ("Status", f"{m.status_label} ({m.reason_code})"),
            ("Reason", m.reason_text),
            ("Channel", m.get_channel_display()),
            ("Message to", m.message_to),
            ("To user", m.to_user),
            *(
                [
                    ("Text", _sms_text(m)),
                    (
                        "Delivery receipt",
                        f"{m.receipt_status} {m.receipt_code} at {m.receipt_at}".replace("  ", " ")
                        if m.receipt_status
                        else None,
                    ),
                ]
                if m.channel == "sms"
                else [("From", m.from_address), ("Subject", m.subject)]
            ),
            ("Created", m.created_at),
            ("Due", m.send_at),
            ("Sent", m.sent_at),
            ("Attempts", m.attempt_count),
            ("Backend", m.backend.name if m.backend else None),
            ("Message-ID", m.message_id),
            ("Group", m.group_key or None),
        ]
        width = max(len(k) for k, _ in rows)

        for key, value in rows:
            shown = cell(value, limit=None) if value != "" else "-"
            self.stdout.write(f"{key.ljust(width)}  {shown}")
        self.stdout.write("\nHistory")
        write_table(
            self.stdout,
            ["at", "from", "to", "reason", "by", "text"],
            [
                [
                    e.created_at,
                    e.from_status or "-",
                    e.to_status or "-",
                    e.reason_code,
                    e.actor,
                    e.text,
                ]
                for e in events
            ],
        )
        if attempts:
            self.stdout.write("\nAttempts")
            write_table(
                self.stdout,
                ["started", "backend", "phase", "code", "outcome", "reply"],
                [
                    [
                        a.started_at,
                        a.backend.name if a.backend else None,
                        a.phase,
                        a.smtp_code,
                        a.outcome,
                        a.reply,
                    ]
                    for a in attempts
                ],
            )
        if recipients:
            self.stdout.write("\nRecipients")
            write_table(
                self.stdout,
                ["kind", "address", "outcome", "code", "reply"],
                [[r.kind, r.address, r.outcome, r.code, r.reply] for r in recipients],
            )

    def _explain(self, m: Message, as_json: bool) -> None:
        e = explain_message(m)
        if as_json:
            write_json(self.stdout, {"id": m.pk, **explanation_out(e)})
            return
        self.stdout.write(f"Message {m.pk}: {e.label}")
        self.stdout.write(f"\nWhat it means: {e.meaning}")
        self.stdout.write(f"\nWhy: {e.why}")
        if e.what_to_do:
            self.stdout.write("\nWhat to do:")
            for step in e.what_to_do:
                self.stdout.write(f"  - {step}")
        if e.facts:
            self.stdout.write("\nFacts:")
            width = max(len(k) for k, _ in e.facts)
            for key, value in e.facts:
                self.stdout.write(f"  {key.ljust(width)}  {value}")


def _sms_text(m: Message) -> str:
    info = analyse(m.text_body)
    return f"{m.text_body} ({info.characters} {info.encoding} characters, {info.segments} segments)"
