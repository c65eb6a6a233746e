"""Development mail catcher: an SMTP server that keeps what it receives.

Contract: ``MailSink`` accepts every message on host:port (127.0.0.1:1025 by
default), never relays anything, and stores each message as a ``.eml`` file in
its directory (created if missing) with one JSON line per message in
``index.jsonl``: time, mail_from, rcpt_tos, subject, message_id, file, size.
``run_mailsink`` serves until SIGINT or SIGTERM; ``list_messages`` reads the
index back in the order the messages arrived. Development only: no
authentication, no TLS.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import signal
import threading
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1025
DEFAULT_DIRECTORY = "var/mailsink"
INDEX_NAME = "index.jsonl"


class BackgroundController(Controller):
    """aiosmtpd's threaded Controller that can listen on port 0.

    The stock controller checks that the server starts by connecting to it
    once: that connection cannot reach a port picked by the OS, and it would
    show up in any count of connections. Building one protocol instance in the
    loop thread proves the same thing (the factory works) without touching
    the network. ``port`` holds the real port once ``start()`` returns.
    """

    def _trigger_server(self) -> None:
        server = self.server
        if not isinstance(server, asyncio.Server):
            raise RuntimeError("the SMTP listener did not start")
        self.port = server.sockets[0].getsockname()[1]
        self.loop.call_soon_threadsafe(self._factory_invoker)


def _header(raw: bytes, name: str) -> str:
    # The sink must keep a message even when its headers are broken.
    try:
        parsed = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
        value = parsed.get(name)
        return "" if value is None else str(value).strip()
    except Exception:
        return ""


class _SinkHandler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        entry = self.store(envelope.mail_from or "", list(envelope.rcpt_tos), raw)
        return f"250 2.0.0 Ok: queued as {Path(entry['file']).stem}"

    def store(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> dict[str, Any]:
        received = datetime.now(UTC)
        name = f"{received:%Y%m%dT%H%M%S%f}-{secrets.token_hex(3)}.eml"
        entry: dict[str, Any] = {
            "time": received.isoformat(),
            "mail_from": mail_from,
            "rcpt_tos": rcpt_tos,
            "subject": _header(raw, "Subject"),
            "message_id": _header(raw, "Message-ID"),
            "file": name,
            "size": len(raw),
        }
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / name).write_bytes(raw)
            with (self.directory / INDEX_NAME).open("a", encoding="utf-8") as index:
                index.write(json.dumps(entry, ensure_ascii=False) + "\n")
        logger.info("Mail sink stored %s (%s)", name, entry["message_id"] or "no Message-ID")
        return entry


class MailSink:
    """An SMTP server in a background thread that stores every message."""

    def __init__(
        self,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        directory: str | Path = DEFAULT_DIRECTORY,
    ) -> None:
        self.host = host
        self.directory = Path(directory)
        self._requested_port = port
        self._controller: BackgroundController | None = None

    @property
    def port(self) -> int:
        """The port listened on; the real one when started with port 0."""
        if self._controller is not None:
            return int(self._controller.port)
        return self._requested_port

    def start(self) -> None:
        if self._controller is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        controller = BackgroundController(
            _SinkHandler(self.directory),
            hostname=self.host,
            port=self._requested_port,
            server_hostname="mailsink.localhost",
            ident="Outbound mail sink",
            enable_SMTPUTF8=True,
            decode_data=False,
        )
        controller.start()
        self._controller = controller
        logger.info(
            "Mail sink listening on %s:%s, storing in %s", self.host, self.port, self.directory
        )

    def stop(self) -> None:
        controller = self._controller
        self._controller = None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def messages(self) -> list[dict[str, Any]]:
        return list_messages(self.directory)


def run_mailsink(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    directory: str | Path = DEFAULT_DIRECTORY,
) -> None:
    """Serve until SIGINT or SIGTERM; must be called from the main thread."""
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    sink = MailSink(host=host, port=port, directory=directory)
    try:
        sink.start()
        # A timed wait keeps the main thread returning to the interpreter, where
        # signal handlers run.
        while not stopping.wait(0.5):
            pass
    finally:
        sink.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    logger.info("Mail sink stopped")


def list_messages(directory: str | Path) -> list[dict[str, Any]]:
    """The index entries in arrival order, each with ``path`` added.

    A line that cannot be read (a crash mid-write) is skipped rather than
    hiding every other message.
    """
    folder = Path(directory)
    index = folder / INDEX_NAME
    if not index.exists():
        return []
    entries: list[dict[str, Any]] = []
    for line in index.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entry["path"] = str(folder / str(entry.get("file", "")))
            entries.append(entry)
    return entries
