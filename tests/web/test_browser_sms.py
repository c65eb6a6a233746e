"""Browser story for SMS: Chromium drives the console while the real worker
sends through Twilio's SDK to the local fake Twilio API, and a signed delivery
receipt comes back to the running service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from outbound.models import Contact, GlobalSettings
from outbound.services.backends import save_backend_settings, test_backend
from outbound.services.intake import queue_sms
from outbound.states import Status
from tests.twilio_server import TwilioTestServer
from tests.web.conftest import login
from tests.web.test_browser import _shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_invalid_number_fixed_resent_sent_and_delivered(
    live_server: Any,
    page: Any,
    settings: Any,
    make_user: Callable[..., Any],
    twilio_server: TwilioTestServer,
    run_worker: Callable[..., Any],
) -> None:
    settings.OUTBOUND_PUBLIC_URL = live_server.url
    gs = GlobalSettings.load()
    gs.sms_enabled = True
    gs.default_region = "US"
    gs.save()
    backend = save_backend_settings(
        data=twilio_server.backend_settings(is_default=True),
        actor="test",
    )
    assert test_backend(backend, actor="test").ok
    make_user("otto", "Operator")
    # A number synced from the platform before anyone checked it.
    contact = Contact.objects.create(name="Tex Ritter", mobile="555-01", preferred_channel="sms")
    message = queue_sms(contact=contact, body="You have a new task: approve invoice 42")
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.NOT_SENT
    assert twilio_server.requests == 1  # the backend test only

    base = live_server.url
    login(page, base, "otto")
    row = page.locator("table.messages tbody tr", has_text="Tex Ritter")
    assert "Not sent" in row.inner_text() and "SMS" in row.inner_text()
    row.get_by_role("link", name="History").click()
    page.wait_for_url(f"{base}/messages/{message.pk}/")
    explanation = page.locator("section.explanation").inner_text()
    assert "555-01" in explanation
    assert "mobile number" in explanation
    _shot(page, "sms-not-sent")

    page.get_by_role("link", name="Edit contact").click()
    page.fill("#id_mobile", "+1 415 555 0123")
    page.get_by_role("button", name="Save and re-send this message").click()
    page.wait_for_url(f"{base}/messages/{message.pk}/")
    assert "will be sent again" in page.locator(".flash").inner_text()

    run_worker()
    page.reload()
    assert "Sent" in page.locator(".message-head").inner_text()
    [created] = twilio_server.received
    assert created["To"] == "+14155550123"
    sid = next(iter(twilio_server.messages))
    facts = page.locator("section.explanation").inner_text()
    assert sid in facts and "+14155550123" in facts

    receipt = twilio_server.receipt(sid, "delivered")
    assert receipt.url == f"{base}/hooks/sms/{backend.pk}/twilio"
    # Posted the way Twilio posts it: a form with the signature header.
    answer = page.request.post(receipt.url, form=receipt.params, headers=receipt.headers)
    assert answer.status == 200, answer.text()

    page.reload()
    assert "delivered" in page.locator("dd.receipt").inner_text()
    history = page.locator("ol.timeline").inner_text()
    assert "Delivery receipt: delivered" in history
    assert "handset received it" in page.locator("section.explanation").inner_text()
    _shot(page, "sms-delivered")
