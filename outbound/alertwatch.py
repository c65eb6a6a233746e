"""The alert checks of the web process: a background thread of ``outbound
serve`` that runs ``alerts.check_alerts`` every ``OUTBOUND_ALERT_CHECK_INTERVAL``
seconds (a minute by default).

Why here: the checks for "no worker is running" and "messages are stuck"
also run inside every worker, right after its own heartbeat, so with no
worker alive nothing would raise them. The web process is alive when the
workers are not. It runs on a timer of its own, never in a request, so an
idle console still checks and a busy one does not check per page. Where no
web process runs, ``outbound alerts check`` from cron or a systemd timer does
the same. Several checkers at once mail one incident once: the alert rows
are the guard (one open alert per key, conditional updates for reminders
and the all-clear).
"""

from __future__ import annotations

import logging
import threading

from django.db import close_old_connections, connections

from outbound import conf
from outbound.services import alerts

logger = logging.getLogger(__name__)


class AlertWatch:
    """Run the alert checks on a daemon thread until ``stop`` is called."""

    def __init__(self, *, interval: float | None = None) -> None:
        self.interval = interval if interval is not None else conf.alert_check_interval()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-checks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, *, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        # The first check waits one interval: a web process started next to
        # its workers must not report them missing before their first beat.
        while not self._stopping.wait(self.interval):
            try:
                close_old_connections()
                notified = alerts.check_alerts()
                for alert in notified:
                    logger.info("alert check: %s (%s)", alert.subject, alert.key)
            except Exception:
                # A database hiccup must not end the checks for good.
                logger.exception("alert check failed; trying again in %ss", self.interval)
        connections.close_all()
