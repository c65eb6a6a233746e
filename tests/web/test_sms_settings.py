"""SMS backends on the settings page: created, refused field by field, tested
against the local fake Twilio API, with write-only secrets."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from outbound.models import Backend
from tests.twilio_server import TwilioTestServer

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(admin_user_: User) -> Client:
    client = Client()
    client.force_login(admin_user_)
    return client


def _new(**fields: Any) -> dict[str, Any]:
    values = {
        "channel": "sms",
        "name": "Twilio",
        "kind": "twilio",
        "from_address": "+14155550100",
        "timeout": "5",
        "method": "POST",
        "probe_method": "GET",
        "is_default": "on",
        **fields,
    }
    return {f"newsms-{k}": v for k, v in values.items()}


def test_a_twilio_backend_is_created_tested_and_its_token_never_shown(
    admin_client: Client, twilio_server: TwilioTestServer
) -> None:
    page = admin_client.get("/settings/").content.decode()
    assert "Add SMS backend" in page
    bad = admin_client.post(
        "/settings/backends/new/",
        _new(username="AC123", from_address="+1 415", base_url="gopher://x"),
    )
    html = bad.content.decode()
    assert "Enter the Account SID" in html
    assert "E.164" in html or "not a valid phone number" in html
    assert "http:// or https://" in html
    assert not Backend.objects.exists()

    data = _new(
        username=twilio_server.account_sid,
        password=twilio_server.auth_token,
        base_url=twilio_server.base_url,
    )
    response = admin_client.post("/settings/backends/new/", data)
    assert response.status_code == 302
    backend = Backend.objects.get(name="Twilio")
    assert (backend.channel, backend.kind, backend.options["base_url"]) == (
        "sms",
        "twilio",
        twilio_server.base_url,
    )
    page = admin_client.get("/settings/").content.decode()
    assert twilio_server.auth_token not in page
    assert "No delivery receipts are asked for" in page

    tested = admin_client.post(f"/settings/backends/{backend.pk}/test/", follow=True)
    assert "Success" in tested.content.decode()
    backend.refresh_from_db()
    assert backend.is_usable

    url = f"/settings/backends/{backend.pk}/test-message/"
    refused = admin_client.post(url, {"to": "12"}, follow=True).content.decode()
    assert "is too short" in refused
    sent = admin_client.post(url, {"to": "+1 415 555 0123"}, follow=True).content.decode()
    assert "accepted the test SMS to +14155550123" in sent
    assert [m["To"] for m in twilio_server.received] == ["+14155550123"]
    assert "Outbound test SMS" in twilio_server.received[0]["Body"]


def test_an_http_gateway_is_refused_with_its_field_errors(admin_client: Client) -> None:
    response = admin_client.post(
        "/settings/backends/new/",
        _new(
            name="Gateway",
            kind="http",
            url="https://sms.example.com/send",
            headers="[1, 2]",
            body_template='{"to": "{nope}"}',
        ),
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "headers" in html.lower()
    assert "{nope}" in html
    assert not Backend.objects.exists()


def test_a_new_gateway_starts_from_the_standard_settings(admin_client: Client) -> None:
    page = admin_client.get("/settings/").content.decode()
    assert 'name="newsms-idempotency_header"' in page
    assert 'value="Idempotency-Key"' in page
    response = admin_client.post(
        "/settings/backends/new/",
        _new(
            name="Gateway",
            kind="http",
            url="https://sms.example.com/send",
            id_path="data.id",
            idempotency_header="Idempotency-Key",
            body_template="",
            headers='{"X-Api-Key": "{secret}"}',
            password="gw-secret",
        ),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    options = Backend.objects.get(name="Gateway").options
    assert options["id_path"] == "data.id"
    assert options["idempotency_header"] == "Idempotency-Key"
    assert "{body}" in options["body_template"]
    assert "gw-secret" not in admin_client.get("/settings/").content.decode()
