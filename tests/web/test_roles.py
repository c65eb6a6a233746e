"""Being logged in is not a role. Outbound shares the user table of the
platform it runs in, so a customer who signed up there (no group, no
permission) must get the login page or 403, and no byte of any message,
from every console page, every download and every API operation. The URLs
are read from the URL resolver and the OpenAPI schema, so a page or an
operation added later is tested without anyone remembering to.

Also that a console user reaches through the API exactly what the console
allows them (issue 16 item 8: `change_backend` alone is not the settings).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from outbound import secrets
from outbound.api.main import api
from outbound.models import ApiKey, Backend, Contact, GlobalSettings, Message, Suppression
from outbound.services.intake import queue_email
from outbound.states import Status

pytestmark = pytest.mark.django_db

SECRET_LINK = "https://shop.example/reset/Zq81-only-for-ann"
SUBJECT = "Reset your password 7f3c"
ADDRESS = "ann.customer@shop.example"

# Patterns (by name, or route when unnamed) that need no role on purpose, with why.
PUBLIC = {
    "login": "the login page itself",
    "logout": "ends the session, shows nothing",
    "healthz": "load balancer check: counts of nothing, no message",
    "livez": "liveness probe: a constant answer",
    "readyz": "readiness probe: database up and names of pending migrations",
    "metrics": "Prometheus figures, no message: loopback or the token (tests/test_metrics.py)",
    "twilio_receipt": "signed by the provider (tests/test_sms_twilio.py)",
    "http_receipt": "signed by the gateway (tests/test_sms_gateway.py)",
    "favicon.ico": "a redirect to the static icon",
}


def _walk(patterns: list[Any], prefix: str = "", namespace: str = "") -> list[tuple[str, str]]:
    """(route, qualified name) of every pattern under the root URLconf."""
    found: list[tuple[str, str]] = []
    for p in patterns:
        route = prefix + str(p.pattern)
        if isinstance(p, URLResolver):
            ns = p.namespace or namespace
            found += _walk(p.url_patterns, route, ns)
        elif isinstance(p, URLPattern):
            name = f"{namespace}:{p.name}" if namespace and p.name else (p.name or "")
            found.append((route, name))
    return found


def _url(route: str, pk: int) -> str:
    url = re.sub(r"<(?:int:)?\w+>", str(pk), route)
    url = re.sub(r"<(?:str|slug|path):\w+>", "x", url)
    return "/" + url.lstrip("^").rstrip("$").replace("\\Z", "")


def _console_routes(pk: int = 1) -> list[tuple[str, str]]:
    routes = []
    for route, name in _walk(get_resolver().url_patterns):
        if route.startswith(("admin/", "api/v1/")) or name in PUBLIC or route in PUBLIC:
            continue
        routes.append((_url(route, pk), name))
    return routes


def _api_operations(pk: int = 1) -> list[tuple[str, str]]:
    schema = api.get_openapi_schema()
    ops = []
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            if not op.get("security"):
                continue  # auth=None, e.g. /healthz
            ops.append((method.upper(), re.sub(r"\{\w+\}", str(pk), path)))
    return ops


@pytest.fixture
def stored(stored_backend: Any) -> Message:
    """One row of each kind under one id, and a message holding a secret link."""
    message = queue_email(
        to=[ADDRESS],
        subject=SUBJECT,
        text=f"Open {SECRET_LINK} to choose a new password.",
        html=f'<a href="{SECRET_LINK}">Choose a new password</a>',
        source="django",
    )
    pk = message.pk
    backend = stored_backend(pk=pk, secret=secrets.encrypt("relay-pw"))
    contact = Contact.objects.create(pk=pk, name="Ann Customer", email=ADDRESS)
    Message.objects.filter(pk=pk).update(contact=contact, backend=backend)
    Suppression.objects.create(pk=pk, kind="address", value="blocked@shop.example", reason="x")
    ApiKey.objects.create(pk=pk, name="k", prefix="obk_abcdefgh", key_hash="0" * 64)
    GlobalSettings.load()
    return message


@pytest.fixture
def customer() -> User:
    """A user as another app (allauth, a sign-up form) creates one."""
    return User.objects.create_user("customer", "customer@shop.example", "pw-customer-1")


def _leaks(response: Any) -> list[str]:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    text = body.decode("utf-8", "replace")
    return [s for s in (SECRET_LINK, SUBJECT, ADDRESS, "Ann Customer") if s in text]


def _unchanged(stored: Message, before: dict[str, Any]) -> None:
    m = Message.objects.get(pk=stored.pk)
    assert (m.status, m.subject) == (before["status"], before["subject"])
    assert Contact.objects.get(pk=stored.pk).name == "Ann Customer"
    assert Suppression.objects.filter(pk=stored.pk).exists()
    assert Backend.objects.get(pk=stored.pk).name == before["backend"]
    assert ApiKey.objects.get(pk=stored.pk).revoked_at is None


def test_the_enumeration_finds_the_console_pages_and_api_operations() -> None:
    names = {name for _url_, name in _console_routes()}
    assert {"outbound:home", "outbound:message", "outbound:message_report"} <= names
    assert {"outbound:settings", "outbound:apikeys", "outbound:contact_new"} <= names
    ops = _api_operations()
    assert ("GET", "/api/v1/messages/1") in ops
    assert ("PATCH", "/api/v1/settings") in ops
    assert len(ops) >= 25


def test_an_anonymous_visitor_gets_the_login_page_everywhere(client: Client, stored: Message):
    before = {"status": stored.status, "subject": stored.subject, "backend": "Relay"}
    for url, name in _console_routes(stored.pk):
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            if response.status_code == 405:
                continue
            assert response.status_code == 302, (method, url, name)
            assert response["Location"].startswith("/accounts/login/?next="), (url, name)
    for method, path in _api_operations(stored.pk):
        response = client.generic(method, path, "{}", content_type="application/json")
        assert response.status_code == 401, (method, path, response.content)
        assert not _leaks(response), (method, path)
    _unchanged(stored, before)


def test_a_user_without_a_role_gets_403_and_no_message_anywhere(
    customer: User, stored: Message
) -> None:
    client = Client()
    client.force_login(customer)
    before = {"status": stored.status, "subject": stored.subject, "backend": "Relay"}
    seen = 0
    for url, name in _console_routes(stored.pk):
        for method in ("get", "post"):
            response = getattr(client, method)(url, {"format": "text"} if method == "get" else {})
            if response.status_code == 405:
                continue
            seen += 1
            assert response.status_code == 403, (method, url, name, response.status_code)
            assert not _leaks(response), (method, url, _leaks(response))
    assert seen >= 20
    for method, path in _api_operations(stored.pk):
        response = client.generic(method, path, "{}", content_type="application/json")
        assert response.status_code == 403, (method, path, response.content)
        assert response.json()["code"] == "no_role", (method, path)
        assert not _leaks(response), (method, path)
    _unchanged(stored, before)


def test_a_staff_user_without_a_role_sees_no_row_in_the_admin(stored: Message) -> None:
    staff = User.objects.create_user("clerk", password="pw-clerk-1", is_staff=True)
    # A platform's staff may hold Django's plain model permissions.
    staff.user_permissions.add(Permission.objects.get(codename="view_message"))
    client = Client()
    client.force_login(staff)
    index = client.get("/admin/")
    assert index.status_code == 200
    assert b"/admin/outbound/" not in index.content
    for url in ("/admin/outbound/message/", f"/admin/outbound/message/{stored.pk}/change/"):
        response = client.get(url)
        assert response.status_code == 403, url
        assert not _leaks(response), url
    # The same person with Outbound's role reads the rows.
    staff.user_permissions.add(Permission.objects.get(codename="view_outbound"))
    staff = User.objects.get(pk=staff.pk)
    client.force_login(staff)
    assert SUBJECT.encode() in client.get(f"/admin/outbound/message/{stored.pk}/change/").content


def test_a_viewer_reads_the_pages_a_customer_may_not(viewer_client: Client, stored: Message):
    assert SUBJECT.encode() in viewer_client.get("/").content
    assert SECRET_LINK.encode() in viewer_client.get(f"/messages/{stored.pk}/").content
    assert viewer_client.get("/api/v1/messages").json()["items"][0]["subject"] == SUBJECT


def _with_perms(*codenames: str) -> Client:
    user = User.objects.create_user("bob", password="pw-bob-1")
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def test_change_backend_alone_does_not_reach_the_global_settings(stored: Message) -> None:
    client = _with_perms("view_outbound", "change_backend")
    before = GlobalSettings.load().stuck_threshold
    r = client.patch(
        "/api/v1/settings", '{"stuck_threshold_minutes": 7}', content_type="application/json"
    )
    assert r.status_code == 403, r.content
    assert r.json()["details"] == {"needed_permissions": ["outbound.change_globalsettings"]}
    assert GlobalSettings.load().stuck_threshold == before
    # The console refuses the same person the same thing.
    assert client.post("/settings/global/", {"stuck_threshold_minutes": 7}).status_code == 403
    # What the permission does allow, it allows on both.
    r = client.patch(
        f"/api/v1/backends/{stored.pk}", '{"limit": 5}', content_type="application/json"
    )
    assert r.status_code == 200, r.content


def test_a_session_needs_the_permission_the_console_asks_for_each_act(stored: Message) -> None:
    client = _with_perms("view_outbound", "add_suppression")
    body = '{"kind": "address", "value": "x@shop.example", "reason": "asked"}'
    assert (
        client.post("/api/v1/blocklist", body, content_type="application/json").status_code == 201
    )
    r = client.delete(f"/api/v1/blocklist/{stored.pk}")
    assert r.status_code == 403 and r.json()["code"] == "insufficient_scope", r.content
    r = client.post(f"/api/v1/messages/{stored.pk}/cancel")
    assert r.status_code == 403, r.content
    assert Message.objects.get(pk=stored.pk).status == Status.WAITING
