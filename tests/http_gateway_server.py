"""A real local HTTP server playing a generic JSON SMS gateway.

``with GatewayTestServer() as server:`` starts it on 127.0.0.1 and a free port;
``server.url("/v1/sms")`` is an address on it. Every request is recorded in
``server.requests`` (method, path, headers, raw body, parsed JSON). Answers:
``respond(status, answer, times=None)`` sets what the next requests get
(``answer`` a JSON-able value, or ``str``/``bytes`` sent as they are);
``route(path, status, answer)`` fixes the answer of one path (for probe
URLs). By default every request is answered 200 {"id": "gw-<n>"}. ``hang``
reads the request and never answers; ``drop`` closes the connection without an
answer; ``delay`` waits that many seconds before answering. ``peak`` is the
most requests it was answering at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from tests.local_http import LocalHttpServer


@dataclass
class GatewayRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


class GatewayTestServer(LocalHttpServer):
    thread_name = "gateway-test-server"

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[GatewayRequest] = []
        self.hang = False
        self.drop = False
        self.delay = 0.0
        self.peak = 0
        self._answering = 0
        self._queued: deque[tuple[int, Any]] = deque()
        self._default: tuple[int, Any] | None = None
        self._routes: dict[str, tuple[int, Any]] = {}
        self._lock = threading.Lock()

    def url(self, path: str = "/v1/messages") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def respond(self, status: int, answer: Any = None, *, times: int | None = None) -> None:
        """Answer the next ``times`` requests (every request when None) so."""
        with self._lock:
            if times is None:
                self._default = (status, answer)
            else:
                self._queued.extend([(status, answer)] * times)

    def route(self, path: str, status: int, answer: Any = None) -> None:
        with self._lock:
            self._routes[path] = (status, answer)

    def _answer_for(self, path: str, count: int) -> tuple[int, Any]:
        with self._lock:
            if path in self._routes:
                return self._routes[path]
            if self._queued:
                return self._queued.popleft()
            if self._default is not None:
                return self._default
        return 200, {"id": f"gw-{count}"}


class _Handler(BaseHTTPRequestHandler):
    server_state: GatewayTestServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def _handle(self) -> None:
        state = self.server_state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        with state._lock:
            state.requests.append(
                GatewayRequest(self.command, self.path, dict(self.headers.items()), body)
            )
            count = len(state.requests)
        if state.hang:
            state._release.wait()
            self.close_connection = True
            return
        if state.drop:
            self.close_connection = True
            return
        if state.delay:
            with state._lock:
                state._answering += 1
                state.peak = max(state.peak, state._answering)
            time.sleep(state.delay)
            with state._lock:
                state._answering -= 1
        status, answer = state._answer_for(path, count)
        if isinstance(answer, bytes):
            payload = answer
        elif isinstance(answer, str):
            payload = answer.encode()
        else:
            payload = json.dumps(answer).encode() if answer is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


GatewayTestServer.handler = _Handler


@pytest.fixture
def gateway_server() -> Iterator[GatewayTestServer]:
    with GatewayTestServer() as server:
        yield server
