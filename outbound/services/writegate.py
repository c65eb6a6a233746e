"""SQLite's one write lock, shared fairly among a worker's threads.

On SQLite every write transaction holds the database's single write lock.
Left to SQLite, the worker's journal (one short UPDATE that a delivery
thread waits for before each message body) polls for that lock while the
recorder, the claim and validation take turns with it, and can lose the
race to them again and again. Within one process the writers queue here
first instead: a writer waits while the gate is held, and while a journal
commit is waiting, so the journal goes next and no thread polls. Writers in
other processes (the web app, other workers) still meet at SQLite's lock.

On other databases (row locks, no single write lock) the gate does nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


class WriteGate:
    def __init__(self, *, only_sqlite: bool = True) -> None:
        self._only_sqlite = only_sqlite
        self._cond = threading.Condition()
        self._owner: int | None = None
        self._depth = 0
        self._urgent_waiting = 0
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """How many threads wait for the gate now (so a test can queue them in
        a known order without sleeping)."""
        with self._cond:
            return self._waiting

    @contextmanager
    def writing(self, *, urgent: bool = False) -> Iterator[None]:
        """Hold the gate around one write transaction; ``urgent`` goes first."""
        if self._only_sqlite and connection.vendor != "sqlite":
            yield
            return
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:  # nested: already ours
                self._depth += 1
            else:
                if urgent:
                    self._urgent_waiting += 1
                self._waiting += 1
                try:
                    while self._owner is not None or (not urgent and self._urgent_waiting):
                        self._cond.wait()
                finally:
                    self._waiting -= 1
                    if urgent:
                        self._urgent_waiting -= 1
                self._owner, self._depth = me, 1
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if self._depth == 0:
                    self._owner = None
                    self._cond.notify_all()


# One per process: the worker's threads share it.
GATE = WriteGate()
