"""A stored secret cannot be led away: changing where it goes (server, port,
security, user name, Twilio base URL, gateway and test URLs) needs it typed
again in the same save, on the settings page, the API and the CLI; provider
URLs must be https (plain http on loopback only when allowed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from outbound import secrets
from outbound.errors import InvalidInput
from outbound.models import Backend
from outbound.services.backends import save_backend_settings
from tests.api.conftest import api, make_key  # noqa: F401  (fixtures)
from tests.cli.conftest import Run, cli  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

PASSWORD = "relay-pw-" + "41"
TOKEN = "twilio-token-" + "77"


def _relay() -> Backend:
    return save_backend_settings(
        data={
            "name": "Relay",
            "host": "smtp.example.com",
            "port": 587,
            "security": "starttls",
            "username": "mailer",
            "password": PASSWORD,
            "from_address": "noreply@example.com",
            "timeout": 10,
            "is_default": True,
        },
        actor="setup",
    )


def _twilio(base_url: str = "https://api.twilio.com") -> Backend:
    return save_backend_settings(
        data={
            "channel": "sms",
            "kind": "twilio",
            "name": "Twilio",
            "username": "AC" + "0" * 32,
            "from_address": "+14155550100",
            "base_url": base_url,
            "password": TOKEN,
            "timeout": 5,
        },
        actor="setup",
    )


def _form(prefix: str, **changes: Any) -> dict[str, Any]:
    data = {
        "name": "Relay",
        "host": "smtp.example.com",
        "port": "587",
        "security": "starttls",
        "username": "mailer",
        "password": "",
        "from_address": "noreply@example.com",
        "timeout": "10",
        "limit": "",
        "is_default": "on",
        **changes,
    }
    return {f"{prefix}-{k}": v for k, v in data.items()}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"host": "mail.attacker.example"}, "server"),
        ({"port": "2526"}, "port"),
        ({"security": "none"}, "security"),
        ({"username": "someone-else"}, "user name"),
    ],
)
def test_the_settings_page_refuses_to_move_the_password_unless_it_is_typed_again(
    admin_client: Client, change: dict[str, str], named: str
) -> None:
    backend = _relay()
    before = Backend.objects.filter(pk=backend.pk).values().get()
    url = f"/settings/backends/{backend.pk}/"
    response = admin_client.post(url, _form(f"b{backend.pk}", **change))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Enter the password again" in page and f"({named})" in page
    assert Backend.objects.filter(pk=backend.pk).values().get() == before

    response = admin_client.post(url, _form(f"b{backend.pk}", **change, password="typed-again"))
    assert response.status_code == 302
    stored = Backend.objects.get(pk=backend.pk)
    assert secrets.decrypt(stored.secret) == "typed-again"
    assert stored.settings_version == before["settings_version"] + 1


def test_other_settings_and_a_cleared_password_need_no_retyping(admin_client: Client) -> None:
    backend = _relay()
    url = f"/settings/backends/{backend.pk}/"
    assert admin_client.post(url, _form(f"b{backend.pk}", timeout="20")).status_code == 302
    assert admin_client.post(url, _form(f"b{backend.pk}", limit="10")).status_code == 302
    # With no password left there is nothing to lead away.
    save_backend_settings(backend=backend, data={"clear_password": True}, actor="ada")
    response = admin_client.post(url, _form(f"b{backend.pk}", host="other.example.com"))
    assert response.status_code == 302
    assert Backend.objects.get(pk=backend.pk).host == "other.example.com"


def test_the_api_refuses_a_new_twilio_base_url_without_the_token(api: Any) -> None:  # noqa: F811
    backend = _twilio()
    r = api.patch(f"/backends/{backend.pk}", {"base_url": "https://twilio.attacker.example"})
    assert r.status_code == 422
    details = r.json()["details"]
    assert "Enter the secret again" in details["password"][0]
    assert "Twilio base URL" in details["password"][0]
    stored = Backend.objects.get(pk=backend.pk)
    assert stored.options["base_url"] == "https://api.twilio.com"
    assert secrets.decrypt(stored.secret) == TOKEN

    r = api.patch(f"/backends/{backend.pk}", {"username": "AC" + "1" * 32})
    assert r.status_code == 422 and "(Account SID)" in r.json()["details"]["password"][0]
    r = api.patch(
        f"/backends/{backend.pk}",
        {"base_url": "https://twilio.example.net", "password": "new-token"},
    )
    assert r.status_code == 200, r.content


def test_a_gateway_url_or_test_url_change_needs_the_secret() -> None:
    gateway = save_backend_settings(
        data={
            "channel": "sms",
            "kind": "http",
            "name": "Gateway",
            "from_address": "+14155550100",
            "url": "https://sms.example.com/send",
            "headers": {"X-Api-Key": "{secret}"},
            "password": "gw-secret",
            "timeout": 5,
        },
        actor="setup",
    )
    for change, label in (
        ({"url": "https://sms.attacker.example/send"}, "gateway URL"),
        ({"probe_url": "https://sms.attacker.example/probe"}, "test URL"),
    ):
        with pytest.raises(InvalidInput) as err:
            save_backend_settings(backend=gateway, data=change, actor="ada")
        assert label in err.value.errors["password"][0]
    save_backend_settings(
        backend=gateway,
        data={"url": "https://sms2.example.com/send", "password": "gw-secret"},
        actor="ada",
    )
    assert Backend.objects.get(pk=gateway.pk).options["url"] == "https://sms2.example.com/send"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://api.twilio.example", False),
        ("http://10.0.0.8:8080", False),
        ("http://127.0.0.1:9999", True),
        ("http://localhost:9999", True),
        ("http://[::1]:9999", True),
        ("https://api.twilio.com", True),
    ],
)
def test_provider_urls_must_be_https_except_loopback_when_allowed(
    settings: Any, url: str, allowed: bool
) -> None:
    settings.OUTBOUND_ALLOW_LOOPBACK_HTTP = True
    if allowed:
        assert _twilio(url).options["base_url"] == url
    else:
        with pytest.raises(InvalidInput) as err:
            _twilio(url)
        assert "Use an https:// URL" in err.value.errors["base_url"][0]
        assert not Backend.objects.exists()


def test_loopback_http_is_refused_in_production(settings: Any) -> None:
    settings.OUTBOUND_ALLOW_LOOPBACK_HTTP = False
    settings.DEBUG = False
    with pytest.raises(InvalidInput) as err:
        _twilio("http://127.0.0.1:9999")
    assert "OUTBOUND_ALLOW_LOOPBACK_HTTP" in err.value.errors["base_url"][0]
    settings.DEBUG = True
    assert _twilio("http://127.0.0.1:9999").options["base_url"] == "http://127.0.0.1:9999"


def test_the_cli_refuses_a_new_host_without_the_password(cli: Callable[..., Run]) -> None:  # noqa: F811
    backend = _relay()
    r = cli("backends", "set", "Relay", "--host", "mail.attacker.example")
    assert r.code == 1
    assert "Enter the password again" in r.err and "(server)" in r.err
    assert Backend.objects.get(pk=backend.pk).host == "smtp.example.com"
    r = cli(
        "backends",
        "set",
        "Relay",
        "--host",
        "mail2.example.com",
        "--password-stdin",
        stdin="typed-again\n",
    )
    assert r.code == 0, r.err
    assert Backend.objects.get(pk=backend.pk).host == "mail2.example.com"
