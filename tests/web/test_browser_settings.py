"""Browser story of the settings page: Debian's Chromium, a relay whose
password changed, a second server standing for system mail, the real worker."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from outbound.models import Backend, Message
from outbound.services.backends import save_backend_settings
from outbound.services.global_settings import save_global_settings
from outbound.services.intake import queue_email
from outbound.states import Status
from tests.twilio_server import TwilioTestServer
from tests.web.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Screenshots land in var/ (ignored) unless `make screenshots` points them at
# docs/screenshots, so a test run never dirties the work tree.
SCREENSHOTS = Path(
    os.environ.get(
        "OUTBOUND_SCREENSHOTS_DIR", Path(__file__).resolve().parents[2] / "var" / "screenshots"
    )
)


def test_wrong_password_is_fixed_on_the_settings_page_and_held_messages_are_sent(
    live_server: Any,
    page: Any,
    settings: Any,
    make_user: Callable[..., Any],
    make_backend: Callable[..., Any],
    make_smtp_server: Callable[..., Any],
    run_worker: Callable[..., Any],
) -> None:
    make_user("ada", "Administrator")
    system_mail = make_smtp_server()
    settings.OUTBOUND_SYSTEM_MAIL_URL = f"smtp://{system_mail.host}:{system_mail.port}"
    save_global_settings(data={"backend_failure_email": "ops@example.com"}, actor="setup")
    relay = make_smtp_server(auth={"mailer": "right"})
    backend = make_backend(relay, username="mailer", password="right")
    # The relay's password is changed behind Outbound's back.
    relay.configure(auth={"mailer": "rotated"})
    queued = [queue_email(to=f"user{i}@example.com", subject=f"Notice {i}") for i in range(3)]
    run_worker()
    run_worker()
    statuses = set(
        Message.objects.filter(pk__in=[m.pk for m in queued]).values_list("status", flat=True)
    )
    assert statuses == {Status.BACKEND_TEST_REQUIRED}
    assert system_mail.wait_for(
        lambda: any(m.rcpt_tos == ["ops@example.com"] for m in system_mail.messages)
    )
    alert = next(m for m in system_mail.messages if m.rcpt_tos == ["ops@example.com"])
    assert b"Relay" in alert.raw and b"535" in alert.raw
    assert relay.messages == []

    base = live_server.url
    login(page, base, "ada")
    page.goto(f"{base}/settings/")
    card = page.locator(f"#backend-{backend.pk}")
    assert "Failing" in card.locator("h2").inner_text()
    card.get_by_text("Edit settings").click()
    page.fill(f"#id_b{backend.pk}-password", "rotated")
    with page.expect_navigation():
        card.get_by_role("button", name="Save", exact=True).click()
    assert "Backend Relay saved. Run the test" in card.locator(".flash").inner_text()
    assert page.input_value(f"#id_b{backend.pk}-password") == ""
    assert "(set)" in (card.locator(".secret-state").text_content() or "")

    with page.expect_navigation():
        card.get_by_role("button", name="Test", exact=True).click()
    result = card.locator(".test-result")
    assert "Success" in result.locator(".test-headline").inner_text()
    assert "535" not in result.locator("pre.transcript").inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "settings.png"), full_page=True)

    run_worker()
    statuses = set(
        Message.objects.filter(pk__in=[m.pk for m in queued]).values_list("status", flat=True)
    )
    assert statuses == {Status.SENT}
    assert sorted(r for m in relay.messages for r in m.rcpt_tos) == [
        f"user{i}@example.com" for i in range(3)
    ]
    assert Backend.objects.get(pk=backend.pk).is_usable


def test_the_test_button_of_a_twilio_backend_tests_what_is_saved(
    live_server: Any, page: Any, make_user: Callable[..., Any], twilio_server: TwilioTestServer
) -> None:
    make_user("ada", "Administrator")
    backend = save_backend_settings(
        data=twilio_server.backend_settings(),
        actor="setup",
    )
    base = live_server.url
    login(page, base, "ada")
    page.goto(f"{base}/settings/")
    card = page.locator(f"#backend-{backend.pk}")
    # A token typed but not saved: the test would not check it, so it is refused.
    card.get_by_text("Edit settings").click()
    page.fill(f"#id_b{backend.pk}-password", "a-token-not-saved")
    with page.expect_navigation():
        card.get_by_role("button", name="Test", exact=True).click()
    errors = page.locator(f"#backend-{backend.pk} .errors").inner_text()
    assert "Unsaved changes (auth token or api secret)" in errors
    assert twilio_server.requests == 0
    # The form as the page shows it, secret left blank: the saved settings are tested.
    page.goto(f"{base}/settings/")
    with page.expect_navigation():
        card.get_by_role("button", name="Test", exact=True).click()
    assert "Success" in card.locator(".test-result .test-headline").inner_text()
    assert twilio_server.requests == 1
    assert Backend.objects.get(pk=backend.pk).is_usable
