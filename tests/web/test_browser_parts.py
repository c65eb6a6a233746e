"""The message page of Django mail with parts, in Chromium at desktop and
phone widths: every alternative and attachment Django built is listed with
its name, type, size, disposition and Content-ID, and nothing overflows."""

from __future__ import annotations

from collections.abc import Callable
from email.mime.image import MIMEImage
from typing import Any

import pytest
from django.core.mail import EmailMultiAlternatives

from outbound.models import Message
from tests.web.conftest import login
from tests.web.test_browser import _shot
from tests.web.test_browser_layout import PHONE, _overflow

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_message_page_lists_the_parts_of_django_mail(
    live_server: Any, page: Any, make_user: Callable[..., Any], settings: Any
) -> None:
    settings.EMAIL_BACKEND = "outbound.mail.EmailBackend"
    make_user("vera", "Viewer")
    email = EmailMultiAlternatives(
        "Ihre Buchung",
        "Ihre Buchung ist bestätigt.",
        "Bücherei Köln <noreply@shop.example>",
        ["Jürgen Müller <juergen@example.com>"],
    )
    email.attach_alternative('<p>Bestätigt <img src="cid:logo@shop.example"></p>', "text/html")
    email.attach_alternative("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "text/calendar")
    image = MIMEImage(b"\x89PNG\r\n\x1a\n" + bytes(2040), "png")
    image.add_header("Content-ID", "<logo@shop.example>")
    image.add_header("Content-Disposition", "inline", filename="logo.png")
    email.attach(image)
    email.attach(
        "Buchungsbestätigung März 2027, Köln.pdf", b"%PDF-1.4\n" + bytes(5000), "application/pdf"
    )
    email.mixed_subtype = "related"
    assert email.send() == 1
    message = Message.objects.get()

    page.set_viewport_size({"width": 1280, "height": 1000})
    login(page, live_server.url, "vera")
    page.goto(f"{live_server.url}/messages/{message.pk}/")
    parts = page.locator("ul.parts li").all_inner_texts()
    assert parts == [
        "(no file name): text/plain; charset=utf-8, 28\xa0bytes, alternative or body",
        "(no file name): text/html; charset=utf-8, 51\xa0bytes, alternative or body",
        "(no file name): text/calendar; charset=utf-8, 32\xa0bytes, alternative or body",
        "logo.png: image/png, 2.0\xa0KB, inline, Content-ID <logo@shop.example>",
        "Buchungsbestätigung März 2027, Köln.pdf: application/pdf, 4.9\xa0KB, attachment",
    ]
    _shot(page, "message-parts")
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/messages/{message.pk}/")
    layout = _overflow(page)
    assert layout["scroll"] <= layout["width"] and not layout["wide"], layout
    _shot(page, "message-parts-phone")
