"""SMTP transport: one connection to one relay, reused for many messages.

Contract:

- ``SmtpTransport.send`` delivers one ``Envelope`` and returns a ``SendResult``
  with the final reply, the relay's queue id and every recipient's outcome, or
  raises ``TransientTransportError``, ``PermanentTransportError`` or
  ``BackendConfigurationError`` carrying the phase reached, the reply and a
  machine ``reason``. Envelope values that could smuggle SMTP commands or
  headers raise ``HeaderInjection`` or ``InvalidAddress`` before any byte is
  sent.
- Protocol only: no database, no retries, no sleeping. ``on_phase`` and
  ``before_data`` let the caller journal how far a try went.
- After a failed message the connection is either reset (RSET) and reusable or
  closed; ``is_open`` says which, and ``send`` reconnects when needed.
- With ``security`` "starttls" or "tls" the transport never falls back to
  plaintext and never sends credentials over an unencrypted connection.
- ``probe`` is the backend test: it goes as far as the 354 reply to DATA, hangs
  up without sending a message, and reports problems in its result instead of
  raising.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import re
import select
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Self

import idna
from cryptography import x509
from cryptography.x509.oid import NameOID

from outbound.errors import (
    BackendConfigurationError,
    HeaderInjection,
    InvalidAddress,
    PermanentTransportError,
    TransientTransportError,
    TransportError,
)
from outbound.transports.base import Envelope, RecipientOutcome, SendResult
from outbound.transports.hostpolicy import connect_checked

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

logger = logging.getLogger(__name__)

Security = Literal["none", "starttls", "tls"]

PHASES = ("connect", "tls", "auth", "mail", "rcpt", "data", "done")

PROBE_REASONS = (
    "ok",
    "auth_failed",
    "connection_refused",
    "timeout",
    "host_not_found",
    "tls_failed",
    "tls_wrong_host",
    "sender_refused",
    "recipient_refused",
    "auth_unsupported",
    "connection_lost",
    "unexpected_reply",
    "host_forbidden",
)

# smtplib's own limit on a reply line; a longer line means we are not talking
# to an SMTP server.
_MAX_LINE = 8192

# QUIT is a courtesy: a server that does not answer it must not hold up a
# worker for the whole command timeout.
_QUIT_TIMEOUT = 5.0

_ENHANCED_CODE = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})(?=\s|$)")

# Tried in order; the first match wins. Each names a relay family so a new
# format can be added next to its relatives.
_QUEUE_ID_PATTERNS = (
    # Postfix, SendGrid, Mailjet, Microsoft "Queued as": "Ok: queued as 9EA7B1E0AE5"
    re.compile(r"\bqueued\s+as\s+<?([A-Za-z0-9][A-Za-z0-9._@:+/=-]*?)>?(?:\s|$|[;,)])", re.I),
    # Exim: "OK id=1abc-0002Xy-Qm"
    re.compile(r"\bid=<?([A-Za-z0-9][A-Za-z0-9._@-]*?)>?(?:\s|$|[;,)])", re.I),
    # Exchange: "<msgid> [InternalId=12345, Hostname=...] Queued mail for delivery"
    re.compile(r"\bInternalId=(\d+)", re.I),
    # Gmail: "OK  1700000000 a640c23a62f3a-a9a1b2c3d4si123456ejc.123 - gsmtp"
    re.compile(r"\bOK\s+\d+\s+(\S+)\s+-\s+gsmtp\b", re.I),
    # Sendmail, qmail-like and many appliances: "<id> Message accepted for delivery",
    # "2.0.0 <hex-id> mail accepted", "Ok 0100018c...-000000" (Amazon SES).
    re.compile(
        r"^(?:[245]\.\d{1,3}\.\d{1,3}\s+)?(?:ok:?\s+)?<?([A-Za-z0-9][A-Za-z0-9._@:-]*?)>?"
        r"(?:\s+(?:message|mail)?\s*accepted\b|\s*$)",
        re.I,
    ),
)


def parse_queue_id(reply: str) -> str:
    """The relay's queue id in a final reply, or "" when none is recognised.

    ``reply`` is the text after the reply code; a leading code ("250 ") is
    tolerated. Only a token holding a digit counts, so words such as "Ok" are
    never mistaken for an id.
    """
    text = reply.strip()
    text = re.sub(r"^\d{3}[ -]", "", text)
    first_line = text.splitlines()[0] if text else ""
    for pattern in _QUEUE_ID_PATTERNS:
        for candidate in (text, first_line):
            match = pattern.search(candidate)
            if match and any(char.isdigit() for char in match.group(1)):
                return match.group(1)
    return ""


def enhanced_status_code(reply: str) -> str:
    """The RFC 3463 enhanced status code that opens ``reply``, or ""."""
    match = _ENHANCED_CODE.match(reply.strip())
    return match.group(1) if match else ""


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: Security = "none"
    username: str = ""
    password: str = field(default="", repr=False)
    # Applies to connecting and to every single read and write.
    timeout: float = 30.0
    local_hostname: str | None = None
    # None: the system trust store with certificate and host name checks.
    ssl_context: ssl.SSLContext | None = None
    # The deployment's host policy, asked with the IP address actually
    # connected to (after name resolution, so DNS cannot steer around it).
    address_allowed: Callable[[str], bool] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.security not in ("none", "starttls", "tls"):
            raise ValueError(f"unknown SMTP security {self.security!r}")
        if self.timeout <= 0:
            raise ValueError("the SMTP timeout must be positive")


@dataclass
class ProbeResult:
    """The outcome of a backend test; ``reason`` is one of ``PROBE_REASONS``."""

    ok: bool
    reason: str
    phase: str
    code: int | None
    reply: str
    transcript: list[str]
    elapsed: float


# --- envelope checks -------------------------------------------------------

# Angle brackets and the characters that may break a line (Unicode
# categories Cc, Zl and Zp): Cc is exactly
# U+0000-U+001F and U+007F-U+009F, Zl is U+2028 and Zp U+2029.
_INJECTING = re.compile("[<>\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Blanks (what str.isspace calls one, as \s does) and list separators.
_NOT_ONE_ADDRESS = re.compile(r"[\s,;]")
_BARE_CR_OR_LF = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_ANY_LINE_END = re.compile(rb"\r\n|\r|\n")
_LINE_START_DOT = re.compile(rb"(?m)^\.")


def check_address(address: str, *, role: str, allow_empty: bool = False) -> None:
    """Refuse an envelope address that could inject SMTP commands.

    Raises ``HeaderInjection`` for control characters and angle brackets (they
    end the address on the wire) and ``InvalidAddress`` for values that are not
    one address at all (a list, blanks, no domain).
    """
    if _INJECTING.search(address):
        raise HeaderInjection(f"the {role} address contains a control character or angle bracket")
    if not address:
        if allow_empty:
            return
        raise InvalidAddress(f"the {role} address is empty")
    if _NOT_ONE_ADDRESS.search(address):
        raise InvalidAddress(f"the {role} address is not a single address: {address!r}")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise InvalidAddress(f"the {role} address has no domain: {address!r}")


def check_message(message: bytes) -> None:
    """Refuse a message whose header block has a line break that is not CRLF.

    A bare CR or LF inside the headers is read as a line end by some servers
    and not by others; that disagreement is how headers get smuggled.
    """
    end = message.find(b"\r\n\r\n")
    head = message if end < 0 else message[: end + 2]
    if b"\0" in head or _BARE_CR_OR_LF.search(head):
        raise HeaderInjection("the message headers contain a bare CR, LF or NUL")


def check_envelope(envelope: Envelope) -> None:
    check_address(envelope.mail_from, role="sender", allow_empty=True)
    if not envelope.recipients:
        raise InvalidAddress("the message has no envelope recipient")
    for recipient in envelope.recipients:
        check_address(recipient, role="recipient")
    check_message(envelope.message)


def _data_payload(message: bytes) -> bytes:
    """The DATA payload: CRLF line ends, dot-stuffed, with the final dot."""
    body = _ANY_LINE_END.sub(b"\r\n", message)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return _LINE_START_DOT.sub(b"..", body) + b".\r\n"


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


@functools.cache
def _default_local_hostname() -> str:
    # getfqdn may ask DNS; once per process is enough.
    return socket.getfqdn()


# OpenSSL's verify codes for a certificate that names other hosts.
_NAME_MISMATCH = frozenset({62, 64})  # X509_V_ERR_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH


def _names_another_host(err: BaseException) -> bool:
    return isinstance(err, ssl.SSLCertVerificationError) and err.verify_code in _NAME_MISMATCH


def certificate_names(der: bytes) -> list[str]:
    """The DNS names and IP addresses a certificate is for (its subject
    alternative names, else its common name), in the certificate's order."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return [
        *san.get_values_for_type(x509.DNSName),
        *(str(ip) for ip in san.get_values_for_type(x509.IPAddress)),
    ]


# --- the smtplib client ----------------------------------------------------


class _SmtpClient(smtplib.SMTP):
    """smtplib with its reads and writes redone.

    smtplib turns a read timeout into SMTPServerDisconnected and loses the
    cause; the transport must tell a timeout from a dropped connection, and
    the backend test needs a transcript with the credentials masked. EHLO
    parsing, docmd and QUIT stay smtplib's.
    """

    def __init__(self, *, local_hostname: str, timeout: float) -> None:
        super().__init__(local_hostname=local_hostname, timeout=timeout)
        self.transcript: list[str] | None = None
        # True while an AUTH exchange is on the wire.
        self.masking = False

    def open_socket(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None,
        on_tls: Callable[[], None],
        address_allowed: Callable[[str], bool] | None = None,
    ) -> tuple[int, bytes]:
        if address_allowed is None:
            self.sock = socket.create_connection((host, port), self.timeout)
        else:
            # Checked before the first packet, then connected to that very
            # address: neither a greeting nor a refusal from a forbidden host
            # is ever seen, and a second DNS answer is never asked for.
            self.sock = connect_checked(
                host, port, timeout=self.timeout, address_allowed=address_allowed
            )
        self.file = None
        if tls is not None:
            on_tls()
            self.sock = tls.wrap_socket(self.sock, server_hostname=host)
        return self.getreply()

    def start_tls(self, context: ssl.SSLContext, host: str) -> None:
        if self.sock is None:
            raise smtplib.SMTPServerDisconnected("not connected")
        self.sock = context.wrap_socket(self.sock, server_hostname=host)
        self.file = None
        # RFC 3207: everything learnt before the handshake is void.
        self.helo_resp = None
        self.ehlo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False

    def send(self, s: ReadableBuffer | str) -> None:
        if self.sock is None:
            raise smtplib.SMTPServerDisconnected("not connected")
        data = s.encode(self.command_encoding) if isinstance(s, str) else bytes(s)
        if self.transcript is not None:
            for line in _decode(data).rstrip("\r\n").split("\r\n"):
                if not self.masking:
                    self.transcript.append(f"> {line}")
                elif line.upper().startswith("AUTH"):
                    self.transcript.append("> AUTH ***")
                else:
                    self.transcript.append("> ***")
        self.sock.sendall(data)

    def send_data(self, payload: bytes) -> None:
        # The message itself never goes into a transcript.
        if self.sock is None:
            raise smtplib.SMTPServerDisconnected("not connected")
        self.sock.sendall(payload)

    def getreply(self) -> tuple[int, bytes]:
        if self.sock is None:
            raise smtplib.SMTPServerDisconnected("not connected")
        if self.file is None:
            self.file = self.sock.makefile("rb")
        lines: list[bytes] = []
        code = -1
        while True:
            line: bytes = self.file.readline(_MAX_LINE + 1)
            if not line:
                self.close()
                raise smtplib.SMTPServerDisconnected("connection closed without a reply")
            if len(line) > _MAX_LINE:
                self.close()
                raise smtplib.SMTPResponseException(500, b"reply line too long")
            if self.transcript is not None:
                shown = _decode(line).rstrip("\r\n")
                if self.masking and shown.startswith("334"):
                    shown = "334 ***"
                self.transcript.append(f"< {shown}")
            lines.append(line[4:].strip(b" \t\r\n"))
            try:
                code = int(line[:3])
            except ValueError:
                code = -1
                break
            if line[3:4] != b"-":
                break
        return code, b"\n".join(lines)


# --- the transport ---------------------------------------------------------


class SmtpTransport:
    """One SMTP connection, opened lazily and reused for many messages."""

    def __init__(
        self, config: SmtpConfig, *, on_phase: Callable[[str], None] | None = None
    ) -> None:
        self.config = config
        # Public so a caller that reuses the connection can point it at the
        # message being sent now.
        self.on_phase = on_phase
        self._client: _SmtpClient | None = None
        self._phase = "connect"
        self._tls_context_cache: ssl.SSLContext | None = None
        # Only set while a probe runs.
        self._transcript: list[str] | None = None
        self._deadline: float | None = None
        self._deadline_hit = False
        self._last_transcript: list[str] = []

    def __repr__(self) -> str:
        return (
            f"<SmtpTransport {self.config.host}:{self.config.port} open={self._client is not None}>"
        )

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def phase(self) -> str:
        """The last phase entered."""
        return self._phase

    # -- connection ---------------------------------------------------------

    @property
    def is_open(self) -> bool:
        client = self._client
        if client is None or client.sock is None:
            return False
        if self._peer_hung_up(client.sock):
            self._discard()
            return False
        return True

    @staticmethod
    def _peer_hung_up(sock: socket.socket) -> bool:
        # An idle SMTP connection is silent: anything readable is EOF or an
        # unsolicited 421, and either way the connection is finished.
        try:
            if hasattr(select, "poll"):
                # poll, unlike select, has no limit on descriptor numbers.
                poller = select.poll()
                poller.register(sock, select.POLLIN)
                readable = bool(poller.poll(0))
            else:
                readable = bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True
        if not readable:
            return False
        if not isinstance(sock, ssl.SSLSocket):
            return True
        # A TLS 1.3 server may still send session tickets: records that carry
        # no application data and do not mean the connection is closing.
        timeout = sock.gettimeout()
        try:
            sock.setblocking(False)
            sock.recv(1)  # EOF or an unsolicited reply: finished either way
            return True
        except ssl.SSLWantReadError:
            return False
        except OSError:
            return True
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(timeout)

    def open(self) -> None:
        """Connect, greet, secure and authenticate; a no-op when already open."""
        if self.is_open:
            return
        self._discard()
        config = self.config
        client = _SmtpClient(
            local_hostname=config.local_hostname or _default_local_hostname(),
            timeout=self._step_timeout(),
        )
        client.transcript = self._transcript
        self._client = client
        try:
            self._enter("connect")
            implicit = self._tls_context() if config.security == "tls" else None
            code, raw = client.open_socket(
                config.host,
                config.port,
                tls=implicit,
                on_tls=lambda: self._enter("tls"),
                address_allowed=config.address_allowed,
            )
            self._expect_positive(code, _decode(raw), "to the connection (greeting)")
            self._greet(client)
            if config.security == "starttls":
                self._enter("tls")
                self._start_tls(client)
            if config.security != "none" and not isinstance(client.sock, ssl.SSLSocket):
                raise self._config_error("tls_failed", "the connection is not encrypted")
            if config.username:
                self._enter("auth")
                self._authenticate(client)
        except TransportError as err:
            self._discard()
            self._log_open_failure(err)
            raise
        except (OSError, smtplib.SMTPException, ValueError) as err:
            failure = self._translate(err)
            self._discard()
            if _names_another_host(err):
                failure = self._wrong_host(failure)
            self._log_open_failure(failure)
            raise failure from err
        logger.debug("Connected to %s:%s (%s)", config.host, config.port, config.security)

    def _log_open_failure(self, failure: TransportError) -> None:
        # The reason and phase only: the server's words may quote what we sent.
        logger.info(
            "Connection to %s:%s failed: %s (phase %s)",
            self.config.host,
            self.config.port,
            failure.reason,
            failure.phase,
        )

    def _wrong_host(self, failure: TransportError) -> TransportError:
        """The certificate is trusted but for other names: say which, read
        from the certificate the server presents, so the administrator can
        use that name or have the certificate fixed."""
        names = self._presented_names()
        if not names:
            return failure
        host = self.config.host
        return BackendConfigurationError(
            f"{host}:{self.config.port} presented a certificate for {', '.join(names)}, "
            f"not for {host}",
            phase="tls",
            reason="tls_wrong_host",
        )

    def _presented_names(self) -> list[str]:
        """The host names in the certificate the server presents, read over
        a second connection that verifies nothing (the handshake that
        verified was aborted before the certificate could be read). Only its
        names are used; nothing else is sent over it. Empty when it fails."""
        config = self.config
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        client = _SmtpClient(
            local_hostname=config.local_hostname or _default_local_hostname(),
            timeout=min(self._step_timeout(), 5.0),
        )
        try:
            client.open_socket(
                config.host,
                config.port,
                tls=context if config.security == "tls" else None,
                on_tls=lambda: None,
                address_allowed=config.address_allowed,
            )
            if config.security == "starttls":
                client.ehlo()
                code, _ = client.docmd("STARTTLS")
                if code != 220:
                    return []
                client.start_tls(context, config.host)
            sock = client.sock
            der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        except (OSError, smtplib.SMTPException, TransportError, ValueError):
            return []
        finally:
            with contextlib.suppress(OSError):
                client.close()
        return certificate_names(der) if der else []

    def close(self) -> None:
        """QUIT and close the socket; never raises."""
        client = self._client
        self._client = None
        if client is None:
            return
        try:
            if client.sock is not None:
                client.sock.settimeout(min(self._step_timeout(), _QUIT_TIMEOUT))
                client.quit()
        except Exception as err:  # the contract is "never raises"
            logger.debug("QUIT to %s failed: %s", self.config.host, err)
        finally:
            with contextlib.suppress(OSError):
                client.close()

    def reset(self) -> None:
        """RSET so the connection can carry the next message; closes it if that fails."""
        client = self._client
        if client is None or client.sock is None:
            self._discard()
            return
        try:
            code, _ = client.rset()
        except (OSError, smtplib.SMTPException):
            self._discard()
            return
        if not 200 <= code < 300:
            self._discard()

    def _discard(self) -> None:
        """Drop the connection without a word to the server."""
        client = self._client
        self._client = None
        if client is not None:
            try:
                client.close()
            except OSError as err:
                logger.debug("Closing the socket to %s failed: %s", self.config.host, err)

    def _tls_context(self) -> ssl.SSLContext:
        if self.config.ssl_context is not None:
            return self.config.ssl_context
        if self._tls_context_cache is None:
            self._tls_context_cache = ssl.create_default_context()
        return self._tls_context_cache

    def _greet(self, client: _SmtpClient) -> None:
        code, raw = client.ehlo()
        self._check_421(code, raw, "to EHLO")
        if 200 <= code < 300:
            return
        # A server that does not know EHLO may still speak RFC 821.
        code, raw = client.helo()
        self._expect_positive(code, _decode(raw), "to EHLO and HELO")

    def _start_tls(self, client: _SmtpClient) -> None:
        if not client.has_extn("starttls"):
            raise self._config_error(
                "tls_failed", "does not offer STARTTLS, and the backend requires it"
            )
        code, raw = client.docmd("STARTTLS")
        self._check_421(code, raw, "to STARTTLS")
        if code != 220:
            text = _decode(raw)
            raise self._reply_error(
                BackendConfigurationError, "tls_failed", code, text, "to STARTTLS"
            )
        client.start_tls(self._tls_context(), self.config.host)
        self._greet(client)

    def _authenticate(self, client: _SmtpClient) -> None:
        offered = client.esmtp_features.get("auth", "").upper().split()
        if not client.has_extn("auth") or not offered:
            raise self._config_error(
                "auth_unsupported", "does not offer AUTH, but a username is configured"
            )
        user = self.config.username.encode("utf-8")
        password = self.config.password.encode("utf-8")
        if "PLAIN" in offered:
            token = base64.b64encode(b"\0" + user + b"\0" + password).decode("ascii")
            first, answers = f"AUTH PLAIN {token}", [token]
        elif "LOGIN" in offered:
            first = "AUTH LOGIN"
            answers = [base64.b64encode(user).decode("ascii"), base64.b64encode(password).decode()]
        else:
            raise self._config_error(
                "auth_unsupported",
                f"offers only AUTH {' '.join(offered)}; supported are PLAIN and LOGIN",
            )
        client.masking = True
        try:
            client.putcmd(first)
            code, raw = client.getreply()
            # PLAIN keeps its token in the list: a server that ignores the
            # initial response answers 334 and gets it again.
            while code == 334 and answers:
                client.send(answers.pop(0) + "\r\n")
                code, raw = client.getreply()
            if code == 334:
                # RFC 4954: "*" cancels an exchange that asks for more than we have.
                client.send("*\r\n")
                code, raw = client.getreply()
        finally:
            client.masking = False
        text = _decode(raw)
        self._check_421(code, raw, "to AUTH")
        if 200 <= code < 300:
            return
        if 400 <= code < 500:
            raise self._reply_error(TransientTransportError, "auth_deferred", code, text, "to AUTH")
        raise self._reply_error(BackendConfigurationError, "auth_failed", code, text, "to AUTH")

    # -- sending ------------------------------------------------------------

    def send(
        self,
        envelope: Envelope,
        *,
        before_data: Callable[[], None] | None = None,
        after_body: Callable[[], None] | None = None,
    ) -> SendResult:
        """Deliver one message over the (re)opened connection.

        ``after_body`` runs once the body is written, while the server takes
        it in and before its answer is read: the caller's own work, done in
        time it would otherwise spend waiting. It must not raise."""
        check_envelope(envelope)
        self.open()
        client = self._client
        if client is None:  # open() raises rather than leaving no client
            raise TransientTransportError("not connected", reason="connection_lost")
        try:
            result = self._transact(client, envelope, before_data, after_body)
        except TransportError as err:
            logger.info(
                "Message %s not accepted by %s: %s %s (%s, phase %s)",
                envelope.message_id or "-",
                self.config.host,
                err.code,
                err.enhanced_code,
                err.reason,
                err.phase,
            )
            raise
        except (OSError, smtplib.SMTPException, ValueError) as err:
            failure = self._translate(err)
            self._discard()
            logger.info(
                "Message %s interrupted at %s: %s (phase %s)",
                envelope.message_id or "-",
                self.config.host,
                failure.reason,
                failure.phase,
            )
            raise failure from err
        logger.info(
            "Message %s accepted by %s:%s: %s %s queue_id=%s refused=%s",
            envelope.message_id or "-",
            self.config.host,
            self.config.port,
            result.code,
            result.enhanced_code,
            result.queue_id or "-",
            len(result.refused),
        )
        return result

    def _transact(
        self,
        client: _SmtpClient,
        envelope: Envelope,
        before_data: Callable[[], None] | None,
        after_body: Callable[[], None] | None = None,
    ) -> SendResult:
        self._enter("mail")
        utf8_offered = client.has_extn("smtputf8")
        sender, sender_needs_utf8 = self._wire_address(envelope.mail_from, utf8_offered)
        recipients: list[tuple[str, str]] = []
        needs_utf8 = sender_needs_utf8
        for address in dict.fromkeys(envelope.recipients):
            wire, utf8 = self._wire_address(address, utf8_offered)
            recipients.append((address, wire))
            needs_utf8 = needs_utf8 or utf8

        header_end = envelope.message.find(b"\r\n\r\n")
        if not envelope.message[: max(header_end, 0)].isascii():
            # RFC 6532 headers (raw UTF-8) are what SMTPUTF8 announces too;
            # a relay that did not offer it may pass them to a hop that
            # mangles or bounces them, so they are not sent there at all.
            if not utf8_offered:
                raise self._permanent(
                    "smtputf8_unsupported",
                    "does not offer SMTPUTF8, which the message's headers need (raw UTF-8)",
                )
            needs_utf8 = True

        payload = _data_payload(envelope.message)
        options: list[str] = []
        if client.has_extn("size"):
            limit = client.esmtp_features.get("size", "")
            if limit.isdigit() and 0 < int(limit) < len(payload):
                raise self._permanent(
                    "message_too_large",
                    f"accepts at most {limit} bytes; the message has {len(payload)}",
                )
            options.append(f"SIZE={len(payload)}")
        if not envelope.message.isascii() and client.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        if needs_utf8:
            options.append("SMTPUTF8")
        if client.has_extn("pipelining"):
            outcomes = self._pipelined_envelope(
                client, sender, options, recipients, needs_utf8, before_data
            )
        else:
            self._mail_from(client, sender, options, utf8=needs_utf8)
            self._enter("rcpt")
            outcomes = self._rcpt_to(client, recipients)
            self._enter("data")
            if before_data is not None:
                try:
                    before_data()
                except BaseException:
                    self.reset()
                    raise
            self._data_command(client)
        client.send_data(payload)
        if after_body is not None:
            after_body()
        code, raw = client.getreply()
        text = _decode(raw)
        self._check_421(code, raw, "after the message data")
        if not 200 <= code < 300:
            raise self._classify(
                code, text, "after the message data", transient="deferred", permanent="rejected"
            )
        self._enter("done")
        return SendResult(
            code=code,
            enhanced_code=enhanced_status_code(text),
            reply=text,
            queue_id=parse_queue_id(text),
            recipients=outcomes,
        )

    def _pipelined_envelope(
        self,
        client: _SmtpClient,
        sender: str,
        options: list[str],
        recipients: list[tuple[str, str]],
        utf8: bool,
        before_data: Callable[[], None] | None,
    ) -> list[RecipientOutcome]:
        """MAIL FROM, every RCPT TO and DATA in one write, their replies read
        in order (RFC 2920): one round trip instead of two plus one per
        recipient. ``before_data`` runs once the envelope is written, before
        its replies are read. Returns with the server waiting for the body.
        """
        client.command_encoding = "utf-8" if utf8 else "ascii"
        suffix = "".join(f" {option}" for option in options)
        lines = [f"MAIL FROM:<{sender}>{suffix}"]
        lines += [f"RCPT TO:<{wire}>" for _, wire in recipients]
        lines.append("DATA")
        client.send("".join(f"{line}\r\n" for line in lines))
        # The journal is committed while the server reads the envelope. The
        # server will take every byte after its 354 as message text: if the
        # journal fails, hanging up is the only way out that delivers nothing.
        if before_data is not None:
            try:
                before_data()
            except BaseException:
                self._discard()
                raise
        unread = len(lines)
        try:
            code, raw = client.getreply()
            unread -= 1
            self._check_mail_reply(code, raw)
            self._enter("rcpt")
            replies = []
            for _ in recipients:
                replies.append(client.getreply())
                unread -= 1
            for code, raw in replies:
                self._check_421(code, raw, "to RCPT TO")
            outcomes = self._recipient_outcomes(recipients, replies)
            self._enter("data")
            code, raw = client.getreply()
            unread -= 1
            self._check_data_reply(code, raw)
        except TransportError:
            self._end_pipeline(client, unread)
            raise
        return outcomes

    def _end_pipeline(self, client: _SmtpClient, unread: int) -> None:
        """After a refusal in a pipelined envelope: read the replies still on
        their way, then RSET. A server that answered the DATA 354 anyway is
        waiting for a body; the connection is dropped (an unfinished
        transaction is discarded, RFC 5321 section 4.1.1.4)."""
        if self._client is None:
            return
        code = 0
        try:
            for _ in range(unread):
                code, _raw = client.getreply()
        except (OSError, smtplib.SMTPException):
            self._discard()
            return
        if code == 354:
            self._discard()
            return
        self.reset()

    def _mail_from(
        self, client: _SmtpClient, sender: str, options: list[str], *, utf8: bool
    ) -> None:
        client.command_encoding = "utf-8" if utf8 else "ascii"
        suffix = "".join(f" {option}" for option in options)
        code, raw = client.docmd("MAIL", f"FROM:<{sender}>{suffix}")
        try:
            self._check_mail_reply(code, raw)
        except TransportError:
            self.reset()
            raise

    def _check_mail_reply(self, code: int, raw: bytes) -> None:
        text = _decode(raw)
        self._check_421(code, raw, "to MAIL FROM")
        if 200 <= code < 300:
            return
        if code == 530:
            raise self._reply_error(
                BackendConfigurationError, "auth_required", code, text, "to MAIL FROM"
            )
        if code == 552:
            raise self._reply_error(
                PermanentTransportError, "message_too_large", code, text, "to MAIL FROM"
            )
        raise self._classify(
            code, text, "to MAIL FROM", transient="sender_deferred", permanent="sender_refused"
        )

    def _rcpt_to(
        self, client: _SmtpClient, recipients: list[tuple[str, str]]
    ) -> list[RecipientOutcome]:
        replies = []
        for _, wire in recipients:
            code, raw = client.docmd("RCPT", f"TO:<{wire}>")
            self._check_421(code, raw, "to RCPT TO")
            replies.append((code, raw))
        try:
            return self._recipient_outcomes(recipients, replies)
        except TransportError:
            self.reset()
            raise

    def _recipient_outcomes(
        self, recipients: list[tuple[str, str]], replies: list[tuple[int, bytes]]
    ) -> list[RecipientOutcome]:
        """Each recipient's outcome; raises when not one was accepted."""
        outcomes = [
            RecipientOutcome(
                address=address, accepted=200 <= code < 300, code=code, reply=_decode(raw)
            )
            for (address, _), (code, raw) in zip(recipients, replies, strict=True)
        ]
        if any(outcome.accepted for outcome in outcomes):
            return outcomes
        # 552 to RCPT is "mailbox full" in practice: RFC 5321 section 4.5.3.1.10
        # says to treat it as temporary.
        deferred = [o for o in outcomes if not 500 <= o.code < 600 or o.code == 552]
        summary = "; ".join(f"{o.address}: {o.code} {o.reply}" for o in outcomes)
        if deferred:
            first = deferred[0]
            raise self._reply_error(
                TransientTransportError,
                "recipient_deferred",
                first.code,
                first.reply,
                f"to every recipient ({summary})",
            )
        first = outcomes[0]
        refused = self._reply_error(
            PermanentTransportError,
            "recipients_refused",
            first.code,
            first.reply,
            f"to every recipient ({summary})",
        )
        refused.recipients = [(o.address, o.code, o.reply) for o in outcomes]
        raise refused

    def _data_command(self, client: _SmtpClient) -> str:
        code, raw = client.docmd("DATA")
        try:
            return self._check_data_reply(code, raw)
        except TransportError:
            self.reset()
            raise

    def _check_data_reply(self, code: int, raw: bytes) -> str:
        text = _decode(raw)
        self._check_421(code, raw, "to DATA")
        if code == 354:
            return text
        raise self._classify(code, text, "to DATA", transient="deferred", permanent="rejected")

    def _wire_address(self, address: str, utf8_offered: bool) -> tuple[str, bool]:
        """The address as sent, and whether it needs SMTPUTF8."""
        if address.isascii():
            return address, False
        local, _, domain = address.rpartition("@")
        if not local.isascii() and utf8_offered:
            return address, True
        if local.isascii():
            # Only the domain is international: its A-label form is plain
            # ASCII and needs no SMTPUTF8, offered or not (the headers carry
            # the same form).
            try:
                ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
            except idna.IDNAError as err:
                if utf8_offered:
                    # No A-label for it: as it is, for the relay to judge.
                    return address, True
                raise InvalidAddress(f"the domain of {address!r} is not a valid IDN") from err
            return f"{local}@{ascii_domain}", False
        raise self._permanent(
            "smtputf8_unsupported",
            f"does not offer SMTPUTF8, which the address {address!r} needs",
        )

    # -- backend test -------------------------------------------------------

    def probe(self, *, mail_from: str, rcpt_to: str, deadline: float = 15.0) -> ProbeResult:
        """Test the backend without sending a message.

        Goes through connect, TLS, AUTH, MAIL, RCPT and DATA up to the 354
        reply, then closes the socket. After 354 every byte we send is message
        text (even "RSET" or "QUIT"), so the only safe way out is to hang up
        before the final dot: RFC 5321 section 4.1.1.4 has the server discard
        a transaction whose data never ended. A server or network problem is
        reported in the result, never raised; the whole test returns within
        ``deadline`` seconds even against a server that accepts the
        connection and then says nothing.
        """
        started = time.monotonic()
        transcript: list[str] = []
        for address, role, phase, reason in (
            (mail_from, "sender", "mail", "sender_refused"),
            (rcpt_to, "recipient", "rcpt", "recipient_refused"),
        ):
            try:
                check_address(address, role=role, allow_empty=role == "sender")
            except (HeaderInjection, InvalidAddress) as err:
                # The operator reads this result; an unusable address is one
                # more thing the test found wrong, not a crash.
                return ProbeResult(
                    ok=False,
                    reason=reason,
                    phase=phase,
                    code=None,
                    reply=str(err),
                    transcript=transcript,
                    elapsed=time.monotonic() - started,
                )
        # The test needs a connection of its own, made with the current
        # settings; a QUIT to an old one would only eat into the deadline.
        self._discard()
        self._transcript = transcript
        self._deadline = started + deadline
        self._deadline_hit = False
        # Socket timeouts bound each step; the watchdog bounds a server that
        # trickles bytes just fast enough to never trip them.
        watchdog = threading.Timer(deadline, self._deadline_passed)
        watchdog.daemon = True
        watchdog.start()
        reached_data = False
        try:
            self.open()
            client = self._client
            if client is None:
                raise TransientTransportError("not connected", reason="connection_lost")
            self._enter("mail")
            utf8_offered = client.has_extn("smtputf8")
            sender, sender_utf8 = self._probe_address(mail_from, utf8_offered, "sender")
            recipient, recipient_utf8 = self._probe_address(rcpt_to, utf8_offered, "recipient")
            utf8 = sender_utf8 or recipient_utf8
            self._mail_from(client, sender, ["SMTPUTF8"] if utf8 else [], utf8=utf8)
            self._enter("rcpt")
            self._rcpt_to(client, [(rcpt_to, recipient)])
            self._enter("data")
            reached_data = True
            reply = self._data_command(client)
            result = ProbeResult(
                ok=True,
                reason="ok",
                phase="data",
                code=354,
                reply=reply,
                transcript=transcript,
                elapsed=0.0,
            )
        except TransportError as err:
            result = self._probe_failure(err, transcript)
        except (OSError, smtplib.SMTPException, ValueError) as err:
            result = self._probe_failure(self._translate(err), transcript)
        finally:
            watchdog.cancel()
            if reached_data or self._deadline_hit:
                self._discard()
            else:
                self.close()
            self._transcript = None
            self._deadline = None
            self._deadline_hit = False
            self._last_transcript = transcript
        result.elapsed = time.monotonic() - started
        logger.info(
            "Backend test of %s:%s: %s (phase %s, code %s, %.2fs)",
            self.config.host,
            self.config.port,
            result.reason,
            result.phase,
            result.code,
            result.elapsed,
        )
        return result

    def _probe_address(self, address: str, utf8_offered: bool, role: str) -> tuple[str, bool]:
        """``_wire_address`` whose refusals name the address that caused them."""
        try:
            return self._wire_address(address, utf8_offered)
        except (InvalidAddress, PermanentTransportError) as err:
            raise PermanentTransportError(
                f"the {role} address cannot be used with {self.config.host}: {err}",
                phase="mail" if role == "sender" else "rcpt",
                reason="sender_refused" if role == "sender" else "recipients_refused",
            ) from err

    def _probe_failure(self, err: TransportError, transcript: list[str]) -> ProbeResult:
        reason = err.reason
        if reason in ("sender_deferred", "sender_refused", "message_too_large"):
            reason = "sender_refused"
        elif reason in ("recipient_deferred", "recipients_refused"):
            reason = "recipient_refused"
        elif reason in ("auth_required", "auth_deferred"):
            reason = "auth_failed"
        elif reason not in PROBE_REASONS:
            reason = "unexpected_reply"
        return ProbeResult(
            ok=False,
            reason=reason,
            phase=err.phase,
            code=err.code,
            reply=err.reply or err.message,
            transcript=transcript,
            elapsed=0.0,
        )

    def transcript(self) -> list[str]:
        """The dialogue of the last probe, credentials masked; sends are not recorded."""
        return list(self._last_transcript)

    def _deadline_passed(self) -> None:
        if self._deadline is None:  # the probe finished as the timer fired
            return
        self._deadline_hit = True
        client = self._client
        sock = client.sock if client is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # -- helpers ------------------------------------------------------------

    def _enter(self, phase: str) -> None:
        self._phase = phase
        if self._deadline is not None:
            timeout = self._step_timeout()
            client = self._client
            if client is not None:
                client.timeout = timeout
                if client.sock is not None:
                    client.sock.settimeout(timeout)
        if self.on_phase is not None:
            self.on_phase(phase)

    def _step_timeout(self) -> float:
        if self._deadline is None:
            return self.config.timeout
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            self._deadline_hit = True
            raise TimeoutError("the backend test ran out of time")
        return min(self.config.timeout, remaining)

    def _check_421(self, code: int, raw: bytes, what: str) -> None:
        if code == 421:
            failure = self._reply_error(
                TransientTransportError, "service_unavailable", code, _decode(raw), what
            )
            # 421 means the server is closing the channel.
            self._discard()
            raise failure

    def _expect_positive(self, code: int, text: str, what: str) -> None:
        """Connection-level replies: a refusal here concerns every message."""
        if 200 <= code < 300:
            return
        if code == 421:
            self._discard()
            raise self._reply_error(
                TransientTransportError, "service_unavailable", code, text, what
            )
        raise self._classify(
            code,
            text,
            what,
            transient="unexpected_reply",
            permanent="unexpected_reply",
            permanent_class=BackendConfigurationError,
        )

    def _classify(
        self,
        code: int,
        text: str,
        what: str,
        *,
        transient: str,
        permanent: str,
        permanent_class: type[TransportError] = PermanentTransportError,
    ) -> TransportError:
        if 400 <= code < 500:
            return self._reply_error(TransientTransportError, transient, code, text, what)
        if 500 <= code < 600:
            return self._reply_error(permanent_class, permanent, code, text, what)
        # Not an answer this command can have: the dialogue is out of step.
        self._discard()
        return self._reply_error(TransientTransportError, "unexpected_reply", code, text, what)

    def _reply_error(
        self, cls: type[TransportError], reason: str, code: int, text: str, what: str
    ) -> TransportError:
        return cls(
            f"{self.config.host} answered {code} {text} {what}",
            phase=self._phase,
            code=code,
            enhanced_code=enhanced_status_code(text),
            reply=text,
            reason=reason,
        )

    def _config_error(self, reason: str, what: str) -> BackendConfigurationError:
        self._discard()
        return BackendConfigurationError(
            f"{self.config.host} {what}", phase=self._phase, reason=reason
        )

    def _permanent(self, reason: str, what: str) -> PermanentTransportError:
        self.reset()
        return PermanentTransportError(
            f"{self.config.host} {what}", phase=self._phase, reason=reason
        )

    def _translate(self, err: BaseException) -> TransportError:
        """Map a socket, TLS or smtplib failure onto our error families."""
        config = self.config
        where = f"{config.host}:{config.port}"
        phase = self._phase
        if self._deadline_hit or isinstance(err, TimeoutError):
            return TransientTransportError(
                f"{where} did not answer in time during {phase}", phase=phase, reason="timeout"
            )
        if isinstance(err, socket.gaierror):
            return BackendConfigurationError(
                f"the host name {config.host} cannot be resolved: {err.strerror or err}",
                phase=phase,
                reason="host_not_found",
            )
        if isinstance(err, ssl.SSLCertVerificationError) or (
            isinstance(err, ssl.SSLError) and phase == "tls"
        ):
            return BackendConfigurationError(
                f"TLS with {where} failed: {getattr(err, 'verify_message', '') or err}",
                phase=phase,
                reason="tls_failed",
            )
        if isinstance(err, ConnectionRefusedError):
            return TransientTransportError(
                f"{where} refused the connection", phase=phase, reason="connection_refused"
            )
        return TransientTransportError(
            f"the connection to {where} was lost during {phase}: {err}",
            phase=phase,
            reason="connection_lost",
        )
