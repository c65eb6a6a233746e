"""Re-send of a Sent message and Cancel ask first and say what will happen,
in a form step that works with scripts turned off: Chromium declines, then
accepts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from outbound.models import Event, Message
from outbound.services.intake import queue_email
from outbound.states import Status
from tests.web.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def no_script_page(browser: Any) -> Any:
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, java_script_enabled=False
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def test_resending_a_sent_message_asks_first_then_sends_a_second_copy(
    live_server: Any,
    no_script_page: Any,
    make_user: Callable[..., Any],
    make_backend: Callable[..., Any],
    smtp_server: Any,
    run_worker: Callable[..., Any],
) -> None:
    page = no_script_page
    make_user("otto", "Operator")
    make_backend(smtp_server)
    message = queue_email(to="ann@example.com", subject="Your invoice")
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.SENT
    copies = lambda: [m for m in smtp_server.messages if "ann@example.com" in m.rcpt_tos]  # noqa: E731
    assert len(copies()) == 1
    events = Event.objects.filter(message=message).count()
    base = live_server.url
    login(page, base, "otto")
    page.goto(f"{base}/messages/{message.pk}/")

    # Declined: the question names the consequence; nothing changes.
    page.get_by_role("button", name="Re-send").click()
    question = page.locator("section.confirm").inner_text()
    assert "Send a second copy of message" in question
    assert "the recipient gets a second copy" in question and "ann@example.com" in question
    page.get_by_role("link", name="No, leave it as it is").click()
    page.wait_for_url(f"{base}/messages/{message.pk}/")
    message.refresh_from_db()
    assert message.status == Status.SENT
    assert Event.objects.filter(message=message).count() == events

    # Accepted: queued again and sent a second time.
    page.get_by_role("button", name="Re-send").click()
    page.get_by_role("button", name="Yes, send a second copy").click()
    page.wait_for_url(f"{base}/messages/{message.pk}/")
    assert "will be sent again" in page.locator(".flash").inner_text()
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.SENT
    assert len(copies()) == 2

    # From the list the same question is asked, and the list's filters come back.
    page.goto(f"{base}/?status=sent")
    page.locator("table.messages tbody tr", has_text="ann@example.com").get_by_role(
        "button", name="Re-send"
    ).click()
    assert "Send a second copy" in page.locator("section.confirm").inner_text()
    page.get_by_role("link", name="No, leave it as it is").click()
    page.wait_for_url(f"{base}/?status=sent")


def test_cancel_asks_first_and_says_it_is_final(
    live_server: Any, no_script_page: Any, make_user: Callable[..., Any]
) -> None:
    page = no_script_page
    make_user("otto", "Operator")
    message = queue_email(to="bob@example.com", subject="Reminder")
    base = live_server.url
    login(page, base, "otto")
    page.goto(f"{base}/messages/{message.pk}/")
    page.get_by_role("button", name="Cancel").click()
    question = page.locator("section.confirm").inner_text()
    assert f"Cancel message {message.pk}?" in question
    assert "it is never sent, and a cancelled message cannot be re-sent" in question
    page.get_by_role("link", name="No, leave it as it is").click()
    page.wait_for_url(f"{base}/messages/{message.pk}/")
    assert Message.objects.get(pk=message.pk).status == Status.WAITING

    page.get_by_role("button", name="Cancel").click()
    page.get_by_role("button", name="Yes, cancel it").click()
    page.wait_for_url(f"{base}/messages/{message.pk}/")
    assert "The message was cancelled." in page.locator(".flash").inner_text()
    assert Message.objects.get(pk=message.pk).status == Status.CANCELLED
