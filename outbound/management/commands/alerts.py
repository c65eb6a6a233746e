"""`outbound alerts check`: run the alert checks once (no worker running,
messages stuck, failing backends, used-up allowances), for a cron job or a
systemd timer where no `outbound serve` runs. One incident is mailed once,
whichever process sees it first."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from outbound.management.commands._output import write_json
from outbound.models import Alert
from outbound.services.alerts import check_alerts


def _notice(alert: Alert) -> str:
    if alert.closed_at is not None:
        return "all clear"
    return "reminder" if alert.notifications > 1 else "opened"


class Command(BaseCommand):
    help = "Run the alert checks once (for cron or a systemd timer)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="check")
        check = sub.add_parser(
            "check",
            help="Check for a dead worker, stuck messages, failing backends and used-up "
            "allowances; mail what is new to the Backend Failure Email.",
        )
        check.add_argument("--json", action="store_true", help="Machine-readable output.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            notified = check_alerts()
        except DatabaseError as err:
            raise CommandError(f"The alert checks could not read the database: {err}", 1) from err
        rows = [
            {
                "notice": _notice(a),
                "kind": a.kind,
                "subject": a.subject,
                "delivery": a.delivery.splitlines()[-1] if a.delivery else "",
            }
            for a in notified
        ]
        if options["json"]:
            write_json(self.stdout, {"notified": rows})
            return
        if not rows:
            self.stdout.write("Alerts checked: nothing new to tell.")
        for row in rows:
            self.stdout.write(f"{row['notice']}: {row['subject']}. {row['delivery']}")
