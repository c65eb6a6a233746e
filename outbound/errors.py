"""The exception families of Outbound.

Every error the project raises on purpose derives from ``OutboundError`` so a
caller can catch ours without catching programming errors. Transport errors
carry the facts an operator needs (phase reached, SMTP code, enhanced code,
server reply) and a ``kind`` that decides what happens to the message:

- ``transient``: try again later (4xx, timeouts, refused connections);
- ``permanent``: this message cannot be sent as it is (5xx);
- ``config``: the backend's settings are wrong (authentication, TLS, unknown
  host); the backend is marked failing and its messages are held.
"""

from __future__ import annotations

from typing import ClassVar

from django.core.mail import BadHeaderError


class OutboundError(Exception):
    """Base class of every error Outbound raises on purpose."""


class TransportError(OutboundError):
    """A delivery or a backend test did not succeed."""

    kind: ClassVar[str] = "transient"

    def __init__(
        self,
        message: str,
        *,
        phase: str = "connect",
        code: int | None = None,
        enhanced_code: str = "",
        reply: str = "",
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.phase = phase
        self.code = code
        self.enhanced_code = enhanced_code
        self.reply = reply
        # A machine reason code such as "auth_failed" or "timeout"; the
        # transport fills it so the services can pick the explanation.
        self.reason = reason
        # When every recipient was refused: each one's reply, as
        # (address, code, reply), so each is recorded on its own.
        self.recipients: list[tuple[str, int, str]] = []

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class TransientTransportError(TransportError):
    kind = "transient"


class PermanentTransportError(TransportError):
    kind = "permanent"


class BackendConfigurationError(TransportError):
    """Authentication, TLS or name resolution failed: the settings are wrong."""

    kind = "config"


class InvalidAddress(OutboundError):
    """An address or number that cannot be used."""


class IntakeError(OutboundError):
    """Input refused at intake: nothing was written."""

    # In bulk intake, the position of the message that was refused.
    index: int | None = None
    # The input field refused, as the API names it ("headers.Bcc"), when one is.
    field: str | None = None


class HeaderInjection(IntakeError, BadHeaderError):
    """A header or envelope value carries CR, LF or another control character.

    Also a Django ``BadHeaderError``: views written to Django's documented
    ``except BadHeaderError`` catch it when they send through the drop-in."""


class IdempotencyConflict(IntakeError):
    """The idempotency key was already used for different content."""


class UnknownContact(IntakeError):
    """The contact id given does not exist."""


class InvalidTransition(OutboundError):
    """A status change the transition table does not allow."""


class SecretError(OutboundError):
    """A stored secret cannot be decrypted (tampered, or its key is gone)."""


class InvalidInput(OutboundError):
    """Input refused with an error per field; nothing was written."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        summary = "; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items())
        super().__init__(summary or "Invalid input.")


class NotFound(OutboundError):
    """The object named does not exist."""
