"""Browser stories: Debian's Chromium drives the running console against a
real SMTP server and the real worker."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from outbound.models import Attempt, Contact, Message
from outbound.services.intake import queue_email
from outbound.states import Status
from tests.web.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Screenshots land in var/ (ignored) unless `make screenshots` points them at
# docs/screenshots, so a test run never dirties the work tree.
SCREENSHOTS = Path(
    os.environ.get(
        "OUTBOUND_SCREENSHOTS_DIR", Path(__file__).resolve().parents[2] / "var" / "screenshots"
    )
)


def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # The window is made as tall as the page for the picture: a full-page
    # capture leaves an iframe below the fold (the HTML preview) unpainted.
    size = page.viewport_size
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": height})
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    page.set_viewport_size(size)


def test_invalid_address_is_fixed_and_resent_until_sent(
    live_server: Any,
    page: Any,
    make_user: Callable[..., Any],
    make_backend: Callable[..., Any],
    smtp_server: Any,
    run_worker: Callable[..., Any],
) -> None:
    make_user("otto", "Operator")
    make_backend(smtp_server)
    contact = Contact.objects.create(name="Ann Smith", email="ann@@example")
    message = queue_email(
        contact=contact,
        subject="Your invoice",
        text="Hello Ann",
        html="<h1>Invoice</h1><p>Hello Ann</p>",
    )
    queue_email(to="bob@example.com", subject="Welcome", to_user="Bob")
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.NOT_SENT

    base = live_server.url
    login(page, base, "otto")
    row = page.locator("table.messages tbody tr", has_text="Ann Smith")
    assert "Not sent" in row.inner_text() and "Recipient invalid" in row.inner_text()
    _shot(page, "outgoing-messages")

    row.get_by_role("link", name="History").click()
    page.wait_for_url(f"{base}/messages/{message.pk}/")
    explanation = page.locator("section.explanation").inner_text()
    assert "ann@@example" in explanation
    assert "Fix the contact, then Re-send" in explanation
    # The HTML part is shown as the recipient would see it (sandboxed).
    assert page.frame_locator("iframe.html-body").locator("h1").inner_text() == "Invoice"
    _shot(page, "message-not-sent")

    # Click one: Edit contact. Click two: Save and re-send.
    page.get_by_role("link", name="Edit contact").click()
    page.fill("#id_email", "ann@example.com")
    _shot(page, "contact-fix")
    page.get_by_role("button", name="Save and re-send this message").click()
    page.wait_for_url(f"{base}/messages/{message.pk}/")
    assert "will be sent again" in page.locator(".flash").inner_text()

    run_worker()
    page.reload()
    message.refresh_from_db()
    assert message.status == Status.SENT
    attempt = Attempt.objects.filter(message=message, outcome="sent").get()
    assert attempt.provider_id
    head = page.locator(".message-head").inner_text()
    assert "Sent" in head
    body = page.locator("main").inner_text()
    assert attempt.provider_id in body
    assert "not proof" in body
    assert smtp_server.wait_for(
        lambda: any("ann@example.com" in m.rcpt_tos for m in smtp_server.messages)
    )
    # The HTML body is shown in a frame that may run nothing.
    assert page.locator("iframe.html-body").get_attribute("sandbox") == ""
    assert page.frame_locator("iframe.html-body").locator("h1").inner_text() == "Invoice"
    _shot(page, "message-sent")

    page.goto(f"{base}/contacts/")
    _shot(page, "contacts")
    page.goto(f"{base}/settings/")
    _shot(page, "settings")
    page.goto(f"{base}/messages/{message.pk}/report/")
    assert "Outbound diagnostic report" in page.locator("#report").input_value()


def test_viewer_sees_no_resend_and_cannot_post_one(
    live_server: Any, page: Any, make_user: Callable[..., Any]
) -> None:
    make_user("vera", "Viewer")
    message = queue_email(to="bob@example.com", subject="Welcome")
    Message.objects.filter(pk=message.pk).update(status=Status.NOT_SENT)
    base = live_server.url
    login(page, base, "vera")
    assert page.locator("table.messages").get_by_role("button", name="Re-send").count() == 0
    page.goto(f"{base}/messages/{message.pk}/")
    assert page.get_by_role("button", name="Re-send").count() == 0
    # A hand-made POST with the page's own CSRF token is still refused.
    token = page.evaluate("document.querySelector('input[name=csrfmiddlewaretoken]').value")
    status = page.evaluate(
        """async ([url, token]) => {
            const r = await fetch(url, {method: "POST", headers: {"X-CSRFToken": token}});
            return r.status;
        }""",
        [f"{base}/messages/{message.pk}/resend/", token],
    )
    assert status == 403
    message.refresh_from_db()
    assert message.status == Status.NOT_SENT


def test_stuck_messages_with_no_worker_are_sent_from_the_page(
    live_server: Any,
    page: Any,
    make_user: Callable[..., Any],
    make_backend: Callable[..., Any],
    smtp_server: Any,
    run_worker: Callable[..., Any],
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    make_user("otto", "Operator")
    make_backend(smtp_server)
    late = queue_email(to="late@example.com", subject="Reminder")
    Message.objects.filter(pk=late.pk).update(send_at=timezone.now() - timedelta(hours=1))
    base = live_server.url
    login(page, base, "otto")
    banners = page.locator(".banner").all_inner_texts()
    assert any("No worker is running" in b for b in banners)
    assert any("1 message stuck" in b for b in banners)
    section = page.locator("#send-outgoing").inner_text()
    assert re.search(r"1 message\s+is stuck", section)
    page.get_by_role("button", name="Send outgoing messages").click()
    assert "1 stuck message queued to be sent now." in page.locator(".flash").inner_text()
    run_worker()
    late.refresh_from_db()
    assert late.status == Status.SENT
    page.reload()
    row = page.locator("table.messages tbody tr", has_text="late@example.com")
    assert "Sent" in row.inner_text()


def test_sending_a_scheduled_message_early_asks_first(
    live_server: Any, page: Any, make_user: Callable[..., Any]
) -> None:
    make_user("otto", "Operator")
    due = timezone.now() + timedelta(days=30)
    message = queue_email(to="ann@example.com", subject="Reminder", send_at=due)
    login(page, live_server.url, "otto")
    page.goto(f"{live_server.url}/messages/{message.pk}/")
    asked: list[str] = []

    def answer(dialog: Any, accept: bool) -> None:
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    # Declined: nothing changes.
    page.once("dialog", lambda d: answer(d, False))
    page.get_by_role("button", name="Send now").click()
    assert asked and "scheduled for" in asked[0] and "Send it now instead?" in asked[0]
    message.refresh_from_db()
    assert message.next_attempt_at is not None and message.next_attempt_at > timezone.now()
    # Accepted: due at once.
    page.once("dialog", lambda d: answer(d, True))
    page.get_by_role("button", name="Send now").click()
    page.wait_for_load_state()
    page.locator("text=it is now due at once").wait_for()
    message.refresh_from_db()
    assert message.next_attempt_at is not None and message.next_attempt_at <= timezone.now()
