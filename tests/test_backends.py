"""Backend settings, the gate of Backend test required, alerts to the Backend
Failure Email, and secrets at rest — against real SMTP servers."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet

from outbound import secrets
from outbound.errors import InvalidInput
from outbound.models import Alert, AuditEntry, Backend, GlobalSettings, Message
from outbound.services import alerts
from outbound.services.backends import rotate_secrets, save_backend_settings, test_backend
from outbound.services.intake import queue_email, queue_emails
from outbound.services.validation import validate_due
from outbound.states import Reason, Status
from tests.relays import relay_settings

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("port", 70000, "between 1 and 65535"),
        ("port", "abc", "whole number"),
        ("host", "", "required"),
        ("host", "smtp example.com", "Spaces"),
        ("from_address", "not-an-address", "not an email address"),
        ("security", "ssl3", "Use one of"),
        ("timeout", 0, "between 1 and 120"),
    ],
)
def test_bad_settings_get_field_errors_and_nothing_changes(
    smtp_server: Any, field: str, value: Any, needle: str
) -> None:
    backend = save_backend_settings(data=relay_settings(smtp_server), actor="admin")
    before = Backend.objects.filter(pk=backend.pk).values().get()
    with pytest.raises(InvalidInput) as err:
        save_backend_settings(backend=backend, data={field: value}, actor="admin")
    assert needle in " ".join(err.value.errors[field])
    assert Backend.objects.filter(pk=backend.pk).values().get() == before
    with pytest.raises(InvalidInput):
        save_backend_settings(
            data={**relay_settings(smtp_server), "name": "B2", field: value}, actor="admin"
        )
    assert Backend.objects.count() == 1


def test_the_password_is_write_only_and_encrypted(smtp_server: Any) -> None:
    backend = save_backend_settings(
        data=relay_settings(smtp_server, username="u", password="s3cret-pass"), actor="admin"
    )
    assert "s3cret-pass" not in backend.secret
    assert secrets.decrypt(backend.secret) == "s3cret-pass"
    version = backend.settings_version
    # Saving without a password keeps it and changes nothing that needs a test.
    backend = save_backend_settings(backend=backend, data={"password": ""}, actor="admin")
    assert secrets.decrypt(backend.secret) == "s3cret-pass"
    assert backend.settings_version == version
    backend = save_backend_settings(backend=backend, data={"clear_password": True}, actor="admin")
    assert backend.secret == "" and backend.settings_version == version + 1


def test_editing_the_password_holds_200_queued_messages_until_a_test_succeeds(
    make_smtp_server: Any, run_worker: Any
) -> None:
    old = make_smtp_server(auth={"mailer": "old"})
    new = make_smtp_server(auth={"mailer": "new"})
    backend = save_backend_settings(
        data=relay_settings(old, username="mailer", password="old"), actor="admin"
    )
    assert test_backend(backend).ok
    messages = queue_emails([{"to": f"u{i}@example.com"} for i in range(200)])
    from outbound.services.validation import validate_due

    validate_due()
    assert Message.objects.filter(status=Status.TO_SEND).count() == 200
    # The administrator moves to the new relay and password.
    backend = save_backend_settings(
        backend=backend, data={"port": new.port, "password": "new"}, actor="admin"
    )
    assert backend.health == "untested"
    held = Message.objects.filter(status=Status.BACKEND_TEST_REQUIRED)
    assert held.count() == 200
    assert set(held.values_list("reason_code", flat=True)) == {Reason.BACKEND_UNTESTED}
    run_worker(concurrency=4)
    assert new.connections == 0 and old.messages == []
    assert test_backend(backend).ok
    assert new.connections == 1  # the test itself
    run_worker(concurrency=4)
    assert Message.objects.filter(status=Status.SENT).count() == 200
    assert {m.message_id for m in new.messages} == {m.message_id for m in messages}


def test_raising_the_limit_releases_messages_waiting_for_allowance(
    smtp_server: Any, run_worker: Any
) -> None:
    backend = save_backend_settings(data=relay_settings(smtp_server, limit=1), actor="admin")
    assert test_backend(backend).ok
    first = queue_email(to="a@example.com")
    run_worker()
    second = queue_email(to="b@example.com")
    run_worker()
    second.refresh_from_db()
    assert (second.status, second.reason_code) == (Status.WAITING, Reason.ALLOWANCE_EXHAUSTED)
    save_backend_settings(backend=backend, data={"limit": 5}, actor="admin")
    run_worker()
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == second.status == Status.SENT
    assert Backend.objects.get(pk=backend.pk).left == 3


def test_a_failing_backend_alerts_once_then_all_clear(
    make_smtp_server: Any, system_mail: Any, run_worker: Any
) -> None:
    gs = GlobalSettings.load()
    gs.default_from = "robot@platform.example"
    gs.save()
    relay = make_smtp_server(auth={"mailer": "right"})
    backend = save_backend_settings(
        data=relay_settings(relay, username="mailer", password="right"), actor="admin"
    )
    assert test_backend(backend).ok
    relay.configure(auth={"mailer": "rotated"})
    for i in range(3):
        queue_email(to=f"u{i}@example.com")
    run_worker()
    run_worker()
    alerts.check_alerts()

    def backend_alerts() -> list[Any]:
        return [m for m in system_mail.messages if b"backend Relay" in m.raw]

    assert len(backend_alerts()) == 1
    alert_mail = backend_alerts()[0]
    assert alert_mail.rcpt_tos == ["ops@example.com"]
    # From the global default from address, with its domain in the Message-ID.
    assert alert_mail.mail_from == "robot@platform.example"
    # The subject names the incident; the count held, which changes while it
    # lasts, is in the body with the moment it was counted.
    assert b"Subject: Outbound: backend Relay is failing\r\n" in alert_mail.raw
    assert b"Messages held as Backend test required at 20" in alert_mail.raw
    assert alert_mail.message_id.endswith("@platform.example>")
    assert b"Relay" in alert_mail.raw and b"535" in alert_mail.raw
    assert relay.messages == []
    # The administrator fixes the password and tests: all clear, messages out.
    save_backend_settings(backend=backend, data={"password": "rotated"}, actor="admin")
    assert test_backend(Backend.objects.get(pk=backend.pk)).ok
    assert len(backend_alerts()) == 2
    assert b"all clear" in backend_alerts()[1].raw
    run_worker()
    assert Message.objects.filter(status=Status.SENT).count() == 3
    assert Alert.objects.get(kind=Alert.Kind.BACKEND_FAILING).closed_at is not None


def test_without_system_mail_the_alert_is_recorded(smtp_server: Any, settings: Any) -> None:
    from outbound.services.validation import validate_due

    settings.OUTBOUND_SYSTEM_MAIL_URL = ""
    backend = save_backend_settings(data=relay_settings(smtp_server), actor="admin")
    Backend.objects.filter(pk=backend.pk).update(health="failing", health_detail="535 no")
    # The alert is about held messages: one is held for the failing backend.
    queue_email(to="ann@example.com")
    validate_due()
    alerts.check_alerts()
    alert = Alert.objects.get()
    assert alert.kind == Alert.Kind.BACKEND_FAILING
    assert "Not mailed" in alert.delivery


def test_an_unreadable_secret_holds_messages_and_never_sends(
    make_smtp_server: Any, run_worker: Any, settings: Any
) -> None:
    relay = make_smtp_server(auth={"mailer": "pw"})
    settings.OUTBOUND_SECRET_KEYS = Fernet.generate_key().decode()
    backend = save_backend_settings(
        data=relay_settings(relay, username="mailer", password="pw"), actor="admin"
    )
    assert test_backend(backend).ok
    # The key is replaced: the stored secret can no longer be read.
    settings.OUTBOUND_SECRET_KEYS = Fernet.generate_key().decode()
    message = queue_email(to="a@example.com")
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.BACKEND_TEST_REQUIRED
    assert message.reason_code == Reason.BACKEND_SECRET_UNREADABLE
    assert "Relay" in message.reason_text
    assert relay.auth_attempts == 1  # only the successful test
    result = test_backend(Backend.objects.get(pk=backend.pk))
    assert not result.ok and result.reason == "secret_unreadable"
    assert "backend Relay" in result.reply


def test_secrets_are_re_encrypted_under_a_new_key(smtp_server: Any, settings: Any) -> None:
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.OUTBOUND_SECRET_KEYS = old_key
    backend = save_backend_settings(data=relay_settings(smtp_server, password="pw"), actor="a")
    settings.OUTBOUND_SECRET_KEYS = f"{new_key},{old_key}"
    assert rotate_secrets() == (1, [])
    settings.OUTBOUND_SECRET_KEYS = new_key
    assert secrets.decrypt(Backend.objects.get(pk=backend.pk).secret) == "pw"


def test_the_host_policy_is_checked_on_the_address_connected_to(
    smtp_server: Any, settings: Any, run_worker: Any
) -> None:
    backend = save_backend_settings(data=relay_settings(smtp_server), actor="admin")
    settings.OUTBOUND_FORBID_PRIVATE_HOSTS = True
    result = test_backend(backend)
    assert (result.ok, result.reason) == (False, "host_forbidden")
    assert "127.0.0.1" in result.reply
    # The connection was closed before a single SMTP command.
    assert smtp_server.commands == []
    settings.OUTBOUND_FORBID_PRIVATE_HOSTS = False
    assert test_backend(Backend.objects.get(pk=backend.pk)).ok
    settings.OUTBOUND_FORBID_PRIVATE_HOSTS = True
    message = queue_email(to="a@example.com")
    run_worker()
    message.refresh_from_db()
    assert (message.status, message.reason_code) == (
        Status.BACKEND_TEST_REQUIRED,
        Reason.BACKEND_HOST_FORBIDDEN,
    )
    assert smtp_server.messages == []


def test_a_used_up_allowance_alerts_once_and_clears_when_raised(
    smtp_server: Any, system_mail: Any, run_worker: Any
) -> None:
    backend = save_backend_settings(data=relay_settings(smtp_server, limit=1), actor="admin")
    assert test_backend(backend).ok
    queue_email(to="a@example.com")
    run_worker()
    for i in range(3):
        queue_email(to=f"w{i}@example.com")
    run_worker()
    alerts.check_alerts()

    def allowance_mails() -> list[Any]:
        return [m for m in system_mail.messages if b"allowance" in m.raw]

    assert len(allowance_mails()) == 1
    assert b"3 messages are waiting" in allowance_mails()[0].raw
    save_backend_settings(backend=backend, data={"limit": 10}, actor="admin")
    assert len(allowance_mails()) == 2
    assert b"all clear" in allowance_mails()[1].raw
    run_worker()
    assert Message.objects.filter(status=Status.SENT).count() == 4


def test_the_rate_limit_holds_for_all_workers_together(smtp_server: Any, run_worker: Any) -> None:
    backend = save_backend_settings(
        data=relay_settings(smtp_server, rate_per_minute=3), actor="admin"
    )
    assert test_backend(backend).ok
    for i in range(5):
        queue_email(to=f"u{i}@example.com")
    run_worker(concurrency=2)
    run_worker(concurrency=2)  # a second worker finds the minute's quota used
    assert len(smtp_server.messages) == 3
    assert Message.objects.filter(status=Status.TO_SEND, claim_token__isnull=True).count() == 2


def test_a_test_message_needs_a_tested_backend_and_a_valid_address(smtp_server: Any) -> None:
    from outbound.models import AuditEntry
    from outbound.services.backends import send_test_message

    backend = save_backend_settings(data=relay_settings(smtp_server), actor="admin")
    refused = send_test_message(backend, to="admin@example.com", actor="admin")
    assert not refused.ok and "test of the current settings" in refused.text
    assert smtp_server.messages == []
    assert test_backend(backend).ok
    backend.refresh_from_db()
    with pytest.raises(InvalidInput):
        send_test_message(backend, to="admin@", actor="admin")
    sent = send_test_message(backend, to="admin@example.com", actor="admin")
    assert sent.ok and sent.queue_id and sent.queue_id in sent.text
    assert smtp_server.messages[0].rcpt_tos == ["admin@example.com"]
    # The Message-ID's domain is the sender's, not a made-up one.
    assert smtp_server.messages[0].message_id.endswith("@example.com>")
    assert AuditEntry.objects.filter(action="send_test_message").count() == 2


def _audit_result() -> str:
    from outbound.models import AuditEntry

    return AuditEntry.objects.filter(object_type="backend").order_by("-id").first().result


def test_the_audit_names_only_the_settings_whose_value_changed(smtp_server: Any) -> None:
    backend = save_backend_settings(
        data=relay_settings(smtp_server, username="mailer", password="first-pw"), actor="admin"
    )
    # Everything sent again, only the port different: only the port is named.
    every_field = {**relay_settings(smtp_server), "username": "mailer", "limit": None}
    every_field["port"] = smtp_server.port + 1
    # The same password typed again, as a new port requires: not a change.
    every_field["password"] = "first-pw"
    save_backend_settings(backend=backend, data=every_field, actor="admin")
    assert _audit_result() == "Changed: port; settings version 2, test required"
    # An allowance setting: no new settings version.
    save_backend_settings(backend=backend, data={**every_field, "limit": 50}, actor="admin")
    assert _audit_result() == "Changed: limit"
    assert Backend.objects.get(pk=backend.pk).settings_version == 2


def test_a_save_that_changes_nothing_says_so_and_needs_no_test(make_smtp_server: Any) -> None:
    smtp_server = make_smtp_server(auth={"mailer": "same-pw"})
    backend = save_backend_settings(
        data=relay_settings(smtp_server, username="mailer", password="same-pw"), actor="admin"
    )
    assert test_backend(backend).ok
    same = {
        **relay_settings(smtp_server),
        "timeout": 5.0,
        "username": " mailer ",
        "password": "same-pw",
    }
    backend = save_backend_settings(backend=backend, data=same, actor="admin")
    assert _audit_result() == "Changed: nothing"
    assert backend.is_usable and backend.settings_version == 1


def test_a_password_change_is_audited_by_name_never_by_value(smtp_server: Any) -> None:
    from outbound.models import AuditEntry

    backend = save_backend_settings(
        data=relay_settings(smtp_server, password="old-Secret-1"), actor="admin"
    )
    save_backend_settings(backend=backend, data={"password": "new-Secret-2"}, actor="admin")
    assert _audit_result() == "Changed: password; settings version 2, test required"
    save_backend_settings(backend=backend, data={"clear_password": True}, actor="admin")
    assert _audit_result() == "Changed: password; settings version 3, test required"
    # Clearing a password that is not there is no change.
    save_backend_settings(backend=backend, data={"clear_password": True}, actor="admin")
    assert _audit_result() == "Changed: nothing"
    stored = repr(list(AuditEntry.objects.values()))
    assert "Secret-1" not in stored and "Secret-2" not in stored


@pytest.mark.parametrize(
    ("host", "message"),
    [
        (
            "http://smtp.example.com",
            "Give the host name only, without http:// — the port has its own field.",
        ),
        (
            "smtp.example.com:25",
            "Give the host name only, without :25 — the port has its own field.",
        ),
        ("[2001:db8::1]:587", "Give the host name only, without :587"),
        ("smtp.example.com/relay", "Give the host name only, without /relay after it."),
        ("mailer@smtp.example.com", "without a user name and @"),
        ("999.1.2.3", "999.1.2.3 is not a valid IPv4 address."),
        ("-smtp.example.com", "is not a valid host name"),
        ("smtp..example.com", "is not a valid host name"),
        ("2001:db8::zz", "2001:db8::zz is not a valid IPv6 address."),
    ],
)
def test_a_host_that_is_not_a_host_name_is_refused_and_nothing_changes(
    smtp_server: Any, host: str, message: str
) -> None:
    backend = save_backend_settings(data=relay_settings(smtp_server), actor="admin")
    before = Backend.objects.filter(pk=backend.pk).values().get()
    with pytest.raises(InvalidInput) as err:
        save_backend_settings(backend=backend, data={"host": host}, actor="admin")
    assert message in err.value.errors["host"][0]
    assert Backend.objects.filter(pk=backend.pk).values().get() == before
    with pytest.raises(InvalidInput):
        save_backend_settings(
            data={**relay_settings(smtp_server), "name": "B2", "host": host}, actor="a"
        )
    assert Backend.objects.count() == 1


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("192.0.2.10", "192.0.2.10"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:DB8::1]", "2001:db8::1"),
        ("bücher.example", "bücher.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("mail-relay.internal.", "mail-relay.internal."),
        ("localhost", "localhost"),
    ],
)
def test_ip_addresses_and_international_host_names_are_accepted(
    smtp_server: Any, typed: str, stored: str
) -> None:
    backend = save_backend_settings(data=relay_settings(smtp_server, host=typed), actor="admin")
    assert Backend.objects.get(pk=backend.pk).host == stored


def test_a_backend_with_an_ipv6_host_is_tested_and_sends(make_smtp_server: Any) -> None:
    import socket

    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        server = make_smtp_server(host="::1")
    except OSError:
        pytest.skip("cannot listen on ::1 here")
    backend = save_backend_settings(data=relay_settings(server, host="[::1]"), actor="admin")
    assert backend.host == "::1"
    assert test_backend(backend).ok


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("limit", 10**9 + 1, "Must be between 0 and 1,000,000,000 messages."),
        ("rate_per_minute", 0, "Must be between 1 and 1,000,000 messages a minute."),
        ("max_connections", 1001, "Must be between 1 and 1000 connections."),
        ("timeout", 500, "Must be between 1 and 120 seconds."),
        ("port", 0, "Must be between 1 and 65535."),
        ("limit", True, "Enter a whole number."),
    ],
)
def test_number_ranges_read_naturally(
    smtp_server: Any, field: str, value: Any, message: str
) -> None:
    backend = save_backend_settings(data=relay_settings(smtp_server), actor="admin")
    with pytest.raises(InvalidInput) as err:
        save_backend_settings(backend=backend, data={field: value}, actor="admin")
    assert err.value.errors[field] == [message]


def test_the_only_default_backend_cannot_be_unset_and_the_role_moves_instead(
    make_smtp_server: Any,
) -> None:
    first = save_backend_settings(data=relay_settings(make_smtp_server()), actor="admin")
    before = Backend.objects.filter(pk=first.pk).values().get()
    with pytest.raises(InvalidInput) as err:
        save_backend_settings(backend=first, data={"is_default": False, "limit": 3}, actor="admin")
    assert err.value.errors["is_default"] == [
        "Backend Relay is the default email backend: email messages without a backend of "
        "their own go through it. Make another email backend the default first."
    ]
    assert Backend.objects.filter(pk=first.pk).values().get() == before
    second = save_backend_settings(
        data={**relay_settings(make_smtp_server()), "name": "Second", "is_default": False},
        actor="admin",
    )
    assert Backend.objects.get(pk=first.pk).is_default
    save_backend_settings(backend=second, data={"is_default": True}, actor="admin")
    assert _audit_result() == "Changed: is_default; the default email backend instead of Relay"
    assert list(Backend.objects.filter(is_default=True).values_list("name", flat=True)) == [
        "Second"
    ]
    # The one that is no longer the default may say so: nothing changes.
    save_backend_settings(backend=first, data={"is_default": False}, actor="admin")
    assert _audit_result() == "Changed: nothing"


def test_a_tested_backend_made_the_default_releases_messages_held_for_want_of_one(
    smtp_server: Any, run_worker: Any
) -> None:
    from outbound.models import Event

    backend = save_backend_settings(
        data=relay_settings(smtp_server, is_default=False), actor="admin"
    )
    assert test_backend(backend).ok
    message = queue_email(to="ann@example.com", subject="Held", from_address="me@example.com")
    run_worker()
    message.refresh_from_db()
    assert (message.status, message.reason_code) == (
        Status.BACKEND_TEST_REQUIRED,
        Reason.BACKEND_MISSING,
    )
    save_backend_settings(backend=backend, data={"is_default": True}, actor="ada")
    message.refresh_from_db()
    assert (message.status, message.reason_code) == (Status.WAITING, Reason.RELEASED)
    event = Event.objects.filter(message=message).order_by("-id").first()
    assert (event.from_status, event.to_status, event.actor) == (
        Status.BACKEND_TEST_REQUIRED,
        Status.WAITING,
        "ada",
    )
    assert "Backend Relay, whose settings passed the test, became the default email" in event.text
    assert _audit_result() == "Changed: is_default; 1 held message released"
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.SENT
    [received] = smtp_server.messages
    assert received.rcpt_tos == ["ann@example.com"]


def test_an_untested_backend_made_the_default_releases_nothing_until_its_test(
    smtp_server: Any, run_worker: Any
) -> None:
    message = queue_email(to="ann@example.com", from_address="me@example.com")
    run_worker()
    backend = save_backend_settings(
        data=relay_settings(smtp_server, is_default=False), actor="admin"
    )
    save_backend_settings(backend=backend, data={"is_default": True}, actor="admin")
    message.refresh_from_db()
    assert (message.status, message.reason_code) == (
        Status.BACKEND_TEST_REQUIRED,
        Reason.BACKEND_MISSING,
    )
    assert test_backend(Backend.objects.get(pk=backend.pk)).ok
    message.refresh_from_db()
    assert message.status == Status.WAITING
    assert "The test of backend Relay succeeded" in message.reason_text


def test_messages_held_for_a_failing_default_go_through_the_new_default(
    make_smtp_server: Any, run_worker: Any
) -> None:
    """The administrator gives up on a broken relay and makes a new one the
    default: what the broken one held goes out through the new one, except
    a message that was named to the broken relay at intake."""
    broken_relay = make_smtp_server(auth={"mailer": "right"})
    broken = save_backend_settings(
        data=relay_settings(broken_relay, username="mailer", password="wrong"), actor="admin"
    )
    assert not test_backend(broken).ok
    followers = [queue_email(to=f"u{i}@example.com") for i in range(2)]
    pinned = queue_email(to="pinned@example.com", backend="Relay")
    assert pinned.backend_chosen and not followers[0].backend_chosen
    run_worker()
    for m in [*followers, pinned]:
        m.refresh_from_db()
        assert (m.status, m.backend_id) == (Status.BACKEND_TEST_REQUIRED, broken.pk)

    new_relay = make_smtp_server()
    new = save_backend_settings(
        data=relay_settings(new_relay, name="New relay", is_default=False), actor="admin"
    )
    assert test_backend(new).ok
    # Tested but not the default yet: it decides nothing for them.
    assert Message.objects.filter(status=Status.BACKEND_TEST_REQUIRED).count() == 3
    save_backend_settings(backend=new, data={"is_default": True}, actor="ada")
    assert _audit_result() == (
        "Changed: is_default; the default email backend instead of Relay; 2 held messages released"
    )
    run_worker()
    for m in followers:
        m.refresh_from_db()
        assert (m.status, m.backend_id) == (Status.SENT, new.pk)
    assert sorted(r for m in new_relay.messages for r in m.rcpt_tos) == [
        "u0@example.com",
        "u1@example.com",
    ]
    pinned.refresh_from_db()
    assert (pinned.status, pinned.backend_id) == (Status.BACKEND_TEST_REQUIRED, broken.pk)
    assert broken_relay.messages == []


def test_an_untested_new_default_releases_what_the_old_default_held_at_its_test(
    make_smtp_server: Any, run_worker: Any
) -> None:
    broken = save_backend_settings(
        data=relay_settings(make_smtp_server(auth={"mailer": "right"}), username="mailer"),
        actor="admin",
    )
    assert not test_backend(broken).ok
    message = queue_email(to="ann@example.com")
    run_worker()
    message.refresh_from_db()
    assert (message.status, message.backend_id) == (Status.BACKEND_TEST_REQUIRED, broken.pk)
    new_relay = make_smtp_server()
    new = save_backend_settings(data=relay_settings(new_relay, name="New relay"), actor="admin")
    message.refresh_from_db()
    assert message.status == Status.BACKEND_TEST_REQUIRED
    # The old default passing its test now releases nothing: the message
    # follows the default, which is the new relay.
    save_backend_settings(backend=broken, data={"password": "right"}, actor="admin")
    assert test_backend(Backend.objects.get(pk=broken.pk)).ok
    message.refresh_from_db()
    assert message.status == Status.BACKEND_TEST_REQUIRED
    assert test_backend(Backend.objects.get(pk=new.pk)).ok
    message.refresh_from_db()
    assert (message.status, message.reason_code) == (Status.WAITING, Reason.RELEASED)
    run_worker()
    message.refresh_from_db()
    assert (message.status, message.backend_id) == (Status.SENT, new.pk)
    assert [m.rcpt_tos for m in new_relay.messages] == [["ann@example.com"]]


def test_every_backend_test_is_audited_with_what_it_released(smtp_server: Any) -> None:
    backend = save_backend_settings(data=relay_settings(smtp_server), actor="admin")
    smtp_server.configure(mail_reply="550 5.7.1 sender not allowed")
    assert not test_backend(backend, actor="ada").ok
    for i in range(2):
        queue_email(to=f"u{i}@example.com")
    validate_due()
    smtp_server.configure(mail_reply=None)
    assert test_backend(Backend.objects.get(pk=backend.pk), actor="ada").ok
    entries = list(AuditEntry.objects.filter(action="test_backend").order_by("id"))
    assert [(e.actor, e.ok) for e in entries] == [("ada", False), ("ada", True)]
    assert "failed at the" in entries[0].result
    assert entries[1].result == (
        f"Test of backend Relay (settings version {backend.settings_version}) succeeded; "
        "2 held messages released."
    )


def test_the_default_from_address_keeps_its_display_name_in_messages_and_alerts(
    smtp_server: Any,
    make_backend: Any,
    run_worker: Any,
    system_mail: Any,
) -> None:
    from email import message_from_bytes

    from outbound.services.global_settings import save_global_settings

    saved = save_global_settings(
        data={"default_from": " Outbound <outbound@example.com> "}, actor="ada"
    )
    assert saved.default_from == "Outbound <outbound@example.com>"
    # A backend without a from address of its own: the global default is the sender.
    backend = make_backend(smtp_server, from_address="")
    message = queue_email(to="ann@example.com", subject="Hi", backend=backend)
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.SENT, message.reason_text
    got = smtp_server.messages[-1]
    assert got.mail_from == "outbound@example.com"
    assert message_from_bytes(got.raw)["From"] == "Outbound <outbound@example.com>"
    # An alert goes out from it too: the name in From, the bare address in MAIL FROM.
    alerts.raise_alert(kind="backend_failing", key="k", subject="Backend Relay failing", body="x")
    mailed = system_mail.messages[-1]
    assert mailed.mail_from == "outbound@example.com"
    assert message_from_bytes(mailed.raw)["From"] == "Outbound <outbound@example.com>"


def test_a_certificate_for_another_host_is_named_by_the_test_and_the_held_message(
    make_smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    from outbound.explain import explain_message
    from outbound.web.test_advice import advice_for

    # A relay tested over STARTTLS whose certificate is later replaced by one
    # for other names (a second server stands for the replaced certificate).
    first = make_smtp_server(tls="starttls")
    backend = make_backend(first, security="starttls")
    replaced = make_smtp_server(tls="starttls", tls_names=("mail.other.test",))
    Backend.objects.filter(pk=backend.pk).update(port=replaced.port)
    message = queue_email(to="anna@example.com", subject="Invoice")
    run_worker()
    message.refresh_from_db()
    assert (message.status, message.reason_code) == (
        Status.BACKEND_TEST_REQUIRED,
        Reason.BACKEND_TLS_FAILED,
    )
    named = f"127.0.0.1:{replaced.port} presented a certificate for mail.other.test"
    assert named in message.reason_text
    todo = " ".join(explain_message(message).what_to_do)
    assert named in todo
    assert "Set the backend's host to a name the certificate is for" in todo
    assert "have the certificate reissued to include 127.0.0.1" in todo

    result = test_backend(Backend.objects.get(pk=backend.pk), actor="admin")
    assert (result.ok, result.reason) == (False, "tls_wrong_host")
    assert named in result.reply
    assert advice_for(result.reason, kind="smtp").headline == (
        "TLS failed: the certificate is for another host name"
    )
