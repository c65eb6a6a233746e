"""The settings page as an administrator uses it: each backend's card
carries its own results and errors, forms stay folded until opened, a
console SMS backend shows no provider fields, and two backends fit in
1,500 px."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from outbound.models import Backend
from outbound.services.backends import save_backend_settings, test_backend
from tests.web.conftest import login
from tests.web.test_browser import _shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def two_backends(make_backend: Callable[..., Any], smtp_server: Any) -> tuple[Backend, Backend]:
    email = make_backend(smtp_server)
    console = save_backend_settings(
        data={"channel": "sms", "kind": "console", "name": "Console SMS", "is_default": True},
        actor="setup",
    )
    assert test_backend(console, actor="setup").ok
    return email, Backend.objects.get(pk=console.pk)


def _in_view(page: Any, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    height = page.viewport_size["height"]
    return box is not None and 0 <= box["y"] < height


def test_results_show_in_the_backends_card_and_the_page_stays_short(
    live_server: Any,
    page: Any,
    make_user: Callable[..., Any],
    two_backends: tuple[Backend, Backend],
    smtp_server: Any,
) -> None:
    email, console = two_backends
    make_user("ada", "Administrator")
    page.set_viewport_size({"width": 1280, "height": 900})
    base = live_server.url
    login(page, base, "ada")
    page.goto(f"{base}/settings/")
    _shot(page, "settings")
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 1500, height
    # Folded until opened; the console backend has no provider fields at all.
    assert page.locator("details.edit-settings[open]").count() == 0
    sms_card = page.locator(f"#backend-{console.pk}")
    assert sms_card.locator(".kind-twilio, .kind-http").count() == 0
    assert "Account SID" not in sms_card.inner_text()

    card = page.locator(f"#backend-{email.pk}")
    with page.expect_navigation():
        card.get_by_role("button", name="Test", exact=True).click()
    assert page.url.endswith(f"#backend-{email.pk}")
    assert "Test of backend Relay: Success" in card.locator(".card-flash").inner_text()
    assert page.locator("main > .flash").count() == 0
    assert _in_view(page, f"#backend-{email.pk} .card-flash")

    page.fill(f"#test-to-{email.pk}", "ann@example.com")
    with page.expect_navigation():
        card.get_by_role("button", name="Send test message").click()
    assert _in_view(page, f"#backend-{email.pk} .card-flash")
    assert "ann@example.com" in card.locator(".card-flash").inner_text()
    assert smtp_server.wait_for(
        lambda: any("ann@example.com" in m.rcpt_tos for m in smtp_server.messages)
    )

    with page.expect_navigation():
        sms_card.get_by_role("button", name="Test", exact=True).click()
    assert "Test of backend Console SMS: Success" in sms_card.locator(".card-flash").inner_text()
    assert card.locator(".card-flash").count() == 0


def test_a_failed_save_is_summed_up_at_the_top_and_asks_for_the_password_again(
    live_server: Any,
    page: Any,
    make_user: Callable[..., Any],
    two_backends: tuple[Backend, Backend],
) -> None:
    email, _ = two_backends
    make_user("ada", "Administrator")
    base = live_server.url
    login(page, base, "ada")
    page.goto(f"{base}/settings/")
    card = page.locator(f"#backend-{email.pk}")
    card.get_by_text("Edit settings").click()
    page.fill(f"#id_b{email.pk}-password", "new-secret")
    page.fill(f"#id_b{email.pk}-host", "http://smtp.example.com:25")
    with page.expect_navigation():
        card.get_by_role("button", name="Save", exact=True).click()
    summary = page.locator("#error-summary")
    assert _in_view(page, "#error-summary")
    text = summary.inner_text()
    assert "Backend Relay was not saved." in text
    assert "Host" in text
    assert "Type the password again" in text
    # The form is open, with the error at its field and the password empty.
    assert card.locator("details.edit-settings[open]").count() == 1
    assert page.input_value(f"#id_b{email.pk}-password") == ""
    assert card.locator(".field.has-error").count() >= 1
    summary.get_by_role("link", name="its form below").click()
    assert page.url.endswith(f"#backend-{email.pk}")
    assert Backend.objects.get(pk=email.pk).host != "http://smtp.example.com:25"


def test_a_test_of_older_settings_is_not_shown_as_a_green_success(
    live_server: Any,
    page: Any,
    make_user: Callable[..., Any],
    two_backends: tuple[Backend, Backend],
) -> None:
    email, _ = two_backends
    make_user("ada", "Administrator")
    save_backend_settings(backend=email, data={"port": email.port + 1}, actor="ada")
    base = live_server.url
    login(page, base, "ada")
    page.goto(f"{base}/settings/")
    card = page.locator(f"#backend-{email.pk}")
    text = card.inner_text()
    assert "not tested" in text
    assert card.locator(".test-ok").count() == 0
    assert "on older settings" in text and "Run the Test" in text
