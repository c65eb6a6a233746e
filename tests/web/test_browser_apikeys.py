"""Browser story of the API keys page: Debian's Chromium, the live server, the
real API called with the key the page showed."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from outbound.models import ApiKey, AuditEntry
from tests.web.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(
    os.environ.get(
        "OUTBOUND_SCREENSHOTS_DIR", Path(__file__).resolve().parents[2] / "var" / "screenshots"
    )
)


def _api_get(url: str, key: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - live server
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_administrator_creates_a_key_uses_it_once_shown_and_revokes_it(
    live_server: Any, page: Any, make_user: Callable[..., Any]
) -> None:
    make_user("ada", "Administrator")
    base = live_server.url
    login(page, base, "ada")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="API keys").click()
    page.wait_for_url(f"{base}/settings/api-keys/")
    assert "No API key yet." in page.locator("table.apikeys").inner_text()

    page.fill("#id_name", "Workflow platform")
    page.select_option("#id_scope", "write")
    with page.expect_navigation():
        page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key-secret").inner_text().strip()
    key = ApiKey.objects.get()
    assert secret.startswith(key.prefix + "_")
    assert "shown this once" in page.locator(".new-key").inner_text()
    row = page.locator(f"#apikey-{key.pk}")
    assert "Workflow platform" in row.inner_text() and "Active" in row.inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "api-keys.png"), full_page=True)

    status, body = _api_get(f"{base}/api/v1/messages", secret)
    assert status == 200 and body["items"] == []

    # Coming back to the page never shows the secret again.
    page.goto(f"{base}/settings/api-keys/")
    assert page.locator("#new-key-secret").count() == 0
    assert secret not in page.content()
    assert "never" not in page.locator(f"#apikey-{key.pk} td").nth(4).inner_text()

    with page.expect_navigation():
        page.locator(f"#apikey-{key.pk}").get_by_role("button", name="Revoke…").click()
    assert f"Revoke API key {key.prefix}?" in page.locator("h1").inner_text()
    with page.expect_navigation():
        page.get_by_role("button", name="Revoke the key").click()
    assert (
        f"API key {key.prefix} (Workflow platform) revoked" in page.locator(".flash").inner_text()
    )
    assert "Revoked" in page.locator(f"#apikey-{key.pk}").inner_text()

    status, body = _api_get(f"{base}/api/v1/messages", secret)
    assert status == 401 and body["code"] == "key_revoked"
    actions = list(
        AuditEntry.objects.filter(actor="ada").order_by("id").values_list("action", flat=True)
    )
    assert actions == ["create_api_key", "revoke_api_key"]
