"""Text Outbound cannot store, or cannot put into a header, is refused where
it comes in, with the field named, and nothing stored changes.

A NUL character reached PostgreSQL and answered 500 (a contact's name or
external id, a blocklist reason, a search); on the API `q=%00` even matched
every message. A contact name with CR or LF was accepted and then failed
every email to the contact inside the transport, retried until its lifetime
ended. Run on both databases (the NUL was a 500 on PostgreSQL only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from outbound.models import Contact, Message, Suppression
from outbound.services.apikeys import create_api_key
from outbound.services.intake import queue_email
from outbound.states import Reason, Status
from tests.api.conftest import Api, assert_error

pytestmark = pytest.mark.django_db

NUL = "Ann\x00Smith"


@pytest.fixture
def api(db: None) -> Api:
    return Api(Client(), create_api_key(name="t", scope="admin", actor="t")[1])


def _session(role: str) -> Client:
    user = User.objects.create_user(f"u-{role}", password="pw-123456")
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def operator_client(db: None) -> Client:
    return _session("Operator")


@pytest.fixture
def viewer_client(db: None) -> Client:
    return _session("Viewer")


@pytest.fixture
def stored(db: None) -> dict[str, Any]:
    contact = Contact.objects.create(name="Ann Smith", email="ann@example.com", external_id="a1")
    block = Suppression.objects.create(kind="address", value="x@example.com", reason="asked")
    queue_email(to=["bob@example.com"], subject="Hello Bob")
    return {"contact": contact, "block": block}


def _nothing_changed(stored: dict[str, Any]) -> None:
    contact = Contact.objects.get(pk=stored["contact"].pk)
    assert (contact.name, contact.external_id) == ("Ann Smith", "a1")
    assert Contact.objects.count() == 1
    assert list(Suppression.objects.values_list("reason", flat=True)) == ["asked"]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("post", "/contacts", {"name": NUL, "email": "n@example.com"}, "name"),
        ("post", "/contacts", {"name": "N", "external_id": "x\x00"}, "external_id"),
        ("patch", "/contacts/{contact}", {"name": NUL}, "name"),
        ("put", "/contacts/by-external-id/a\x00", {"name": "Ann"}, "external_id"),
        (
            "post",
            "/blocklist",
            {"kind": "address", "value": "y@example.com", "reason": "a\x00"},
            "reason",
        ),
        ("post", "/messages", {"to": ["c@example.com"], "subject": "Hi\x00"}, "subject"),
        ("post", "/messages", {"to": ["c@example.com\x00"]}, "to"),
        ("post", "/messages", {"to": ["c@example.com"], "headers": {"X-A": "\x00"}}, "headers"),
        ("post", "/groups/g\x00/cancel", None, "group_key"),
    ],
)
def test_the_api_refuses_a_nul_in_any_text_with_422(
    api: Api, stored: dict[str, Any], method: str, path: str, body: Any, field: str | None
) -> None:
    path = path.format(contact=stored["contact"].pk)
    response = getattr(api, method)(path, body)
    assert response.status_code in (404, 422), response.content  # 404: a path no route takes
    if response.status_code == 422:
        details = response.json()["details"]
        if field is not None:
            assert field in details, details
            assert "NUL" in " ".join(details[field])
    _nothing_changed(stored)
    assert Message.objects.count() == 1


@pytest.mark.parametrize("path", ["/messages", "/contacts", "/blocklist"])
def test_an_api_search_with_a_nul_is_refused_not_answered_with_everything(
    api: Api, stored: dict[str, Any], path: str
) -> None:
    body = assert_error(api.get(path, q="a\x00"), 422, "invalid_input")
    assert "q" in body["details"] and "NUL" in body["details"]["q"][0]
    assert api.get(path, q="Hello Bob" if path == "/messages" else "a").status_code == 200


def test_the_console_refuses_a_nul_with_form_errors(
    operator_client: Client, stored: dict[str, Any]
) -> None:
    pk = stored["contact"].pk
    form = {"name": NUL, "email": "ann@example.com", "preferred_channel": "email", "active": "on"}
    response = operator_client.post(f"/contacts/{pk}/", form)
    assert response.status_code == 200
    assert b"Null characters are not allowed" in response.content
    response = operator_client.post(
        "/blocklist/", {"kind": "address", "value": "z@example.com", "reason": "r\x00"}
    )
    assert response.status_code == 200 and b"Null characters are not allowed" in response.content
    _nothing_changed(stored)


@pytest.mark.parametrize("path", ["/contacts/", "/blocklist/", "/"])
def test_a_console_search_with_a_nul_is_refused_on_the_page(
    viewer_client: Client, stored: dict[str, Any], path: str
) -> None:
    response = viewer_client.get(path, {"q": "Ann\x00"})
    assert response.status_code == 200
    if path == "/":
        assert b"Null characters are not allowed" in response.content
    else:
        assert b"The search text contains a NUL character" in response.content
        assert b"Nothing was searched" in response.content
        # Refused, not widened to everything.
        assert b"ann@example.com" not in response.content
        assert b"x@example.com" not in response.content


@pytest.mark.parametrize("name", ["Ann\r\nBcc: evil@example.com", "Ann\nSmith", "Ann\rSmith"])
def test_a_contact_name_with_a_line_break_is_refused_by_the_api_and_the_console(
    api: Api, operator_client: Client, stored: dict[str, Any], name: str
) -> None:
    body = assert_error(api.post("/contacts", {"name": name, "email": "n@example.com"}), 422)
    assert "line break" in body["details"]["name"][0]
    pk = stored["contact"].pk
    r = api.patch(f"/contacts/{pk}", {"name": name})
    assert r.status_code == 422 and "name" in r.json()["details"]
    form = {"name": name, "email": "ann@example.com", "preferred_channel": "email", "active": "on"}
    response = operator_client.post(f"/contacts/{pk}/", form)
    assert response.status_code == 200
    assert b"line break or control character" in response.content
    _nothing_changed(stored)


@pytest.mark.django_db(transaction=True)
def test_a_stored_name_with_a_line_break_is_not_sent_at_validation_never_retried(
    make_backend: Callable[..., Any], smtp_server: Any, run_worker: Callable[..., Any]
) -> None:
    make_backend(smtp_server)
    # Saved before names were checked (as an older version allowed).
    contact = Contact.objects.create(name="Ann\r\nBcc: evil@example.com", email="ann@example.com")
    message = queue_email(contact=contact, subject="Your invoice", text="Hello")
    ok = queue_email(to=["bob@example.com"], subject="Other mail", text="Hello")
    run_worker()
    message.refresh_from_db()
    assert (message.status, message.reason_code) == (Status.NOT_SENT, Reason.RECIPIENT_INVALID)
    assert "line break" in message.reason_text and "Fix the name" in message.reason_text
    assert message.attempts.count() == 0 and message.next_attempt_at is None
    ok.refresh_from_db()
    assert ok.status == Status.SENT
    assert [m.rcpt_tos for m in smtp_server.messages] == [["bob@example.com"]]
    # Fixed on the contact and re-sent, it goes.
    from outbound.services import operations

    Contact.objects.filter(pk=contact.pk).update(name="Ann Smith")
    assert operations.resend_message(message, actor="otto").ok
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.SENT, message.reason_text


def test_a_superuser_session_gets_the_same_refusals(stored: dict[str, Any]) -> None:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "r@example.com", "pw-root-123"))
    r = client.get("/api/v1/messages", {"q": "\x00"})
    assert r.status_code == 422
