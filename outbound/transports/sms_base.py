"""What the SMS transports share: the envelope, the transport protocol, and the
HTTP plumbing that keeps the host policy and the data-phase journal exact.

Contract of an ``SmsTransport``:

- ``send`` makes one try to hand one ``SmsEnvelope`` to the provider and
  returns a ``SendResult`` (``code`` the HTTP status, ``enhanced_code`` the
  provider's status such as "queued", ``queue_id`` the provider's message id),
  or raises one of the ``TransportError`` families with ``phase`` "connect"
  (nothing reached the provider) or "data" (the request went out, so the
  provider may have created the message) and a machine ``reason``.
- ``before_data`` is called once, right before the request that may create
  the message is written to an established connection; if it raises, nothing
  is sent and its exception propagates unchanged.
- ``probe`` is the backend test: it never sends a message and reports
  problems in its ``ProbeResult`` instead of raising.
- Protocol only: no database, no retries, no sleeping.

The HTTP transports send through ``guarded_session``: its connections resolve
the name, ask the host policy about every address and connect to a checked
address only (so DNS cannot steer around the check, and a forbidden address
never sees a packet), and call the armed ``before_data`` hook between
connecting and writing the request.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from outbound.errors import BackendConfigurationError, TransientTransportError, TransportError
from outbound.transports.base import SendResult
from outbound.transports.hostpolicy import checked_addresses, host_forbidden
from outbound.transports.smtp import PROBE_REASONS, ProbeResult

__all__ = [
    "PROBE_REASONS",
    "AddressForbidden",
    "HookFailed",
    "HttpGuard",
    "ProbeResult",
    "SmsEnvelope",
    "SmsTransport",
    "check_host",
    "classify_network_error",
    "guarded_session",
    "mask",
]

AddressPolicy = Callable[[str], bool]


@dataclass(frozen=True)
class SmsEnvelope:
    """One SMS as it goes to the provider."""

    # E.164, e.g. "+14155550100".
    to: str
    # An E.164 number, an alphanumeric sender id, or a Twilio messaging
    # service SID ("MG…").
    sender: str
    body: str
    # Our Message-ID; the idempotency key where the provider supports one.
    message_id: str
    # Absolute URL the provider posts delivery receipts to, or "".
    status_callback: str = ""


@runtime_checkable
class SmsTransport(Protocol):
    @property
    def is_open(self) -> bool: ...

    def open(self) -> None: ...

    def close(self) -> None: ...

    def send(
        self, envelope: SmsEnvelope, *, before_data: Callable[[], None] | None = None
    ) -> SendResult: ...

    def probe(self, *, deadline: float = 15.0) -> ProbeResult: ...


def mask(text: str, *secrets: str) -> str:
    """``text`` with every occurrence of a non-empty secret replaced by ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


# --- host policy -----------------------------------------------------------


class AddressForbidden(Exception):
    """The host policy refused the address a connection reached.

    Deliberately not an ``OSError``: urllib3 and requests let it through
    unwrapped, so the transport can tell it from a network failure.
    """

    def __init__(self, host: str, address: str) -> None:
        super().__init__(f"{host} resolves to {address}, which the host policy forbids")
        self.host = host
        self.address = address


def _forbidden(host: str, address: str) -> BackendConfigurationError:
    return host_forbidden(host, address)


def check_host(url: str, address_allowed: AddressPolicy | None) -> None:
    """Ask the host policy about every address the host of ``url`` resolves to.

    Raises ``BackendConfigurationError`` with reason "host_not_found" or
    "host_forbidden". Without a policy nothing is checked here; the
    connection reports an unknown host itself.
    """
    if address_allowed is None:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise BackendConfigurationError(
            f"the host name {host} cannot be resolved: {getattr(err, 'strerror', None) or err}",
            phase="connect",
            reason="host_not_found",
        ) from err
    for info in infos:
        address = str(info[4][0])
        if not address_allowed(address):
            raise _forbidden(host, address)


# --- the guarded HTTP session ------------------------------------------------


class HookFailed(Exception):
    """Carries a ``before_data`` failure through urllib3 and requests untouched.

    The transport catches it first and raises ``original`` in its place.
    """

    def __init__(self, original: BaseException) -> None:
        super().__init__("before_data failed")
        self.original = original


class HttpGuard:
    """Per-transport state the guarded connections consult.

    ``arm`` before each request; ``sent`` afterwards says whether the request
    was written (so whether the provider may have acted on it). The state is
    per thread because a request runs entirely in the calling thread.
    """

    def __init__(self, address_allowed: AddressPolicy | None) -> None:
        self.address_allowed = address_allowed
        self._local = threading.local()

    def arm(self, hook: Callable[[], None] | None) -> None:
        self._local.hook = hook
        self._local.sent = False

    @property
    def sent(self) -> bool:
        return bool(getattr(self._local, "sent", False))

    def new_connection(
        self, connection: HTTPConnection, connect: Callable[[], socket.socket]
    ) -> socket.socket:
        """``connect()`` (urllib3's own) to an address the policy allowed.

        The name is resolved here once and every address checked before any
        packet leaves; urllib3 is then given the checked address to connect
        to (TLS still verifies the certificate for the name), so it never
        resolves again. A name that does not resolve is left to urllib3,
        which reports it as usual."""
        if self.address_allowed is None:
            return connect()
        name = connection._dns_host
        try:
            pairs = checked_addresses(
                name,
                connection.port or 0,
                self.address_allowed,
                forbidden=lambda _name, address: AddressForbidden(connection.host, address),
            )
        except (socket.gaierror, UnicodeError):
            return connect()
        last: Exception | None = None
        try:
            for _family, sockaddr in pairs:
                connection._dns_host = str(sockaddr[0])
                try:
                    sock = connect()
                except (NewConnectionError, ConnectTimeoutError) as err:
                    last = err
                    continue
                return sock
        finally:
            connection._dns_host = name
        assert last is not None
        raise last

    def request_leaving(self) -> None:
        hook = getattr(self._local, "hook", None)
        self._local.hook = None
        if hook is not None:
            try:
                hook()
            except BaseException as err:
                raise HookFailed(err) from err
        self._local.sent = True


def _connection_classes(guard: HttpGuard) -> tuple[type[HTTPConnection], type[HTTPSConnection]]:
    class GuardedHTTPConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return guard.new_connection(self, super()._new_conn)

        def request(self, *args: Any, **kwargs: Any) -> None:
            # Plain HTTP connects lazily inside request(); connect first so a
            # refused connection never counts as a request that went out.
            if self.sock is None:
                self.connect()
            guard.request_leaving()
            super().request(*args, **kwargs)

    class GuardedHTTPSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return guard.new_connection(self, super()._new_conn)

        def request(self, *args: Any, **kwargs: Any) -> None:
            if self.sock is None:
                self.connect()
            guard.request_leaving()
            super().request(*args, **kwargs)

    return GuardedHTTPConnection, GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def __init__(self, guard: HttpGuard) -> None:
        self._guard = guard
        # No retries: a retried POST could create a second message.
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        plain, secure = _connection_classes(self._guard)

        class Pool(HTTPConnectionPool):
            ConnectionCls = plain

        class SecurePool(HTTPSConnectionPool):
            ConnectionCls = secure

        self.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": SecurePool}


def guarded_session(guard: HttpGuard) -> requests.Session:
    """A requests session whose connections go through ``guard``.

    Proxies and .netrc from the environment are ignored: a proxy would hide
    the real peer from the host policy, and the journal hook must run on the
    connection that carries the request.
    """
    session = requests.Session()
    session.trust_env = False
    adapter = _GuardedAdapter(guard)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# --- network failures ----------------------------------------------------------


def _causes(err: BaseException) -> Iterator[BaseException]:
    """``err`` and everything it wraps (causes, contexts, urllib3 reasons)."""
    seen: set[int] = set()
    pending: list[BaseException] = [err]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for linked in (
            current.__cause__,
            current.__context__,
            getattr(current, "reason", None),
            *current.args,
        ):
            if isinstance(linked, BaseException):
                pending.append(linked)


def classify_network_error(
    err: BaseException, *, where: str, sent: bool, timeout: float
) -> TransportError:
    """Map a requests/urllib3/socket failure onto our error families.

    ``sent`` says whether the request had been written: from then on any
    failure is "interrupted" (phase "data"), because the provider may have
    acted on it without us seeing the answer.
    """
    causes = list(_causes(err))
    forbidden = next((c for c in causes if isinstance(c, AddressForbidden)), None)
    if forbidden is not None:
        return _forbidden(forbidden.host, forbidden.address)
    if sent:
        if isinstance(err, requests.Timeout):
            what = f"did not answer within {timeout:g}s after the request was sent"
        else:
            what = f"dropped the connection after the request was sent ({type(err).__name__})"
        return TransientTransportError(
            f"{where} {what}; the provider may have accepted the message",
            phase="data",
            reason="interrupted",
        )
    if any(isinstance(c, socket.gaierror) for c in causes):
        return BackendConfigurationError(
            f"the host name in {where} cannot be resolved",
            phase="connect",
            reason="host_not_found",
        )
    if isinstance(err, requests.exceptions.SSLError):
        return BackendConfigurationError(
            f"TLS with {where} failed: {err}", phase="connect", reason="tls_failed"
        )
    if isinstance(err, requests.Timeout) or any(isinstance(c, TimeoutError) for c in causes):
        return TransientTransportError(
            f"{where} did not accept a connection within {timeout:g}s",
            phase="connect",
            reason="timeout",
        )
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return TransientTransportError(
            f"{where} refused the connection", phase="connect", reason="connection_refused"
        )
    return TransientTransportError(
        f"the connection to {where} failed before the request was sent: {type(err).__name__}",
        phase="connect",
        reason="connection_lost",
    )
