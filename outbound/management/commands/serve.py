"""`outbound serve`: the pages and the API behind waitress, a production WSGI
server in pure Python, with static files from WhiteNoise; optionally a worker
in a child process. A background thread runs the alert checks every minute
(``outbound.alertwatch``), so a dead worker or a stuck queue is alerted on
while the web process lives. SIGTERM or Ctrl-C finishes the requests in
progress, stops the worker the same way (it finishes what it is sending) and
exits 0."""

from __future__ import annotations

import signal
import subprocess
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

from outbound.alertwatch import AlertWatch
from outbound.management.commands._keys import KeyedCommand
from outbound.worker import worker_command

# How long the worker may take to finish its messages in flight after SIGTERM.
WORKER_STOP_TIMEOUT = 60.0


def _stop(signum: int, frame: FrameType | None) -> None:
    # waitress's loop turns this into a clean shutdown of its threads.
    raise SystemExit(0)


def _proxy_options() -> dict[str, Any]:
    """Behind a TLS proxy (OUTBOUND_HTTPS=1), believe its X-Forwarded-Proto
    and X-Forwarded-For, from OUTBOUND_TRUSTED_PROXY (the proxy's address,
    127.0.0.1 unless set; `*` for any) only: waitress drops them from anyone
    else, so a client cannot claim https or another address (the login
    throttle counts failures per address)."""
    if not getattr(settings, "OUTBOUND_HTTPS", False):
        return {}
    return {
        "trusted_proxy": getattr(settings, "OUTBOUND_TRUSTED_PROXY", "") or "127.0.0.1",
        "trusted_proxy_headers": {"x-forwarded-proto", "x-forwarded-for"},
        "trusted_proxy_count": 1,
    }


class Command(KeyedCommand):
    serves_pages = True
    help = (
        "Serve the console and the API with waitress (static files included); "
        "--with-worker also runs a worker in a child process."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Address to bind (127.0.0.1).")
        parser.add_argument("--port", type=int, default=8000, help="Port to bind (8000).")
        parser.add_argument(
            "--threads", type=int, default=8, help="Request threads of waitress (8)."
        )
        parser.add_argument(
            "--with-worker", action="store_true", help="Also run `outbound worker` alongside."
        )
        parser.add_argument(
            "--worker-concurrency", type=int, default=2, help="Delivery threads of that worker."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        port, threads = options["port"], options["threads"]
        if not 0 < port < 65536:
            raise CommandError(f"--port must be between 1 and 65535, not {port}.", returncode=2)
        if not 0 < threads <= 256:
            raise CommandError("--threads must be between 1 and 256.", returncode=2)
        if not 0 < options["worker_concurrency"] <= 256:
            raise CommandError("--worker-concurrency must be between 1 and 256.", returncode=2)
        self._check_migrations()

        # Older waitress releases ship no type hints.
        from waitress import create_server  # type: ignore[import-untyped,unused-ignore]

        from config.wsgi import application

        try:
            server = create_server(
                application,
                host=options["host"],
                port=port,
                threads=threads,
                ident="outbound",
                **_proxy_options(),
            )
        except OSError as err:
            raise CommandError(
                f"Cannot listen on {options['host']}:{port}: {err.strerror or err}.", returncode=1
            ) from err
        worker = (
            self._start_worker(options["worker_concurrency"]) if options["with_worker"] else None
        )
        previous = signal.signal(signal.SIGTERM, _stop)
        watch = AlertWatch()
        watch.start()
        self.stderr.write(
            f"Outbound serving on http://{options['host']}:{port}/ "
            f"({threads} threads{', with a worker' if worker else ''}; alert checks every "
            f"{watch.interval:g}s); "
            "stop with Ctrl-C or SIGTERM."
        )
        try:
            server.run()  # returns after SIGTERM / Ctrl-C, requests in progress finished
        finally:
            signal.signal(signal.SIGTERM, previous)
            watch.stop()
            server.close()
            if worker is not None:
                self._stop_worker(worker)
        self.stderr.write("Outbound stopped.")

    def _check_migrations(self) -> None:
        connection = connections[DEFAULT_DB_ALIAS]
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if pending:
            names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in pending[:5])
            more = f" and {len(pending) - 5} more" if len(pending) > 5 else ""
            raise CommandError(
                f"The database needs {len(pending)} migration(s) ({names}{more}): "
                "run `outbound migrate` first.",
                returncode=1,
            )
        self.stderr.write("Database schema up to date.")

    def _start_worker(self, concurrency: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(worker_command(concurrency))

    def _stop_worker(self, worker: subprocess.Popen[bytes]) -> None:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=WORKER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.stderr.write("The worker did not stop in time; killing it.")
                worker.kill()
                worker.wait()
