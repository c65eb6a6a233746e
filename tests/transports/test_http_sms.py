"""The generic HTTP gateway transport against a real local JSON server."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outbound.errors import (
    BackendConfigurationError,
    PermanentTransportError,
    TransientTransportError,
    TransportError,
)
from outbound.transports.http_sms import (
    HttpSmsConfig,
    HttpSmsConfigError,
    HttpSmsTransport,
    lookup,
    render_body,
    validate_http_config,
)
from outbound.transports.sms_base import SmsEnvelope, SmsTransport
from tests.http_gateway_server import GatewayTestServer

SECRET = "gw-secret-" + "7a" * 10
TEMPLATE = json.dumps(
    {
        "recipient": "{to}",
        "originator": "{from}",
        "content": {"text": "{body}", "ref": "{message_id}"},
        "callback": "{status_callback}",
        "tags": ["outbound", "{message_id}"],
        "priority": 1,
    }
)


@pytest.fixture
def gateway() -> Iterator[GatewayTestServer]:
    with GatewayTestServer() as started:
        yield started


def config_for(gateway: GatewayTestServer, **fields: Any) -> HttpSmsConfig:
    fields.setdefault("url", gateway.url("/v1/messages"))
    fields.setdefault("headers", {"Authorization": "Bearer {secret}"})
    fields.setdefault("secret", SECRET)
    fields.setdefault("body_template", TEMPLATE)
    fields.setdefault("timeout", 5.0)
    return HttpSmsConfig(**fields)


def transport_for(gateway: GatewayTestServer, **fields: Any) -> HttpSmsTransport:
    return HttpSmsTransport(config_for(gateway, **fields))


def envelope(**fields: Any) -> SmsEnvelope:
    fields.setdefault("to", "+4915112345678")
    fields.setdefault("sender", "Outbound")
    fields.setdefault("body", "Hello")
    fields.setdefault("message_id", "<m1@outbound.test>")
    return SmsEnvelope(**fields)


def failure_of(transport: HttpSmsTransport, **kwargs: Any) -> TransportError:
    with pytest.raises(TransportError) as caught:
        transport.send(envelope(), **kwargs)
    return caught.value


# --- the request -----------------------------------------------------------------


def test_request_carries_filled_template_headers_and_idempotency_key(
    gateway: GatewayTestServer,
) -> None:
    transport = transport_for(gateway)
    result = transport.send(envelope(status_callback="https://o.example/hooks/sms/1/http"))

    [request] = gateway.requests
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.json == {
        "recipient": "+4915112345678",
        "originator": "Outbound",
        "content": {"text": "Hello", "ref": "<m1@outbound.test>"},
        "callback": "https://o.example/hooks/sms/1/http",
        "tags": ["outbound", "<m1@outbound.test>"],
        "priority": 1,
    }
    assert request.header("Authorization") == f"Bearer {SECRET}"
    assert request.header("Idempotency-Key") == "<m1@outbound.test>"
    assert request.header("Content-Type") == "application/json; charset=utf-8"
    assert (result.code, result.queue_id) == (200, "gw-1")
    assert result.recipients[0].accepted
    assert isinstance(transport, SmsTransport)


@pytest.mark.parametrize(
    "body",
    [
        'She said "hi"\nand left.\r\nBye\\',
        'x", "admin": true, "y": "',
        "Emoji 😀 and € and Ωmega",
        "{secret} {to} {unknown}",
        "\u2028\u0000\t",
    ],
)
def test_any_body_stays_one_json_string(gateway: GatewayTestServer, body: str) -> None:
    transport_for(gateway).send(envelope(body=body))
    sent = gateway.requests[0].json
    assert sent["content"]["text"] == body
    assert set(sent) == {"recipient", "originator", "content", "callback", "tags", "priority"}
    # A placeholder typed in a message is text, never the secret.
    assert SECRET not in gateway.requests[0].body.decode()


@given(body=st.text(max_size=300))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_rendered_body_is_always_valid_json(body: str) -> None:
    raw = render_body(TEMPLATE, {"to": "+1", "from": "x", "body": body, "message_id": "m"})
    assert json.loads(raw)["content"]["text"] == body


def test_put_method_and_no_idempotency_header(gateway: GatewayTestServer) -> None:
    transport_for(gateway, method="PUT", idempotency_header="").send(envelope())
    [request] = gateway.requests
    assert request.method == "PUT"
    assert request.header("Idempotency-Key") is None


def test_custom_idempotency_header(gateway: GatewayTestServer) -> None:
    transport_for(gateway, idempotency_header="X-Request-Id").send(envelope())
    assert gateway.requests[0].header("X-Request-Id") == "<m1@outbound.test>"


# --- the answer ------------------------------------------------------------------


def test_id_from_a_nested_path(gateway: GatewayTestServer) -> None:
    gateway.respond(201, {"messages": [{"id": 4711, "status": "0"}]})
    result = transport_for(gateway, id_path="messages.0.id").send(envelope())
    assert (result.code, result.queue_id) == (201, "4711")
    assert result.reply == "201 Created: 4711"


def test_id_from_data_dot_id(gateway: GatewayTestServer) -> None:
    gateway.respond(202, {"data": {"id": "abc-1"}})
    assert transport_for(gateway, id_path="data.id").send(envelope()).queue_id == "abc-1"


def test_answer_without_id_is_still_sent(gateway: GatewayTestServer) -> None:
    gateway.respond(200, "OK")
    result = transport_for(gateway, id_path="data.id").send(envelope())
    assert (result.code, result.queue_id) == (200, "")


def test_success_status_with_an_error_field_is_a_refusal(gateway: GatewayTestServer) -> None:
    gateway.respond(200, {"error": {"message": "Insufficient credit", "code": "E7"}})
    err = failure_of(
        transport_for(gateway, error_path="error.message", error_code_path="error.code")
    )
    assert isinstance(err, PermanentTransportError)
    assert (err.reason, err.code, err.enhanced_code) == ("rejected", 200, "E7")
    assert err.reply == "Insufficient credit"


def test_empty_error_field_means_success(gateway: GatewayTestServer) -> None:
    gateway.respond(200, {"id": "ok-1", "error": ""})
    result = transport_for(gateway, error_path="error").send(envelope())
    assert result.queue_id == "ok-1"


@pytest.mark.parametrize("status", [401, 403])
def test_auth_refusal_is_a_configuration_error(gateway: GatewayTestServer, status: int) -> None:
    gateway.respond(status, {"error": "bad key"})
    err = failure_of(transport_for(gateway, error_path="error"))
    assert isinstance(err, BackendConfigurationError)
    assert (err.reason, err.code, err.reply) == ("auth_failed", status, "bad key")


@pytest.mark.parametrize("status", [408, 429])
def test_throttling_is_transient(gateway: GatewayTestServer, status: int) -> None:
    gateway.respond(status, {})
    err = failure_of(transport_for(gateway))
    assert isinstance(err, TransientTransportError)
    assert (err.reason, err.code) == ("rate_limited", status)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(gateway: GatewayTestServer, status: int) -> None:
    gateway.respond(status, "<html>down</html>")
    err = failure_of(transport_for(gateway))
    assert isinstance(err, TransientTransportError)
    assert (err.reason, err.reply) == ("server_error", "<html>down</html>")


def test_bad_number_code_is_invalid_number(gateway: GatewayTestServer) -> None:
    gateway.respond(400, {"errors": [{"code": 1021, "title": "Invalid destination"}]})
    err = failure_of(
        transport_for(
            gateway,
            error_path="errors.0.title",
            error_code_path="errors.0.code",
            invalid_number_codes=["1021"],
        )
    )
    assert isinstance(err, PermanentTransportError)
    assert (err.reason, err.enhanced_code, err.reply) == (
        "invalid_number",
        "1021",
        "Invalid destination",
    )


def test_other_client_error_is_rejected(gateway: GatewayTestServer) -> None:
    gateway.respond(422, {"code": "2001", "message": "Sender not allowed"})
    err = failure_of(
        transport_for(
            gateway,
            error_path="message",
            error_code_path="code",
            invalid_number_codes=["1021"],
        )
    )
    assert isinstance(err, PermanentTransportError)
    assert (err.reason, err.enhanced_code) == ("rejected", "2001")


def test_redirect_is_not_followed(gateway: GatewayTestServer) -> None:
    gateway.respond(302, "")
    err = failure_of(transport_for(gateway))
    assert isinstance(err, BackendConfigurationError)
    assert err.reason == "unexpected_reply"
    assert len(gateway.requests) == 1


def test_answer_echoing_the_secret_is_masked(gateway: GatewayTestServer) -> None:
    gateway.respond(400, {"message": f"key {SECRET} unknown"})
    err = failure_of(transport_for(gateway, error_path="message"))
    assert SECRET not in str(err)
    assert SECRET not in err.reply
    assert "***" in err.reply


# --- the network -----------------------------------------------------------------


def test_no_answer_is_interrupted_after_before_data(gateway: GatewayTestServer) -> None:
    gateway.hang = True
    seen: list[int] = []
    err = failure_of(
        transport_for(gateway, timeout=0.5), before_data=lambda: seen.append(len(gateway.requests))
    )
    assert isinstance(err, TransientTransportError)
    assert (err.phase, err.reason) == ("data", "interrupted")
    assert seen == [0]


def test_dropped_connection_is_interrupted(gateway: GatewayTestServer) -> None:
    gateway.drop = True
    err = failure_of(transport_for(gateway))
    assert isinstance(err, TransientTransportError)
    assert (err.phase, err.reason) == ("data", "interrupted")


def test_refused_connection_never_calls_before_data() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    transport = HttpSmsTransport(
        HttpSmsConfig(url=f"http://127.0.0.1:{port}/sms", secret=SECRET, timeout=2)
    )
    calls: list[int] = []
    err = failure_of(transport, before_data=lambda: calls.append(1))
    assert isinstance(err, TransientTransportError)
    assert (err.phase, err.reason) == ("connect", "connection_refused")
    assert calls == []


def test_failing_before_data_sends_nothing(gateway: GatewayTestServer) -> None:
    def journal() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        transport_for(gateway).send(envelope(), before_data=journal)
    assert gateway.requests == []


def test_host_policy_refusal(gateway: GatewayTestServer) -> None:
    err = failure_of(transport_for(gateway, address_allowed=lambda _address: False))
    assert isinstance(err, BackendConfigurationError)
    assert err.reason == "host_forbidden"
    assert gateway.requests == []


def test_host_policy_allowing_loopback_sends(gateway: GatewayTestServer) -> None:
    asked: list[str] = []

    def policy(address: str) -> bool:
        asked.append(address)
        return True

    transport_for(gateway, address_allowed=policy).send(envelope())
    # Once at resolution, once for the connection actually made.
    assert asked == ["127.0.0.1", "127.0.0.1"]


# --- backend test ----------------------------------------------------------------


def test_probe_ok(gateway: GatewayTestServer) -> None:
    gateway.route("/v1/balance", 200, {"balance": 12})
    transport = transport_for(gateway, probe_url=gateway.url("/v1/balance"))
    result = transport.probe()
    assert (result.ok, result.reason, result.code) == (True, "ok", 200)
    assert result.transcript == [f"GET {gateway.url('/v1/balance')} → 200"]
    [request] = gateway.requests
    assert request.header("Authorization") == f"Bearer {SECRET}"
    assert SECRET not in repr(result)


def test_probe_with_head(gateway: GatewayTestServer) -> None:
    transport = transport_for(gateway, probe_url=gateway.url("/health"), probe_method="HEAD")
    assert transport.probe().ok
    assert gateway.requests[0].method == "HEAD"


@pytest.mark.parametrize("status", [401, 403])
def test_probe_auth_failed(gateway: GatewayTestServer, status: int) -> None:
    gateway.route("/v1/balance", status, {"error": f"bad key {SECRET}"})
    result = transport_for(gateway, probe_url=gateway.url("/v1/balance")).probe()
    assert (result.ok, result.reason, result.code) == (False, "auth_failed", status)
    assert SECRET not in repr(result)


def test_probe_other_status_is_unexpected(gateway: GatewayTestServer) -> None:
    gateway.route("/v1/balance", 404, "")
    result = transport_for(gateway, probe_url=gateway.url("/v1/balance")).probe()
    assert (result.ok, result.reason) == (False, "unexpected_reply")


def test_probe_without_url_says_so(gateway: GatewayTestServer) -> None:
    result = transport_for(gateway).probe()
    assert not result.ok
    assert result.reason == "not_configured"
    assert result.reply.startswith("No probe URL is configured")
    assert gateway.requests == []


def test_probe_of_silent_gateway_times_out(gateway: GatewayTestServer) -> None:
    gateway.hang = True
    started = time.monotonic()
    result = transport_for(gateway, probe_url=gateway.url("/h"), timeout=30).probe(deadline=1)
    # The 1 s deadline ended it, not the 30 s timeout.
    assert time.monotonic() - started < 3
    assert result.elapsed < 3
    assert (result.ok, result.reason) == (False, "timeout")


def test_probe_host_forbidden(gateway: GatewayTestServer) -> None:
    result = transport_for(
        gateway, probe_url=gateway.url("/h"), address_allowed=lambda _address: False
    ).probe()
    assert (result.ok, result.reason) == (False, "host_forbidden")


# --- settings --------------------------------------------------------------------


def test_secret_not_in_repr(gateway: GatewayTestServer) -> None:
    config = config_for(gateway)
    assert SECRET not in repr(config)
    assert SECRET not in repr(HttpSmsTransport(config))


def test_default_settings_are_valid() -> None:
    assert validate_http_config({"url": "https://gw.example.com/sms"}) == {}


@pytest.mark.parametrize(
    ("options", "field", "fragment"),
    [
        ({"url": "ftp://gw.example.com/"}, "url", "http:// or https://"),
        ({"url": ""}, "url", "required"),
        ({"url": "https://user:pw@gw.example.com/"}, "url", "credentials"),
        ({"method": "GET"}, "method", "POST, PUT"),
        ({"probe_method": "DELETE"}, "probe_method", "GET, HEAD, POST"),
        ({"probe_url": "javascript:alert(1)"}, "probe_url", "http:// or https://"),
        ({"body_template": "{not json"}, "body_template", "Not valid JSON"),
        ({"body_template": '["{to}", "{body}"]'}, "body_template", "JSON object"),
        ({"body_template": '{"to": "{to}", "text": "{bdy}"}'}, "body_template", "{bdy}"),
        ({"body_template": '{"text": "{body}"}'}, "body_template", "never uses {to}"),
        ({"headers": ["X-Key"]}, "headers", "JSON object"),
        ({"headers": {"X-Key": 5}}, "headers", "JSON object"),
        ({"headers": {"Bad Name": "x"}}, "headers", "not a valid header name"),
        ({"headers": {"X-Key": "a\r\nX-Evil: 1"}}, "headers", "line break"),
        ({"headers": {"X-To": "{to}"}}, "headers", "only use {secret}"),
        ({"id_path": "data..id"}, "id_path", "dotted path"),
        ({"error_code_path": 3}, "error_code_path", "Must be text"),
        ({"idempotency_header": "Idem Key"}, "idempotency_header", "header name"),
        ({"invalid_number_codes": "21211"}, "invalid_number_codes", "list"),
        ({"timeout": 0}, "timeout", "above 0"),
    ],
)
def test_validation_names_the_field(options: dict[str, Any], field: str, fragment: str) -> None:
    errors = validate_http_config({"url": "https://gw.example.com/sms", **options})
    assert field in errors, errors
    assert any(fragment in problem for problem in errors[field]), errors
    assert set(errors) == {field}


def test_config_refuses_bad_settings() -> None:
    with pytest.raises(HttpSmsConfigError) as caught:
        HttpSmsConfig(url="https://gw.example.com/sms", method="PATCH", body_template="[]")
    assert set(caught.value.errors) == {"method", "body_template"}


def test_lookup_paths() -> None:
    document = {"data": {"id": 7}, "messages": [{"id": "a"}, {"id": "b"}]}
    assert lookup(document, "data.id") == 7
    assert lookup(document, "messages.1.id") == "b"
    assert lookup(document, "messages.5.id") is None
    assert lookup(document, "messages.x") is None
    assert lookup(document, "data.id.more") is None
    assert lookup(None, "data") is None
    assert lookup(document, "") is None
