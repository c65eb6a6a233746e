from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from outbound.management.commands._output import age, write_json, write_table
from outbound.selectors import overview
from outbound.states import Status


class Command(BaseCommand):
    help = "Overview: messages per status, stuck messages, backends and workers."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Machine-readable output.")

    def handle(self, *args: Any, **options: Any) -> None:
        o = overview()
        if options["json"]:
            write_json(
                self.stdout,
                {
                    "counts": o.counts,
                    "total": o.total,
                    "stuck": o.stuck,
                    "stuck_threshold_seconds": o.stuck_threshold.total_seconds(),
                    "oldest_due_at": o.oldest_due_at,
                    "workers_alive": o.alive_workers,
                    "backends": [
                        {
                            "name": b.backend.name,
                            "channel": b.backend.channel,
                            "health": b.health,
                            "limit": b.limit,
                            "sent": b.sent,
                            "left": b.left,
                        }
                        for b in o.backends
                    ],
                    "workers": [
                        {"name": w.worker.name, "alive": w.alive, "last_seen": w.worker.last_seen}
                        for w in o.workers
                    ],
                },
            )
            return
        write_table(
            self.stdout,
            ["status", "messages"],
            [[Status(k).label, v] for k, v in o.counts.items()] + [["Total", o.total]],
        )
        stuck = f"{o.stuck} stuck (more than {age(o.stuck_threshold)} past due)"
        if o.oldest_due_age is not None:
            stuck += f"; the oldest due message has waited {age(o.oldest_due_age)}"
        self.stdout.write("")
        self.stdout.write(stuck)
        self.stdout.write("")
        write_table(
            self.stdout,
            ["backend", "channel", "health", "limit", "sent", "left", "last test"],
            [
                [
                    b.backend.name,
                    b.backend.channel,
                    b.health_label,
                    b.limit,
                    b.sent,
                    b.left,
                    b.last_test_summary or "never",
                ]
                for b in o.backends
            ],
        )
        if not o.backends:
            self.stdout.write("No backends are configured.")
        self.stdout.write("")
        self.stdout.write(f"{o.alive_workers} worker(s) alive")
        if o.workers:
            write_table(
                self.stdout,
                ["worker", "alive", "last seen", "processed"],
                [
                    [w.worker.name, w.alive, w.worker.last_seen, w.worker.processed]
                    for w in o.workers
                ],
            )
