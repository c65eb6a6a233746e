from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from outbound.devtools.mailsink import list_messages, run_mailsink


class Command(BaseCommand):
    help = "Development mail catcher: an SMTP server that keeps what it receives."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=1025)
        parser.add_argument(
            "--dir",
            default=None,
            help="Where messages are kept (default: mailsink/ in the var directory, "
            "OUTBOUND_VAR_DIR), wherever the command is run from.",
        )
        parser.add_argument("--list", action="store_true", help="List what was received.")
        parser.add_argument("--json", action="store_true", help="With --list: JSON output.")

    def handle(self, *args: Any, **options: Any) -> None:
        options["dir"] = str(options["dir"] or settings.VAR_DIR / "mailsink")
        if options["list"]:
            rows = list_messages(options["dir"])
            if options["json"]:
                self.stdout.write(json.dumps(rows, indent=2))
                return
            for row in rows:
                self.stdout.write(
                    f"{row.get('time', '')}  {row.get('mail_from', '')} -> "
                    f"{', '.join(row.get('rcpt_tos', []))}  {row.get('subject', '')}"
                )
            self.stdout.write(f"{len(rows)} message(s) in {options['dir']}")
            return
        self.stdout.write(f"mail catcher listening on {options['host']}:{options['port']}")
        run_mailsink(options["host"], options["port"], options["dir"])
