"""The settings page's forms: email backends (Save, Test, Save and test) and
the global settings, through the test client against a real SMTP server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from outbound import secrets
from outbound.models import AuditEntry, Backend, GlobalSettings, Suppression
from outbound.services.backends import save_backend_settings
from outbound.services.intake import queue_email
from outbound.services.validation import validate_due
from outbound.web.forms import BackendForm
from tests.web.conftest import as_shown

pytestmark = pytest.mark.django_db

SECRET = "pw-Zq81-never-shown"


def _form(prefix: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
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
    }
    data.update(changes)
    return {f"{prefix}-{k}": v for k, v in data.items() if v is not None}


def _backend(**fields: Any) -> Backend:
    data = {
        "name": "Relay",
        "host": "smtp.example.com",
        "port": 587,
        "security": "starttls",
        "username": "mailer",
        "password": SECRET,
        "from_address": "noreply@example.com",
        "timeout": 10,
        "is_default": True,
    }
    data.update(fields)
    return save_backend_settings(data=data, actor="setup")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("port", "70000", "Must be between 1 and 65535."),
        ("host", "", "This field is required."),
        ("from_address", "not an address", "is not an email address"),
    ],
)
def test_a_new_backend_with_a_bad_field_shows_the_error_there_and_saves_nothing(
    admin_client: Client, field: str, value: str, message: str
) -> None:
    response = admin_client.post(
        "/settings/backends/new/", _form("new", name="Typed name", **{field: value})
    )
    assert response.status_code == 200
    form = response.context["new_form"]
    assert any(message in e for e in form.errors[field])
    html = response.content.decode()
    assert message.replace("“", "") in html.replace("“", "").replace("&quot;", '"')
    # What was typed stays in the form.
    assert 'value="Typed name"' in html
    assert Backend.objects.count() == 0


def test_editing_a_backend_with_a_bad_port_keeps_the_stored_settings(admin_client: Client) -> None:
    backend = _backend()
    response = admin_client.post(
        f"/settings/backends/{backend.pk}/",
        _form(f"b{backend.pk}", port="70000", host="new.example.com"),
    )
    html = response.content.decode()
    assert "Must be between 1 and 65535." in html
    assert 'value="new.example.com"' in html
    stored = Backend.objects.get(pk=backend.pk)
    assert (stored.host, stored.port, stored.settings_version) == ("smtp.example.com", 587, 1)


def test_the_password_is_never_rendered_back(admin_client: Client) -> None:
    response = admin_client.post("/settings/backends/new/", _form("new", password=SECRET))
    assert response.status_code == 302
    backend = Backend.objects.get()
    assert secrets.decrypt(backend.secret, owner="test") == SECRET
    html = admin_client.get("/settings/").content.decode()
    assert SECRET not in html and backend.secret not in html
    assert 'Password <span class="secret-state">(set)</span>' in html
    assert "leave blank to keep it" in html
    # Nor when the form comes back with an error.
    response = admin_client.post(
        f"/settings/backends/{backend.pk}/",
        _form(f"b{backend.pk}", port="0", password="another-secret-typed"),
    )
    html = response.content.decode()
    assert "Must be between 1 and 65535." in html
    assert "another-secret-typed" not in html and SECRET not in html


def test_a_blank_password_keeps_the_stored_one_and_clear_removes_it(admin_client: Client) -> None:
    backend = _backend()
    admin_client.post(f"/settings/backends/{backend.pk}/", _form(f"b{backend.pk}"))
    backend.refresh_from_db()
    assert secrets.decrypt(backend.secret, owner="test") == SECRET
    assert backend.settings_version == 1
    admin_client.post(
        f"/settings/backends/{backend.pk}/", _form(f"b{backend.pk}", clear_password="on")
    )
    backend.refresh_from_db()
    assert backend.secret == "" and backend.settings_version == 2
    assert 'Password <span class="secret-state">(not set)</span>' in (
        admin_client.get("/settings/").content.decode()
    )


@pytest.mark.parametrize("role_client", ["viewer_client", "operator_client"])
def test_viewers_and_operators_cannot_change_settings(
    request: pytest.FixtureRequest, role_client: str
) -> None:
    client: Client = request.getfixturevalue(role_client)
    backend = _backend()
    posts = [
        ("/settings/backends/new/", _form("new", name="Other")),
        (f"/settings/backends/{backend.pk}/", _form(f"b{backend.pk}", host="evil.example.com")),
        (f"/settings/backends/{backend.pk}/test/", {}),
        ("/settings/global/", {"global-backend_failure_email": "x@example.com"}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 403, url
    assert Backend.objects.get().host == "smtp.example.com"
    assert Backend.objects.count() == 1
    assert GlobalSettings.load().backend_failure_email == ""
    html = client.get("/settings/").content.decode()
    assert '<form method="post" action="/settings/' not in html


def test_a_wrong_password_test_shows_authentication_failed_with_advice(
    admin_client: Client, make_smtp_server: Callable[..., Any]
) -> None:
    relay = make_smtp_server(auth={"mailer": "right"})
    backend = _backend(host=relay.host, port=relay.port, security="none", password="wrong")
    response = admin_client.post(f"/settings/backends/{backend.pk}/test/", {})
    assert response.status_code == 302
    assert response["Location"].endswith(f"#backend-{backend.pk}")
    page = admin_client.get(response["Location"])
    html = page.content.decode()
    assert "Authentication failed: the account or password is wrong" in html
    assert "Type the current password" in html
    assert '<pre class="transcript">' in html and "535" in html
    assert "wrong" not in html.split('<pre class="transcript">')[1].split("</pre>")[0]
    backend.refresh_from_db()
    assert backend.health == "failing"
    assert "Held for it" not in html
    # Messages queued meanwhile are held for it, and its card counts them.
    for i in range(2):
        queue_email(to=f"u{i}@example.com")
    validate_due()
    html = admin_client.get("/settings/").content.decode()
    held = html.split(f'id="backend-{backend.pk}"')[1].split("</dl>")[0]
    assert "<dt>Held for it</dt>" in held
    assert ">2 messages</a> as Backend test required" in held
    # The right password, Save and test in one click: success.
    response = admin_client.post(
        f"/settings/backends/{backend.pk}/",
        _form(
            f"b{backend.pk}",
            host=relay.host,
            port=str(relay.port),
            security="none",
            password="right",
        )
        | {"action": "save_test"},
    )
    html = admin_client.get(response["Location"]).content.decode()
    assert "saved and tested: Success" in html
    assert "Held for it" not in html
    backend.refresh_from_db()
    assert backend.is_usable


def test_test_with_unsaved_changes_asks_to_save_first(
    admin_client: Client, smtp_server: Any
) -> None:
    backend = _backend(
        host=smtp_server.host, port=smtp_server.port, security="none", username="", password=""
    )
    connections = smtp_server.connections
    response = admin_client.post(
        f"/settings/backends/{backend.pk}/test/",
        _form(f"b{backend.pk}", host="typed.example.com", port=str(smtp_server.port)),
    )
    html = response.content.decode()
    assert "Save first, or use Save and test" in html
    assert 'value="typed.example.com"' in html
    assert smtp_server.connections == connections


def test_global_settings_are_validated_saved_and_audited(admin_client: Client) -> None:
    data = {
        "global-backend_failure_email": "not-an-address",
        "global-default_from": "noreply@example.com",
        "global-stuck_threshold_minutes": "20",
        "global-retry_lifetime_hours": "24",
        "global-alert_reminder_interval_hours": "2",
        "global-worker_silence_threshold_minutes": "0",
        "global-sms_enabled": "on",
        "global-default_region": "XX",
        "global-max_sms_segments": "0",
    }
    response = admin_client.post("/settings/global/", data)
    html = response.content.decode()
    assert "is not a known region code; use two letters" in html
    assert "Must be between 1 and 50." in html
    assert not GlobalSettings.load().sms_enabled
    data["global-default_region"] = "gb"
    data["global-max_sms_segments"] = "4"
    response = admin_client.post("/settings/global/", data)
    html = response.content.decode()
    assert "is not an email address" in html
    assert "Must be between 1 and 1440 minutes." in html
    assert 'value="not-an-address"' in html
    assert GlobalSettings.load().stuck_threshold == timedelta(minutes=15)
    data["global-backend_failure_email"] = "ops@example.com"
    data["global-worker_silence_threshold_minutes"] = "10"
    response = admin_client.post("/settings/global/", data)
    assert response.status_code == 302
    settings = GlobalSettings.load()
    assert settings.backend_failure_email == "ops@example.com"
    assert settings.stuck_threshold == timedelta(minutes=20)
    assert settings.retry_lifetime == timedelta(hours=24)
    assert settings.alert_reminder_interval == timedelta(hours=2)
    assert settings.worker_silence_threshold == timedelta(minutes=10)
    assert (settings.sms_enabled, settings.default_region, settings.max_sms_segments) == (
        True,
        "GB",
        4,
    )
    entry = AuditEntry.objects.get(action="update_global_settings")
    assert entry.actor == "ada" and "backend_failure_email" in entry.result
    html = admin_client.get("/settings/").content.decode()
    assert 'value="ops@example.com"' in html and 'value="20"' in html
    assert "Global settings saved." in html and "mailed to nobody" not in html
    # Cleared: saved, with a warning that alerts reach nobody now.
    data["global-backend_failure_email"] = ""
    html = admin_client.post("/settings/global/", data, follow=True).content.decode()
    assert GlobalSettings.load().backend_failure_email == ""
    assert "No Backend Failure Email is set" in html and "mailed to nobody" in html


def test_a_real_test_message_is_sent_from_the_settings_page(
    admin_client: Client, smtp_server: Any
) -> None:
    backend = _backend(
        host=smtp_server.host, port=smtp_server.port, security="none", username="", password=""
    )
    # Offered only once a test of the current settings has succeeded.
    assert "Send a real test message" not in admin_client.get("/settings/").content.decode()
    admin_client.post(f"/settings/backends/{backend.pk}/test/", {})
    assert "Send a real test message" in admin_client.get("/settings/").content.decode()
    response = admin_client.post(
        f"/settings/backends/{backend.pk}/test-message/", {"to": "admin@example.com"}
    )
    html = admin_client.get(response["Location"]).content.decode()
    assert "accepted the test message to admin@example.com" in html
    [received] = smtp_server.messages
    assert received.rcpt_tos == ["admin@example.com"]
    bad = admin_client.post(
        f"/settings/backends/{backend.pk}/test-message/", {"to": "not an address"}
    )
    assert "not an email address" in admin_client.get(bad["Location"]).content.decode()
    assert len(smtp_server.messages) == 1
    # The blocklist holds for test messages too (a domain entry covers its subdomains).
    Suppression.objects.create(kind="domain", value="blocked.example", reason="complaints")
    refused = admin_client.post(
        f"/settings/backends/{backend.pk}/test-message/", {"to": "ann@mail.blocked.example"}
    )
    html = admin_client.get(refused["Location"]).content.decode()
    assert "is on the blocklist as blocked.example (complaints)" in html
    assert len(smtp_server.messages) == 1


def test_alerts_are_shown_even_when_no_mail_could_be_sent(
    admin_client: Client, settings: Any
) -> None:
    from outbound.services import alerts
    from outbound.services.intake import queue_email
    from outbound.services.validation import validate_due

    settings.OUTBOUND_SYSTEM_MAIL_URL = ""
    backend = _backend()
    Backend.objects.filter(pk=backend.pk).update(health="failing", health_detail="535 bad")
    # The alert is about held messages: one is held for the failing backend.
    queue_email(to="ann@example.com")
    validate_due()
    alerts.check_alerts()
    html = admin_client.get("/settings/").content.decode()
    assert "backend Relay is failing" in html
    assert "Not mailed" in html and "<strong>open</strong>" in html


def test_the_sent_count_is_reset_from_the_settings_page(admin_client: Client) -> None:
    from outbound.models import AuditEntry

    backend = _backend(limit=5)
    Backend.objects.filter(pk=backend.pk).update(sent_count=5)
    assert "Reset the sent count" in admin_client.get("/settings/").content.decode()
    admin_client.post(f"/settings/backends/{backend.pk}/reset-count/")
    assert Backend.objects.get(pk=backend.pk).sent_count == 0
    assert AuditEntry.objects.filter(action="reset_sent_count").exists()


def test_rate_and_connection_cap_are_set_from_the_form(admin_client: Client) -> None:
    backend = _backend()
    admin_client.post(
        f"/settings/backends/{backend.pk}/",
        _form(
            f"b{backend.pk}",
            host="smtp.example.com",
            port="587",
            security="starttls",
            rate_per_minute="120",
            max_connections="3",
        )
        | {"action": "save"},
    )
    backend.refresh_from_db()
    assert (backend.rate_per_minute, backend.max_connections) == (120, 3)


def test_unsaved_changes_compare_what_was_typed_with_the_stored_settings() -> None:
    backend = _backend()
    assert BackendForm(_form("new")).unsaved_changes() == [
        "everything (this backend is not saved yet)"
    ]
    shown = as_shown(BackendForm(backend=backend))
    assert shown[f"b{backend.pk}-password"] == ""
    unchanged = BackendForm(shown, backend=backend)
    assert unchanged.is_valid(), unchanged.errors
    assert unchanged.unsaved_changes() == []
    # The same values written another way are no change.
    same = {**shown, f"b{backend.pk}-timeout": "10", f"b{backend.pk}-host": " smtp.example.com "}
    assert BackendForm(same, backend=backend).unsaved_changes() == []
    typed = {
        **shown,
        f"b{backend.pk}-port": "2525",
        f"b{backend.pk}-password": "new-password",
        f"b{backend.pk}-clear_password": "on",
    }
    form = BackendForm(typed, backend=backend)
    assert form.is_valid(), form.errors
    assert form.unsaved_changes() == ["port", "password", "clear the stored password"]


def test_the_test_button_with_the_form_as_shown_tests_the_saved_settings(
    admin_client: Client, smtp_server: Any
) -> None:
    backend = _backend(
        host=smtp_server.host, port=smtp_server.port, security="none", username="", password=""
    )
    shown = as_shown(BackendForm(backend=backend))
    response = admin_client.post(f"/settings/backends/{backend.pk}/test/", shown, follow=True)
    html = response.content.decode()
    assert "Unsaved changes" not in html
    assert "Test of backend Relay: Success" in html


def test_saving_only_a_new_port_audits_only_the_port(admin_client: Client) -> None:
    backend = _backend()
    prefix = f"b{backend.pk}"
    response = admin_client.post(
        f"/settings/backends/{backend.pk}/", _form(prefix, port="2525", password=SECRET)
    )
    assert response.status_code == 302
    html = admin_client.get("/audit/").content.decode()
    assert "Changed: port; settings version 2, test required" in html
    entry = AuditEntry.objects.get(action="update_backend")
    assert (entry.actor, entry.result) == (
        "ada",
        "Changed: port; settings version 2, test required",
    )
    # The form sent back as the page shows it: nothing changed, and it says so.
    shown = as_shown(BackendForm(backend=Backend.objects.get(pk=backend.pk)))
    admin_client.post(f"/settings/backends/{backend.pk}/", shown)
    entry = AuditEntry.objects.filter(action="update_backend").order_by("-id").first()
    assert entry is not None and entry.result == "Changed: nothing"
    assert Backend.objects.get(pk=backend.pk).settings_version == 2


def test_a_new_password_is_audited_by_name_only(admin_client: Client) -> None:
    backend = _backend()
    admin_client.post(
        f"/settings/backends/{backend.pk}/", _form(f"b{backend.pk}", password="Fresh-pw-77")
    )
    html = admin_client.get("/audit/").content.decode()
    assert "Changed: password; settings version 2, test required" in html
    assert "Fresh-pw-77" not in html and SECRET not in html


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("http://smtp.example.com", "Give the host name only, without http://"),
        ("smtp.example.com:25", "Give the host name only, without :25"),
        ("smtp.example.com/mail", "without /mail after it"),
        ("mailer@smtp.example.com", "without a user name and @"),
    ],
)
def test_a_url_or_host_and_port_typed_as_host_is_refused_on_the_form(
    admin_client: Client, host: str, message: str
) -> None:
    backend = _backend()
    response = admin_client.post(
        f"/settings/backends/{backend.pk}/", _form(f"b{backend.pk}", host=host, port="2525")
    )
    assert response.status_code == 200
    bound = next(row.form for row in response.context["backends"] if row.backend.pk == backend.pk)
    assert any(message in e for e in bound.errors["host"])
    assert message in response.content.decode()
    stored = Backend.objects.get(pk=backend.pk)
    assert (stored.host, stored.port, stored.settings_version) == ("smtp.example.com", 587, 1)
    response = admin_client.post("/settings/backends/new/", _form("new", name="Other", host=host))
    assert any(message in e for e in response.context["new_form"].errors["host"])
    assert Backend.objects.count() == 1


def test_an_ip_address_or_international_name_is_saved_from_the_form(admin_client: Client) -> None:
    backend = _backend()
    for host in ("192.0.2.7", "2001:db8::25", "bücher.example"):
        response = admin_client.post(
            f"/settings/backends/{backend.pk}/", _form(f"b{backend.pk}", host=host, password=SECRET)
        )
        assert response.status_code == 302, host
        assert Backend.objects.get(pk=backend.pk).host == host


def test_the_limit_range_error_reads_naturally_on_the_form(admin_client: Client) -> None:
    backend = _backend()
    response = admin_client.post(
        f"/settings/backends/{backend.pk}/", _form(f"b{backend.pk}", limit="2000000000")
    )
    html = response.content.decode()
    assert "Must be between 0 and 1,000,000,000 messages." in html
    assert "e+09" not in html
    assert Backend.objects.get(pk=backend.pk).limit is None


def test_unticking_the_only_default_backend_is_refused_on_the_form(admin_client: Client) -> None:
    backend = _backend()
    response = admin_client.post(
        f"/settings/backends/{backend.pk}/",
        _form(f"b{backend.pk}", is_default=None, port="2525"),
    )
    assert response.status_code == 200
    bound = next(row.form for row in response.context["backends"] if row.backend.pk == backend.pk)
    [error] = bound.errors["is_default"]
    assert "Make another email backend the default first." in error
    assert "Make another email backend the default first." in response.content.decode()
    stored = Backend.objects.get(pk=backend.pk)
    assert (stored.is_default, stored.port, stored.settings_version) == (True, 587, 1)
    assert not AuditEntry.objects.filter(action="update_backend").exists()


@pytest.mark.django_db(transaction=True)
def test_ticking_default_on_a_tested_backend_releases_held_mail_which_then_goes_out(
    admin_client: Client, make_smtp_server: Callable[..., Any], run_worker: Any
) -> None:
    from outbound.services.intake import queue_email
    from outbound.states import Reason, Status

    relay = make_smtp_server()
    backend = _backend(
        host=relay.host,
        port=relay.port,
        security="none",
        username="",
        password="",
        is_default=False,
    )
    admin_client.post(f"/settings/backends/{backend.pk}/test/", {})
    assert Backend.objects.get(pk=backend.pk).is_usable
    message = queue_email(
        to="ann@example.com", subject="Waiting for a default", from_address="me@example.com"
    )
    run_worker()
    message.refresh_from_db()
    assert (message.status, message.reason_code) == (
        Status.BACKEND_TEST_REQUIRED,
        Reason.BACKEND_MISSING,
    )
    shown = as_shown(BackendForm(backend=Backend.objects.get(pk=backend.pk)))
    response = admin_client.post(
        f"/settings/backends/{backend.pk}/", {**shown, f"b{backend.pk}-is_default": "on"}
    )
    assert response.status_code == 302
    message.refresh_from_db()
    assert message.status == Status.WAITING
    page = admin_client.get(f"/messages/{message.pk}/").content.decode()
    assert "Backend Relay, whose settings passed the test, became the default email backend" in (
        page
    )
    assert relay.messages == []
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.SENT
    [received] = relay.messages
    assert received.rcpt_tos == ["ann@example.com"]
    assert b"Waiting for a default" in received.raw
    entry = AuditEntry.objects.filter(action="update_backend").order_by("-id").first()
    assert entry is not None
    assert (entry.actor, entry.result) == ("ada", "Changed: is_default; 1 held message released")
