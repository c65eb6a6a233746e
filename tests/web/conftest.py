"""Console fixtures: users in each role, clients logged in as them, and a
real Chromium for the browser stories."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group, User
from django.test import Client

PASSWORD = "correct horse battery"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    def make(username: str, role: str | None = None, **extra: Any) -> User:
        if role and not Group.objects.filter(name=role).exists():
            # Transactional tests flush the tables the roles migration filled.
            roles = importlib.import_module("outbound.migrations.0002_roles")
            roles.create_roles(django_apps, None)
            view_role = importlib.import_module("outbound.migrations.0016_view_role")
            view_role.grant_view_role(django_apps, None)
        user = User.objects.create_user(username=username, password=PASSWORD, **extra)
        if role:
            user.groups.add(Group.objects.get(name=role))
        return user

    return make


@pytest.fixture
def viewer(make_user: Callable[..., User]) -> User:
    return make_user("vera", "Viewer")


@pytest.fixture
def operator(make_user: Callable[..., User]) -> User:
    return make_user("otto", "Operator")


@pytest.fixture
def admin_user_(make_user: Callable[..., User]) -> User:
    return make_user("ada", "Administrator")


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer_client(viewer: User) -> Client:
    return _client(viewer)


@pytest.fixture
def operator_client(operator: User) -> Client:
    return _client(operator)


@pytest.fixture
def admin_client(admin_user_: User) -> Client:
    """Logged in as ada, of the Administrator role (not pytest-django's
    superuser of the same fixture name)."""
    return _client(admin_user_)


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium (Debian's) for one test."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("Chromium is not installed")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the live
    # server's ORM calls made from the test itself would otherwise be refused.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            chromium = p.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                ],
            )
            try:
                yield chromium
            finally:
                chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    yield pg
    context.close()


def login(page: Any, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")


def as_shown(form: Any) -> dict[str, Any]:
    """What a browser submits for an unbound form as the page shows it: each
    field's shown value, ticked boxes only, write-only secrets blank, and for
    a list with no option selected its first option."""
    from django import forms

    data: dict[str, Any] = {}
    for bound in form:
        value = bound.value()
        widget = bound.field.widget
        if isinstance(widget, forms.CheckboxInput):
            if value:
                data[bound.html_name] = "on"
        elif isinstance(widget, forms.PasswordInput):
            data[bound.html_name] = ""
        elif isinstance(widget, forms.Select):
            options = [str(key) for key, _label in bound.field.choices]
            data[bound.html_name] = str(value) if str(value) in options else options[0]
        else:
            data[bound.html_name] = "" if value is None else value
    return data
