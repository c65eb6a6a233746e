from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from outbound import secrets
from outbound.models import Backend, WorkerHeartbeat
from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db


def test_backends_never_return_secrets(api):
    Backend.objects.create(
        name="Relay",
        host="smtp.example.com",
        username="user",
        secret=secrets.encrypt("hunter2"),
        is_default=True,
    )
    r = api.get("/backends")
    assert r.status_code == 200
    (backend,) = r.json()
    assert backend["has_password"] is True
    assert "secret" not in backend and "password" not in backend
    assert "hunter2" not in r.content.decode()
    assert api.get(f"/backends/{backend['id']}").json()["name"] == "Relay"
    assert_error(api.get("/backends/4040"), 404)


def test_backend_test_against_a_real_smtp_server(api, smtp_server, make_backend):
    backend = make_backend(smtp_server, test=False)
    r = api.post(f"/backends/{backend.pk}/test")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["ok"] is True
    assert body["phase"] and body["transcript"]
    assert set(body) == {"ok", "reason", "phase", "code", "reply", "transcript", "elapsed"}
    backend.refresh_from_db()
    assert backend.health == "ok"


def test_a_failing_backend_test_is_200_with_ok_false(api):
    backend = Backend.objects.create(name="Nowhere", host="127.0.0.1", port=1, timeout=2)
    body = api.post(f"/backends/{backend.pk}/test").json()
    assert body["ok"] is False
    assert body["reason"]


def test_backend_test_is_rate_limited(api, settings):
    settings.OUTBOUND_API_RATE_LIMITS = {"backend_test": 1}
    backend = Backend.objects.create(name="Nowhere", host="127.0.0.1", port=1, timeout=2)
    assert api.post(f"/backends/{backend.pk}/test").status_code == 200
    r = api.post(f"/backends/{backend.pk}/test")
    assert_error(r, 429, "rate_limited")
    assert "Retry-After" in r.headers


def test_settings_are_readable(api):
    body = api.get("/settings").json()
    assert body["stuck_threshold_seconds"] == 900
    assert "sms_enabled" in body


def test_overview(api):
    api.post("/messages", {"to": ["a@example.com"]})
    body = api.get("/overview").json()
    assert body["counts"]["waiting"] == 1
    assert body["total"] == 1
    assert body["workers_alive"] == 0


def _beat(seconds_ago: float) -> None:
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        name="w1",
        hostname="h",
        pid=1,
        started_at=now,
        last_seen=now - timedelta(seconds=seconds_ago),
    )


@pytest.mark.parametrize("url", ["/healthz", "/api/v1/healthz"])
def test_healthz_is_503_without_a_live_worker_and_200_with_one(url):
    client = Client()
    r = client.get(url)
    assert r.status_code == 503
    assert r.json()["database"] is True
    assert r.json()["workers_alive"] == 0
    _beat(5)
    r = client.get(url)
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True and body["workers_alive"] == 1
    assert body["last_heartbeat_age_seconds"] >= 5


def test_healthz_counts_a_silent_worker_as_dead():
    _beat(3600)
    assert Client().get("/healthz").status_code == 503


def test_create_and_update_a_backend_with_a_write_only_password(api):
    r = api.post(
        "/backends",
        {
            "name": "Relay",
            "host": "smtp.example.com",
            "port": 587,
            "security": "starttls",
            "username": "u",
            "password": "s3cret-pw",
            "from_address": "noreply@example.com",
            "is_default": True,
        },
    )
    assert r.status_code == 201, r.content
    created = r.json()
    assert created["has_password"] is True and "s3cret-pw" not in r.content.decode()
    assert created["health"] == "untested"
    backend = Backend.objects.get()
    assert secrets.decrypt(backend.secret) == "s3cret-pw"
    r = api.patch(f"/backends/{created['id']}", {"limit": 100})
    assert r.status_code == 200 and r.json()["limit"] == 100
    assert r.json()["settings_version"] == created["settings_version"]
    # Moving the stored password to another server needs it typed again.
    r = api.patch(f"/backends/{created['id']}", {"host": "smtp2.example.com"})
    body = assert_error(r, 422)
    assert "Enter the password again" in body["details"]["password"][0]
    assert Backend.objects.get().host == "smtp.example.com"
    r = api.patch(
        f"/backends/{created['id']}", {"host": "smtp2.example.com", "password": "s3cret-pw"}
    )
    assert r.json()["settings_version"] == created["settings_version"] + 1
    assert r.json()["has_password"] is True
    r = api.patch(f"/backends/{created['id']}", {"clear_password": True})
    assert r.json()["has_password"] is False


def test_backend_input_errors(api, api_as):
    body = assert_error(api.post("/backends", {"name": "x"}), 422)
    assert "host" in body["details"]
    body = assert_error(api.post("/backends", {"name": "x", "port": 0}), 422)
    assert "port" in body["details"]
    assert_error(api.patch("/backends/4040", {"limit": 1}), 404)
    assert_error(api.patch("/backends/1", {"secret": "x"}), 422)
    assert_error(api_as("write").patch("/backends/1", {"limit": 1}), 403, "insufficient_scope")


def test_update_global_settings(api, api_as):
    r = api.patch("/settings", {"stuck_threshold_minutes": 30, "default_from": "ops@example.com"})
    assert r.status_code == 200, r.content
    assert r.json()["stuck_threshold_seconds"] == 1800
    assert r.json()["stuck_threshold_minutes"] == 30
    assert api.get("/settings").json()["default_from"] == "ops@example.com"
    body = assert_error(api.patch("/settings", {"backend_failure_email": "nope"}), 422)
    assert "backend_failure_email" in body["details"]
    assert_error(api.patch("/settings", {"stuck_threshold_minutes": 0}), 422)
    assert_error(api_as("write").patch("/settings", {"retry_lifetime_hours": 2}), 403)


def _create_relay(api, **changes):
    body = {
        "name": "Relay",
        "host": "smtp.example.com",
        "port": 587,
        "security": "starttls",
        "from_address": "noreply@example.com",
        "is_default": True,
        **changes,
    }
    r = api.post("/backends", body)
    assert r.status_code == 201, r.content
    return r.json()


def test_an_api_edit_audits_only_what_changed(api):
    from outbound.models import AuditEntry

    created = _create_relay(api, password="pw-Never-In-Audit")
    r = api.patch(
        f"/backends/{created['id']}",
        {"host": "smtp.example.com", "port": 587, "rate_per_minute": 60, "password": "pw-2"},
    )
    assert r.status_code == 200, r.content
    entry = AuditEntry.objects.filter(action="update_backend").latest("id")
    assert entry.result == "Changed: password, rate_per_minute; settings version 2, test required"
    api.patch(f"/backends/{created['id']}", {"rate_per_minute": 60, "password": "pw-2"})
    entry = AuditEntry.objects.filter(action="update_backend").latest("id")
    assert entry.result == "Changed: nothing"
    assert "pw-" not in repr(list(AuditEntry.objects.values()))


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("http://smtp.example.com", "Give the host name only, without http://"),
        ("smtp.example.com:25", "Give the host name only, without :25"),
        ("smtp.example.com/x", "without /x after it"),
        ("u@smtp.example.com", "without a user name and @"),
    ],
)
def test_a_url_or_a_port_in_the_host_is_refused_by_the_api(api, host, message):
    body = assert_error(
        api.post("/backends", {"name": "B", "host": host, "from_address": "a@example.com"}),
        422,
        "invalid_input",
    )
    assert message in body["details"]["host"][0]
    assert not Backend.objects.exists()
    created = _create_relay(api)
    body = assert_error(api.patch(f"/backends/{created['id']}", {"host": host}), 422)
    assert message in body["details"]["host"][0]
    assert Backend.objects.get().host == "smtp.example.com"
    r = api.patch(f"/backends/{created['id']}", {"host": "2001:db8::25"})
    assert r.status_code == 200 and r.json()["host"] == "2001:db8::25"


def test_the_only_default_backend_cannot_be_unset_by_the_api(api):
    created = _create_relay(api)
    body = assert_error(
        api.patch(f"/backends/{created['id']}", {"is_default": False, "limit": 10}), 422
    )
    assert body["details"]["is_default"] == [
        "Backend Relay is the default email backend: email messages without a backend of "
        "their own go through it. Make another email backend the default first."
    ]
    stored = api.get(f"/backends/{created['id']}").json()
    assert (stored["is_default"], stored["limit"]) == (True, None)
    # Making another backend the default is how the role moves.
    other = _create_relay(api, name="Other", host="smtp2.example.com")
    assert other["is_default"] is True
    assert api.get(f"/backends/{created['id']}").json()["is_default"] is False


def test_a_tested_backend_made_the_default_by_the_api_releases_held_email(api, stored_backend):
    from outbound.models import Event, Message
    from outbound.services.intake import queue_email
    from outbound.services.validation import validate_due
    from outbound.states import Reason, Status

    backend = stored_backend(name="Tested", is_default=False)
    message = queue_email(to="ann@example.com", from_address="me@example.com")
    validate_due()
    message.refresh_from_db()
    assert (message.status, message.reason_code) == (
        Status.BACKEND_TEST_REQUIRED,
        Reason.BACKEND_MISSING,
    )
    r = api.patch(f"/backends/{backend.pk}", {"is_default": True})
    assert r.status_code == 200, r.content
    message = Message.objects.get(pk=message.pk)
    assert (message.status, message.reason_code) == (Status.WAITING, Reason.RELEASED)
    event = Event.objects.filter(message=message).latest("id")
    assert "Backend Tested, whose settings passed the test, became the default email" in (
        event.text
    )
    validate_due()
    message.refresh_from_db()
    assert message.status == Status.TO_SEND and message.backend_id == backend.pk


@pytest.mark.parametrize("url", ["/healthz", "/api/v1/healthz"])
def test_healthz_gives_the_newest_heartbeat_age_when_every_worker_has_stopped(url):
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        name="w-old",
        hostname="h",
        pid=1,
        started_at=now - timedelta(hours=2),
        last_seen=now - timedelta(hours=1),
        stopped_at=now - timedelta(hours=1),
    )
    WorkerHeartbeat.objects.create(
        name="w-new",
        hostname="h",
        pid=2,
        started_at=now - timedelta(minutes=30),
        last_seen=now - timedelta(minutes=10),
        stopped_at=now - timedelta(minutes=10),
    )
    r = Client().get(url)
    assert r.status_code == 503
    body = r.json()
    assert body["workers_alive"] == 0
    assert 600 <= body["last_heartbeat_age_seconds"] < 900
