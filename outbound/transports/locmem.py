"""In-memory SMS transport for tests, like Django's locmem email backend.

Contract: ``send`` appends the envelope to the module-level ``outbox`` and
returns a ``SendResult`` with the id "LOCMEM-<n>" (n counts up per process).
``fail_next(error, times=1)`` makes the next sends raise ``error`` instead,
after ``before_data`` ran when the error's phase is "data", so tests can play
refusals and interruptions. ``reset()`` empties both. ``probe`` is always ok.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable

from outbound.errors import TransportError
from outbound.transports.base import RecipientOutcome, SendResult
from outbound.transports.sms_base import ProbeResult, SmsEnvelope

outbox: list[SmsEnvelope] = []

_failures: deque[TransportError] = deque()
_counter = itertools.count(1)
_lock = threading.Lock()


def fail_next(error: TransportError, *, times: int = 1) -> None:
    """Make the next ``times`` sends (of any instance) raise ``error``."""
    with _lock:
        _failures.extend([error] * times)


def reset() -> None:
    """Empty the outbox and forget queued failures."""
    with _lock:
        outbox.clear()
        _failures.clear()


class LocmemSmsTransport:
    def __repr__(self) -> str:
        return "<LocmemSmsTransport>"

    @property
    def is_open(self) -> bool:
        return True

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(
        self, envelope: SmsEnvelope, *, before_data: Callable[[], None] | None = None
    ) -> SendResult:
        with _lock:
            failure = _failures.popleft() if _failures else None
        if failure is not None:
            if failure.phase == "data" and before_data is not None:
                before_data()
            raise failure
        if before_data is not None:
            before_data()
        with _lock:
            queue_id = f"LOCMEM-{next(_counter)}"
            outbox.append(envelope)
        reply = f"kept in memory ({queue_id})"
        return SendResult(
            code=200,
            enhanced_code="stored",
            reply=reply,
            queue_id=queue_id,
            recipients=[
                RecipientOutcome(address=envelope.to, accepted=True, code=200, reply=reply)
            ],
        )

    def probe(self, *, deadline: float = 15.0) -> ProbeResult:
        return ProbeResult(
            ok=True,
            reason="ok",
            phase="done",
            code=None,
            reply="The in-memory backend keeps messages in a list; nothing to test.",
            transcript=[],
            elapsed=0.0,
        )
