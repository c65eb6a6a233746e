"""The Twilio transport, with the real SDK, against a real local fake of the API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from outbound.errors import (
    BackendConfigurationError,
    PermanentTransportError,
    TransientTransportError,
    TransportError,
)
from outbound.transports.sms_base import SmsEnvelope, SmsTransport
from outbound.transports.twilio import TwilioConfig, TwilioTransport
from tests.twilio_server import TwilioTestServer, twilio_signature

SERVICE_SID = "MG" + "ab" * 16
CALLBACK = "https://outbound.example.com/hooks/sms/1/twilio"


@pytest.fixture
def server() -> Iterator[TwilioTestServer]:
    with TwilioTestServer() as started:
        yield started


def transport_for(server: TwilioTestServer, **config: Any) -> TwilioTransport:
    config.setdefault("timeout", 5.0)
    config.setdefault("auth_token", server.auth_token)
    return TwilioTransport(
        TwilioConfig(account_sid=server.account_sid, base_url=server.base_url, **config)
    )


def envelope(to: str = "+14155550100", **fields: Any) -> SmsEnvelope:
    fields.setdefault("sender", "+14155550199")
    fields.setdefault("body", "Your appointment is tomorrow at 10:00.")
    fields.setdefault("message_id", "<m1@outbound.test>")
    return SmsEnvelope(to=to, **fields)


def failure_of(transport: TwilioTransport, sms: SmsEnvelope, **kwargs: Any) -> TransportError:
    with pytest.raises(TransportError) as caught:
        transport.send(sms, **kwargs)
    return caught.value


# --- delivery ----------------------------------------------------------------


def test_send_returns_message_sid_and_status(server: TwilioTestServer) -> None:
    with transport_for(server) as transport:
        result = transport.send(envelope(status_callback=CALLBACK))

    assert result.code == 201
    assert result.enhanced_code == "queued"
    assert result.queue_id.startswith("SM") and len(result.queue_id) == 34
    assert result.reply == f"201 Created: queued ({result.queue_id})"
    assert [(r.address, r.accepted, r.code) for r in result.recipients] == [
        ("+14155550100", True, 201)
    ]
    assert server.received == [
        {
            "To": "+14155550100",
            "From": "+14155550199",
            "Body": "Your appointment is tomorrow at 10:00.",
            "StatusCallback": CALLBACK,
        }
    ]
    assert server.messages[result.queue_id]["status_callback"] == CALLBACK


def test_no_status_callback_is_sent_when_none_is_given(server: TwilioTestServer) -> None:
    transport_for(server).send(envelope())
    assert "StatusCallback" not in server.received[0]


def test_messaging_service_sid_goes_as_messaging_service(server: TwilioTestServer) -> None:
    transport_for(server).send(envelope(sender=SERVICE_SID))
    assert server.received[0]["MessagingServiceSid"] == SERVICE_SID
    assert "From" not in server.received[0]


def test_alphanumeric_sender_starting_with_mg_stays_a_sender(server: TwilioTestServer) -> None:
    transport_for(server).send(envelope(sender="MGShop"))
    assert server.received[0]["From"] == "MGShop"


def test_unicode_body_arrives_intact(server: TwilioTestServer) -> None:
    body = 'Grüße 😀 "quoted" & a\nnew line €'
    transport_for(server).send(envelope(body=body))
    assert server.received[0]["Body"] == body


def test_connection_is_reused_for_several_messages(server: TwilioTestServer) -> None:
    with transport_for(server) as transport:
        ids = {transport.send(envelope()).queue_id for _ in range(3)}
    assert len(ids) == 3
    assert len(server.received) == 3


def test_transport_satisfies_the_protocol(server: TwilioTestServer) -> None:
    transport = transport_for(server)
    assert isinstance(transport, SmsTransport)
    assert transport.is_open


# --- refusals ------------------------------------------------------------------


def test_invalid_number_is_permanent_invalid_number(server: TwilioTestServer) -> None:
    server.invalid_numbers.add("+14155550101")
    err = failure_of(transport_for(server), envelope("+14155550101"))

    assert isinstance(err, PermanentTransportError)
    assert err.reason == "invalid_number"
    assert (err.code, err.enhanced_code, err.phase) == (400, "21211", "data")
    assert err.reply == "The 'To' number +14155550101 is not a valid phone number."
    assert server.received == []


def test_landline_is_invalid_number(server: TwilioTestServer) -> None:
    server.not_mobile_numbers.add("+14155550102")
    err = failure_of(transport_for(server), envelope("+14155550102"))
    assert isinstance(err, PermanentTransportError)
    assert (err.reason, err.enhanced_code) == ("invalid_number", "21614")


@pytest.mark.parametrize("code", [21610, 21612, 21408])
def test_other_client_errors_are_rejected(server: TwilioTestServer, code: int) -> None:
    server.queue_failure(400, code, "Not allowed")
    err = failure_of(transport_for(server), envelope())
    assert isinstance(err, PermanentTransportError)
    assert (err.reason, err.enhanced_code, err.reply) == ("rejected", str(code), "Not allowed")


def test_wrong_auth_token_is_a_configuration_error(server: TwilioTestServer) -> None:
    err = failure_of(transport_for(server, auth_token="not-the-token"), envelope())
    assert isinstance(err, BackendConfigurationError)
    assert (err.reason, err.code, err.enhanced_code) == ("auth_failed", 401, "20003")
    assert err.reply == "Authenticate"


def test_error_20003_is_auth_failed_whatever_the_status(server: TwilioTestServer) -> None:
    server.queue_failure(403, 20003, "Authenticate")
    err = failure_of(transport_for(server), envelope())
    assert isinstance(err, BackendConfigurationError)
    assert err.reason == "auth_failed"


def test_rate_limit_is_transient(server: TwilioTestServer) -> None:
    server.queue_failure(429, 20429, "Too Many Requests")
    err = failure_of(transport_for(server), envelope())
    assert isinstance(err, TransientTransportError)
    assert (err.reason, err.code, err.enhanced_code) == ("rate_limited", 429, "20429")


def test_server_error_is_transient_and_next_try_succeeds(server: TwilioTestServer) -> None:
    server.queue_failure(500, 20500, "Internal Server Error")
    transport = transport_for(server)
    err = failure_of(transport, envelope())
    assert isinstance(err, TransientTransportError)
    assert (err.reason, err.code) == ("server_error", 500)
    assert transport.send(envelope()).code == 201


# --- the network ---------------------------------------------------------------


def test_no_answer_after_the_post_is_interrupted_in_data_phase(server: TwilioTestServer) -> None:
    server.hang = True
    calls: list[int] = []
    started = time.monotonic()
    err = failure_of(
        transport_for(server, timeout=0.5), envelope(), before_data=lambda: calls.append(1)
    )

    assert time.monotonic() - started < 4
    assert isinstance(err, TransientTransportError)
    assert (err.phase, err.reason) == ("data", "interrupted")
    assert calls == [1]
    assert server.requests == 1


def test_connection_dropped_after_the_post_is_interrupted(server: TwilioTestServer) -> None:
    server.drop = True
    err = failure_of(transport_for(server), envelope())
    assert isinstance(err, TransientTransportError)
    assert (err.phase, err.reason) == ("data", "interrupted")


def test_refused_connection_is_transient_in_connect_phase(closed_port: int) -> None:
    transport = TwilioTransport(
        TwilioConfig("AC" + "0" * 32, "token", base_url=f"http://127.0.0.1:{closed_port}")
    )
    calls: list[int] = []
    err = failure_of(transport, envelope(), before_data=lambda: calls.append(1))
    assert isinstance(err, TransientTransportError)
    assert (err.phase, err.reason) == ("connect", "connection_refused")
    # Nothing left: the journal must not say "possibly delivered".
    assert calls == []


def test_before_data_runs_once_before_the_request_arrives(server: TwilioTestServer) -> None:
    seen: list[int] = []
    transport = transport_for(server)
    transport.send(envelope(), before_data=lambda: seen.append(server.requests))
    transport.send(envelope(), before_data=lambda: seen.append(server.requests))
    assert seen == [0, 1]


def test_failing_before_data_sends_nothing(server: TwilioTestServer) -> None:
    class JournalDown(Exception):
        pass

    def journal() -> None:
        raise JournalDown

    transport = transport_for(server)
    with pytest.raises(JournalDown):
        transport.send(envelope(), before_data=journal)
    assert server.requests == 0
    # The transport is still usable.
    assert transport.send(envelope()).code == 201


def test_host_policy_refusal_sends_nothing(server: TwilioTestServer) -> None:
    asked: list[str] = []

    def policy(address: str) -> bool:
        asked.append(address)
        return False

    err = failure_of(transport_for(server, address_allowed=policy), envelope())
    assert isinstance(err, BackendConfigurationError)
    assert (err.reason, err.phase) == ("host_forbidden", "connect")
    assert asked == ["127.0.0.1"]
    assert server.requests == 0


def test_host_policy_is_asked_again_for_the_connected_address(server: TwilioTestServer) -> None:
    # Allows the address at resolution, forbids it at connection time, as a
    # DNS answer that changes between the two would.
    answers = iter([True, False])
    err = failure_of(
        transport_for(server, address_allowed=lambda _address: next(answers)), envelope()
    )
    assert isinstance(err, BackendConfigurationError)
    assert err.reason == "host_forbidden"
    assert server.requests == 0


def test_unknown_host_is_a_configuration_error() -> None:
    transport = TwilioTransport(
        TwilioConfig(
            "AC" + "0" * 32,
            "token",
            base_url="http://no-such-host.invalid",
            address_allowed=lambda _address: True,
        )
    )
    err = failure_of(transport, envelope())
    assert isinstance(err, BackendConfigurationError)
    assert (err.reason, err.phase) == ("host_not_found", "connect")


def test_twilio_environment_variables_do_not_override_the_backend(
    server: TwilioTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "9" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "from-the-environment")
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    monkeypatch.setenv("TWILIO_REGION", "au1")
    assert transport_for(server).send(envelope()).code == 201


# --- backend test --------------------------------------------------------------


def test_probe_ok_fetches_the_account(server: TwilioTestServer) -> None:
    transport = transport_for(server)
    result = transport.probe()
    assert result.ok, result
    assert (result.reason, result.code) == ("ok", 200)
    assert result.transcript == [f"GET /2010-04-01/Accounts/{server.account_sid}.json → 200"]
    assert transport.transcript() == result.transcript
    assert server.received == []


def test_probe_with_wrong_token_is_auth_failed(server: TwilioTestServer) -> None:
    result = transport_for(server, auth_token="not-the-token").probe()
    assert not result.ok
    assert (result.reason, result.code) == ("auth_failed", 401)
    assert result.transcript == [
        f"GET /2010-04-01/Accounts/{server.account_sid}.json → 401 (20003)"
    ]


def test_probe_of_a_suspended_account_is_not_ok(server: TwilioTestServer) -> None:
    server.account_status = "suspended"
    result = transport_for(server).probe()
    assert not result.ok
    assert "suspended" in result.reply


def test_probe_of_a_closed_port_is_connection_refused(closed_port: int) -> None:
    transport = TwilioTransport(
        TwilioConfig("AC" + "0" * 32, "token", base_url=f"http://127.0.0.1:{closed_port}")
    )
    result = transport.probe()
    assert (result.ok, result.reason, result.phase) == (False, "connection_refused", "connect")


def test_probe_of_a_silent_server_ends_within_the_deadline(server: TwilioTestServer) -> None:
    server.hang = True
    started = time.monotonic()
    result = transport_for(server, timeout=30).probe(deadline=1.0)
    assert time.monotonic() - started < 3
    assert (result.ok, result.reason) == (False, "timeout")


def test_probe_host_forbidden(server: TwilioTestServer) -> None:
    result = transport_for(server, address_allowed=lambda _address: False).probe()
    assert (result.ok, result.reason) == (False, "host_forbidden")
    assert server.requests == 0


# --- secrets -------------------------------------------------------------------


def test_auth_token_never_shown(server: TwilioTestServer) -> None:
    token = server.auth_token
    transport = transport_for(server)
    assert token not in repr(transport.config)
    assert token not in repr(transport)

    # The account resource carries the token; the probe must not repeat it.
    result = transport.probe()
    assert token not in repr(result)

    server.queue_failure(400, 21610, f"echo {token}")
    err = failure_of(transport, envelope())
    assert token not in str(err)
    assert token not in err.reply

    wrong = transport_for(server, auth_token="wrong-token-value")
    err = failure_of(wrong, envelope())
    assert "wrong-token-value" not in str(err)
    failed = wrong.probe()
    assert "wrong-token-value" not in repr(failed)


def test_receipt_helper_signs_like_twilio(server: TwilioTestServer) -> None:
    result = transport_for(server).send(envelope(status_callback=CALLBACK))
    receipt = server.receipt(result.queue_id, "delivered")
    assert receipt.url == CALLBACK
    assert receipt.params["MessageSid"] == result.queue_id
    assert receipt.params["MessageStatus"] == "delivered"
    assert receipt.signature == twilio_signature(CALLBACK, receipt.params, server.auth_token)
    assert receipt.signature != twilio_signature(CALLBACK, receipt.params, "another-token")


def test_find_created_finds_the_message_a_lost_answer_created(
    twilio_server: TwilioTestServer,
) -> None:
    from datetime import UTC, datetime, timedelta

    transport = TwilioTransport(
        TwilioConfig(
            twilio_server.account_sid,
            twilio_server.auth_token,
            base_url=twilio_server.base_url,
            timeout=2,
        )
    )
    envelope = SmsEnvelope(
        to="+14155550123", sender="+14155550100", body="Code 42", message_id="<m1@x>"
    )
    since = datetime.now(UTC) - timedelta(minutes=1)
    assert transport.find_created(envelope, since=since) is None
    twilio_server.drop_after_create = True
    try:
        transport.send(envelope)
    except TransientTransportError as err:
        assert err.phase == "data"
    else:
        raise AssertionError("the dropped answer was not reported")
    twilio_server.drop_after_create = False
    [sid] = list(twilio_server.messages)
    found = transport.find_created(envelope, since=since)
    assert found is not None and found.queue_id == sid
    other = SmsEnvelope(
        to="+14155550123", sender="+14155550100", body="Code 43", message_id="<m2@x>"
    )
    assert transport.find_created(other, since=since) is None
    assert len(twilio_server.received) == 1


# --- one translation of the SDK's errors -----------------------------------------


def lookup_failure(transport: TwilioTransport) -> TransportError:
    from datetime import UTC, datetime, timedelta

    with pytest.raises(TransportError) as caught:
        transport.find_created(envelope(), since=datetime.now(UTC) - timedelta(minutes=1))
    return caught.value


def test_an_answer_that_is_not_json_is_an_unexpected_reply(server: TwilioTestServer) -> None:
    server.not_json = True
    transport = transport_for(server)
    err = failure_of(transport, envelope())
    assert isinstance(err, TransientTransportError)
    assert (err.reason, err.phase) == ("unexpected_reply", "data")
    assert "is not a Twilio message" in str(err)
    result = transport.probe()
    assert (result.ok, result.reason, result.phase) == (False, "unexpected_reply", "data")


@pytest.mark.parametrize(
    ("status", "code", "kind", "reason"),
    [
        (401, 20003, BackendConfigurationError, "auth_failed"),
        (429, 20429, TransientTransportError, "rate_limited"),
        (500, 20500, TransientTransportError, "server_error"),
        (400, 21610, PermanentTransportError, "rejected"),
    ],
)
def test_an_error_answer_to_the_lookup_is_classified_like_one_to_a_send(
    server: TwilioTestServer, status: int, code: int, kind: type, reason: str
) -> None:
    # The SDK raises a bare TwilioException for an error answer to a list.
    server.queue_failure(status, code, "Lookup refused")
    err = lookup_failure(transport_for(server))
    assert isinstance(err, kind)
    assert (err.reason, err.code, err.enhanced_code, err.reply) == (
        reason,
        status,
        str(code),
        "Lookup refused",
    )
    # Read-only: a failed lookup never says the message may have gone out.
    assert err.phase == "connect"
    assert server.received == []


def test_a_lookup_without_an_answer_is_never_interrupted(server: TwilioTestServer) -> None:
    server.drop = True
    dropped = lookup_failure(transport_for(server))
    assert isinstance(dropped, TransientTransportError)
    assert (dropped.reason, dropped.phase) == ("connection_lost", "connect")
    server.drop = False
    server.not_json = True
    garbled = lookup_failure(transport_for(server))
    assert isinstance(garbled, TransientTransportError)
    assert (garbled.reason, garbled.phase) == ("unexpected_reply", "connect")
    assert "is not a Twilio message list" in str(garbled)
