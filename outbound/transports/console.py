"""Console SMS transport: prints each SMS instead of sending it.

Contract: ``send`` writes the recipient, sender, segment count and body to a
text stream (standard output unless another is given) and returns a
``SendResult`` with a made-up id "CONSOLE-<hex>"; it never fails. ``probe`` is
always ok. For development machines and demonstrations.
"""

from __future__ import annotations

import secrets
import sys
import threading
from collections.abc import Callable
from typing import TextIO

from outbound.sms import analyse
from outbound.transports.base import RecipientOutcome, SendResult
from outbound.transports.sms_base import ProbeResult, SmsEnvelope


class ConsoleSmsTransport:
    # One lock for every instance: they usually share standard output.
    _lock = threading.Lock()

    def __init__(self, stream: TextIO | None = None) -> None:
        # None: sys.stdout as it is at send time (pytest swaps it).
        self._stream = stream

    def __repr__(self) -> str:
        return "<ConsoleSmsTransport>"

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
        if before_data is not None:
            before_data()
        info = analyse(envelope.body)
        queue_id = f"CONSOLE-{secrets.token_hex(8)}"
        plural = "" if info.segments == 1 else "s"
        lines = [
            f"SMS to {envelope.to} from {envelope.sender or '(default sender)'}",
            f"Message-ID: {envelope.message_id or '-'}  Id: {queue_id}",
            f"{info.segments} segment{plural}, {info.encoding}, {info.characters} characters",
        ]
        if envelope.status_callback:
            lines.append(f"Status callback: {envelope.status_callback}")
        text = "\n".join([*lines, "", envelope.body, "-" * 60, ""])
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(text)
            stream.flush()
        reply = f"printed to the console ({queue_id})"
        return SendResult(
            code=200,
            enhanced_code="printed",
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
            reply="The console backend prints messages; nothing to test.",
            transcript=[],
            elapsed=0.0,
        )
