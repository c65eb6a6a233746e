"""Browser-side hardening, through the real pages: a Content-Security-Policy
with no inline script on every page, the HTML preview under a stricter
policy of its own, and a debug page that shows no password of a URL
setting."""

from __future__ import annotations

import re
import sys
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client, RequestFactory
from django.views.debug import technical_500_response

from outbound.models import Message
from outbound.services.intake import queue_email

# Built from parts so that no line of this file's source, which the debug
# page shows around each frame, holds them whole.
MAIL_PASSWORD = "s3cr3t" + "-mail-pw"
DB_PASSWORD = "db-pass" + "-9"

# A <script> element with a body, or an on...= event attribute.
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+=", re.IGNORECASE)


def _message() -> Message:
    return queue_email(
        to="a@example.com",
        subject="Invoice",
        text="Plain body",
        html=(
            "<style>p { color: red }</style><p>Hi</p>"
            '<img src="https://tracker.example.net/open.gif" alt="pixel">'
        ),
        send_at=None,
    )


CONSOLE_PAGES = [
    "/",
    "/contacts/",
    "/contacts/new/",
    "/blocklist/",
    "/workers/",
    "/audit/",
    "/settings/",
    "/settings/api-keys/",
]


def test_every_console_page_has_a_policy_without_inline_script(admin_client: Client) -> None:
    message = _message()
    pages = [*CONSOLE_PAGES, f"/messages/{message.pk}/", f"/messages/{message.pk}/report/"]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy, url
        assert "default-src 'self'" in policy and "object-src 'none'" in policy, url
        html = response.content.decode()
        assert not INLINE_SCRIPT.search(html), (url, INLINE_SCRIPT.search(html))
    login = Client().get("/accounts/login/")
    assert "script-src 'self'" in login["Content-Security-Policy"]


def test_the_html_preview_blocks_remote_content_until_asked(viewer_client: Client) -> None:
    message = _message()
    page = viewer_client.get(f"/messages/{message.pk}/").content.decode()
    assert f'src="/messages/{message.pk}/html/"' in page
    assert "Load remote images and styles" in page

    blocked = viewer_client.get(f"/messages/{message.pk}/html/")
    assert blocked.status_code == 200
    policy = blocked["Content-Security-Policy"]
    assert "img-src data:;" in policy or policy.endswith("img-src data:")
    assert "https:" not in policy and "script-src 'none'" in policy
    assert "style-src 'unsafe-inline'" in policy
    # Only the console's own pages may frame it.
    assert blocked["X-Frame-Options"] == "SAMEORIGIN" and "frame-ancestors 'self'" in policy

    page = viewer_client.get(f"/messages/{message.pk}/?remote=1").content.decode()
    assert f'src="/messages/{message.pk}/html/?remote=1"' in page
    assert "Block them again" in page
    loaded = viewer_client.get(f"/messages/{message.pk}/html/?remote=1")
    policy = loaded["Content-Security-Policy"]
    assert "img-src data: https: http:" in policy and "script-src 'none'" in policy

    # The console's own pages are still not framable by anyone.
    assert viewer_client.get("/")["X-Frame-Options"] == "DENY"


def test_the_html_preview_needs_a_role(client: Client, make_user: Any) -> None:
    message = _message()
    assert client.get(f"/messages/{message.pk}/html/").status_code == 302
    make_user("cust")
    client.force_login(User.objects.get(username="cust"))
    assert client.get(f"/messages/{message.pk}/html/").status_code == 403


def test_the_debug_page_hides_the_system_mail_password(settings: Any) -> None:
    settings.DEBUG = True
    settings.OUTBOUND_SYSTEM_MAIL_URL = (
        f"smtp://alerts:{MAIL_PASSWORD}@mail.internal:587?security=starttls"
    )
    # runserver puts the process environment in every request's META.
    environ = {"DATABASE_URL": f"postgres://app:{DB_PASSWORD}@db.internal:5432/outbound"}
    page = _debug_page(RequestFactory().get("/", **environ))
    assert "OUTBOUND_SYSTEM_MAIL_URL" in page and "mail.internal:587" in page
    assert MAIL_PASSWORD not in page
    assert "db.internal:5432" in page and DB_PASSWORD not in page


def _debug_page(request: Any) -> str:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        return technical_500_response(request, *sys.exc_info()).content.decode()


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("smtp://u:pw@h:25", "smtp://u:********************@h:25"),
        ("smtp://h:25", "smtp://h:25"),
        ("/static/", "/static/"),
    ],
)
def test_url_passwords_are_blanked_and_the_rest_kept(value: str, shown: str) -> None:
    from outbound.web.debug import hide_url_passwords

    assert hide_url_passwords(value) == shown
