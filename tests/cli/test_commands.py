from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from outbound.models import ApiKey, Backend, Contact, Message
from outbound.services.apikeys import authenticate
from outbound.services.intake import queue_email
from outbound.states import Status


def test_apikey_create_prints_the_key_once_and_revoke_disables_it(cli):
    r = cli("apikey", "create", "platform", "--scope", "write")
    assert r.code == 0, r.err
    plaintext = r.out.strip()
    key = authenticate(plaintext)
    assert key is not None and key.scope == "write" and key.name == "platform"
    assert "cannot be shown again" in r.err
    listed = cli("apikey", "list", "--json").json()
    assert listed[0]["prefix"] == key.prefix
    assert plaintext not in cli("apikey", "list").out
    assert cli("apikey", "revoke", key.prefix).code == 0
    assert authenticate(plaintext) is None
    again = cli("apikey", "revoke", key.prefix)
    assert again.code == 1 and "already revoked" in again.err
    assert cli("apikey", "revoke", "obk_nothere").code == 1


def test_apikey_bad_usage_exits_2(cli):
    assert cli("apikey", "create", "x", "--scope", "root").code == 2
    assert cli("apikey").code == 2
    assert ApiKey.objects.count() == 0


def test_send_email_queues_a_message(cli):
    args = (
        "send-email",
        "--to",
        "ann@example.com",
        "--subject",
        "Hello",
        "--text",
        "Body",
        "--group",
        "g1",
        "--idempotency-key",
        "k1",
        "--json",
    )
    r = cli(*args)
    assert r.code == 0, r.err
    body = r.json()
    message = Message.objects.get(pk=body["id"])
    assert message.subject == "Hello" and message.group_key == "g1"
    assert message.source == "manual"
    replay = cli(*args)
    assert replay.json()["id"] == body["id"]
    again = ("--to", "ann@example.com", "--subject", "Hello", "--text", "Body", "--group", "g1")
    said = cli("send-email", *again, "--idempotency-key", "k1")
    assert said.code == 0, said.err
    assert f"Message {body['id']} already exists with idempotency key 'k1'" in said.out
    assert "queued" not in said.out.split(";")[0]
    assert Message.objects.filter(idempotency_key="k1").count() == 1
    conflict = cli("send-email", "--to", "bob@example.com", "--idempotency-key", "k1")
    assert conflict.code == 1 and "idempotency key" in conflict.err


def test_send_email_reads_the_html_body_from_a_file(cli, tmp_path):
    html = tmp_path / "body.html"
    html.write_text("<p>Hi</p>", encoding="utf-8")
    c = Contact.objects.create(name="Ann", email="ann@example.com", external_id="crm-1")
    r = cli(
        "send-email",
        "--contact",
        "ext:crm-1",
        "--html-file",
        str(html),
        "--send-at",
        (timezone.now() + timedelta(days=30)).isoformat(),
    )
    assert r.code == 0, r.err
    message = Message.objects.get()
    assert message.html_body == "<p>Hi</p>" and message.contact_id == c.pk
    assert message.reason_code == "scheduled"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["send-email", "--subject", "no recipient"], 2),
        (["send-email", "--to", "a@example.com", "--send-at", "tomorrow"], 2),
        (["send-email", "--to", "a@example.com", "--send-at", "9999-12-31T09:00:00+00:00"], 1),
        (["send-email", "--to", "a@example.com", "--bogus"], 2),
        (["send-email", "--to", "a@example.com", "--subject", "a\nBcc: x@example.com"], 1),
        (["send-email", "--contact", "999"], 1),
        (["send-email", "--to", "a@example.com", "--html-file", "/nonexistent.html"], 1),
    ],
)
def test_send_email_refusals(cli, args, code):
    r = cli(*args)
    assert r.code == code, (r.out, r.err)
    assert Message.objects.count() == 0


def _queued(n: int = 1, **kw):
    return [queue_email(to=f"p{i}@example.com", subject=f"s{i}", **kw) for i in range(n)]


def test_messages_list_show_explain(cli):
    first, second = _queued(2)
    listed = cli("messages", "list", "--json")
    assert listed.code == 0, listed.err
    assert [m["id"] for m in listed.json()["items"]] == [second.pk, first.pk]
    table = cli("messages", "list", "--search", "s1").out
    assert "p1@example.com" in table and "p0@example.com" not in table
    # A Message-ID as a mail log writes it, without its angle brackets.
    by_id = cli("messages", "list", "--search", first.message_id.strip("<>"), "--json")
    assert [m["id"] for m in by_id.json()["items"]] == [first.pk]
    assert cli("messages", "list", "--status", "sent", "--json").json()["items"] == []
    page = cli("messages", "list", "--limit", "1", "--json").json()
    assert page["next_cursor"]
    rest = cli("messages", "list", "--limit", "1", "--cursor", page["next_cursor"], "--json")
    assert [m["id"] for m in rest.json()["items"]] == [first.pk]
    shown = cli("messages", "show", str(first.pk), "--json").json()
    assert shown["events"][0]["to_status"] == "waiting"
    assert shown["explanation"]["label"] == "Waiting"
    assert "History" in cli("messages", "show", str(first.pk)).out
    explained = cli("messages", "explain", str(first.pk))
    assert explained.code == 0 and "What to do" in explained.out
    assert cli("messages", "explain", str(first.pk), "--json").json()["status"] == "waiting"


def test_messages_errors(cli):
    assert cli("messages", "show", "424242").code == 1
    assert cli("messages", "list", "--status", "lost").code == 2
    assert cli("messages", "list", "--limit", "0").code == 2
    assert cli("messages", "list", "--cursor", "zzz").code == 2
    assert cli("messages", "list", "--backend", "nope").code == 1
    assert cli("messages").code == 2


def test_status_shows_counts(cli):
    _queued(2)
    assert cli("status", "--json").json()["counts"]["waiting"] == 2
    table = cli("status")
    assert table.code == 0 and "Waiting" in table.out and "worker(s) alive" in table.out


def test_cancel_and_resend(cli):
    message, other, grouped = _queued(1) + _queued(1) + _queued(1, group_key="g")
    ok = cli("cancel", str(message.pk))
    assert ok.code == 0 and "cancelled" in ok.out
    message.refresh_from_db()
    assert message.status == Status.CANCELLED
    again = cli("cancel", str(message.pk))
    assert again.code == 1 and "cannot be cancelled" in again.err
    assert cli("resend", str(message.pk)).code == 1
    assert cli("resend", str(other.pk)).code == 0
    assert cli("cancel", "--group", "g").code == 0
    grouped.refresh_from_db()
    assert grouped.status == Status.CANCELLED
    assert cli("cancel").code == 2
    assert cli("cancel", "123456").code == 1


def test_send_outgoing_with_the_hyphenated_name(cli):
    r = cli("send-outgoing")
    assert r.code == 0 and "no stuck messages" in r.out
    assert cli("send_outgoing").code == 0


def test_test_backend_is_reachable_by_its_hyphenated_name(cli):
    r = cli("test-backend", "nope")
    assert r.code == 1 and "no backend named" in r.err


def test_backends_list_never_shows_the_secret(cli):
    from outbound import secrets

    Backend.objects.create(name="Relay", host="smtp.example.com", secret=secrets.encrypt("pw-x"))
    rows = cli("backends", "list", "--json").json()
    assert rows[0]["has_password"] is True
    assert "pw-x" not in cli("backends", "list", "--json").out
    table = cli("backends", "list").out
    assert "Relay" in table and "set" in table


def test_backends_test_against_a_real_smtp_server(cli, smtp_server, make_backend):
    backend = make_backend(smtp_server, test=False)
    r = cli("backends", "test", backend.name)
    assert r.code == 0, r.err
    assert "test succeeded" in r.out
    backend.refresh_from_db()
    assert backend.health == "ok"


def test_backends_test_failure_exits_1(cli):
    Backend.objects.create(name="Nowhere", host="127.0.0.1", port=1, timeout=2)
    r = cli("backends", "test", "Nowhere", "--json")
    assert r.code == 1
    assert r.json()["ok"] is False
    assert cli("backends", "test", "Missing").code == 1


def test_backends_set_reads_the_password_from_stdin(cli):
    from outbound import secrets

    r = cli(
        "backends",
        "set",
        "Relay",
        "--create",
        "--host",
        "smtp.example.com",
        "--port",
        "2525",
        "--security",
        "none",
        "--from",
        "noreply@example.com",
        "--default",
        "--password-stdin",
        stdin="pw-from-stdin\n",
    )
    assert r.code == 0, r.err
    assert "created" in r.out and "backends test" in r.out
    backend = Backend.objects.get(name="Relay")
    assert backend.port == 2525 and backend.is_default
    assert secrets.decrypt(backend.secret) == "pw-from-stdin"
    r = cli("backends", "set", "Relay", "--limit", "500", "--json")
    assert r.code == 0 and r.json()["limit"] == 500 and r.json()["has_password"] is True
    assert cli("backends", "set", "Relay", "--port", "0").code == 1
    assert cli("backends", "set", "Relay", "--password", "x").code == 2
    assert cli("backends", "set", "Ghost", "--host", "h").code == 1


def test_test_backend_can_send_a_real_test_message(cli, smtp_server, make_backend):
    backend = make_backend(smtp_server, test=False)
    r = cli("test-backend", backend.name, "--send-to", "admin@example.com")
    assert r.code == 0, r.err
    assert "accepted the test message to admin@example.com" in r.out
    assert [m.rcpt_tos for m in smtp_server.messages] == [["admin@example.com"]]


def test_a_reader_that_goes_away_ends_the_listing_quietly(transactional_db):
    # `outbound messages list | head`: the reader closes the pipe before the
    # listing is written. No traceback, just an exit status.
    import os
    import subprocess

    from outbound.services.intake import queue_emails
    from tests.cli.conftest import SCRIPT
    from tests.dburl import database_url

    queue_emails([{"to": f"user{i}@example.com", "subject": f"Hello {i}"} for i in range(20)])
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    proc = subprocess.run(
        [str(SCRIPT), "messages", "list"],
        env=env,
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        check=False,
    )
    os.close(write_end)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "BrokenPipeError" not in proc.stderr


# --- backends set through the command itself (call_command, in this process)


def _backends_set(*args: str) -> str:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("backends", "set", *args, stdout=out)
    return out.getvalue()


def _latest_backend_audit() -> str:
    from outbound.models import AuditEntry

    return AuditEntry.objects.filter(object_type="backend").latest("id").result


@pytest.mark.django_db
def test_backends_set_audits_only_the_settings_that_changed(stored_backend):
    stored_backend()
    _backends_set("Relay", "--host", "smtp.example.com", "--port", "2525", "--limit", "none")
    assert _latest_backend_audit() == "Changed: port; settings version 2, test required"
    _backends_set("Relay", "--port", "2525")
    assert _latest_backend_audit() == "Changed: nothing"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("http://smtp.example.com", "host: Give the host name only, without http://"),
        ("smtp.example.com:465", "host: Give the host name only, without :465"),
        ("smtp.example.com/relay", "host: Give the host name only, without /relay after it."),
    ],
)
def test_backends_set_refuses_a_url_or_port_as_host(stored_backend, host, message):
    from django.core.management.base import CommandError

    backend = stored_backend()
    before = Backend.objects.filter(pk=backend.pk).values().get()
    with pytest.raises(CommandError) as err:
        _backends_set("Relay", "--host", host, "--port", "2525")
    assert message in str(err.value) and err.value.returncode == 1
    assert Backend.objects.filter(pk=backend.pk).values().get() == before


@pytest.mark.django_db
def test_backends_set_range_errors_read_naturally(stored_backend):
    from django.core.management.base import CommandError

    stored_backend()
    with pytest.raises(CommandError) as err:
        _backends_set("Relay", "--limit", "2000000000")
    assert "limit: Must be between 0 and 1,000,000,000 messages." in str(err.value)
    assert Backend.objects.get().limit is None


@pytest.mark.django_db
def test_backends_set_no_default_on_the_only_default_is_refused(stored_backend):
    from django.core.management.base import CommandError

    backend = stored_backend()
    before = Backend.objects.filter(pk=backend.pk).values().get()
    with pytest.raises(CommandError) as err:
        _backends_set("Relay", "--no-default", "--port", "2525")
    assert "Make another email backend the default first." in str(err.value)
    assert Backend.objects.filter(pk=backend.pk).values().get() == before
    stored_backend(name="Other", is_default=False)
    _backends_set("Other", "--default")
    defaults = Backend.objects.filter(is_default=True).values_list("name", flat=True)
    assert list(defaults) == ["Other"]


@pytest.mark.django_db(transaction=True)
def test_backends_set_default_on_a_tested_backend_sends_the_held_mail(
    smtp_server, make_backend, run_worker
):
    from outbound.models import Event
    from outbound.states import Reason

    make_backend(smtp_server, name="Spare", is_default=False)
    message = queue_email(to="ann@example.com", from_address="me@example.com")
    run_worker()
    message.refresh_from_db()
    assert (message.status, message.reason_code) == (
        Status.BACKEND_TEST_REQUIRED,
        Reason.BACKEND_MISSING,
    )
    out = _backends_set("Spare", "--default")
    assert "Backend Spare saved" in out and "Test it" not in out
    message.refresh_from_db()
    assert message.status == Status.WAITING
    event = Event.objects.filter(message=message).latest("id")
    assert (event.actor, event.to_status) == ("cli", Status.WAITING)
    assert "Backend Spare, whose settings passed the test, became the default email" in event.text
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.SENT
    assert [m.rcpt_tos for m in smtp_server.messages] == [["ann@example.com"]]
