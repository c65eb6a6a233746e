"""The API keys page: administrators list, create and revoke keys; the secret
is shown once; every action is audited; nobody else gets in."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from outbound.models import ApiKey, AuditEntry
from outbound.services.apikeys import check_api_key, create_api_key

pytestmark = pytest.mark.django_db

URL = "/settings/api-keys/"


def _secret(html: str) -> str:
    match = re.search(r'id="new-key-secret"[^>]*>([^<]+)<', html)
    assert match, "the new key is not on the page"
    return match.group(1)


def test_only_administrators_see_and_use_the_page(
    client: Client, viewer_client: Client, operator_client: Client, admin_client: Client
) -> None:
    key, _ = create_api_key(name="platform", scope="write", actor="setup")
    assert client.get(URL).status_code == 302
    for other in (viewer_client, operator_client):
        assert other.get(URL).status_code == 403
        assert other.post(URL, {"name": "x", "scope": "admin"}).status_code == 403
        assert other.post(f"{URL}{key.pk}/revoke/").status_code == 403
        assert "API keys" not in other.get("/settings/").content.decode()
    assert ApiKey.objects.count() == 1
    assert ApiKey.objects.get().revoked_at is None
    page = admin_client.get("/settings/").content.decode()
    assert f'href="{URL}"' in page


def test_list_shows_every_key_with_its_facts_and_no_secret(admin_client: Client) -> None:
    used, used_secret = create_api_key(name="platform", scope="write", actor="setup")
    assert check_api_key(used_secret).ok  # marks it used
    later = timezone.now() + timedelta(days=30)
    create_api_key(name="nightly export", scope="read", actor="setup", expires_at=later)
    gone, _ = create_api_key(name="old script", scope="admin", actor="setup")
    ApiKey.objects.filter(pk=gone.pk).update(revoked_at=timezone.now())
    expired, _ = create_api_key(name="trial", scope="read", actor="setup")
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(hours=1))

    r = admin_client.get(URL)
    html = r.content.decode()
    assert r.status_code == 200
    for key in ApiKey.objects.all():
        assert key.name in html and key.prefix in html
        assert key.key_hash not in html
    assert used_secret not in html
    row = html[html.index(f'id="apikey-{used.pk}"') :]
    row = row[: row.index("</tr>")]
    # Last used is set, expires is not: one "never", for the expiry.
    assert "Write" in row and row.count("never") == 1
    assert "Active" in row and "Revoke" in row
    row = html[html.index(f'id="apikey-{gone.pk}"') :]
    row = row[: row.index("</tr>")]
    assert "Revoked" in row and "Revoke…" not in row
    row = html[html.index(f'id="apikey-{expired.pk}"') :]
    assert "Expired" in row[: row.index("</tr>")]
    assert "no-store" in r["Cache-Control"]


def test_create_shows_the_secret_once_and_it_works(admin_client: Client, admin_user_: User) -> None:
    until = date.today() + timedelta(days=10)
    r = admin_client.post(
        URL, {"name": "Workflow platform", "scope": "write", "expires_on": until.isoformat()}
    )
    assert r.status_code == 200
    html = r.content.decode()
    secret = _secret(html)
    assert "shown this once" in html
    assert "no-store" in r["Cache-Control"]
    key = ApiKey.objects.get()
    assert (key.name, key.scope, key.created_by) == ("Workflow platform", "write", "ada")
    assert key.expires_at is not None
    assert timezone.localtime(key.expires_at).date() == until + timedelta(days=1)
    assert secret.startswith(key.prefix) and key.key_hash != secret
    check = check_api_key(secret)
    assert check.ok and check.key == key
    # Only its hash is stored and the page never shows it again.
    assert secret not in admin_client.get(URL).content.decode()
    entry = AuditEntry.objects.get(action="create_api_key")
    assert entry.actor == "ada" and entry.object_ids == [key.pk]
    assert secret not in str(entry.result) + str(entry.data)
    # The API accepts it for its scope.
    api = Client().get("/api/v1/messages", headers={"Authorization": f"Bearer {secret}"})
    assert api.status_code == 200


def test_create_with_bad_input_keeps_what_was_typed_and_writes_nothing(
    admin_client: Client,
) -> None:
    r = admin_client.post(URL, {"name": "", "scope": "root"})
    html = r.content.decode()
    assert r.status_code == 200
    assert "This field is required." in html
    assert "root is not one of the available choices" in html
    assert 'id="new-key-secret"' not in html
    r = admin_client.post(
        URL,
        {"name": "late", "scope": "read", "expires_on": (date.today() - timedelta(days=2))},
    )
    html = r.content.decode()
    assert "Must be in the future." in html
    assert 'value="late"' in html
    assert ApiKey.objects.count() == 0
    assert not AuditEntry.objects.filter(action="create_api_key").exists()


def test_revoke_asks_then_revokes_and_audits(
    admin_client: Client, make_user: Callable[..., User]
) -> None:
    key, secret = create_api_key(name="platform", scope="write", actor="setup")
    confirm = admin_client.get(f"{URL}{key.pk}/revoke/")
    html = confirm.content.decode()
    assert confirm.status_code == 200
    assert f"Revoke API key {key.prefix}?" in html and "csrfmiddlewaretoken" in html
    key.refresh_from_db()
    assert key.revoked_at is None  # asking changes nothing

    r = admin_client.post(f"{URL}{key.pk}/revoke/", follow=True)
    assert r.redirect_chain[-1][0] == URL
    assert f"API key {key.prefix} (platform) revoked" in r.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert check_api_key(secret).problem == "revoked"
    entry = AuditEntry.objects.get(action="revoke_api_key")
    assert entry.actor == "ada" and entry.ok and entry.object_ids == [key.pk]

    again = admin_client.post(f"{URL}{key.pk}/revoke/", follow=True)
    assert "was already revoked" in again.content.decode()
    assert admin_client.post(f"{URL}999999/revoke/").status_code == 404


def test_revoke_without_csrf_token_is_refused(admin_user_: User) -> None:
    key, secret = create_api_key(name="platform", scope="write", actor="setup")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user_)
    assert client.post(f"{URL}{key.pk}/revoke/").status_code == 403
    assert client.post(URL, {"name": "sneaky", "scope": "admin"}).status_code == 403
    assert check_api_key(secret).ok
    assert ApiKey.objects.count() == 1
