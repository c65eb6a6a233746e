"""A customer of the platform who signs in through the console's login form
(same user table) lands on a page that says they have no Outbound role, with
no navigation and nothing of any message, at desktop and phone width."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from outbound.services.intake import queue_email
from tests.web.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width", [1280, 390])
def test_a_user_without_a_role_signs_in_to_a_refusal(
    live_server: Any, browser: Any, width: int
) -> None:
    User.objects.create_user("customer", "c@shop.example", PASSWORD)
    queue_email(to=["ann@shop.example"], subject="Reset link 5c1e", text="secret-reset-5c1e")
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "customer")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    body = page.inner_text("body")
    assert "has no Outbound role" in body
    assert "Reset link 5c1e" not in page.content() and "ann@shop.example" not in page.content()
    assert page.locator("nav[aria-label=Main]").count() == 0
    page.screenshot(path=f"/tmp/web-no-role-{width}.png", full_page=True)
    for path in ("/api/v1/messages", "/messages/1/report/?format=text"):
        response = page.goto(f"{live_server.url}{path}")
        assert response is not None and response.status == 403, path
        assert "5c1e" not in page.content()
    context.close()
