"""Twilio SMS transport, through Twilio's official SDK.

Contract (see ``sms_base`` for what every SMS transport promises):

- ``send`` creates one Message resource (``POST /2010-04-01/Accounts/{sid}/
  Messages.json``) and returns the HTTP status, the message status ("queued")
  and its SID, or raises:
  - ``BackendConfigurationError``: "auth_failed" (401, error 20003),
    "host_not_found", "host_forbidden", "tls_failed", "unexpected_reply"
    (a redirect: the base URL is wrong);
  - ``PermanentTransportError``: "invalid_number" (21211 invalid, 21614 not a
    mobile) or "rejected" (any other 4xx, e.g. 21408, 21610, 21612);
  - ``TransientTransportError``: "rate_limited" (429), "server_error" (5xx),
    "connection_refused", "timeout", "connection_lost" (phase "connect"),
    "interrupted" (phase "data": the request went out and no answer came
    back, so the message may exist), "unexpected_reply" (an answer that is not
    JSON).
  ``enhanced_code`` is Twilio's error code as text, ``reply`` its message.
- Twilio's Messages API takes no idempotency key when creating a message, so
  a retry after "interrupted" can send the SMS twice; the caller's journal
  (``before_data``) is what makes that case visible, and ``find_created``
  looks the message up before that retry (its failures are those of
  ``send``, all in phase "connect": a lookup leaves nothing half done).
- ``probe`` fetches the account resource; nothing is sent.
- The auth token never appears in a repr, a log line, a transcript or an
  error text.
"""

from __future__ import annotations

import http
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.base.version import Version
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from outbound.errors import (
    BackendConfigurationError,
    PermanentTransportError,
    TransientTransportError,
    TransportError,
)
from outbound.transports.base import RecipientOutcome, SendResult
from outbound.transports.sms_base import (
    PROBE_REASONS,
    AddressForbidden,
    HookFailed,
    HttpGuard,
    ProbeResult,
    SmsEnvelope,
    check_host,
    classify_network_error,
    guarded_session,
    mask,
)

logger = logging.getLogger(__name__)
# Messages to one number looked at after an interrupted send.
LOOKUP_LIMIT = 20
# The SDK logs every request line and header at INFO; only its problems matter here.
logging.getLogger(f"{__name__}.sdk").setLevel(logging.WARNING)

DEFAULT_BASE_URL = "https://api.twilio.com"

# Twilio error codes that mean the recipient number itself is unusable.
INVALID_NUMBER_CODES = frozenset({21211, 21614})
AUTH_FAILED_CODES = frozenset({20003})

_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")

_TwilioError = (TwilioRestException, TwilioServiceException)
_NetworkError = (requests.RequestException, AddressForbidden, OSError)
# Everything the SDK raises for a request without a usable answer: a bare
# TwilioException is an error answer to a list (which the SDK's paging leaves
# unparsed) or a list it cannot read; the ValueError is a 2xx that is not JSON.
_SdkFailure = (TwilioException, *_NetworkError, ValueError)


class _IsolatedEnvironment(dict[str, str]):
    """An empty environment the SDK takes at its word.

    The SDK reads TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_EDGE and
    TWILIO_REGION from ``os.environ`` when given an empty (falsy) mapping; a
    backend's own settings must win, so this one is empty but truthy.
    """

    def __bool__(self) -> bool:
        return True


@dataclass(frozen=True)
class TwilioConfig:
    account_sid: str
    auth_token: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    # Applies to connecting and to waiting for the answer, each.
    timeout: float = 30.0
    # The deployment's host policy, asked with every address the base URL's
    # host resolves to and with the address actually connected to.
    address_allowed: Callable[[str], bool] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the Twilio base URL {self.base_url!r} is not an http(s) URL")
        if self.timeout <= 0:
            raise ValueError("the Twilio timeout must be positive")

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""


def _status_text(status: int) -> str:
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


class TwilioTransport:
    """Sends SMS through one Twilio account; safe to reuse for many messages."""

    def __init__(self, config: TwilioConfig) -> None:
        self.config = config
        self._guard = HttpGuard(config.address_allowed)
        self._client: Any = None
        self._last_transcript: list[str] = []

    def __repr__(self) -> str:
        return f"<TwilioTransport {self.config.account_sid} at {self.config.base_url}>"

    # -- connection ---------------------------------------------------------

    @property
    def is_open(self) -> bool:
        # HTTP: every send opens or reuses a connection as needed.
        return True

    def open(self) -> None:
        if self._client is None:
            self._client = self._make_client(self.config.timeout)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.http_client.session.close()

    def __enter__(self) -> TwilioTransport:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _make_client(self, timeout: float) -> Any:
        http_client = TwilioHttpClient(timeout=timeout, logger=logging.getLogger(f"{__name__}.sdk"))
        http_client.session.close()
        http_client.session = guarded_session(self._guard)
        client = Client(
            self.config.account_sid,
            self.config.auth_token,
            http_client=http_client,
            environment=_IsolatedEnvironment(),
        )
        client.api.base_url = self.config.base_url.rstrip("/")
        return client

    # -- sending ------------------------------------------------------------

    def send(
        self, envelope: SmsEnvelope, *, before_data: Callable[[], None] | None = None
    ) -> SendResult:
        """Create the message at Twilio; see the module docstring for outcomes."""
        check_host(self.config.base_url, self.config.address_allowed)
        self.open()
        client = self._client
        options: dict[str, Any] = {"to": envelope.to, "body": envelope.body}
        if _SERVICE_SID.match(envelope.sender):
            options["messaging_service_sid"] = envelope.sender
        else:
            options["from_"] = envelope.sender
        if envelope.status_callback:
            options["status_callback"] = envelope.status_callback
        self._guard.arm(before_data)
        try:
            response = client.messages.create_with_http_info(**options)
        except HookFailed as failed:
            raise failed.original from None
        except _SdkFailure as err:
            failure = self._translate(err, expected="a Twilio message")
            self._log_failure(envelope, failure)
            raise failure from err
        message = response.data
        status = str(message.status or "")
        sid = str(message.sid or "")
        code = int(response.status_code)
        reply = f"{_status_text(code)}: {status or 'accepted'} ({sid or 'no id'})"
        logger.info(
            "Message %s accepted by Twilio %s: %s %s sid=%s",
            envelope.message_id or "-",
            self.config.host,
            code,
            status,
            sid or "-",
        )
        return SendResult(
            code=code,
            enhanced_code=status,
            reply=reply,
            queue_id=sid,
            recipients=[
                RecipientOutcome(address=envelope.to, accepted=True, code=code, reply=reply)
            ],
        )

    def find_created(self, envelope: SmsEnvelope, *, since: datetime) -> SendResult | None:
        """After an interrupted send: the message Twilio created for this
        envelope since ``since``, or None.

        Twilio's Messages API takes no idempotency key, so a send whose answer
        was lost is looked up before it is tried again: the newest messages to
        the same number, matched on sender and text. Raises the transport
        errors of ``send``, all in phase "connect", when the lookup itself
        fails (the caller then sends nothing this round).
        """
        check_host(self.config.base_url, self.config.address_allowed)
        self.open()
        self._guard.arm(None)
        try:
            found = self._client.messages.list(to=envelope.to, limit=LOOKUP_LIMIT)
        except _SdkFailure as err:
            raise self._translate(err, expected="a Twilio message list", lookup=True) from err
        by_service = bool(_SERVICE_SID.match(envelope.sender))
        for message in found:
            created = message.date_created
            if created is not None and created < since:
                continue
            sender = message.messaging_service_sid if by_service else message.from_
            if str(message.body or "") != envelope.body or str(sender or "") != envelope.sender:
                continue
            sid = str(message.sid or "")
            status = str(message.status or "")
            reply = f"found at Twilio after the interrupted send: {status} ({sid})"
            logger.info(
                "Message %s was created at Twilio before the interruption: sid=%s",
                envelope.message_id or "-",
                sid,
            )
            return SendResult(
                code=200,
                enhanced_code=status,
                reply=reply,
                queue_id=sid,
                recipients=[
                    RecipientOutcome(address=envelope.to, accepted=True, code=200, reply=reply)
                ],
            )
        return None

    def _log_failure(self, envelope: SmsEnvelope, failure: TransportError) -> None:
        logger.info(
            "Message %s not accepted by Twilio %s: %s %s (%s, phase %s)",
            envelope.message_id or "-",
            self.config.host,
            failure.code,
            failure.enhanced_code,
            failure.reason,
            failure.phase,
        )

    def _where(self) -> str:
        return f"Twilio ({self.config.host})"

    def _translate(
        self,
        err: Exception,
        *,
        expected: str,
        lookup: bool = False,
        timeout: float | None = None,
    ) -> TransportError:
        """Our error for what the SDK raised on a request that wanted ``expected``.

        An error answer is classified by its status and Twilio code, a network
        failure by ``classify_network_error`` (with ``timeout``, the config's
        by default), and a 2xx that is not JSON, or a list the SDK cannot
        read, is "unexpected_reply": something other than Twilio answers at
        the base URL. The phase is "data" once the request was written
        (Twilio may have acted on it), "connect" before. A ``lookup`` is
        read-only and never leaves anything half done, so each of its failures
        is phase "connect".
        """
        phase = "connect" if lookup else "data"
        if type(err) is TwilioException and len(err.args) > 1 and isinstance(err.args[1], Response):
            # A list page's error answer: parsed as the SDK parses any other.
            err = Version.exception("GET", "", err.args[1], str(err.args[0]))
        if isinstance(err, _TwilioError):
            return self._rest_error(err, phase=phase)
        if isinstance(err, _NetworkError):
            failure = classify_network_error(
                err,
                where=self._where(),
                sent=self._guard.sent and not lookup,
                timeout=self.config.timeout if timeout is None else timeout,
            )
            if lookup:
                failure.phase = "connect"
            return failure
        return TransientTransportError(
            f"{self._where()} answered with something that is not {expected}",
            phase=phase,
            reason="unexpected_reply",
        )

    def _rest_error(self, err: Exception, *, phase: str) -> TransportError:
        """Classify an error answer of the API."""
        status = int(getattr(err, "status", 0) or 0)
        raw_code = getattr(err, "code", None)
        code = raw_code if isinstance(raw_code, int) else None
        message = self._error_message(err)
        text = f"{self._where()} answered {status} (error {code}): {message}"
        details: dict[str, Any] = {
            "phase": phase,
            "code": status or None,
            "enhanced_code": str(code) if code is not None else "",
            "reply": message,
        }
        if status == 401 or code in AUTH_FAILED_CODES:
            return BackendConfigurationError(text, reason="auth_failed", **details)
        if status == 429:
            return TransientTransportError(text, reason="rate_limited", **details)
        if status >= 500:
            return TransientTransportError(text, reason="server_error", **details)
        if 400 <= status < 500:
            reason = "invalid_number" if code in INVALID_NUMBER_CODES else "rejected"
            return PermanentTransportError(text, reason=reason, **details)
        # A redirect or another answer no API call should get.
        return BackendConfigurationError(text, reason="unexpected_reply", **details)

    def _error_message(self, err: Exception) -> str:
        if isinstance(err, TwilioServiceException):
            raw = str(getattr(err, "detail", None) or getattr(err, "title", "") or "")
        else:
            raw = str(getattr(err, "msg", "") or "")
            # The SDK prefixes the API's message with what it was doing.
            for prefix in (
                "Unable to create record: ",
                "Unable to fetch record: ",
                "Unable to fetch page: ",
            ):
                if raw.startswith(prefix):
                    raw = raw[len(prefix) :]
        return mask(raw, self.config.auth_token)

    # -- backend test -------------------------------------------------------

    def probe(self, *, deadline: float = 15.0) -> ProbeResult:
        """Fetch the account: the credentials work and the account is active."""
        started = time.monotonic()
        sid = self.config.account_sid
        line = f"GET /2010-04-01/Accounts/{sid}.json"
        transcript: list[str] = []
        # Connecting and waiting for the answer share the deadline.
        timeout = max(min(self.config.timeout, deadline / 2), 0.05)
        client: Any = None
        try:
            check_host(self.config.base_url, self.config.address_allowed)
            client = self._make_client(timeout)
            self._guard.arm(None)
            response = client.api.v2010.accounts(sid).fetch_with_http_info()
            code = int(response.status_code)
            transcript.append(f"{line} → {code}")
            status = str(response.data.status or "")
            if status and status != "active":
                result = self._probe_result(
                    False,
                    "unexpected_reply",
                    "data",
                    code,
                    f"the account {sid} is {status}",
                    transcript,
                )
            else:
                result = self._probe_result(
                    True,
                    "ok",
                    "done",
                    code,
                    f"{_status_text(code)}: account {sid} active",
                    transcript,
                )
        except TransportError as err:
            result = self._probe_failure(err, transcript, line)
        except _SdkFailure as err:
            failure = self._translate(err, expected="a Twilio account", timeout=timeout)
            if failure.reason == "interrupted":
                # "interrupted" is no test outcome (nothing is created): say
                # how the connection ended instead.
                lost = not isinstance(err, requests.Timeout)
                failure.reason = "connection_lost" if lost else "timeout"
            result = self._probe_failure(failure, transcript, line)
        finally:
            if client is not None:
                client.http_client.session.close()
        result.elapsed = time.monotonic() - started
        self._last_transcript = transcript
        logger.info(
            "Backend test of Twilio %s (%s): %s (code %s, %.2fs)",
            self.config.host,
            sid,
            result.reason,
            result.code,
            result.elapsed,
        )
        return result

    def _probe_result(
        self, ok: bool, reason: str, phase: str, code: int | None, reply: str, transcript: list[str]
    ) -> ProbeResult:
        return ProbeResult(
            ok=ok,
            reason=reason,
            phase=phase,
            code=code,
            reply=mask(reply, self.config.auth_token),
            transcript=transcript,
            elapsed=0.0,
        )

    def _probe_failure(self, err: TransportError, transcript: list[str], line: str) -> ProbeResult:
        if err.code is not None:
            transcript.append(f"{line} → {err.code} ({err.enhanced_code or 'no code'})")
        elif err.phase == "data":
            transcript.append(f"{line} → no answer ({err.reason})")
        else:
            transcript.append(f"{line} → not sent ({err.reason})")
        reason = err.reason
        if reason not in PROBE_REASONS:
            reason = "unexpected_reply"
        return self._probe_result(
            False, reason, err.phase, err.code, err.reply or err.message, transcript
        )

    def transcript(self) -> list[str]:
        """The requests of the last probe, without credentials."""
        return list(self._last_transcript)
