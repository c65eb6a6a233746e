"""SMS backends on the settings page: created, refused field by field, tested
against the local fake Twilio API, with write-only secrets."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from outbound.models import Backend
from outbound.services.backends import save_backend_settings
from outbound.web.forms import SmsBackendForm
from tests.http_gateway_server import GatewayTestServer
from tests.twilio_server import TwilioTestServer
from tests.web.conftest import as_shown

pytestmark = pytest.mark.django_db


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


def _page(client: Client) -> str:
    return client.get("/settings/").content.decode()


def _gateway(**extra: Any) -> Backend:
    """A stored HTTP gateway backend (its settings changed by ``extra``)."""
    return save_backend_settings(
        data={
            "channel": "sms",
            "kind": "http",
            "name": "Gateway",
            "from_address": "+14155550100",
            "url": "https://sms.example.com/send",
            "headers": {"X-Api-Key": "{secret}"},
            "invalid_number_codes": ["21211", "21614"],
            "password": "gw-secret",
            "receipt_secret": "receipt-secret",
            "timeout": 5,
            **extra,
        },
        actor="setup",
    )


@pytest.fixture
def twilio_backend(twilio_server: TwilioTestServer) -> Backend:
    """A stored Twilio backend using the local fake Twilio API."""
    return save_backend_settings(data=twilio_server.backend_settings(), actor="setup")


def _typed(backend: Backend, **typed: str) -> dict[str, Any]:
    """What the browser submits for ``backend``'s form as shown, with ``typed``
    typed into the fields so named."""
    shown = as_shown(SmsBackendForm(backend=backend))
    return {**shown, **{f"b{backend.pk}-{k}": v for k, v in typed.items()}}


def test_a_twilio_backend_is_created_tested_and_its_token_never_shown(
    admin_client: Client, twilio_server: TwilioTestServer
) -> None:
    page = _page(admin_client)
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
    page = _page(admin_client)
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
    page = _page(admin_client)
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
    assert "gw-secret" not in _page(admin_client)


def test_an_sms_form_as_shown_has_no_unsaved_changes_and_a_secret_typed_in_has() -> None:
    backend = _gateway()
    p = f"b{backend.pk}-"
    shown = _typed(backend)
    assert shown[f"{p}password"] == shown[f"{p}receipt_secret"] == ""
    assert shown[f"{p}invalid_number_codes"] == "21211, 21614"
    unchanged = SmsBackendForm(shown, backend=backend)
    assert unchanged.is_valid(), unchanged.errors
    assert unchanged.unsaved_changes() == []
    same = _typed(backend, timeout="5.0", limit="", channel="email")
    assert SmsBackendForm(same, backend=backend).unsaved_changes() == []
    typed = _typed(
        backend,
        headers='{"X-Api-Key": "{secret}", "X-Other": "1"}',
        receipt_secret="new-receipt-secret",
        clear_password="on",
    )
    form = SmsBackendForm(typed, backend=backend)
    assert form.is_valid(), form.errors
    assert form.unsaved_changes() == [
        "clear the stored secret",
        "headers (json)",
        "receipt secret",
    ]


def test_the_test_button_of_an_sms_backend_refuses_a_typed_token_until_saved(
    admin_client: Client, twilio_server: TwilioTestServer, twilio_backend: Backend
) -> None:
    url = f"/settings/backends/{twilio_backend.pk}/test/"
    typed = _typed(twilio_backend, password="another-token")
    refused = admin_client.post(url, typed).content.decode()
    assert "Unsaved changes (auth token or api secret)" in refused
    assert "another-token" not in refused
    assert twilio_server.requests == 0
    tested = admin_client.post(url, _typed(twilio_backend), follow=True).content.decode()
    assert "Unsaved changes" not in tested
    assert "Test of backend Twilio: Success" in tested
    assert twilio_server.requests == 1


# What is typed into the other provider's fields is not saved (the form sends
# only the selected provider's settings), so it is no unsaved change either.
GATEWAY_FIELDS_TYPED = {
    "url": "https://elsewhere.example.com/send",
    "method": "PUT",
    "headers": '{"X-Other": "1"}',
    "probe_url": "https://elsewhere.example.com/balance",
    "receipt_secret": "typed-receipt-secret",
}
TWILIO_FIELDS_TYPED = {
    "username": "AC" + "0" * 32,
    "base_url": "https://elsewhere.example.com",
}


def _test_then_save(client: Client, backend: Backend, typed: dict[str, str]) -> str:
    """Type ``typed`` into ``backend``'s form, press Test (the page it leads
    to is returned), then Save the same form; ``backend`` is reloaded."""
    form = _typed(backend, **typed)
    tested = client.post(f"/settings/backends/{backend.pk}/test/", form, follow=True)
    saved = client.post(f"/settings/backends/{backend.pk}/", form | {"action": "save"})
    assert saved.status_code == 302
    backend.refresh_from_db()
    return tested.content.decode()


def test_gateway_fields_typed_into_a_twilio_backend_are_no_unsaved_change(
    admin_client: Client, twilio_server: TwilioTestServer, twilio_backend: Backend
) -> None:
    version = twilio_backend.settings_version
    tested = _test_then_save(admin_client, twilio_backend, GATEWAY_FIELDS_TYPED)
    assert "Unsaved changes" not in tested
    assert "Test of backend Twilio: Success" in tested
    assert twilio_server.requests == 1
    # Saving the same form indeed changes nothing.
    assert twilio_backend.settings_version == version
    assert twilio_backend.options == {"base_url": twilio_server.base_url}


def test_twilio_fields_typed_into_a_gateway_backend_are_no_unsaved_change(
    admin_client: Client, gateway_server: GatewayTestServer
) -> None:
    backend = _gateway(url=gateway_server.url(), probe_url=gateway_server.url("/balance"))
    version = backend.settings_version
    tested = _test_then_save(admin_client, backend, TWILIO_FIELDS_TYPED)
    assert "Unsaved changes" not in tested
    assert "Test of backend Gateway: Success" in tested
    assert [r.path for r in gateway_server.requests] == ["/balance"]
    assert (backend.settings_version, backend.username) == (version, "")


def test_a_field_of_the_selected_provider_typed_is_an_unsaved_change(
    admin_client: Client,
    twilio_server: TwilioTestServer,
    twilio_backend: Backend,
    gateway_server: GatewayTestServer,
) -> None:
    gateway = _gateway(url=gateway_server.url(), probe_url=gateway_server.url("/balance"))
    refused = admin_client.post(
        f"/settings/backends/{twilio_backend.pk}/test/",
        _typed(twilio_backend, **TWILIO_FIELDS_TYPED),
    ).content.decode()
    assert "Unsaved changes (account sid, twilio api address)" in refused
    assert twilio_server.requests == 0
    refused = admin_client.post(
        f"/settings/backends/{gateway.pk}/test/", _typed(gateway, **GATEWAY_FIELDS_TYPED)
    ).content.decode()
    assert "Unsaved changes (gateway url, method, headers (json), test url, receipt secret)" in (
        refused
    )
    assert gateway_server.requests == []


def test_a_console_backend_test_is_explained_as_a_console_not_an_smtp_server(
    admin_client: Client,
) -> None:
    backend = save_backend_settings(
        data={"channel": "sms", "kind": "console", "name": "Console"}, actor="setup"
    )
    tested = admin_client.post(f"/settings/backends/{backend.pk}/test/", follow=True)
    html = tested.content.decode()
    assert "Test of backend Console: Success." in html
    result = html.split('<div class="test-result test-ok"')[1].split("</div>")[0]
    assert "prints each SMS in the worker&#x27;s output" in result
    assert "No phone receives anything" in result
    assert "the login" not in result and "server accepted the connection" not in result


def test_a_twilio_backend_test_is_explained_in_twilio_terms(
    admin_client: Client, twilio_backend: Backend
) -> None:
    admin_client.post(f"/settings/backends/{twilio_backend.pk}/test/")
    result = _page(admin_client).split('<div class="test-result test-ok"')[1].split("</div>")[0]
    assert "Twilio accepted the account SID and auth token" in result
    assert "server accepted the connection" not in result


def test_sms_test_advice_never_speaks_of_smtp() -> None:
    from outbound.transports.smtp import PROBE_REASONS
    from outbound.web.test_advice import advice_for

    smtp_words = ("STARTTLS", "465", "587", "relay", "mail server", "mail administrator")
    for kind in ("twilio", "http", "console", "locmem"):
        for reason in (*PROBE_REASONS, "not_configured", "secret_unreadable"):
            if reason in ("sender_refused", "recipient_refused", "auth_unsupported"):
                continue  # SMTP steps: an SMS provider's test never reaches them
            advice = advice_for(reason, kind=kind)
            text = f"{advice.headline} {advice.explanation} {advice.next_step}"
            assert not [w for w in smtp_words if w in text], (kind, reason, text)
            assert advice.ok == (reason == "ok")


def test_a_console_backend_shows_no_server_twilio_or_gateway_fields_read_only_or_editable(
    viewer_client: Client, admin_client: Client
) -> None:
    backend = save_backend_settings(
        data={"channel": "sms", "kind": "console", "name": "Console"}, actor="setup"
    )
    for client in (viewer_client, admin_client):
        html = client.get("/settings/").content.decode()
        card = html.split(f'id="backend-{backend.pk}"')[1].split("</section>")[0]
        for word in (
            "Server",
            "User name",
            "Account SID",
            "Twilio</legend>",
            "HTTP gateway</legend>",
        ):
            assert word not in card, (client, word)
        assert "Delivery receipts" not in card and "OUTBOUND_PUBLIC_URL" not in card
