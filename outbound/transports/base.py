"""Value types shared by the transports.

A transport turns an ``Envelope`` into one delivery try and reports what the
next hop said as a ``SendResult``; when the try does not succeed it raises one
of the ``TransportError`` families from ``outbound.errors`` instead. These types
carry no behaviour and know nothing about the database, so the services can
store them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Envelope:
    """One message as it goes on the wire."""

    mail_from: str
    # Envelope recipients: to, cc and bcc together.
    recipients: list[str]
    # The complete RFC 5322 message with CRLF line endings.
    message: bytes
    # Only used to tie log lines to the message; never sent.
    message_id: str = ""


@dataclass
class RecipientOutcome:
    """What the server answered to one envelope recipient."""

    address: str
    accepted: bool
    code: int
    reply: str


@dataclass
class SendResult:
    """The next hop accepted the message (a 2xx after the final dot)."""

    code: int
    enhanced_code: str
    # The reply text after the code, e.g. "2.0.0 Ok: queued as 9EA7B1E0AE5".
    reply: str
    # The relay's own id for the message, kept so a postmaster can find it.
    queue_id: str
    recipients: list[RecipientOutcome] = field(default_factory=list)

    @property
    def refused(self) -> list[RecipientOutcome]:
        return [outcome for outcome in self.recipients if not outcome.accepted]
