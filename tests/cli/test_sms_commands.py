"""send-sms and SMS backends from the command line, run as the installed script,
with a Twilio backend tested against the local fake Twilio API."""

from __future__ import annotations

from typing import Any

from outbound.models import Backend, Contact, Message
from tests.cli.conftest import Run
from tests.twilio_server import TwilioTestServer

NUMBER = "+14155550100"


def _set_twilio_backend(cli: Any, twilio_server: TwilioTestServer, *extra: str) -> Run:
    """`backends set Twilio --create` pointed at the fake Twilio API, token on stdin."""
    return cli(
        "backends",
        "set",
        "Twilio",
        "--create",
        "--channel",
        "sms",
        "--kind",
        "twilio",
        "--username",
        twilio_server.account_sid,
        "--from",
        NUMBER,
        "--base-url",
        twilio_server.base_url,
        "--password-stdin",
        *extra,
        stdin=twilio_server.auth_token + "\n",
    )


def test_send_sms_queues_to_a_number_and_to_a_contact(cli):
    r = cli("send-sms", "--to", NUMBER, "--text", "Code 1234", "--json")
    assert r.code == 0, r.err
    message = Message.objects.get(pk=r.json()["id"])
    assert (message.channel, message.message_to, message.text_body) == (
        "sms",
        NUMBER,
        "Code 1234",
    )
    Contact.objects.create(name="Tex", mobile="+14155550101", external_id="crm-7")
    r = cli("send-sms", "--contact", "ext:crm-7", "--text", "Hi ✓")
    assert r.code == 0, r.err
    assert "1 segment(s), UCS-2" in r.out


def test_send_sms_again_with_the_same_idempotency_key_says_it_exists(cli):
    first = cli("send-sms", "--to", NUMBER, "--text", "Code 1", "--idempotency-key", "otp-1")
    assert first.code == 0, first.err
    again = cli("send-sms", "--to", NUMBER, "--text", "Code 1", "--idempotency-key", "otp-1")
    assert again.code == 0, again.err
    message = Message.objects.get(idempotency_key="otp-1")
    assert f"SMS {message.pk} already exists with idempotency key 'otp-1'" in again.out
    assert f"SMS {message.pk} queued" in first.out


def test_send_sms_bad_usage_exits_2_and_stores_nothing(cli):
    assert cli("send-sms", "--text", "Hi").code == 2
    assert cli("send-sms", "--to", NUMBER).code == 2
    r = cli("send-sms", "--contact", "ext:nobody", "--text", "Hi")
    assert r.code == 1 and "no contact" in r.err
    assert not Message.objects.exists()


def test_backends_set_creates_and_tests_a_twilio_backend(cli, twilio_server: TwilioTestServer):
    r = _set_twilio_backend(cli, twilio_server, "--default")
    assert r.code == 0, r.err
    backend = Backend.objects.get(name="Twilio")
    assert backend.channel == "sms" and backend.kind == "twilio"
    assert twilio_server.auth_token not in backend.secret
    tested = cli("backends", "test", "Twilio", "--json")
    assert tested.code == 0, tested.err
    assert tested.json()["ok"] is True
    assert twilio_server.auth_token not in tested.out


def test_backends_set_refuses_bad_sms_settings_with_field_errors(cli):
    r = cli(
        "backends",
        "set",
        "Gw",
        "--create",
        "--channel",
        "sms",
        "--kind",
        "http",
        "--url",
        "ftp://gateway",
        "--from",
        "not a sender!",
        "--body-template",
        "{not json",
    )
    assert r.code == 1
    assert "url" in r.err and "from_address" in r.err and "body_template" in r.err
    assert not Backend.objects.exists()


def test_send_sms_refuses_times_and_text_it_cannot_store(cli):
    r = cli("send-sms", "--to", NUMBER, "--text", "Hi", "--send-at", "0001-01-01T00:00:00+14:00")
    assert r.code == 2 and "out of range" in r.err
    r = cli("send-sms", "--to", NUMBER, "--text", "Hi", "--group", "g" * 201)
    assert r.code == 1 and "group key" in r.err
    assert not Message.objects.exists()


def test_test_backend_sends_a_real_test_sms(cli, twilio_server: TwilioTestServer):
    r = _set_twilio_backend(cli, twilio_server)
    assert r.code == 0, r.err
    bad = cli("test-backend", "Twilio", "--send-to", "not a number")
    assert bad.code == 2 and "not a phone number" in bad.err
    r = cli("test-backend", "Twilio", "--send-to", "+1 415 555 0123")
    assert r.code == 0, r.err
    assert "accepted the test SMS to +14155550123" in r.out
    assert [m["To"] for m in twilio_server.received] == ["+14155550123"]
    listed = cli("backends", "list")
    assert "twilio" in listed.out
