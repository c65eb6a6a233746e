"""SMS over the REST API: SMS backends created, tested against the local fake
Twilio API and changed with write-only secrets; SMS global settings."""

from __future__ import annotations

import pytest

from outbound.models import Backend, GlobalSettings
from tests.api.conftest import assert_error
from tests.twilio_server import TwilioTestServer

pytest_plugins = ["tests.twilio_server"]
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
