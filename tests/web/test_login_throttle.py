"""The console's login form is throttled by django-axes: per user name and
per address, with a cool-off; every failed login is in the audit log."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from outbound.models import AuditEntry
from tests.web.conftest import PASSWORD


def _login(username: str, password: str, address: str = "203.0.113.7") -> Any:
    client = Client(REMOTE_ADDR=address)
    response = client.post("/accounts/login/", {"username": username, "password": password})
    return response, client


def _logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_five_wrong_passwords_lock_the_user_out_until_the_cool_off_ends(viewer: User) -> None:
    for _ in range(4):
        response, client = _login("vera", "wrong password")
        assert response.status_code == 200 and not _logged_in(client)
    # The fifth failure locks the user name out.
    response, client = _login("vera", "wrong password")
    assert response.status_code == 429
    # The right password is refused now, from another address too.
    response, client = _login("vera", PASSWORD, address="198.51.100.9")
    assert response.status_code == 429
    assert not _logged_in(client)
    page = response.content.decode()
    assert "Too many failed logins" in page and "try again in 0:15:00" in page

    failed = AuditEntry.objects.filter(action="login_failed")
    assert failed.count() == 6
    first = failed.order_by("id").first()
    assert first is not None
    assert first.actor == "vera" and not first.ok and first.data["address"] == "203.0.113.7"
    assert "wrong user name or password" in first.result
    assert "locked out" in failed.order_by("id").last().result  # type: ignore[union-attr]
    assert PASSWORD not in str(list(failed.values()))

    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        response, client = _login("vera", PASSWORD)
        assert response.status_code == 302 and _logged_in(client)


def test_many_user_names_from_one_address_lock_that_address_only(viewer: User) -> None:
    for n in range(5):
        _login(f"guess{n}", "wrong password", address="203.0.113.50")
    response, client = _login("vera", PASSWORD, address="203.0.113.50")
    assert response.status_code == 429 and not _logged_in(client)
    response, client = _login("vera", PASSWORD, address="203.0.113.51")
    assert response.status_code == 302 and _logged_in(client)


def test_a_success_resets_the_count(viewer: User) -> None:
    for _ in range(4):
        _login("vera", "wrong password")
    response, _ = _login("vera", PASSWORD)
    assert response.status_code == 302
    for _ in range(4):
        _login("vera", "wrong password")
    response, client = _login("vera", PASSWORD)
    assert response.status_code == 302 and _logged_in(client)
