"""What a log line is about: the message, backend and worker it concerns.

The worker opens a context around each delivery (`log_context(...)`), and
`ContextFilter`, on the log handlers in settings.LOGGING, copies its fields
onto every record made inside it: the transports' own lines then name the
message and backend without knowing about either (they stay protocol only).
With OUTBOUND_LOG_FORMAT=json the fields are keys of the line's object.

A context variable rather than thread-local state: each delivery thread gets
a copy of the context it was started in (the worker's name) and adds its
message to it, without seeing another thread's.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "outbound_log_fields", default=None
)

T = TypeVar("T")


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add these fields to every log record made inside the block (None values skipped)."""
    current = _fields.get() or {}
    token = _fields.set({**current, **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _fields.reset(token)


def in_current_context(target: Callable[[], T]) -> Callable[[], T]:
    """`target` to run in a new thread with a copy of this thread's log fields
    (a thread otherwise starts with none)."""
    context = contextvars.copy_context()
    return lambda: context.run(target)


class ContextFilter(logging.Filter):
    """Copies the current log fields onto each record; a field the call
    passed itself with `extra=` wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_fields.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, str(value))
        return True
