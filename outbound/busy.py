"""A database too busy to answer in time: 503 with Retry-After, not 500.

SQLite has one write lock; a writer that waits past the busy timeout gets
"database is locked". PostgreSQL with a ``lock_timeout`` gives up the same
way (SQLSTATE 55P03). Neither is a fault of the request: nothing was written
(the transaction rolled back), and the same request a moment later works.
The console's pages get ``DatabaseBusyMiddleware``; the API's error handlers
(outbound/api/errors.py) answer the same in the error envelope.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import OperationalError
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
BUSY_TEXT = (
    "The database is busy with other writes and did not answer in time; nothing was "
    f"changed. Try again in {RETRY_AFTER_SECONDS} seconds."
)


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is a lock wait that timed out (and so worth a retry)."""
    if not isinstance(exc, OperationalError):
        return False
    text = str(exc).lower()
    if "database is locked" in text or "database table is locked" in text:
        return True
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) == "55P03"


class DatabaseBusyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_busy(exception):
            return None
        logger.warning("database busy on %s %s: answered 503", request.method, request.path)
        # Rendered without the request: the context processors would ask the
        # database again.
        body = render_to_string("503.html", {"text": BUSY_TEXT})
        response = HttpResponse(body, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
