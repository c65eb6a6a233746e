"""Every console page on a phone: Chromium at 390 px wide, with rows long
enough to push a careless layout sideways. Nothing may be wider than the
window; wide tables scroll inside their own box."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from outbound.models import GlobalSettings, Message, WorkerHeartbeat
from outbound.services.apikeys import create_api_key
from outbound.services.backends import save_backend_settings, test_backend
from outbound.services.blocklist import add_block
from outbound.services.contacts import save_contact
from outbound.services.intake import queue_email, queue_sms
from outbound.states import Status
from tests.web.conftest import login
from tests.web.test_browser import _shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
# The pages pictured in the README (docs/screenshots with `make screenshots`).
PICTURED = {"Outgoing messages": "phone-outgoing-messages", "a message not sent": "phone-message"}


def _overflow(page: Any) -> dict[str, Any]:
    """How far the page reaches past the window, and the widest culprits."""
    return page.evaluate(
        """() => {
            const width = window.innerWidth;
            const wide = [];
            for (const el of document.querySelectorAll('body *')) {
                const r = el.getBoundingClientRect();
                if (r.right > width + 1 && !el.closest(".table-scroll .grid")) {
                    const name = el.tagName.toLowerCase() + '.' + el.className;
                    wide.push(name + ' ' + Math.round(r.right));
                }
            }
            // Text can run past a box that itself fits (a long unbroken word).
            const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
            const range = document.createRange();
            while (walker.nextNode()) {
                const node = walker.currentNode;
                const parent = node.parentElement;
                if (!node.textContent.trim() || parent.closest('.table-scroll .grid')) continue;
                range.selectNodeContents(node);
                const r = range.getBoundingClientRect();
                if (r.right > width + 1) {
                    const name = parent.tagName.toLowerCase() + '.' + parent.className;
                    wide.push('text in ' + name + ': ' + node.textContent.trim().slice(0, 60));
                }
            }
            return {scroll: document.documentElement.scrollWidth, width, wide: wide.slice(0, 5)};
        }"""
    )


def test_no_console_page_is_wider_than_a_phone(
    live_server: Any,
    browser: Any,
    make_user: Callable[..., Any],
    make_backend: Callable[..., Any],
    smtp_server: Any,
    run_worker: Callable[..., Any],
) -> None:
    make_user("ada", "Administrator")
    gs = GlobalSettings.load()
    gs.sms_enabled = True
    gs.save()
    backend = make_backend(smtp_server, name="Main relay with a rather long name")
    console = save_backend_settings(
        data={"channel": "sms", "kind": "console", "name": "Console SMS"}, actor="ada"
    )
    assert test_backend(console, actor="ada").ok
    contact = save_contact(
        contact=None,
        data={
            "name": "Annabel Featherstonehaugh-Cholmondeley",
            "email": "annabel.featherstonehaugh@very-long-subdomain.example.com",
            "mobile": "+14155550123",
        },
        actor="ada",
    )
    sent = queue_email(
        contact=contact,
        subject="Your invoice INV-2026-000123456 for the quarterly maintenance contract",
        text="Hello " + "word " * 200,
        html="<h1>Invoice</h1>",
        backend=backend,
    )
    queue_email(to="nobody@@example", subject="Broken address")
    sms = queue_sms(to="+14155550124", body="Your code is 123456")
    run_worker()
    sent.refresh_from_db()
    assert sent.status == Status.SENT
    add_block(kind="domain", value="blocked-domain.example.org", actor="ada", reason="Spam trap")
    create_api_key(name="Platform integration key", scope="write", actor="ada")
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        name="worker-on-a-host-with-a-long-name.internal:12345",
        hostname="worker-on-a-host-with-a-long-name.internal",
        pid=12345,
        started_at=now - timedelta(hours=1),
        last_seen=now,
    )
    not_sent = Message.objects.get(subject="Broken address")
    pages = {
        "Outgoing messages": "/",
        "a sent message": f"/messages/{sent.pk}/",
        "a message not sent": f"/messages/{not_sent.pk}/",
        "an SMS": f"/messages/{sms.pk}/",
        "a diagnostic report": f"/messages/{sent.pk}/report/",
        "Contacts": "/contacts/",
        "a contact": f"/contacts/{contact.pk}/",
        "a new contact": "/contacts/new/",
        "Blocklist": "/blocklist/",
        "Workers": "/workers/",
        "Audit": "/audit/",
        "Settings": "/settings/",
        "API keys": "/settings/api-keys/",
    }
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        base = live_server.url
        login(page, base, "ada")
        too_wide = {}
        for name, url in pages.items():
            response = page.goto(base + url)
            assert response is not None and response.status == 200, name
            if name in PICTURED:
                _shot(page, PICTURED[name])
            found = _overflow(page)
            if found["scroll"] > found["width"]:
                too_wide[name] = found
        assert not too_wide
        # The messages table is still all there: it scrolls inside its box.
        page.goto(base + "/")
        box = page.locator(".table-scroll", has=page.locator("table.messages"))
        assert box.evaluate("el => el.scrollWidth > el.clientWidth")
        # The message page's facts stack: each label above its value.
        page.goto(f"{base}/messages/{sent.pk}/")
        label = page.locator("dl.facts dt", has_text="Message-ID")
        value = label.locator("xpath=following-sibling::dd[1]")
        label_box, value_box = label.bounding_box(), value.bounding_box()
        assert value_box["y"] >= label_box["y"] + label_box["height"] - 1
        assert value_box["width"] > 300
    finally:
        context.close()
