"""The Content-Security-Policy in a real Chromium: every console page works
under it with no violation (no inline script left), and a message's HTML is
shown with its own styles while remote images wait for the operator to ask."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from outbound.services.intake import queue_email
from tests.web.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TRACKER = "https://tracker.example.net/open.gif"
GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")


def test_pages_work_under_the_policy_and_remote_images_wait_for_the_operator(
    live_server: Any, page: Any, make_user: Callable[..., Any]
) -> None:
    make_user("ada", "Administrator")
    message = queue_email(
        to="a@example.com",
        subject="Invoice",
        text="Plain body",
        html=(
            "<style>h1 { color: rgb(200, 0, 0) }</style><h1>Invoice</h1>"
            f'<img id="pixel" src="{TRACKER}" alt="pixel">'
        ),
    )
    later = queue_email(
        to="b@example.com", subject="Later", send_at=timezone.now() + timedelta(days=1)
    )
    violations: list[str] = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    tracked: list[str] = []

    def answer_tracker(route: Any) -> None:
        tracked.append(route.request.url)
        route.fulfill(status=200, content_type="image/gif", body=GIF)

    page.route("https://tracker.example.net/**", answer_tracker)
    base = live_server.url
    login(page, base, "ada")

    for path in [
        "/",
        "/contacts/",
        "/contacts/new/",
        "/blocklist/",
        "/workers/",
        "/audit/",
        "/settings/",
        "/settings/api-keys/",
        "/api/v1/docs",
    ]:
        response = page.goto(f"{base}{path}")
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"], path
    assert page.locator(".swagger-ui").count() == 1
    assert violations == []

    # The message's HTML: its own inline style applies, the remote image is not fetched.
    with page.expect_console_message(lambda m: TRACKER in m.text):
        page.goto(f"{base}/messages/{message.pk}/")
    frame = page.frame_locator("iframe.html-body")
    heading = frame.locator("h1")
    assert heading.inner_text() == "Invoice"
    assert heading.evaluate("el => getComputedStyle(el).color") == "rgb(200, 0, 0)"
    assert frame.locator("#pixel").evaluate("el => el.naturalWidth") == 0
    assert tracked == []
    # The only refusal is that image, inside the preview.
    assert violations and all(TRACKER in v for v in violations), violations
    violations.clear()

    page.get_by_role("link", name="Load remote images and styles").click()
    page.wait_for_url(f"{base}/messages/{message.pk}/?remote=1#content-title")
    frame = page.frame_locator("iframe.html-body")
    frame.locator("#pixel").evaluate(
        "el => el.complete && el.naturalWidth ? 1 : new Promise(r => el.onload = r)"
    )
    assert frame.locator("#pixel").evaluate("el => el.naturalWidth") == 1
    assert tracked == [TRACKER]
    assert violations == []

    # The report's Copy button and a scheduled message's question come from console.js.
    page.goto(f"{base}/messages/{message.pk}/report/")
    page.click("#copy-report")
    page.locator("#copy-status", has_text="Copied.").wait_for()

    questions: list[str] = []

    def decline(dialog: Any) -> None:
        questions.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", decline)
    page.goto(f"{base}/messages/{later.pk}/")
    page.get_by_role("button", name="Send now").click()
    assert questions and "Send it now instead?" in questions[0]
    assert page.url == f"{base}/messages/{later.pk}/"
    assert page.locator("body").get_attribute("data-refresh") is None
    page.goto(f"{base}/")
    assert page.locator("body").get_attribute("data-refresh") == "30"
    assert violations == []
