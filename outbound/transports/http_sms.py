"""Generic HTTP gateway transport: one JSON request per SMS to any provider.

Contract (see ``sms_base`` for what every SMS transport promises):

- The request body is ``body_template`` (a JSON object) with the placeholders
  {to} {from} {body} {message_id} {status_callback} {secret} replaced inside
  its string values, after parsing: the result is always valid JSON and no
  value can add structure to it. Substitution is one pass, so a message body
  that contains "{secret}" stays literal text. Header values may use {secret}.
- The message id goes in the ``idempotency_header`` (default
  "Idempotency-Key") so a gateway that honours it creates one message even
  when a retry follows an interrupted try.
- Outcome by answer: 2xx sent (the provider id from ``id_path``; a non-empty
  value at ``error_path`` makes it a refusal); 401/403 ``BackendConfiguration
  Error`` "auth_failed"; 408/429 transient "rate_limited"; 5xx transient
  "server_error"; a redirect ``BackendConfigurationError`` "unexpected_reply";
  any other 4xx permanent, "invalid_number" when the error code at
  ``error_code_path`` is one of ``invalid_number_codes``, else "rejected".
  Network failures as for every HTTP transport (``sms_base``).
- ``probe`` requests ``probe_url``; it never sends a message.
- The secret never appears in a repr, a log line, a transcript or an error
  text (an answer that echoes it is masked).
- ``validate_http_config`` checks settings without building anything, for the
  settings service and for ``HttpSmsConfig`` itself.
"""

from __future__ import annotations

import http
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

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

PLACEHOLDERS = ("to", "from", "body", "message_id", "status_callback", "secret")
METHODS = ("POST", "PUT")
PROBE_METHODS = ("GET", "HEAD", "POST")
DEFAULT_BODY_TEMPLATE = '{"to": "{to}", "from": "{from}", "text": "{body}"}'
MAX_TIMEOUT = 300.0

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# RFC 9110 token characters: what a header name may be made of.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_PATH_SEGMENT = re.compile(r"^[^.\s]+$")
# How much of an answer that is not understood goes into a reply.
_REPLY_LIMIT = 300

_NetworkError = (requests.RequestException, AddressForbidden, OSError)


class HttpSmsConfigError(ValueError):
    """The gateway settings are not usable; ``errors`` maps a field to its problems."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))


# --- settings ----------------------------------------------------------------


def url_problem(value: object, *, required: bool) -> str:
    """Why ``value`` cannot be a provider URL, or ""."""
    if not isinstance(value, str):
        return "Must be text."
    if not value:
        return "This field is required." if required else ""
    if any(char.isspace() or ord(char) < 32 for char in value):
        return "Spaces and control characters are not allowed in a URL."
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return "Enter an http:// or https:// URL with a host name."
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "Enter an http:// or https:// URL with a host name."
    if parts.username or parts.password:
        return "Put credentials in the secret, not in the URL."
    return ""


def _path_problem(value: object) -> str:
    if not isinstance(value, str):
        return "Must be text."
    if value and not all(_PATH_SEGMENT.match(part) for part in value.split(".")):
        return "Write a dotted path such as data.id or messages.0.id."
    return ""


def _string_values(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [text for value in node.values() for text in _string_values(value)]
    if isinstance(node, list):
        return [text for value in node for text in _string_values(value)]
    return []


_CREDENTIAL_HEADER = re.compile(r"(?i)authorization|api[-_]?key|token|secret|password")


def validate_http_config(options: Mapping[str, Any]) -> dict[str, list[str]]:
    """Field errors of HTTP gateway settings; an empty dict when they are usable.

    ``options`` holds the option keys (url, method, headers, body_template,
    id_path, error_path, error_code_path, idempotency_header,
    invalid_number_codes, probe_url, probe_method, and optionally timeout);
    missing keys take their defaults. Pure: builds and sends nothing.
    """
    errors: dict[str, list[str]] = {}

    def add(key: str, problem: str) -> None:
        if problem:
            errors.setdefault(key, []).append(problem)

    add("url", url_problem(options.get("url", ""), required=True))
    add("probe_url", url_problem(options.get("probe_url", ""), required=False))

    method = options.get("method", "POST")
    if method not in METHODS:
        add("method", f"Use one of {', '.join(METHODS)}.")
    probe_method = options.get("probe_method", "GET")
    if probe_method not in PROBE_METHODS:
        add("probe_method", f"Use one of {', '.join(PROBE_METHODS)}.")

    headers = options.get("headers", {})
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        add("headers", 'Enter a JSON object of text values, such as {"X-Api-Key": "{secret}"}.')
    else:
        for name, value in headers.items():
            if not _TOKEN.match(name):
                add("headers", f"“{name}” is not a valid header name.")
            elif any(ord(char) < 32 and char != "\t" for char in value):
                add("headers", f"The value of {name} contains a line break or control character.")
            elif name.lower() in ("host", "content-length", "transfer-encoding"):
                add("headers", f"{name} is set by the transport.")
            elif _CREDENTIAL_HEADER.search(name) and "{secret}" not in value:
                # Header values are shown on the settings page and in the API:
                # a credential typed here would be stored and shown in clear.
                add(
                    "headers",
                    f"Put the credential of {name} in the secret field and write {{secret}} "
                    "here, e.g. “Bearer {secret}”.",
                )
            unknown = {m for m in _PLACEHOLDER.findall(value) if m != "secret"}
            if unknown:
                add("headers", f"Header values may only use {{secret}}, not {{{min(unknown)}}}.")

    template = options.get("body_template", DEFAULT_BODY_TEMPLATE)
    if not isinstance(template, str):
        add("body_template", "Must be text.")
    else:
        try:
            parsed = json.loads(template)
        except RecursionError:
            add("body_template", "The template nests too deeply.")
        except ValueError as err:
            add("body_template", f"Not valid JSON: {err}.")
        else:
            if not isinstance(parsed, dict):
                add("body_template", "The body template must be a JSON object ({ … }).")
            else:
                used = {m for text in _string_values(parsed) for m in _PLACEHOLDER.findall(text)}
                strange = sorted(used - set(PLACEHOLDERS))
                if strange:
                    known = " ".join(f"{{{p}}}" for p in PLACEHOLDERS)
                    add("body_template", f"Unknown placeholder {{{strange[0]}}}; use {known}.")
                for needed in ("to", "body"):
                    if needed not in used:
                        add("body_template", f"The template never uses {{{needed}}}.")

    for key in ("id_path", "error_path", "error_code_path"):
        add(key, _path_problem(options.get(key, "")))

    idempotency_header = options.get("idempotency_header", "Idempotency-Key")
    if not isinstance(idempotency_header, str):
        add("idempotency_header", "Must be text.")
    elif idempotency_header and not _TOKEN.match(idempotency_header):
        add("idempotency_header", "Not a valid header name; leave it empty to send none.")

    codes = options.get("invalid_number_codes", [])
    if not isinstance(codes, list | tuple) or not all(isinstance(c, str) for c in codes):
        add("invalid_number_codes", "Enter a list of error codes as text.")

    timeout = options.get("timeout", 30.0)
    if (
        not isinstance(timeout, int | float)
        or isinstance(timeout, bool)
        or not 0 < timeout <= MAX_TIMEOUT
    ):
        add("timeout", f"Enter a number of seconds above 0 and at most {MAX_TIMEOUT:g}.")
    return errors


@dataclass(frozen=True)
class HttpSmsConfig:
    url: str
    method: str = "POST"
    # Values may use {secret}. Not shown in repr: an operator may have put a
    # token in clear here.
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    secret: str = field(default="", repr=False)
    body_template: str = DEFAULT_BODY_TEMPLATE
    id_path: str = "id"
    error_path: str = ""
    error_code_path: str = ""
    idempotency_header: str = "Idempotency-Key"
    invalid_number_codes: list[str] = field(default_factory=list)
    probe_url: str = ""
    probe_method: str = "GET"
    timeout: float = 30.0
    address_allowed: Callable[[str], bool] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        errors = validate_http_config(self.options())
        if errors:
            raise HttpSmsConfigError(errors)

    def options(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "method": self.method,
            "headers": self.headers,
            "body_template": self.body_template,
            "id_path": self.id_path,
            "error_path": self.error_path,
            "error_code_path": self.error_code_path,
            "idempotency_header": self.idempotency_header,
            "invalid_number_codes": self.invalid_number_codes,
            "probe_url": self.probe_url,
            "probe_method": self.probe_method,
            "timeout": self.timeout,
        }

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""


# --- templates and answers -----------------------------------------------------


def substitute(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each known {placeholder} replaced, in one pass."""

    def replace(match: re.Match[str]) -> str:
        return values.get(match.group(1), match.group(0))

    return _PLACEHOLDER.sub(replace, text)


def _render(node: Any, values: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return substitute(node, values)
    if isinstance(node, dict):
        return {key: _render(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_render(value, values) for value in node]
    return node


def render_body(template: str, values: Mapping[str, str]) -> bytes:
    """The JSON request body: ``template`` parsed, filled, serialised as UTF-8."""
    filled = _render(json.loads(template), values)
    return json.dumps(filled, ensure_ascii=False).encode("utf-8")


def lookup(document: Any, path: str) -> Any:
    """The value at dotted ``path`` ("data.id", "messages.0.id"), or None."""
    if not path:
        return None
    node = document
    for part in path.split("."):
        if isinstance(node, dict):
            if part not in node:
                return None
            node = node[part]
        elif isinstance(node, list):
            try:
                node = node[int(part)]
            except (ValueError, IndexError):
                return None
        else:
            return None
    return node


def _as_text(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _status_text(status: int) -> str:
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


# --- the transport -------------------------------------------------------------


class HttpSmsTransport:
    """Sends SMS through one HTTP gateway; safe to reuse for many messages."""

    def __init__(self, config: HttpSmsConfig) -> None:
        self.config = config
        self._guard = HttpGuard(config.address_allowed)
        self._session: requests.Session | None = None
        self._last_transcript: list[str] = []

    def __repr__(self) -> str:
        return f"<HttpSmsTransport {self.config.method} {self.config.url}>"

    @property
    def is_open(self) -> bool:
        return True

    def open(self) -> None:
        if self._session is None:
            self._session = guarded_session(self._guard)

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def __enter__(self) -> HttpSmsTransport:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _where(self) -> str:
        return f"the gateway {self.config.host}"

    def _mask(self, text: str) -> str:
        return mask(text, self.config.secret)

    def _headers(self) -> dict[str, str]:
        secret = self.config.secret
        if any(ord(char) < 32 for char in secret):
            raise BackendConfigurationError(
                f"the secret of {self._where()} contains a line break or control character",
                phase="connect",
                reason="auth_failed",
            )
        headers = {"Accept": "application/json"}
        for name, value in self.config.headers.items():
            headers[name] = substitute(value, {"secret": secret})
        return headers

    # -- sending --------------------------------------------------------------

    def send(
        self, envelope: SmsEnvelope, *, before_data: Callable[[], None] | None = None
    ) -> SendResult:
        """Hand the message to the gateway; see the module docstring for outcomes."""
        config = self.config
        values = {
            "to": envelope.to,
            "from": envelope.sender,
            "body": envelope.body,
            "message_id": envelope.message_id,
            "status_callback": envelope.status_callback,
            "secret": config.secret,
        }
        payload = render_body(config.body_template, values)
        headers = {"Content-Type": "application/json; charset=utf-8", **self._headers()}
        if config.idempotency_header and envelope.message_id:
            headers[config.idempotency_header] = envelope.message_id
        check_host(config.url, config.address_allowed)
        self.open()
        session = self._session
        if session is None:  # open() always sets it
            raise TransientTransportError("not connected", reason="connection_lost")
        self._guard.arm(before_data)
        try:
            response = session.request(
                config.method,
                config.url,
                data=payload,
                headers=headers,
                timeout=config.timeout,
                allow_redirects=False,
            )
        except HookFailed as failed:
            raise failed.original from None
        except _NetworkError as err:
            failure = classify_network_error(
                err, where=self._where(), sent=self._guard.sent, timeout=config.timeout
            )
            self._log_failure(envelope, failure)
            raise failure from err
        try:
            result = self._classify(response, envelope)
        except TransportError as failure:
            self._log_failure(envelope, failure)
            raise
        logger.info(
            "Message %s accepted by %s: %s id=%s",
            envelope.message_id or "-",
            self._where(),
            result.code,
            result.queue_id or "-",
        )
        return result

    def _log_failure(self, envelope: SmsEnvelope, failure: TransportError) -> None:
        logger.info(
            "Message %s not accepted by %s: %s %s (%s, phase %s)",
            envelope.message_id or "-",
            self._where(),
            failure.code,
            failure.enhanced_code,
            failure.reason,
            failure.phase,
        )

    def _answer(self, response: requests.Response) -> tuple[Any, str, str]:
        """The parsed answer (None when not JSON), its error text and error code."""
        try:
            document = response.json()
        except ValueError:
            document = None
        error = _as_text(lookup(document, self.config.error_path))
        error_code = _as_text(lookup(document, self.config.error_code_path))
        return document, self._mask(error), self._mask(error_code)

    def _body_excerpt(self, response: requests.Response) -> str:
        text = " ".join(response.text.split())
        if len(text) > _REPLY_LIMIT:
            text = text[:_REPLY_LIMIT] + "…"
        return self._mask(text)

    def _classify(self, response: requests.Response, envelope: SmsEnvelope) -> SendResult:
        status = response.status_code
        document, error, error_code = self._answer(response)
        reply = error or self._body_excerpt(response)
        details: dict[str, Any] = {
            "phase": "data",
            "code": status,
            "enhanced_code": error_code,
            "reply": reply,
        }
        text = f"{self._where()} answered {_status_text(status)}"
        if error_code:
            text += f" (error {error_code})"
        if reply:
            text += f": {reply}"
        invalid = bool(error_code) and error_code in self.config.invalid_number_codes
        if 200 <= status < 300:
            if error:
                reason = "invalid_number" if invalid else "rejected"
                raise PermanentTransportError(text, reason=reason, **details)
            queue_id = self._mask(_as_text(lookup(document, self.config.id_path)))
            summary = f"{_status_text(status)}: {queue_id or 'no id in the answer'}"
            return SendResult(
                code=status,
                enhanced_code=error_code,
                reply=summary,
                queue_id=queue_id,
                recipients=[
                    RecipientOutcome(address=envelope.to, accepted=True, code=status, reply=summary)
                ],
            )
        if status in (401, 403):
            raise BackendConfigurationError(text, reason="auth_failed", **details)
        if status in (408, 429):
            raise TransientTransportError(text, reason="rate_limited", **details)
        if status >= 500:
            raise TransientTransportError(text, reason="server_error", **details)
        if 400 <= status < 500:
            reason = "invalid_number" if invalid else "rejected"
            raise PermanentTransportError(text, reason=reason, **details)
        # A redirect: the URL is not the gateway's API.
        raise BackendConfigurationError(text, reason="unexpected_reply", **details)

    # -- backend test ---------------------------------------------------------

    def probe(self, *, deadline: float = 15.0) -> ProbeResult:
        """Request the probe URL with the configured headers; nothing is sent."""
        started = time.monotonic()
        config = self.config
        transcript: list[str] = []
        line = self._mask(f"{config.probe_method} {config.probe_url}")
        if not config.probe_url:
            result = ProbeResult(
                ok=False,
                reason="not_configured",
                phase="connect",
                code=None,
                reply="No probe URL is configured: the gateway cannot be tested without "
                "sending a message. Enter a URL that answers 2xx with valid credentials.",
                transcript=transcript,
                elapsed=0.0,
            )
            self._last_transcript = transcript
            return result
        # Connecting and waiting for the answer share the deadline.
        timeout = max(min(config.timeout, deadline / 2), 0.05)
        session: requests.Session | None = None
        try:
            headers = self._headers()
            check_host(config.probe_url, config.address_allowed)
            session = guarded_session(self._guard)
            self._guard.arm(None)
            response = session.request(
                config.probe_method,
                config.probe_url,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            )
            status = response.status_code
            transcript.append(f"{line} → {status}")
            excerpt = "" if config.probe_method == "HEAD" else self._body_excerpt(response)
            reply = f"{_status_text(status)}{': ' + excerpt if excerpt else ''}"
            if 200 <= status < 300:
                result = self._probe_result(True, "ok", "done", status, reply, transcript)
            elif status in (401, 403):
                result = self._probe_result(False, "auth_failed", "data", status, reply, transcript)
            else:
                result = self._probe_result(
                    False, "unexpected_reply", "data", status, reply, transcript
                )
        except TransportError as err:
            transcript.append(f"{line} → not sent ({err.reason})")
            result = self._probe_failure(err, err.reason, transcript)
        except _NetworkError as err:
            failure = classify_network_error(
                err, where=self._where(), sent=self._guard.sent, timeout=timeout
            )
            reason = failure.reason
            if reason == "interrupted":
                reason = "timeout" if isinstance(err, requests.Timeout) else "connection_lost"
                transcript.append(f"{line} → no answer ({reason})")
            else:
                transcript.append(f"{line} → not sent ({reason})")
            result = self._probe_failure(failure, reason, transcript)
        finally:
            if session is not None:
                session.close()
        result.elapsed = time.monotonic() - started
        self._last_transcript = transcript
        logger.info(
            "Backend test of %s: %s (code %s, %.2fs)",
            self._where(),
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
            reply=self._mask(reply),
            transcript=transcript,
            elapsed=0.0,
        )

    def _probe_failure(
        self, err: TransportError, reason: str, transcript: list[str]
    ) -> ProbeResult:
        if reason not in PROBE_REASONS:
            reason = "unexpected_reply"
        return self._probe_result(
            False, reason, err.phase, err.code, err.reply or err.message, transcript
        )

    def transcript(self) -> list[str]:
        """The request of the last probe, without headers or secrets."""
        return list(self._last_transcript)
