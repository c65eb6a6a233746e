from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from outbound.models import ApiKey, AuditEntry
from outbound.services.apikeys import authenticate, create_api_key, revoke_api_key
from tests.api.conftest import Api, assert_error

pytestmark = pytest.mark.django_db


def test_a_key_is_stored_only_as_a_hash_and_shown_once():
    key, plaintext = create_api_key(name="platform", scope="write", actor="admin")
    assert plaintext.startswith(key.prefix + "_")
    stored = ApiKey.objects.values().get(pk=key.pk)
    assert all(plaintext not in str(v) for v in stored.values() if v is not None)
    assert len(key.key_hash) == 64
    assert authenticate(plaintext) == key
    assert authenticate(plaintext + "x") is None
    assert authenticate(key.prefix) is None
    assert AuditEntry.objects.filter(action="create_api_key", object_ids=[key.pk]).exists()


def test_a_request_without_a_key_is_401_with_the_envelope(anon):
    body = assert_error(anon.get("/messages"), 401, "unauthenticated")
    assert "Authorization: Bearer" in body["message"]


def test_an_unknown_key_is_401_key_invalid(anon):
    r = anon.get("/messages", headers={"Authorization": "Bearer obk_deadbeef_nope"})
    assert_error(r, 401, "key_invalid")
    assert "WWW-Authenticate" in r.headers


def test_the_key_may_come_in_x_api_key(make_key, anon):
    key = make_key("read")
    assert anon.get("/messages", headers={"X-API-Key": key}).status_code == 200
    assert_error(anon.get("/messages", headers={"X-API-Key": "garbage"}), 401, "key_invalid")


def test_a_revoked_key_is_401_key_revoked(anon):
    key, plaintext = create_api_key(name="old", scope="admin", actor="t")
    assert revoke_api_key(key, actor="t") is True
    assert revoke_api_key(key, actor="t") is False
    r = anon.get("/messages", headers={"Authorization": f"Bearer {plaintext}"})
    assert_error(r, 401, "key_revoked")


def test_an_expired_key_is_401_key_expired(anon):
    key, plaintext = create_api_key(
        name="short", scope="admin", actor="t", expires_at=timezone.now() + timedelta(hours=1)
    )
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    r = anon.get("/messages", headers={"Authorization": f"Bearer {plaintext}"})
    assert_error(r, 401, "key_expired")


def test_using_a_key_records_when_it_was_last_used(make_key, anon):
    plaintext = make_key("read")
    anon.get("/messages", headers={"X-API-Key": plaintext})
    assert ApiKey.objects.get(prefix=plaintext[:12]).last_used_at is not None


def test_a_read_key_cannot_write_403(api_as):
    body = assert_error(
        api_as("read").post("/messages", {"to": ["a@example.com"]}), 403, "insufficient_scope"
    )
    assert body["details"] == {"needed_scope": "write", "key_scope": "read"}


def test_a_write_key_cannot_test_backends_403(api_as):
    assert_error(api_as("write").post("/backends/1/test"), 403, "insufficient_scope")


def test_a_write_key_can_write_and_read(api_as):
    writer = api_as("write")
    assert writer.post("/messages", {"to": ["a@example.com"]}).status_code == 201
    assert writer.get("/messages").status_code == 200


def test_key_creation_refuses_bad_input():
    from outbound.errors import InvalidInput

    with pytest.raises(InvalidInput) as err:
        create_api_key(name="", scope="root", actor="t", expires_at=timezone.now())
    assert set(err.value.errors) == {"name", "scope", "expires_at"}


def _console_user(role: str) -> User:
    user = User.objects.create_user(username=f"u-{role}", password="pw-123456")
    user.groups.add(Group.objects.get(name=role))
    return user


def test_the_console_session_reads_without_a_key():
    client = Client()
    client.force_login(_console_user("Viewer"))
    assert client.get("/api/v1/messages").status_code == 200


def test_the_console_session_needs_csrf_for_writes():
    client = Client(enforce_csrf_checks=True)
    client.force_login(_console_user("Operator"))
    r = client.post(
        "/api/v1/messages", '{"to": ["a@example.com"]}', content_type="application/json"
    )
    assert_error(r, 403, "csrf_failed")
    client.get("/admin/login/")  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    r = client.post(
        "/api/v1/messages",
        '{"to": ["a@example.com"]}',
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert r.status_code == 201, r.content
    assert r.json()["status"] == "waiting"


def test_a_viewer_session_cannot_write():
    client = Client()
    client.force_login(_console_user("Viewer"))
    r = client.post(
        "/api/v1/messages", '{"to": ["a@example.com"]}', content_type="application/json"
    )
    assert_error(r, 403, "insufficient_scope")


def test_an_operator_session_cannot_test_backends():
    client = Client()
    client.force_login(_console_user("Operator"))
    assert_error(client.post("/api/v1/backends/1/test"), 403, "insufficient_scope")


def test_an_administrator_session_may_do_everything():
    client = Client()
    client.force_login(_console_user("Administrator"))
    assert_error(client.post("/api/v1/backends/999/test"), 404, "not_found")


def test_api_client_helper_sends_bearer(api: Api):
    assert api.get("/overview").status_code == 200
