"""A scriptable SMTP server for tests and benchmarks, built on aiosmtpd.

``SmtpTestServer`` listens on 127.0.0.1 on a free port, records what clients
do (connections, the commands of every session, AUTH attempts, each message
with its raw bytes) and answers what the test asks for: any reply at any
stage, a hang, a dropped connection after the data, AUTH, STARTTLS or implicit
TLS with a trustme certificate. Replies can be changed while it runs
(``configure``) or computed per command (``reply_hook``).

The pytest fixtures ``smtp_server`` and ``make_smtp_server`` are at the bottom;
bench/ scripts import the class and use it as a context manager.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import secrets
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from email.parser import BytesHeaderParser
from types import TracebackType
from typing import Any, AnyStr, Literal, Self

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from outbound.devtools.mailsink import BackgroundController

Stage = Literal["connect", "ehlo", "mail", "rcpt", "data", "data_end"]
TlsMode = Literal["starttls", "implicit"]
# (stage, argument) -> a reply line that replaces the scripted one, or None.
ReplyHook = Callable[[str, str], str | None]

DEFAULT_TLS_NAMES = ("localhost", "127.0.0.1")


@dataclass
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message_id: str
    session: int
    mail_options: list[str]
    # The reply sent after the final dot; "" when the server dropped or hung.
    reply: str = ""


@dataclass(eq=False)
class SessionRecord:
    number: int
    peer: str
    # Command verbs in arrival order ("EHLO", "MAIL", ...).
    commands: list[str] = field(default_factory=list)
    # Verb and argument; AUTH arguments and the lines that follow are masked.
    lines: list[str] = field(default_factory=list)
    tls: bool = False
    auth_user: str | None = None


@dataclass
class ServerOptions:
    """What the server answers; every field may change while it runs."""

    # Sent instead of the 220 greeting; a non-2xx banner closes the connection.
    connect_banner: str | None = None
    # A non-2xx reply replaces the whole EHLO answer.
    ehlo_reply: str | None = None
    mail_reply: str | None = None
    # Per address; rcpt_reply answers every other address (default accept).
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    rcpt_reply: str | None = None
    # Sent instead of "354" to the DATA command.
    data_command_reply: str | None = None
    # After the final dot; default "250 2.0.0 Ok: queued as <random hex>".
    data_reply: str | None = None
    hang_at: Stage | None = None
    # Seconds spent on each message before answering the final dot.
    delay: float = 0.0
    drop_after_data: bool = False
    # Supports STARTTLS but leaves it out of the EHLO answer.
    strip_starttls: bool = False
    # Offers PIPELINING (RFC 2920), as real relays do. aiosmtpd reads one
    # command line at a time, so commands sent together are answered in order.
    pipelining: bool = True
    # {"user": "password"}; when set, MAIL before a successful AUTH gets 530.
    auth: dict[str, str] | None = None
    reply_hook: ReplyHook | None = None


@functools.cache
def _test_ca() -> trustme.CA:
    return trustme.CA()


@functools.cache
def _server_cert(names: tuple[str, ...]) -> trustme.LeafCert:
    return _test_ca().issue_cert(*names)


def trusting_client_context() -> ssl.SSLContext:
    """A client context that trusts the test CA, with full verification."""
    context = ssl.create_default_context()
    _test_ca().configure_trust(context)
    return context


@functools.cache
def _ca_file() -> str:
    directory = tempfile.mkdtemp(prefix="outbound-test-ca-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    path = os.path.join(directory, "ca.pem")
    _test_ca().cert_pem.write_to_path(path)
    return path


class _QuietSession(Session):
    """aiosmtpd logs a deprecation warning each time it sets login_data after AUTH."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


async def _hang_forever() -> None:
    # Ends only when the connection is lost or the server stops.
    await asyncio.get_running_loop().create_future()


class _ScriptedSMTP(SMTP):
    """aiosmtpd's SMTP with every command recorded and a scripted banner."""

    def __init__(self, handler: _Handler, *, test_server: SmtpTestServer, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._test_server = test_server
        self.record: SessionRecord | None = None
        self._greeted = False
        self._smtp_methods = {
            verb: self._recorded(verb, method) for verb, method in self._smtp_methods.items()
        }

    def _recorded(
        self, verb: str, method: Callable[[str | None], Awaitable[None]]
    ) -> Callable[[str | None], Awaitable[None]]:
        @functools.wraps(method)
        async def run(arg: str | None) -> None:
            server = self._test_server
            if self.record is not None:
                server._note_command(self.record, verb, arg)
            if verb == "DATA":
                options = server.options
                await server._maybe_hang("data")
                reply = server._scripted("data", "", options.data_command_reply)
                if reply is not None:
                    await self.push(reply)
                    return
            await method(arg)

        return run

    def _create_session(self) -> Session:
        return _QuietSession(self.loop)

    async def _handle_client(self) -> None:
        transport = self.transport
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        peer = self.session.peer if self.session is not None else None
        self.record = self._test_server._open_session(self, str(peer), tls=tls)
        await self._test_server._maybe_hang("connect")
        await super()._handle_client()

    async def push(self, status: AnyStr) -> None:
        if not self._greeted:
            self._greeted = True
            banner = self._test_server.options.connect_banner
            if banner is not None:
                await super().push(banner)
                if not banner.startswith("2") and self.transport is not None:
                    self.transport.close()
                return
        await super().push(status)

    def connection_lost(self, error: Exception | None) -> None:
        self._test_server._forget(self)
        super().connection_lost(error)


class _Handler:
    """The aiosmtpd handler: decides replies from the server's options."""

    def __init__(self, server: SmtpTestServer) -> None:
        self.server = server

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        test_server = self.server
        options = test_server.options
        await test_server._maybe_hang("ehlo")
        reply = test_server._scripted("ehlo", hostname, options.ehlo_reply)
        if reply is not None and not reply.startswith("2"):
            return [reply]
        session.host_name = hostname
        if options.strip_starttls:
            responses = [line for line in responses if "STARTTLS" not in line.upper()]
        if options.auth is None:
            responses = [line for line in responses if not line[4:].upper().startswith("AUTH")]
        if options.pipelining:
            responses = [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        test_server = self.server
        options = test_server.options
        await test_server._maybe_hang("mail")
        if options.auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        reply = test_server._scripted("mail", address, options.mail_reply)
        if reply is not None and not reply.startswith("2"):
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return reply or "250 2.1.0 Ok"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        test_server = self.server
        options = test_server.options
        await test_server._maybe_hang("rcpt")
        scripted = options.rcpt_replies.get(address, options.rcpt_reply)
        reply = test_server._scripted("rcpt", address, scripted)
        if reply is not None and not reply.startswith("2"):
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return reply or "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        test_server = self.server
        options = test_server.options
        raw = envelope.original_content or b""
        protocol = server if isinstance(server, _ScriptedSMTP) else None
        record = protocol.record if protocol is not None else None
        message = test_server._store(envelope, raw, record)
        if options.delay:
            await asyncio.sleep(options.delay)
        await test_server._maybe_hang("data_end")
        if options.drop_after_data:
            # abort(), not close(): close() would still flush a reply written
            # after it, and the point is that no reply ever leaves.
            if isinstance(server.transport, asyncio.Transport):
                server.transport.abort()
            await _hang_forever()
        default = f"250 2.0.0 Ok: queued as {secrets.token_hex(5).upper()}"
        reply = test_server._scripted("data_end", message.message_id, options.data_reply) or default
        message.reply = reply
        return reply

    def handle_STARTTLS(self, server: SMTP, session: Session, envelope: Envelope) -> bool:
        protocol = server if isinstance(server, _ScriptedSMTP) else None
        if protocol is not None and protocol.record is not None:
            protocol.record.tls = True
        return True

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        credentials = self.server.options.auth or {}
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode("utf-8", "replace")
            password = auth_data.password.decode("utf-8", "replace")
            if user in credentials and credentials[user] == password:
                protocol = server if isinstance(server, _ScriptedSMTP) else None
                if protocol is not None and protocol.record is not None:
                    protocol.record.auth_user = user
                return AuthResult(success=True, auth_data=auth_data)
        # handled=False makes aiosmtpd answer "535 5.7.8 Authentication credentials invalid".
        return AuthResult(success=False, handled=False)


class _Controller(BackgroundController):
    def __init__(self, test_server: SmtpTestServer, **kwargs: Any) -> None:
        self._test_server = test_server
        self._warming_up = True
        super().__init__(test_server._handler, **kwargs)

    def factory(self) -> SMTP:
        # asyncio calls the factory once per accepted TCP connection, before
        # any TLS handshake; the first call is the start-up check, not a client.
        if self._warming_up:
            self._warming_up = False
        else:
            self._test_server._count_accept()
        return _ScriptedSMTP(self.handler, test_server=self._test_server, **self.SMTP_kwargs)


class SmtpTestServer:
    """A real SMTP server on 127.0.0.1 whose answers a test scripts.

    Keyword options other than the listed ones are ``ServerOptions`` fields.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TlsMode | None = None,
        tls_names: Sequence[str] = DEFAULT_TLS_NAMES,
        auth_require_tls: bool = False,
        auth_mechanisms: Sequence[str] = ("PLAIN", "LOGIN"),
        require_starttls: bool = False,
        smtputf8: bool = True,
        size_limit: int | None = 32 * 1024 * 1024,
        **options: Any,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.tls = tls
        self.tls_names = tuple(tls_names)
        self.options = ServerOptions(**options)
        self._lock = threading.Lock()
        self._messages: list[ReceivedMessage] = []
        self._sessions: list[SessionRecord] = []
        self._auth_attempts = 0
        self._accepts = 0
        self._live: set[_ScriptedSMTP] = set()
        self._handler = _Handler(self)
        self._controller: _Controller | None = None
        server_context = self.server_ssl_context() if tls is not None else None
        if tls == "implicit":
            # aiosmtpd only counts STARTTLS as encryption; from the first byte
            # the connection is encrypted anyway.
            auth_require_tls = False
        self._controller_kwargs: dict[str, Any] = {
            "hostname": host,
            "port": port,
            "server_hostname": "smtp.test.localhost",
            "ident": "Outbound test SMTP",
            "ssl_context": server_context if tls == "implicit" else None,
            "tls_context": server_context if tls == "starttls" else None,
            "require_starttls": require_starttls,
            "auth_require_tls": auth_require_tls,
            "auth_exclude_mechanism": sorted({"PLAIN", "LOGIN"} - set(auth_mechanisms)),
            "authenticator": self._handler.authenticate,
            "enable_SMTPUTF8": smtputf8,
            "decode_data": False,
            "data_size_limit": size_limit,
            "ready_timeout": 10.0,
        }

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> Self:
        if self._controller is None:
            controller = _Controller(self, **self._controller_kwargs)
            controller.start()
            self._controller = controller
        return self

    def stop(self) -> None:
        controller = self._controller
        self._controller = None
        if controller is None:
            return
        # From Python 3.12 the listener waits for open connections when it
        # closes, so hung sessions are cut first.
        future = asyncio.run_coroutine_threadsafe(self._abort_sessions(), controller.loop)
        future.result(timeout=5)
        controller.stop()

    def drop_connections(self) -> None:
        """Cut every open connection without a word, as an idle-timeout would."""
        controller = self._controller
        if controller is not None:
            future = asyncio.run_coroutine_threadsafe(self._abort_sessions(), controller.loop)
            future.result(timeout=5)

    async def _abort_sessions(self) -> None:
        with self._lock:
            live = list(self._live)
        for protocol in live:
            if isinstance(protocol.transport, asyncio.Transport):
                protocol.transport.abort()
        await asyncio.sleep(0)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._controller is None:
            return self._requested_port
        return int(self._controller.port)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    # -- scripting ----------------------------------------------------------

    def configure(self, **changes: Any) -> None:
        """Change ``ServerOptions`` fields while the server runs."""
        known = {f.name for f in fields(ServerOptions)}
        unknown = set(changes) - known
        if unknown:
            raise TypeError(f"unknown server options: {sorted(unknown)}")
        with self._lock:
            for name, value in changes.items():
                setattr(self.options, name, value)

    def server_ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        _server_cert(self.tls_names).configure_cert(context)
        return context

    @property
    def ca_file(self) -> str | None:
        """Path of a PEM file with the test CA, for code that takes a CA file; None without TLS."""
        return _ca_file() if self.tls is not None else None

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's CA (full verification)."""
        return trusting_client_context()

    # -- records ------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def sessions(self) -> list[SessionRecord]:
        with self._lock:
            return list(self._sessions)

    @property
    def open_connections(self) -> int:
        """SMTP sessions open at this moment."""
        with self._lock:
            return len(self._live)

    @property
    def connections(self) -> int:
        """TCP connections accepted, including ones whose TLS handshake failed."""
        with self._lock:
            return self._accepts

    @property
    def auth_attempts(self) -> int:
        with self._lock:
            return self._auth_attempts

    @property
    def commands(self) -> list[str]:
        """Every command verb received, all sessions together."""
        with self._lock:
            return [verb for session in self._sessions for verb in session.commands]

    @property
    def lines(self) -> list[str]:
        """Every command line received (AUTH masked), all sessions together."""
        with self._lock:
            return [line for session in self._sessions for line in session.lines]

    def clear(self) -> None:
        """Forget what was recorded; connections still open stay listed, emptied."""
        with self._lock:
            live = {protocol.record for protocol in self._live if protocol.record is not None}
            self._sessions = [record for record in self._sessions if record in live]
            for record in self._sessions:
                record.commands.clear()
                record.lines.clear()
            self._messages.clear()
            self._auth_attempts = 0
            self._accepts = len(self._sessions)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Poll ``predicate`` until true or ``timeout``; for records made after a reply."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    # -- used by the protocol, in the server thread -------------------------

    def _count_accept(self) -> None:
        with self._lock:
            self._accepts += 1

    def _open_session(self, protocol: _ScriptedSMTP, peer: str, *, tls: bool) -> SessionRecord:
        with self._lock:
            record = SessionRecord(number=len(self._sessions) + 1, peer=peer, tls=tls)
            self._sessions.append(record)
            self._live.add(protocol)
        return record

    def _forget(self, protocol: _ScriptedSMTP) -> None:
        with self._lock:
            self._live.discard(protocol)

    def _note_command(self, record: SessionRecord, verb: str, arg: str | None) -> None:
        with self._lock:
            record.commands.append(verb)
            if verb == "AUTH":
                self._auth_attempts += 1
                mechanism = (arg or "").split(" ")[0]
                record.lines.append(f"AUTH {mechanism} ***")
            else:
                record.lines.append(f"{verb} {arg}" if arg else verb)

    def _store(
        self, envelope: Envelope, raw: bytes, record: SessionRecord | None
    ) -> ReceivedMessage:
        message_id = str(BytesHeaderParser().parsebytes(raw).get("Message-ID", "")).strip()
        message = ReceivedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            raw=raw,
            message_id=message_id,
            session=record.number if record is not None else 0,
            mail_options=list(envelope.mail_options),
        )
        with self._lock:
            self._messages.append(message)
        return message

    def _scripted(self, stage: str, argument: str, default: str | None) -> str | None:
        hook = self.options.reply_hook
        if hook is not None:
            reply = hook(stage, argument)
            if reply is not None:
                return reply
        return default

    async def _maybe_hang(self, stage: Stage) -> None:
        if self.options.hang_at == stage:
            await _hang_forever()


# --- pytest fixtures -------------------------------------------------------


@pytest.fixture
def make_smtp_server() -> Iterator[Callable[..., SmtpTestServer]]:
    """A factory of started servers (``SmtpTestServer`` keyword options), stopped at teardown."""
    servers: list[SmtpTestServer] = []

    def make(**options: Any) -> SmtpTestServer:
        server = SmtpTestServer(**options).start()
        servers.append(server)
        return server

    yield make
    for server in reversed(servers):
        server.stop()


@pytest.fixture
def smtp_server(make_smtp_server: Callable[..., SmtpTestServer]) -> SmtpTestServer:
    """A running server with default answers (accepts everything)."""
    return make_smtp_server()
