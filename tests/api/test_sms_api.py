"""SMS over the REST API: SMS backends created, tested against the local fake
Twilio API and changed with write-only secrets; SMS global settings."""

from __future__ import annotations

import pytest

from outbound.models import Backend, Contact, GlobalSettings, Message
from tests.api.conftest import assert_error
from tests.twilio_server import TwilioTestServer

pytestmark = pytest.mark.django_db


def test_a_twilio_backend_is_created_and_tested_and_its_token_never_returned(
    api, twilio_server: TwilioTestServer
):
    r = api.post(
        "/backends",
        {
            "name": "Twilio",
            "channel": "sms",
            "kind": "twilio",
            "username": twilio_server.account_sid,
            "password": twilio_server.auth_token,
            "from_address": "+14155550100",
            "base_url": twilio_server.base_url,
            "is_default": True,
        },
    )
    assert r.status_code == 201, r.content
    body = r.json()
    assert (body["channel"], body["kind"], body["usable"]) == ("sms", "twilio", False)
    assert body["options"] == {"base_url": twilio_server.base_url}
    assert twilio_server.auth_token not in r.content.decode()
    tested = api.post(f"/backends/{body['id']}/test")
    assert tested.status_code == 200
    assert tested.json()["ok"] is True
    assert twilio_server.auth_token not in tested.content.decode()
    assert api.get(f"/backends/{body['id']}").json()["usable"] is True


def test_bad_sms_backend_fields_are_422_per_field_and_nothing_is_stored(api):
    r = api.post(
        "/backends",
        {
            "name": "Gateway",
            "channel": "sms",
            "kind": "http",
            "url": "ftp://gw",
            "from_address": "??",
            "body_template": "[]",
        },
    )
    body = assert_error(r, 422)
    assert {"url", "from_address", "body_template"} <= set(body["details"])
    assert not Backend.objects.exists()
    r = api.post("/backends", {"name": "Mail", "host": "smtp.example.com", "url": "https://x"})
    assert "url" in assert_error(r, 422)["details"]


def test_an_http_gateway_keeps_its_receipt_secret_write_only(api, settings):
    settings.OUTBOUND_PUBLIC_URL = "https://outbound.example.com"
    r = api.post(
        "/backends",
        {
            "name": "Gateway",
            "channel": "sms",
            "kind": "http",
            "url": "https://sms.example.com/send",
            "headers": {"Authorization": "Bearer {secret}"},
            "password": "api-key-123",
            "receipt_secret": "receipts-456",
            "from_address": "Acme",
            "probe_url": "https://sms.example.com/health",
        },
    )
    assert r.status_code == 201, r.content
    body = r.json()
    text = r.content.decode()
    assert "api-key-123" not in text and "receipts-456" not in text
    assert body["has_receipt_secret"] is True
    assert body["receipt_url"] == f"https://outbound.example.com/hooks/sms/{body['id']}/http"
    backend = Backend.objects.get(pk=body["id"])
    assert "receipts-456" not in backend.receipt_secret


def test_sms_global_settings_are_read_and_validated(api):
    r = api.patch("/settings", {"sms_enabled": True, "default_region": "fr", "max_sms_segments": 3})
    assert r.status_code == 200, r.content
    assert (r.json()["sms_enabled"], r.json()["default_region"]) == (True, "FR")
    body = assert_error(api.patch("/settings", {"default_region": "QQ"}), 422)
    assert "default_region" in body["details"]
    assert GlobalSettings.load().default_region == "FR"


def _sms_backend(api):
    body = api.post("/backends", {"name": "Console", "channel": "sms", "kind": "console"}).json()
    return body["id"]


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"url": "http://[::1"}, "url"),
        ({"probe_url": "https://x:99999/"}, "probe_url"),
        ({"body_template": "[" * 4000}, "body_template"),
        ({"headers": {"Authorization": "Bearer abc123"}}, "headers"),
        ({"port": 25}, "port"),
    ],
)
def test_odd_gateway_settings_are_422_not_500(api, fields, where):
    data = {
        "name": "Gateway",
        "channel": "sms",
        "kind": "http",
        "url": "https://sms.example.com/send",
        "from_address": "Acme",
        **fields,
    }
    body = assert_error(api.post("/backends", data), 422)
    assert where in body["details"]
    assert not Backend.objects.exists()


def test_smtp_settings_on_an_sms_backend_are_refused_and_nothing_changes(api):
    pk = _sms_backend(api)
    body = assert_error(api.patch(f"/backends/{pk}", {"security": "tls", "host": "x"}), 422)
    assert {"security", "host"} <= set(body["details"])
    assert Backend.objects.get(pk=pk).settings_version == 1


@pytest.mark.parametrize(
    "payload",
    [
        {"channel": "sms", "to": ["+14155550100"], "text": "\ud800"},
        {"channel": "sms", "to": ["+14155550100"], "text": "a\u0000b"},
        {"channel": "sms", "to": ["+14155550100"], "text": "x", "group_key": "g" * 201},
        {"channel": "sms", "to": ["+1" + "5" * 50], "text": "x"},
        {"channel": "sms", "to": ["+14155550100"], "send_at": "0001-01-01T00:00:00+14:00"},
        {"to": ["a@example.com"], "text": "\ud800"},
    ],
)
def test_text_the_database_cannot_store_is_422(api, payload):
    assert_error(api.post("/messages", payload), 422)
    assert not Message.objects.exists()


def test_an_out_of_range_filter_time_is_422(api):
    r = api.get("/messages", created_after="0001-01-01T00:00:00+14:00")
    assert "created_after" in assert_error(r, 422)["details"]


def test_channel_auto_refuses_fields_it_would_drop(api):
    c = Contact.objects.create(name="Tex", email="tex@example.com")
    r = api.post(
        "/messages",
        {"channel": "auto", "contact_id": c.pk, "from": "a@b.c", "headers": {"X-A": "1"}},
    )
    assert {"from", "headers"} <= set(assert_error(r, 422)["details"])


def test_a_refused_message_in_a_batch_is_named(api):
    batch = {
        "messages": [
            {"channel": "sms", "to": ["+14155550100"], "text": "ok"},
            {"channel": "sms", "to": ["+14155550101"], "text": "x" * 5001},
        ]
    }
    body = assert_error(api.post("/messages/batch", batch), 422)
    assert "messages.1" in body["details"]
    assert not Message.objects.exists()
