"""Django's admin is a read-only view: a superuser logged in through the
admin's own login page can list and open the rows, but every add, change and
delete URL is refused with nothing written, and no page shows a secret. Also
that `setup-dev` sends the administrator to the console, not to /admin/."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from outbound import secrets
from outbound.models import (
    Attachment,
    Attempt,
    Backend,
    Contact,
    Event,
    Message,
    Recipient,
    Suppression,
    WorkerHeartbeat,
)
from outbound.services.blocklist import add_block
from outbound.services.intake import AttachmentIn, queue_email
from outbound.states import Status

# The worker in the `sent_message` fixture uses connections of its own, so the
# rows it reads must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

ROOT_PASSWORD = "root-login-pw-1"
SMTP_PASSWORD = "relay-Pa55word-xyzzy"
SMS_SECRET = "gateway-token-0451"
RECEIPT_SECRET = "receipt-shared-7788"

OUTBOX_MODELS = [Message, Event, Attempt, Recipient, Attachment]


def _counts() -> dict[str, int]:
    tables = [*OUTBOX_MODELS, Contact, Suppression, WorkerHeartbeat, Backend]
    return {model.__name__: model.objects.count() for model in tables}


@pytest.fixture
def root() -> Client:
    """A superuser logged in by posting the admin's login form."""
    User.objects.create_superuser(username="root", email="", password=ROOT_PASSWORD)
    client = Client()
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "root", "password": ROOT_PASSWORD, "next": "/admin/"},
    )
    assert response.status_code == 302 and response["Location"] == "/admin/"
    return client


@pytest.fixture
def sent_message(
    make_smtp_server: Callable[..., Any],
    make_backend: Callable[..., Any],
    run_worker: Callable[..., Any],
) -> Message:
    """A message really sent through a relay that requires a login, so it
    has recipients, an attachment, events and an attempt."""
    relay = make_smtp_server(auth={"mailer": SMTP_PASSWORD})
    backend = make_backend(relay, username="mailer", password=SMTP_PASSWORD)
    message = queue_email(
        to="ann@example.com",
        subject="Invoice",
        text="Hello",
        attachments=[
            AttachmentIn(filename="invoice.txt", content=b"42", content_type="text/plain")
        ],
        backend=backend,
    )
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.SENT
    return message


@pytest.fixture
def rows(sent_message: Message) -> dict[str, Any]:
    contact = Contact.objects.create(name="Bob", email="bob@example.com", mobile="+447700900123")
    block = add_block(kind="address", value="blocked@example.com", actor="test")
    return {"message": sent_message, "contact": contact, "block": block}


def _admin_url(model: type[Any], action: str = "changelist", pk: int | None = None) -> str:
    base = f"/admin/outbound/{model._meta.model_name}/"
    if action == "changelist":
        return base
    if action == "add":
        return f"{base}add/"
    return f"{base}{pk}/{action}/"


def _assert_add_refused(root: Client, model: type[Any], data: dict[str, str]) -> None:
    """The add page of `model` is refused, and so is posting `data` to it,
    with nothing written."""
    before = _counts()
    url = _admin_url(model, "add")
    assert root.get(url).status_code == 403
    assert root.post(url, data).status_code == 403
    assert _counts() == before


# ------------------------------------------------------------- messages


def test_adding_a_message_in_the_admin_is_refused_and_writes_nothing(
    root: Client, rows: dict[str, Any]
) -> None:
    add_block(kind="address", value="victim@example.com", actor="test")
    _assert_add_refused(
        root,
        Message,
        {
            "channel": "email",
            "message_to": "victim@example.com",
            "status": Status.TO_SEND,
            "message_id": "<forged@example.com>",
            "claim_token": "",
            "attempt_count": "0",
        },
    )
    assert not Message.objects.filter(message_to="victim@example.com").exists()


def test_changing_a_message_in_the_admin_is_refused_and_its_status_stays(
    root: Client, rows: dict[str, Any]
) -> None:
    message = rows["message"]
    before = _counts()
    response = root.post(
        _admin_url(Message, "change", message.pk),
        {"status": Status.TO_SEND, "message_to": "someone@else.example", "claim_token": ""},
    )
    assert response.status_code == 403
    message.refresh_from_db()
    assert message.status == Status.SENT
    assert message.message_to == "ann@example.com"
    assert _counts() == before


def test_deleting_a_message_in_the_admin_is_refused_and_its_history_stays(
    root: Client, rows: dict[str, Any]
) -> None:
    message = rows["message"]
    before = _counts()
    assert before["Event"] > 0 and before["Attempt"] > 0 and before["Attachment"] == 1
    url = _admin_url(Message, "delete", message.pk)
    assert root.get(url).status_code == 403
    assert root.post(url, {"post": "yes"}).status_code == 403
    # The bulk action is not offered, and naming it anyway deletes nothing.
    changelist = root.get(_admin_url(Message))
    assert "delete_selected" not in changelist.content.decode()
    response = root.post(
        _admin_url(Message),
        {"action": "delete_selected", "_selected_action": [str(message.pk)], "post": "yes"},
    )
    assert response.status_code in (200, 302)
    assert Message.objects.filter(pk=message.pk).exists()
    assert _counts() == before


@pytest.mark.parametrize("model", [Event, Attempt, Recipient, Attachment])
def test_history_rows_have_no_admin_urls_that_write(
    root: Client, rows: dict[str, Any], model: type[Any]
) -> None:
    """Not registered on their own: shown only inside the message's page."""
    row = model.objects.first()
    assert row is not None
    before = _counts()
    for action in ("add", "change", "delete"):
        url = _admin_url(model, action, row.pk)
        for response in (root.get(url), root.post(url, {"post": "yes"})):
            assert response.status_code in (403, 404), (url, response.status_code)
    assert _counts() == before


# ----------------------------------------------- contacts, blocklist, workers


def test_a_bad_contact_posted_to_the_admin_is_not_stored(root: Client) -> None:
    _assert_add_refused(
        root,
        Contact,
        {
            "name": "Bob",
            "email": "bob@@example..com",
            "mobile": "not a number <script>",
            "preferred_channel": "email",
            "notifications_enabled": "on",
            "active": "on",
            "external_id": "",
        },
    )
    assert not Contact.objects.filter(email="bob@@example..com").exists()


def test_contacts_blocklist_and_workers_cannot_be_changed_or_deleted(
    root: Client, rows: dict[str, Any]
) -> None:
    contact, block = rows["contact"], rows["block"]
    worker = WorkerHeartbeat.objects.get()
    before = _counts()
    attempts = [
        (Contact, contact.pk, {"email": "bob@@example..com", "preferred_channel": "email"}),
        (Suppression, block.pk, {"kind": "address", "value": "not an address"}),
        (WorkerHeartbeat, worker.pk, {"name": "forged", "processed": "0"}),
    ]
    for model, pk, data in attempts:
        assert root.post(_admin_url(model, "add"), data).status_code == 403, model
        assert root.post(_admin_url(model, "change", pk), data).status_code == 403, model
        assert root.post(_admin_url(model, "delete", pk), {"post": "yes"}).status_code == 403
    assert _counts() == before
    contact.refresh_from_db()
    block.refresh_from_db()
    assert contact.email == "bob@example.com"
    assert block.value == "blocked@example.com"
    assert WorkerHeartbeat.objects.get().name == worker.name


def test_unregistered_models_are_not_reachable(root: Client, rows: dict[str, Any]) -> None:
    backend = Backend.objects.get()
    before = _counts()
    for url in ("/admin/outbound/backend/", f"/admin/outbound/backend/{backend.pk}/change/"):
        assert root.get(url).status_code == 404
    assert root.post("/admin/outbound/backend/add/", {"name": "x"}).status_code == 404
    assert _counts() == before


# ---------------------------------------------------------------- reading


def test_the_admin_lists_and_shows_every_row_with_a_link_to_the_console(
    root: Client, rows: dict[str, Any]
) -> None:
    message, contact = rows["message"], rows["contact"]
    index = root.get("/admin/")
    assert index.status_code == 200
    assert "Outgoing messages console" in index.content.decode()

    page = root.get(_admin_url(Message))
    assert page.status_code == 200
    html = page.content.decode()
    assert "ann@example.com" in html
    assert "Read-only." in html and "Outgoing messages page (/)" in html
    assert "Add message" not in html

    detail = root.get(_admin_url(Message, "change", message.pk))
    assert detail.status_code == 200
    html = detail.content.decode()
    assert f'href="/messages/{message.pk}/"' in html
    assert message.message_id in html.replace("&lt;", "<").replace("&gt;", ">")
    assert "invoice.txt" in html  # the attachment's name, not its bytes
    assert "Delete" not in html and 'name="_save"' not in html

    contact_page = root.get(_admin_url(Contact, "change", contact.pk))
    assert contact_page.status_code == 200
    assert f'href="/contacts/{contact.pk}/"' in contact_page.content.decode()
    blocklist = root.get(_admin_url(Suppression))
    assert blocklist.status_code == 200
    assert "/blocklist/" in blocklist.content.decode()


def test_no_admin_page_shows_a_secret_or_its_ciphertext(
    root: Client, rows: dict[str, Any], stored_backend: Callable[..., Any]
) -> None:
    sms = stored_backend(
        name="Gateway",
        channel="sms",
        kind="http",
        secret=secrets.encrypt(SMS_SECRET),
        receipt_secret=secrets.encrypt(RECEIPT_SECRET),
    )
    relay = Backend.objects.get(channel="email")
    assert secrets.decrypt(relay.secret) == SMTP_PASSWORD
    forbidden = [SMTP_PASSWORD, SMS_SECRET, RECEIPT_SECRET, relay.secret, sms.secret]
    forbidden.append(sms.receipt_secret)
    # A Fernet token is URL-safe base64; its first characters are enough to
    # spot it even if a page cut it short.
    forbidden += [token[:24] for token in (relay.secret, sms.secret, sms.receipt_secret)]

    urls = ["/admin/"]
    for model in admin.site._registry:
        if model._meta.app_label != "outbound":
            continue
        urls.append(_admin_url(model))
        urls += [
            _admin_url(model, "change", pk) for pk in model.objects.values_list("pk", flat=True)
        ]
    assert len(urls) >= 8
    pages: dict[str, str] = {}
    for url in urls:
        response = root.get(url)
        assert response.status_code == 200, url
        pages[url] = response.content.decode()
    # And every admin page those pages link to (history pages and the like).
    for url in set(re.findall(r'href="(/admin/outbound/[^"#?]+)"', "".join(pages.values()))):
        pages.setdefault(url, root.get(url).content.decode())
    for url, html in pages.items():
        for value in forbidden:
            assert value not in html, (url, value)


# ------------------------------------------------------------- setup-dev


def test_setup_dev_sends_the_administrator_to_the_console(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OUTBOUND_ADMIN_USER", "ops")
    monkeypatch.setenv("OUTBOUND_ADMIN_PASSWORD", "ops-pw")
    out = io.StringIO()
    call_command("setup_dev", stdout=out)
    lines = out.getvalue().splitlines()
    login = [line for line in lines if "Log in" in line]
    assert len(login) == 1, lines
    assert "http://127.0.0.1:8000/ " in login[0] and "'ops'" in login[0]
    assert "/admin/" not in login[0]
    # The admin, where it is mentioned, is described as the read-only raw view.
    for line in lines:
        if "/admin/" in line:
            assert "read-only" in line
    assert User.objects.get(username="ops").is_superuser
    # A second run prints the same address again.
    out = io.StringIO()
    call_command("setup_dev", stdout=out)
    assert "Log in to the Outgoing messages console at http://127.0.0.1:8000/ " in out.getvalue()


def test_setup_dev_sets_a_backend_failure_email_only_when_there_is_none() -> None:
    from outbound.models import GlobalSettings

    call_command("setup_dev", stdout=io.StringIO())
    assert GlobalSettings.load().backend_failure_email == "ops@example.com"
    settings = GlobalSettings.load()
    settings.backend_failure_email = "admin@platform.example"
    settings.save()
    call_command("setup_dev", stdout=io.StringIO())
    assert GlobalSettings.load().backend_failure_email == "admin@platform.example"


def test_the_admin_search_finds_a_message_by_message_id_and_by_relay_queue_id(
    root: Client, sent_message: Message
) -> None:
    other = queue_email(to="zed@example.com", subject="Other")
    queue_id = Attempt.objects.get(message=sent_message, outcome="sent").provider_id
    assert queue_id
    bare_id = sent_message.message_id.strip("<>")
    url = _admin_url(Message)
    for term in (sent_message.message_id, bare_id, queue_id):
        page = root.get(url, {"q": term}).content.decode()
        assert f"/admin/outbound/message/{sent_message.pk}/change/" in page, term
        assert f"/admin/outbound/message/{other.pk}/change/" not in page, term
    # The text fields are still searched.
    page = root.get(url, {"q": "zed@example"}).content.decode()
    assert f"/admin/outbound/message/{other.pk}/change/" in page
