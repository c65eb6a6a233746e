from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import CommandError, CommandParser

from outbound.management.commands._keys import KeyedCommand
from outbound.worker import Supervisor, Worker


class Command(KeyedCommand):
    help = "Validate, send and retry outgoing messages until stopped (SIGTERM finishes cleanly)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Stop when nothing is due.")
        parser.add_argument(
            "--concurrency", type=int, default=4, help="Delivery threads (default 4)."
        )
        parser.add_argument(
            "--processes",
            type=int,
            default=1,
            help="Worker processes, each with --concurrency threads (default 1).",
        )
        parser.add_argument("--name", default="", help="Worker name shown on the Workers page.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["concurrency"] < 1 or options["concurrency"] > 256:
            raise CommandError("--concurrency must be between 1 and 256.", returncode=2)
        if options["processes"] < 1 or options["processes"] > 64:
            raise CommandError("--processes must be between 1 and 64.", returncode=2)
        if options["processes"] > 1:
            supervisor = Supervisor(
                processes=options["processes"],
                concurrency=options["concurrency"],
                once=options["once"],
                name=options["name"],
            )
            self.stderr.write(
                f"worker supervisor started: {supervisor.processes} processes "
                f"(concurrency {supervisor.concurrency} each)"
            )
            status = supervisor.run()
            self.stderr.write(f"worker supervisor stopped (status {status})")
            if status:
                sys.exit(status)
            return
        worker = Worker(
            concurrency=options["concurrency"], once=options["once"], name=options["name"]
        )
        self.stderr.write(f"worker {worker.name} started (concurrency {worker.concurrency})")
        stats = worker.run()
        self.stderr.write(
            f"worker {worker.name} stopped: {stats.validated} validated, {stats.claimed} "
            f"claimed, {stats.recorded} recorded, {stats.reaped} reaped"
        )
