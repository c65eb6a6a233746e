"""The console pages through Django's test client: content, permissions,
CSRF, 404s, pagination and filters."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from outbound.models import AuditEntry, Backend, Contact, Message, Suppression, WorkerHeartbeat
from outbound.selectors import message_timeline
from outbound.services.backends import save_backend_settings, test_backend
from outbound.services.intake import queue_email, queue_emails, queue_sms
from outbound.services.validation import validate_due
from outbound.states import Reason, Status
from outbound.templatetags.outbound_tags import span
from tests.relays import relay_settings

pytestmark = pytest.mark.django_db


@pytest.fixture
def backend(stored_backend: Any) -> Backend:
    return stored_backend(
        limit=1000,
        sent_count=12,
        username="relayuser",
        last_test_at=timezone.now(),
        last_test_result={
            "ok": True,
            "reason": "ok",
            "code": 354,
            "reply": "End data",
            "transcript": ["S: 220 ready", "C: EHLO x"],
        },
    )


def _not_sent_for_contact(email: str = "ann@@example") -> tuple[Message, Contact]:
    contact = Contact.objects.create(name="Ann Smith", email=email)
    message = queue_email(contact=contact, subject="Your invoice")
    validate_due()
    message.refresh_from_db()
    return message, contact


# ---------------------------------------------------------------- login


def test_every_page_requires_login(client: Client) -> None:
    for url in [
        "/",
        "/messages/1/",
        "/contacts/",
        "/blocklist/",
        "/workers/",
        "/audit/",
        "/settings/",
        "/messages/1/report/",
        "/messages/1/html/",
    ]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/"), url


def test_login_page_logs_in(client: Client, viewer: User) -> None:
    assert client.get("/accounts/login/").status_code == 200
    response = client.post(
        "/accounts/login/", {"username": "vera", "password": "correct horse battery"}
    )
    assert response.status_code == 302
    assert client.get("/").status_code == 200


# ------------------------------------------------------- outgoing messages


def test_outgoing_page_shows_backends_counts_banners_and_rows(
    operator_client: Client, backend: Backend
) -> None:
    message, _ = _not_sent_for_contact()
    Message.objects.filter(pk=message.pk).update(send_at=timezone.now())
    stuck = queue_email(to="late@example.com", subject="Late")
    Message.objects.filter(pk=stuck.pk).update(send_at=timezone.now() - timedelta(hours=3))
    Backend.objects.create(
        name="Broken", host="b", health="failing", health_detail="535 5.7.8 bad credentials"
    )
    html = operator_client.get("/").content.decode()
    # Backend panel
    assert "Relay" in html and "1000" in html and "988" in html
    # Banners, each saying what to do
    assert "Backend Broken is failing" in html and "run the Test" in html
    assert "No message is held for it right now." in html
    assert "No worker is running" in html and "outbound worker" in html
    assert "1 message stuck" in html
    assert "for more than 15 minutes past their due time" in html
    # Table row with the short reason and the actions
    assert "Not sent" in html and "Recipient invalid" in html
    assert f"/messages/{message.pk}/" in html
    assert f"/messages/{message.pk}/resend/" in html
    assert "Send outgoing messages" in html


def test_the_table_shows_each_messages_subject_or_sms_text(viewer_client: Client) -> None:
    queue_email(to="a@example.com", subject="Your invoice 2024-17")
    queue_sms(to="+14155550123", body="You have a new task: approve invoice 42")
    html = viewer_client.get("/").content.decode()
    assert '<td class="subject">Your invoice 2024-17</td>' in html
    assert "You have a new task: approve invoice 42</span>" in html


def test_backend_panel_and_facts_summarise_the_last_test(
    viewer_client: Client, make_smtp_server: Any
) -> None:
    server = make_smtp_server(mail_reply="550 5.7.1 sender not allowed")
    backend = save_backend_settings(data=relay_settings(server), actor="admin")
    assert not test_backend(backend).ok
    message = queue_email(to="a@example.com")
    html = viewer_client.get("/").content.decode()
    assert "Failed: 550 5.7.1 sender not allowed" in html
    server.options.mail_reply = None
    assert test_backend(Backend.objects.get(pk=backend.pk)).ok
    html = viewer_client.get("/").content.decode()
    # A success's last reply is only the 354 of the test's DATA step.
    assert " · Succeeded</td>" in html and "354" not in html
    page = viewer_client.get(f"/messages/{message.pk}/").content.decode()
    assert re.search(r"<dd>succeeded at [0-9-]+ [0-9:]+ UTC</dd>", page)


def test_no_worker_banner_goes_when_a_worker_is_alive(viewer_client: Client) -> None:
    now = timezone.now()
    WorkerHeartbeat.objects.create(name="w1", hostname="h", pid=1, started_at=now, last_seen=now)
    assert "No worker is running" not in viewer_client.get("/").content.decode()


def test_viewer_sees_no_resend_button_and_post_is_refused(
    viewer_client: Client, backend: Backend
) -> None:
    message, _ = _not_sent_for_contact()
    html = viewer_client.get("/").content.decode()
    assert "/resend/" not in html
    assert "Send outgoing messages</button>" not in html
    detail = viewer_client.get(f"/messages/{message.pk}/").content.decode()
    assert "Re-send</button>" not in detail
    assert viewer_client.post(f"/messages/{message.pk}/resend/").status_code == 403
    assert viewer_client.post(f"/messages/{message.pk}/cancel/").status_code == 403
    assert viewer_client.post("/send-outgoing/").status_code == 403
    message.refresh_from_db()
    assert message.status == Status.NOT_SENT


def test_post_without_csrf_token_is_refused(operator: User, backend: Backend) -> None:
    message, _ = _not_sent_for_contact()
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    assert client.post(f"/messages/{message.pk}/resend/").status_code == 403
    assert client.post("/send-outgoing/").status_code == 403
    message.refresh_from_db()
    assert message.status == Status.NOT_SENT


def test_resend_from_the_list_keeps_the_filters_and_reports(
    operator_client: Client, backend: Backend
) -> None:
    message, _ = _not_sent_for_contact()
    here = "/?status=not_sent&q=ann"
    response = operator_client.post(f"/messages/{message.pk}/resend/", {"next": here}, follow=True)
    assert response.redirect_chain[-1][0] == here
    assert "will be sent again" in response.content.decode()
    message.refresh_from_db()
    assert message.status == Status.WAITING
    audit = AuditEntry.objects.get(action="resend")
    assert audit.actor == "otto" and audit.object_ids == [message.pk]


def test_resend_ignores_a_foreign_next_url(operator_client: Client, backend: Backend) -> None:
    message, _ = _not_sent_for_contact()
    response = operator_client.post(
        f"/messages/{message.pk}/resend/", {"next": "https://evil.example/"}
    )
    assert response["Location"] == f"/messages/{message.pk}/"


def _stuck_and_not_due(message: Message) -> None:
    """Due three hours ago, and held for an hour more (as a used-up allowance
    holds it): no worker pass would send it unless it is made due."""
    Message.objects.filter(pk=message.pk).update(
        send_at=timezone.now() - timedelta(hours=3),
        next_attempt_at=timezone.now() + timedelta(hours=1),
    )


@pytest.mark.django_db(transaction=True)
def test_send_outgoing_reports_what_it_did(
    operator_client: Client, smtp_server: Any, stored_backend: Any, run_worker: Any
) -> None:
    # A backend as a successful test leaves it, on the real server.
    stored_backend(host=smtp_server.host, port=smtp_server.port, security="none")
    nothing = operator_client.post("/send-outgoing/", follow=True)
    assert "There are no stuck messages." in nothing.content.decode()
    stuck = queue_email(to="late@example.com")
    _stuck_and_not_due(stuck)
    response = operator_client.post("/send-outgoing/", follow=True)
    answer = response.content.decode()
    assert "1 stuck message queued to be sent now." in answer
    # Due is not sent: with no worker alive the answer says so.
    assert "No worker is running, so nothing leaves until one runs" in answer
    # Its short reason in the table says what was done, not that it was sent.
    assert "Made due now by an operator" in operator_client.get("/").content.decode()
    assert AuditEntry.objects.filter(action="send_outgoing", actor="otto").count() == 2
    WorkerHeartbeat.objects.create(
        name="w1", hostname="h", pid=1, started_at=timezone.now(), last_seen=timezone.now()
    )
    _stuck_and_not_due(stuck)
    answer = operator_client.post("/send-outgoing/", follow=True).content.decode()
    assert "1 stuck message queued to be sent now." in answer
    assert "No worker is running" not in answer
    # What the answer says is true: the message is due, and leaves with the
    # next worker pass.
    stuck.refresh_from_db()
    assert stuck.next_attempt_at is not None and stuck.next_attempt_at <= timezone.now()
    run_worker()
    stuck.refresh_from_db()
    assert stuck.status == Status.SENT, stuck.reason_text
    assert [m.message_id for m in smtp_server.messages] == [stuck.message_id]


def test_filters_narrow_the_table(viewer_client: Client) -> None:
    queue_email(to="alpha@example.com", subject="Alpha")
    beta = queue_email(to="beta@example.com", subject="Beta", to_user="Bea")
    Message.objects.filter(pk=beta.pk).update(status=Status.SENT)
    html = viewer_client.get("/?q=alpha").content.decode()
    assert "alpha@example.com" in html and "beta@example.com" not in html
    html = viewer_client.get("/?status=sent").content.decode()
    assert "beta@example.com" in html and "alpha@example.com" not in html
    html = viewer_client.get("/?q=bea").content.decode()
    assert "beta@example.com" in html and "alpha@example.com" not in html
    # A count link keeps the other filters.
    assert "q=bea&amp;status=sent" in html or "status=sent&amp;q=bea" in html
    # A wrong filter value is reported, not an error page.
    response = viewer_client.get("/?date_from=yesterday&status=bogus")
    assert response.status_code == 200
    assert "were not understood" in response.content.decode()


def test_search_by_a_contacts_address_finds_a_message_refused_before_it_had_one(
    viewer_client: Client,
) -> None:
    bob = Contact.objects.create(name="Bob", email="bob@example.com", notifications_enabled=False)
    message = queue_email(contact=bob, subject="Your task")
    validate_due()
    message.refresh_from_db()
    assert (message.status, message.message_to) == (Status.NOT_SENT, "")
    html = viewer_client.get("/?q=Bob@Example.com").content.decode()
    assert f"/messages/{message.pk}/" in html
    page = viewer_client.get(f"/messages/{message.pk}/").content.decode()
    assert "None: the message stopped before its recipients were worked out" in page
    assert "Not resolved yet" not in page


def test_the_last_date_there_is_filters_without_an_error(viewer_client: Client) -> None:
    message = queue_email(to="a@example.com")
    response = viewer_client.get("/?date_to=9999-12-31")
    assert response.status_code == 200
    assert f"/messages/{message.pk}/" in response.content.decode()
    assert (
        f"/messages/{message.pk}/"
        not in viewer_client.get("/?date_from=9999-12-31").content.decode()
    )


def test_keyset_pages_through_the_table(viewer_client: Client) -> None:
    queue_emails([{"to": f"u{i:03d}@example.com"} for i in range(120)])
    seen: list[str] = []
    url = "/"
    pages = 0
    while url:
        response = viewer_client.get(url)
        page = response.context["page"]
        seen += [m.message_to for m in page.rows]
        url = response.context["older_url"]
        pages += 1
    assert pages == 3
    assert len(seen) == 120 and len(set(seen)) == 120
    expected = list(
        Message.objects.order_by("-created_at", "-id").values_list("message_to", flat=True)
    )
    assert seen == expected
    second = viewer_client.get(viewer_client.get("/").context["older_url"])
    back = viewer_client.get(second.context["newer_url"])
    assert [m.pk for m in back.context["page"].rows] == [
        m.pk for m in viewer_client.get("/").context["page"].rows
    ]
    # Garbage in the cursor gives the first page, not an error.
    assert viewer_client.get("/?before=garbage").status_code == 200


# ---------------------------------------------------------------- message page


def test_message_page_explains_not_sent_with_facts(viewer_client: Client, backend: Backend) -> None:
    message, contact = _not_sent_for_contact()
    contact.email = "ann@example.com"
    contact.save()
    html = viewer_client.get(f"/messages/{message.pk}/").content.decode()
    assert "What it means" in html and "When it happens" in html
    assert "What to check and do" in html
    assert "ann@@example" in html and "ann@example.com" in html
    assert "Fix the contact, then Re-send" in html
    assert "Waiting → Not sent" in html or "Waiting &rarr; Not sent" in html


def test_message_page_html_is_in_a_sandboxed_frame(viewer_client: Client) -> None:
    message = queue_email(
        to="a@example.com", html='<p onclick="x()">Hi "there"</p><script>', text="Plain body"
    )
    html = viewer_client.get(f"/messages/{message.pk}/").content.decode()
    assert f'sandbox="" referrerpolicy="no-referrer" src="/messages/{message.pk}/html/"' in html
    assert "onclick" not in html and '<script>"' not in html
    assert "Plain body" in html
    # The frame's own answer carries the HTML as written, under a policy that
    # runs no script even if the sandbox were taken away.
    frame = viewer_client.get(f"/messages/{message.pk}/html/")
    assert frame.content.decode() == '<p onclick="x()">Hi "there"</p><script>'
    assert "script-src 'none'" in frame["Content-Security-Policy"]


def test_message_page_shows_attempt_and_queue_id(viewer_client: Client, backend: Backend) -> None:
    message = queue_email(to="a@example.com")
    validate_due()
    from outbound.models import Attempt

    Attempt.objects.create(
        message=message,
        backend=backend,
        settings_version=1,
        started_at=timezone.now(),
        finished_at=timezone.now(),
        phase="done",
        smtp_code=250,
        enhanced_code="2.0.0",
        reply="Ok: queued as 9EA7B1E0AE5",
        provider_id="9EA7B1E0AE5",
        outcome="sent",
        worker="host:1:abc",
    )
    Message.objects.filter(pk=message.pk).update(
        status=Status.SENT, reason_code=Reason.ACCEPTED, sent_at=timezone.now()
    )
    html = viewer_client.get(f"/messages/{message.pk}/").content.decode()
    assert "9EA7B1E0AE5" in html and "host:1:abc" in html and "junk" in html
    assert "Attempt: Sent" in html


@pytest.mark.django_db(transaction=True)
def test_history_reads_in_the_order_things_happened(
    viewer_client: Client, smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    make_backend(smtp_server)
    message = queue_email(to="a@example.com")
    run_worker()
    titles = [e.title for e in message_timeline(Message.objects.get(pk=message.pk))]
    assert titles == [
        "Created → Waiting",
        "Waiting → To send",
        "Attempt: Sent",
        "To send → Sent",
    ]
    html = viewer_client.get(f"/messages/{message.pk}/").content.decode()
    assert (
        html.index("Waiting → To send") < html.index("Attempt: Sent") < html.index("To send → Sent")
    )


def test_unknown_message_is_a_404_page(viewer_client: Client) -> None:
    response = viewer_client.get("/messages/999999/")
    assert response.status_code == 404
    assert "Not found" in response.content.decode()
    assert viewer_client.get("/messages/999999/report/").status_code == 404
    assert viewer_client.get("/contacts/999999/").status_code == 404


def test_cancel_and_its_result(operator_client: Client) -> None:
    message = queue_email(to="a@example.com")
    response = operator_client.post(
        f"/messages/{message.pk}/cancel/", {"confirm": "yes"}, follow=True
    )
    assert "The message was cancelled." in response.content.decode()
    message.refresh_from_db()
    assert message.status == Status.CANCELLED
    again = operator_client.post(f"/messages/{message.pk}/cancel/", follow=True)
    assert "cannot be cancelled" in again.content.decode()


def test_diagnostic_report_page(viewer_client: Client, backend: Backend) -> None:
    message, _ = _not_sent_for_contact()
    html = viewer_client.get(f"/messages/{message.pk}/report/").content.decode()
    assert "<textarea" in html and "Outbound diagnostic report" in html
    assert "relayuser" not in html
    text = viewer_client.get(f"/messages/{message.pk}/report/?format=text")
    assert text["Content-Type"].startswith("text/plain")


# ---------------------------------------------------------------- contacts


def test_contact_search_and_edit_keeps_what_was_typed(
    operator_client: Client,
) -> None:
    contact = Contact.objects.create(name="Ann Smith", email="ann@example.com")
    Contact.objects.create(name="Bob", email="bob@example.com")
    html = operator_client.get("/contacts/?q=ann").content.decode()
    assert "Ann Smith" in html and "bob@example.com" not in html
    response = operator_client.post(
        f"/contacts/{contact.pk}/",
        {
            "name": "Ann Smyth",
            "email": "not an address",
            "mobile": "",
            "preferred_channel": "email",
            "active": "on",
            "notifications_enabled": "on",
        },
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "not an email address" in html or "is not a valid email address" in html
    assert 'value="not an address"' in html and 'value="Ann Smyth"' in html
    contact.refresh_from_db()
    assert contact.email == "ann@example.com" and contact.name == "Ann Smith"


def test_fix_contact_and_resend_takes_two_clicks(operator_client: Client, backend: Backend) -> None:
    message, contact = _not_sent_for_contact()
    detail = operator_client.get(f"/messages/{message.pk}/").content.decode()
    edit_url = f"/contacts/{contact.pk}/?message={message.pk}"
    assert edit_url in detail
    form = operator_client.get(edit_url).content.decode()
    assert "Save and re-send this message" in form
    response = operator_client.post(
        edit_url,
        {
            "name": "Ann Smith",
            "email": "ann@example.com",
            "preferred_channel": "email",
            "active": "on",
            "notifications_enabled": "on",
            "save_resend": "1",
            "message": str(message.pk),
        },
    )
    assert response.status_code == 302 and response["Location"] == f"/messages/{message.pk}/"
    message.refresh_from_db()
    assert message.status == Status.WAITING and message.reason_code == Reason.RESENT
    validate_due()
    message.refresh_from_db()
    assert message.status == Status.TO_SEND and message.message_to == "ann@example.com"


def test_viewer_cannot_edit_contacts(viewer_client: Client) -> None:
    contact = Contact.objects.create(name="Ann", email="ann@example.com")
    html = viewer_client.get(f"/contacts/{contact.pk}/").content.decode()
    assert "Save</button>" not in html
    response = viewer_client.post(
        f"/contacts/{contact.pk}/", {"name": "X", "email": "", "preferred_channel": "email"}
    )
    assert response.status_code == 403


def test_new_contact(operator_client: Client) -> None:
    response = operator_client.post(
        "/contacts/new/",
        {
            "name": "Cy",
            "email": "cy@example.com",
            "preferred_channel": "email",
            "active": "on",
            "notifications_enabled": "on",
        },
    )
    assert response.status_code == 302
    assert Contact.objects.get(name="Cy").email == "cy@example.com"


def test_the_contact_forms_example_number_is_one_it_accepts(operator_client: Client) -> None:
    page = operator_client.get("/contacts/new/").content.decode()
    example = re.search(r"e\.g\. (\+[0-9 ]+[0-9])", page)
    assert example is not None
    response = operator_client.post(
        "/contacts/new/",
        {
            "name": "Di",
            "mobile": example.group(1),
            "preferred_channel": "sms",
            "active": "on",
            "notifications_enabled": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()
    assert Contact.objects.get(name="Di").mobile


# ---------------------------------------------------------------- blocklist


def test_blocklist_add_with_errors_and_remove(
    operator_client: Client, viewer_client: Client
) -> None:
    bad = operator_client.post(
        "/blocklist/", {"kind": "domain", "value": "not a domain", "reason": "spam"}
    )
    assert bad.status_code == 200
    assert "is not a domain name" in bad.content.decode()
    assert 'value="not a domain"' in bad.content.decode()
    ok = operator_client.post(
        "/blocklist/",
        {"kind": "domain", "value": "Spam.Example", "reason": "complaints"},
        follow=True,
    )
    assert "spam.example" in ok.content.decode() and "complaints" in ok.content.decode()
    entry = Suppression.objects.get()
    assert viewer_client.post(f"/blocklist/{entry.pk}/remove/").status_code == 403
    assert (
        viewer_client.post("/blocklist/", {"kind": "domain", "value": "x.example"}).status_code
        == 403
    )
    assert "Add to the blocklist" not in viewer_client.get("/blocklist/").content.decode()
    operator_client.post(f"/blocklist/{entry.pk}/remove/")
    assert not Suppression.objects.exists()
    assert AuditEntry.objects.filter(action="remove_block").exists()


# ---------------------------------------------------------- workers, audit, settings


def test_workers_page(viewer_client: Client) -> None:
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        name="alive-1", hostname="h", pid=1, started_at=now, last_seen=now
    )
    WorkerHeartbeat.objects.create(
        name="silent-1", hostname="h", pid=2, started_at=now, last_seen=now - timedelta(hours=1)
    )
    m = queue_email(to="a@example.com")
    Message.objects.filter(pk=m.pk).update(send_at=now - timedelta(minutes=30))
    html = viewer_client.get("/workers/").content.decode()
    assert "alive-1" in html and "Alive" in html and "Silent" in html
    assert "Oldest due message" in html and "30" in html


def test_audit_page_lists_actions_newest_first(operator_client: Client) -> None:
    m = queue_email(to="a@example.com")
    operator_client.post(f"/messages/{m.pk}/cancel/", {"confirm": "yes"})
    operator_client.post(f"/messages/{m.pk}/cancel/")
    html = operator_client.get("/audit/").content.decode()
    html = html[html.index("<table") :]
    assert "otto" in html and "cancel" in html and "Refused" in html
    assert html.index("Refused") < html.index("The message was cancelled.")


def test_audit_page_is_paginated(viewer_client: Client) -> None:
    for i in range(60):
        AuditEntry.objects.create(actor="x", action=f"act{i:02d}")
    first = viewer_client.get("/audit/")
    assert len(first.context["entries"]) == 50 and first.context["older"]
    second = viewer_client.get(f"/audit/?before={first.context['older']}")
    assert len(second.context["entries"]) == 10 and second.context["older"] is None


def test_settings_page_shows_backends_without_secrets(
    viewer_client: Client, backend: Backend
) -> None:
    html = viewer_client.get("/settings/").content.decode()
    assert "Stuck threshold" in html and "Backend failure email" in html
    assert "Relay" in html and "smtp.example.com" in html and "S: 220 ready" in html
    assert "relayuser" not in html


def test_a_message_held_for_a_never_tested_backend_says_it_was_never_tested(
    viewer_client: Client,
) -> None:
    Backend.objects.create(
        name="Fresh", host="smtp.example.com", from_address="a@example.com", is_default=True
    )
    message = queue_email(to="a@example.com")
    validate_due()
    message.refresh_from_db()
    assert message.status == Status.BACKEND_TEST_REQUIRED
    page = viewer_client.get(f"/messages/{message.pk}/").content.decode()
    assert "it was never tested." in page and "its last test never tested" not in page


def test_a_backend_holding_messages_after_a_settings_change_has_a_banner(
    viewer_client: Client, smtp_server: Any
) -> None:
    backend = save_backend_settings(data=relay_settings(smtp_server), actor="admin")
    assert test_backend(backend).ok
    save_backend_settings(backend=backend, data={"timeout": 7}, actor="admin")
    for i in range(2):
        queue_email(to=f"u{i}@example.com")
    validate_due()
    html = viewer_client.get("/").content.decode()
    assert "Backend Relay needs a test." in html
    assert "2 messages are held for it as Backend test required" in html
    assert "its settings changed after its last successful test" in html
    assert "Succeeded, before the settings changed" in html
    # Tested again: the messages are released and the banner goes.
    assert test_backend(Backend.objects.get(pk=backend.pk)).ok
    assert "needs a test" not in viewer_client.get("/").content.decode()


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (timedelta(minutes=15), "15 minutes"),
        (timedelta(days=2), "2 days"),
        (timedelta(hours=1, minutes=30), "1 hour 30 minutes"),
        (timedelta(seconds=30), "30 seconds"),
        (timedelta(0), "0 seconds"),
        (None, "—"),
    ],
)
def test_durations_read_in_words(value: timedelta | None, words: str) -> None:
    assert span(value) == words


def test_settings_show_durations_in_words(viewer_client: Client) -> None:
    html = viewer_client.get("/settings/").content.decode()
    assert "<dt>Stuck threshold</dt><dd>15 minutes</dd>" in html
    assert "0:15:00" not in html


def test_every_page_names_a_favicon_that_is_served_and_favicon_ico_leads_to_it(
    viewer_client: Client,
) -> None:
    for url in ("/accounts/login/", "/"):
        client = Client() if url.startswith("/accounts") else viewer_client
        html = client.get(url).content.decode()
        found = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', html)
        assert found, url
        icon = Client().get(found.group(1))
        assert icon.status_code == 200
        assert icon["Content-Type"].startswith("image/svg+xml")
        assert b"<svg" in b"".join(icon.streaming_content)  # type: ignore[attr-defined]
    legacy = Client().get("/favicon.ico")
    assert legacy.status_code == 301 and legacy["Location"] == found.group(1)


def _count_buttons(html: str) -> dict[str, int]:
    """The number on each count button of the Outgoing messages page."""
    nav = html.split('aria-label="Counts per status"')[1].split("</nav>")[0]
    found = re.findall(r'<span class="n">(\d+)</span>\s*([^<]+?)\s*</', nav)
    return {label: int(n) for n, label in found}


def test_the_count_buttons_follow_the_active_filters(
    viewer_client: Client, stored_backend: Any
) -> None:
    relay = stored_backend(name="Relay")
    other = stored_backend(name="Other", is_default=False)
    queue_emails([{"to": f"r{i}@example.com", "backend": relay} for i in range(3)])
    queue_emails([{"to": f"o{i}@example.com", "backend": other} for i in range(2)])
    sent = queue_email(to="done@example.com", backend=relay)
    Message.objects.filter(pk=sent.pk).update(status=Status.SENT)
    everything = _count_buttons(viewer_client.get("/").content.decode())
    assert (everything["All"], everything["Waiting"], everything["Sent"]) == (6, 5, 1)
    narrowed = _count_buttons(viewer_client.get(f"/?backend={relay.pk}").content.decode())
    assert (narrowed["All"], narrowed["Waiting"], narrowed["Sent"]) == (4, 3, 1)
    # With a status chosen too, the buttons still count every status of the rest.
    chosen = viewer_client.get(f"/?backend={other.pk}&status=sent").content.decode()
    assert _count_buttons(chosen)["Waiting"] == 2 and _count_buttons(chosen)["Sent"] == 0
    searched = _count_buttons(viewer_client.get("/?q=done@example.com").content.decode())
    assert (searched["All"], searched["Sent"], searched["Waiting"]) == (1, 1, 0)


def test_a_from_date_after_the_to_date_is_an_error_next_to_the_dates(
    viewer_client: Client,
) -> None:
    message = queue_email(to="a@example.com")
    today = timezone.localdate()
    later = today + timedelta(days=3)
    html = viewer_client.get(f"/?date_from={later}&date_to={today}").content.decode()
    error = html.split('id="id_date_to-error"')[1].split("</span>")[0]
    assert f"The To date ({today}) is before the From date ({later})" in error
    assert "not understood and was left out" in html
    assert "No message matches these filters" in html  # the From date still applies
    # A range in the right order finds the message.
    html = viewer_client.get(f"/?date_from={today}&date_to={later}").content.decode()
    assert f"/messages/{message.pk}/" in html and "id_date_to-error" not in html


def test_a_search_over_the_maximum_length_says_so_next_to_the_box(
    viewer_client: Client,
) -> None:
    message = queue_email(to="a@example.com")
    html = viewer_client.get("/", {"q": "x" * 250}).content.decode()
    error = html.split('id="id_q-error"')[1].split("</span>")[0]
    assert "A search is at most 200 characters (this one has 250); it was left out." in error
    # Left out: the list is not filtered by it.
    assert f"/messages/{message.pk}/" in html


def test_held_messages_link_to_their_backends_card_and_list_only_its_own(
    admin_client: Client, stored_backend: Any
) -> None:
    relay = stored_backend(name="Relay", settings_version=2)  # changed, not tested
    other = stored_backend(name="Other", is_default=False, settings_version=2)
    following = queue_email(to="follows-default@example.com")
    named = queue_email(to="named@example.com", backend=relay)
    theirs = queue_email(to="theirs@example.com", backend=other)
    validate_due()
    held = Message.objects.filter(status=Status.BACKEND_TEST_REQUIRED)
    assert set(held.values_list("pk", flat=True)) == {following.pk, named.pk, theirs.pk}

    page = admin_client.get("/").content.decode()
    banner = page.split("Backend Relay needs a test.")[1].split("</div>")[0]
    assert f"/settings/#backend-{relay.pk}-test" in banner
    assert f"?status=backend_test_required&amp;held_for={relay.pk}" in banner

    settings = admin_client.get("/settings/").content.decode()
    card = settings.split(f'id="backend-{relay.pk}"')[1].split("</section>")[0]
    assert f"held_for={relay.pk}" in card and f'id="backend-{relay.pk}-test"' in card
    listed = admin_client.get(
        "/", {"status": "backend_test_required", "held_for": relay.pk}
    ).content.decode()
    # The default's held messages: those that follow the default and those named to it.
    assert f"/messages/{following.pk}/" in listed and f"/messages/{named.pk}/" in listed
    assert f"/messages/{theirs.pk}/" not in listed
    assert "Showing only the messages held for backend <strong>Relay</strong>" in listed
    # Filtering further keeps the backend.
    assert f'name="held_for" value="{relay.pk}"' in listed
    only_other = admin_client.get("/", {"held_for": other.pk}).content.decode()
    assert f"/messages/{theirs.pk}/" in only_other
    assert f"/messages/{named.pk}/" not in only_other


def test_the_audit_page_says_actions_in_words_with_links_and_only_changed_fields(
    admin_client: Client, stored_backend: Any
) -> None:
    from outbound.services.blocklist import add_block, remove_block
    from outbound.services.contacts import save_contact

    backend = stored_backend(name="Relay")
    add_block(kind="address", value="anna@example.org", actor="ada")
    gone = add_block(kind="domain", value="spam.example", actor="ada")
    remove_block(gone, actor="ada")
    contact = save_contact(data={"name": "Ann Smith", "email": "ann@example.com"}, actor="ada")
    data = {
        "name": "Ann Smith",
        "email": "ann.smith@example.com",
        "mobile": "",
        "preferred_channel": "email",
        "notifications_enabled": True,
        "active": True,
        "external_id": "",
    }
    save_contact(contact=contact, data=data, actor="ada")
    save_backend_settings(backend=backend, data={"port": 2525}, actor="ada")
    message = queue_email(to="a@example.com")
    admin_client.post(f"/messages/{message.pk}/cancel/", {"confirm": "yes"})
    html = admin_client.get("/audit/").content.decode()
    rows = html.split("<tbody>")[1].split("</tbody>")[0]
    assert (
        'Added blocklist entry <a href="/blocklist/?q=anna%40example.org">anna@example.org</a>'
        in rows
    )
    assert "Removed blocklist entry Domain spam.example" in rows
    assert f'Changed contact <a href="/contacts/{contact.pk}/">Ann Smith</a>' in rows
    assert f'Changed backend <a href="/settings/#backend-{backend.pk}">Relay</a>' in rows
    assert f'Cancelled message <a href="/messages/{message.pk}/">{message.pk}</a>' in rows
    assert "add_block" not in rows and "update_contact" not in rows
    # An update names only the field that changed, not every field of the form.
    update = AuditEntry.objects.get(action="update_contact")
    assert update.result == "Changed: email" and update.data["fields"] == ["email"]
    assert "Changed: email</td>" in rows


def test_the_message_page_says_each_fact_once_and_security_in_words(
    viewer_client: Client, stored_backend: Any
) -> None:
    backend = stored_backend(name="Relay", security="none", port=25)
    message = queue_email(to="ann@example.com", subject="Invoice", backend=backend)
    Message.objects.filter(pk=message.pk).update(
        status=Status.SENT, sent_at=timezone.now(), message_to="ann@example.com"
    )
    html = viewer_client.get(f"/messages/{message.pk}/").content.decode()
    labels = re.findall(r"<dt>([^<]+)</dt>", html)
    repeated = {label for label in labels if labels.count(label) > 1}
    assert not repeated, repeated
    # The same fact under two names: once in the facts, not again below.
    shown_id = message.message_id.replace("<", "&lt;").replace(">", "&gt;")
    values = re.findall(r"<dd[^>]*>(.*?)</dd>", html, flags=re.S)
    assert sum(shown_id in v for v in values) == 1
    assert "<dt>Status</dt>" not in html and "<dt>Message to</dt>" not in html
    assert "security None" not in html
    assert "smtp.example.com:25, unencrypted (no TLS)" in html
