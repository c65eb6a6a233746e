"""A real local HTTP server that speaks enough of Twilio's REST API for the SDK.

Start it as a context manager (``with TwilioTestServer() as server:``), with
``start()``/``stop()``, or through the ``twilio_server`` fixture (import it into
a test module or list this module in ``pytest_plugins``). Point the transport's
``base_url`` at ``server.base_url`` and use ``server.account_sid`` and
``server.auth_token`` as credentials.

Endpoints:

- ``POST /2010-04-01/Accounts/{sid}/Messages.json`` (form: To, From or
  MessagingServiceSid, Body, StatusCallback) → 201 and a message resource;
- ``GET /2010-04-01/Accounts/{sid}/Messages/{SM…}.json`` → the message;
- ``GET /2010-04-01/Accounts/{sid}/Messages.json?To=…`` → the messages, newest first;
- ``GET /2010-04-01/Accounts/{sid}.json`` → the account (the backend test).

Knobs: ``invalid_numbers`` (→ 400, 21211), ``not_mobile_numbers`` (→ 400,
21614), ``queue_failure(status, code, message, times=1)`` (the next requests
fail), ``hang`` (read the request, never answer), ``drop`` (read the request,
close the connection without an answer), ``drop_after_create`` (create the
message, then close without an answer), ``not_json`` (answer every request
with a 200 HTML page, as a web server in Twilio's place would),
``account_status``, ``message_status``. Observed: ``received`` (form fields of every created
message), ``requests`` (requests that arrived), ``log`` (every request).

``twilio_signature`` and ``TwilioTestServer.receipt`` build the signed status
callbacks Twilio would post, for the receipt tests.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

import pytest
from twilio.request_validator import RequestValidator

from outbound.sms import analyse
from tests.local_http import LocalHttpServer

DEFAULT_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
DEFAULT_AUTH_TOKEN = "test-auth-token-" + "5f" * 8

API = "/2010-04-01"
_MESSAGES = re.compile(rf"^{API}/Accounts/(AC[0-9a-fA-F]{{32}})/Messages\.json$")
_MESSAGE = re.compile(rf"^{API}/Accounts/(AC[0-9a-fA-F]{{32}})/Messages/(SM[0-9a-f]{{32}})\.json$")
_ACCOUNT = re.compile(rf"^{API}/Accounts/(AC[0-9a-fA-F]{{32}})\.json$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def twilio_signature(url: str, params: dict[str, str], auth_token: str) -> str:
    """The X-Twilio-Signature Twilio sends with a POST of ``params`` to ``url``."""
    signature: str = RequestValidator(auth_token).compute_signature(url, params)
    return signature


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class _Failure:
    status: int
    code: int | None
    message: str


@dataclass
class Receipt:
    """A status callback as Twilio would post it."""

    url: str
    params: dict[str, str]
    signature: str
    headers: dict[str, str] = field(default_factory=dict)


class TwilioTestServer(LocalHttpServer):
    thread_name = "twilio-test-server"

    def __init__(
        self,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
    ) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.invalid_numbers: set[str] = set()
        self.not_mobile_numbers: set[str] = set()
        self.account_status = "active"
        self.message_status = "queued"
        # Read the request, then never answer (until stop()).
        self.hang = False
        # Read the request, then close the connection without an answer.
        self.drop = False
        # Create the message, then close the connection without an answer:
        # Twilio has it, the client never hears so.
        self.drop_after_create = False
        # Answer 200 with an HTML page instead of the API's JSON.
        self.not_json = False
        self.received: list[dict[str, str]] = []
        self.messages: dict[str, dict[str, Any]] = {}
        self.log: list[RecordedRequest] = []
        self.requests = 0
        self._failures: deque[_Failure] = deque()
        self._lock = threading.Lock()

    def backend_settings(self, **extra: Any) -> dict[str, Any]:
        """The settings of a Twilio backend pointing at this server."""
        return {
            "channel": "sms",
            "kind": "twilio",
            "name": "Twilio",
            "username": self.account_sid,
            "password": self.auth_token,
            "from_address": "+14155550100",
            "base_url": self.base_url,
            "timeout": 5,
            **extra,
        }

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- knobs ----------------------------------------------------------------

    def queue_failure(
        self, status: int, code: int | None = None, message: str = "", *, times: int = 1
    ) -> None:
        """Make the next ``times`` requests answer ``status`` with this error."""
        with self._lock:
            for _ in range(times):
                self._failures.append(_Failure(status, code, message or f"Error {status}"))

    def receipt(
        self,
        sid: str,
        status: str = "delivered",
        *,
        error_code: int | None = None,
        url: str | None = None,
        done_date: str | None = None,
    ) -> Receipt:
        """The signed status callback Twilio would post for message ``sid``."""
        message = self.messages[sid]
        target = url or message["status_callback"]
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "From": message["from"] or "",
            "MessageSid": sid,
            "MessageStatus": status,
            "SmsSid": sid,
            "SmsStatus": status,
            "To": message["to"],
        }
        if message["messaging_service_sid"]:
            params["MessagingServiceSid"] = message["messaging_service_sid"]
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        if done_date is not None:
            # The carrier's YYMMDDhhmm, which Twilio passes on with a final status.
            params["RawDlrDoneDate"] = done_date
        signature = twilio_signature(target, params, self.auth_token)
        return Receipt(target, params, signature, {"X-Twilio-Signature": signature})

    # -- request handling (called from the handler threads) --------------------

    def _next_failure(self) -> _Failure | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def _authorised(self, header: str, sid: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return (
            secrets.compare_digest(user, self.account_sid)
            and secrets.compare_digest(password, self.auth_token)
            and sid == self.account_sid
        )

    def _create_message(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        to = form.get("To", "")
        sender = form.get("From", "")
        service = form.get("MessagingServiceSid", "")
        body = form.get("Body", "")
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not sender and not service:
            return _error(400, 21603, "A 'From' phone number is required.")
        if not body:
            return _error(400, 21602, "Message body is required.")
        if to in self.invalid_numbers or not _E164.match(to):
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if to in self.not_mobile_numbers:
            return _error(400, 21614, f"'To' number {to} is not a valid mobile number")
        sid = "SM" + secrets.token_hex(16)
        now = formatdate(usegmt=True)
        resource: dict[str, Any] = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender or None,
            "messaging_service_sid": service or None,
            "num_media": "0",
            "num_segments": str(analyse(body).segments),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": self.message_status,
            "status_callback": form.get("StatusCallback") or None,
            "subresource_uris": {
                "media": f"{API}/Accounts/{self.account_sid}/Messages/{sid}/Media.json"
            },
            "to": to,
            "uri": f"{API}/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        with self._lock:
            self.received.append(dict(form))
            self.messages[sid] = resource
        # The status callback URL is ours to keep, not part of Twilio's answer.
        answer = {k: v for k, v in resource.items() if k != "status_callback"}
        return 201, answer

    def _account(self) -> dict[str, Any]:
        now = formatdate(usegmt=True)
        return {
            "sid": self.account_sid,
            "owner_account_sid": self.account_sid,
            "friendly_name": "Test account",
            "status": self.account_status,
            "type": "Full",
            # The real API returns the token too; a probe must never show it.
            "auth_token": self.auth_token,
            "date_created": now,
            "date_updated": now,
            "uri": f"{API}/Accounts/{self.account_sid}.json",
            "subresource_uris": {},
        }


def _error(status: int, code: int, message: str) -> tuple[int, dict[str, Any]]:
    return status, {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class _Handler(BaseHTTPRequestHandler):
    server_state: TwilioTestServer
    protocol_version = "HTTP/1.1"
    _query: dict[str, str]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        state = self.server_state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8"), keep_blank_values=True).items()}
        path, _, query = self.path.partition("?")
        self._query = {k: v[-1] for k, v in parse_qs(query).items()}
        with state._lock:
            state.requests += 1
            state.log.append(RecordedRequest(self.command, path, dict(self.headers.items()), form))
        if state.hang:
            state._release.wait()
            self.close_connection = True
            return
        if state.drop:
            self.close_connection = True
            return
        if state.not_json:
            self._answer_html()
            return
        status, answer = self._route(path, form)
        if state.drop_after_create and self.command == "POST" and status == 201:
            self.close_connection = True
            return
        self._answer(status, answer)

    def _route(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        state = self.server_state
        match = _MESSAGES.match(path) or _MESSAGE.match(path) or _ACCOUNT.match(path)
        if match is None:
            return _error(404, 20404, f"The requested resource {path} was not found")
        if not state._authorised(self.headers.get("Authorization", ""), match.group(1)):
            return _error(401, 20003, "Authenticate")
        failure = state._next_failure()
        if failure is not None:
            return _error(failure.status, failure.code or failure.status, failure.message)
        if self.command == "POST" and _MESSAGES.match(path):
            return state._create_message(form)
        if self.command == "GET" and _MESSAGES.match(path):
            # The list, newest first, filtered by To as Twilio does.
            to = self._query.get("To")
            with state._lock:
                found = [m for m in state.messages.values() if to is None or m["to"] == to]
            size = int(self._query.get("PageSize", "50"))
            items = [
                {k: v for k, v in m.items() if k != "status_callback"} for m in reversed(found)
            ][:size]
            return 200, {
                "messages": items,
                "page": 0,
                "page_size": size,
                "start": 0,
                "end": max(len(items) - 1, 0),
                "uri": path,
                "first_page_uri": path,
                "next_page_uri": None,
                "previous_page_uri": None,
            }
        if self.command == "GET" and (found := _MESSAGE.match(path)):
            message = state.messages.get(found.group(2))
            if message is None:
                return _error(404, 20404, f"The requested resource {path} was not found")
            return 200, {k: v for k, v in message.items() if k != "status_callback"}
        if self.command == "GET" and _ACCOUNT.match(path):
            return 200, state._account()
        return _error(405, 20004, "Method not allowed")

    def _answer_html(self) -> None:
        payload = b"<html><body>It works!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _answer(self, status: int, answer: dict[str, Any]) -> None:
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


TwilioTestServer.handler = _Handler


@pytest.fixture
def twilio_server() -> Iterator[TwilioTestServer]:
    """A started fake Twilio API; stopped after the test."""
    with TwilioTestServer() as server:
        yield server
