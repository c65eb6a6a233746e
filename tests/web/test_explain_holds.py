"""What holds a To send message back (its backend's rate limit, pause after
throttling or connection cap) is named in its explanation, on its page and in
the stuck-messages banner; retries, failed tests and the backend field say
what really happened. Real SMTP servers, the real worker, the real pages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import pytest
from django.test import Client
from django.utils import timezone

from outbound.explain import explain_message
from outbound.models import Attempt, Backend, Contact, Message
from outbound.selectors import overview
from outbound.services import dispatch
from outbound.services.backends import save_backend_settings, test_backend
from outbound.services.intake import queue_email
from outbound.services.operations import resend_message
from outbound.services.validation import validate_due
from outbound.states import Reason, Status

pytestmark = pytest.mark.django_db(transaction=True)


def _fmt(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")


def _clock(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%H:%M:%S")


def _todo(message: Message) -> str:
    message.refresh_from_db()
    return " ".join(explain_message(message).what_to_do)


def _rate_limited_backlog(
    smtp_server: Any,
    make_backend: Callable[..., Backend],
    run_worker: Callable[..., Any],
    **kw: Any,
) -> tuple[Backend, Attempt, list[Message]]:
    """A backend limited to one message a minute, four messages queued, one
    worker round: one leaves, three wait for the next slots."""
    backend = make_backend(smtp_server, rate_per_minute=1)
    for i in range(4):
        queue_email(to=f"u{i}@example.com", subject=f"Notice {i}", **kw)
    run_worker()
    assert Message.objects.filter(status=Status.SENT).count() == 1
    first = Attempt.objects.get(outcome=Attempt.Outcome.SENT)
    waiting = list(Message.objects.filter(status=Status.TO_SEND).order_by("next_attempt_at", "id"))
    assert len(waiting) == 3
    return backend, first, waiting


class _StuckBacklog(NamedTuple):
    late: datetime  # when the messages were due: an hour ago
    next_slot: datetime  # when the backend's rate limit lets the next one start


@pytest.fixture
def stuck_backlog(
    smtp_server: Any,
    make_backend: Callable[..., Backend],
    run_worker: Callable[..., Any],
) -> _StuckBacklog:
    """The rate-limited backlog, due an hour ago: past the stuck threshold
    (15 minutes) from the start, so the three waiting messages are stuck."""
    late = timezone.now() - timedelta(hours=1)
    _, first, _ = _rate_limited_backlog(smtp_server, make_backend, run_worker, send_at=late)
    return _StuckBacklog(late=late, next_slot=first.started_at + timedelta(minutes=1))


def _only_wait_for_relay(backlog: _StuckBacklog) -> str:
    """How Send outgoing messages and the stuck alert name the three messages
    of `stuck_backlog` that only wait for the rate limit."""
    return (
        f"3 of them only wait for backend Relay: its rate limit of 1 a minute "
        f"(next slot at {_clock(backlog.next_slot)}); they cannot leave sooner."
    )


# ------------------------------------------------------------- rate limit


def test_rate_limited_messages_name_the_limit_and_their_next_slot(
    smtp_server: Any,
    make_backend: Callable[..., Backend],
    run_worker: Callable[..., Any],
    operator_client: Client,
) -> None:
    _, first, waiting = _rate_limited_backlog(smtp_server, make_backend, run_worker)
    next_slot = first.started_at + timedelta(minutes=1)
    for position, message in enumerate(waiting):
        e = explain_message(message)
        todo = " ".join(e.what_to_do)
        assert "rate limit of backend Relay (1 message a minute)" in e.why
        assert f"next slot opens at {_fmt(next_slot)}" in e.why
        assert "starts at most 1 message a minute" in todo
        assert f"its next slot opens at {_fmt(next_slot)}" in todo
        assert "Send outgoing messages cannot make it leave sooner" in todo
        assert "within seconds" not in todo
        # One message a minute: each one ahead pushes its turn a minute on.
        if position == 0:
            assert "It is the next message of this backend to leave." in todo
        else:
            turn = first.started_at + timedelta(minutes=position + 1)
            assert f"{position} other message" in todo
            assert f"its turn comes at about {_fmt(turn)}" in todo
        facts = dict(e.facts)
        assert facts["Backend rate limit"] == (
            f"1 message a minute; 1 started in the last minute; next free slot at {_fmt(next_slot)}"
        )
    html = operator_client.get(f"/messages/{waiting[-1].pk}/").content.decode()
    assert "rate limit of backend Relay" in html
    assert _fmt(next_slot) in html
    assert "A running worker sends it within seconds" not in html


def test_the_backends_table_shows_the_rate_limit_and_when_it_frees(
    smtp_server: Any,
    make_backend: Callable[..., Backend],
    run_worker: Callable[..., Any],
    viewer_client: Client,
) -> None:
    _, first, _ = _rate_limited_backlog(smtp_server, make_backend, run_worker)
    html = viewer_client.get("/").content.decode()
    assert "<th>Rate limit</th>" in html
    assert (
        f"1 per minute · used up, next slot at {_clock(first.started_at + timedelta(minutes=1))}"
        in html
    )


def test_stuck_messages_held_by_the_rate_limit_are_not_sent_to_the_button(
    stuck_backlog: _StuckBacklog, operator_client: Client
) -> None:
    o = overview()
    assert (o.stuck, o.stuck_held_count, o.stuck_movable) == (3, 3, 0)
    html = operator_client.get("/").content.decode()
    banner = html.split('<div class="banner banner-info" role="status">')[1].split("</div>")[0]
    assert "3 messages stuck" in banner
    assert "3 of them are To send and only wait for backend Relay" in banner
    assert "1 message a minute" in banner
    assert f"next slot opens at {_clock(stuck_backlog.next_slot)}" in banner
    assert "Send outgoing messages cannot make them leave sooner" in banner
    assert 'href="#send-outgoing"' not in banner
    assert "banner-warn" not in html
    section = html.split('id="send-outgoing"')[1]
    assert "3 of them only wait for a backend's rate limit" in section
    assert "This makes" not in section.split("</p>")[0]

    # A stuck message the button can help (no worker has validated it yet):
    # the banner sends the administrator to the button for that one only.
    queue_email(to="later@example.com", send_at=stuck_backlog.late)
    html = operator_client.get("/").content.decode()
    banner = html.split('<div class="banner banner-warn" role="alert">')[1].split("</div>")[0]
    assert "4 messages stuck" in banner
    assert "3 of them are To send and only wait for backend Relay" in banner
    assert "For the other 1:" in banner and 'href="#send-outgoing"' in banner
    section = html.split('id="send-outgoing"')[1].split("</p>")[0]
    assert "This makes the other 1 due now" in section


def test_rate_slots_follow_the_claims_sliding_minute() -> None:
    from outbound.selectors import rate_slots

    now = timezone.now()
    starts = [now - timedelta(seconds=50), now - timedelta(seconds=10)]
    # Two a minute, both used: the next start when the older leaves the
    # minute, then when the newer does, then a minute after the first slot.
    assert rate_slots(starts, 2, now, 3) == [
        now + timedelta(seconds=10),
        now + timedelta(seconds=50),
        now + timedelta(seconds=70),
    ]
    assert rate_slots(starts, 3, now, 2) == [now, now + timedelta(seconds=10)]


# ------------------------------------------------------------------ pause


def test_a_paused_backend_names_the_pause_its_end_and_the_throttling_reply(
    smtp_server: Any,
    make_backend: Callable[..., Backend],
    run_worker: Callable[..., Any],
    operator_client: Client,
) -> None:
    backend = make_backend(smtp_server)
    smtp_server.configure(data_reply="451 4.7.1 Rate limited, slow down")
    messages = [queue_email(to=f"u{i}@example.com") for i in range(3)]
    run_worker()
    backend.refresh_from_db()
    assert backend.paused_until is not None and backend.paused_until > timezone.now()
    # The administrator asks for it now: it is due, yet the pause holds it.
    assert resend_message(messages[0], actor="admin").ok
    e = explain_message(Message.objects.get(pk=messages[0].pk))
    todo = " ".join(e.what_to_do)
    assert f"backend Relay is paused until {_fmt(backend.paused_until)}" in e.why
    assert f"Backend Relay is paused until {_fmt(backend.paused_until)}" in todo
    assert "3 times in a row" in todo
    assert "451 4.7.1 Rate limited, slow down" in todo
    assert "Send outgoing messages cannot make it leave sooner" in todo
    assert dict(e.facts)["Backend paused until"] == _fmt(backend.paused_until)
    html = operator_client.get("/").content.decode()
    assert f"Paused until {_clock(backend.paused_until)} after repeated throttling" in html


# --------------------------------------------------------- connection cap


def test_all_connections_in_use_is_named_with_their_holders(
    smtp_server: Any,
    make_backend: Callable[..., Backend],
    run_worker: Callable[..., Any],
) -> None:
    backend = make_backend(smtp_server, max_connections=1)
    # A worker on another host holds the backend's only connection.
    slot = dispatch.acquire_slot(
        backend.pk, 1, holder="host-b:worker-7", lease=timedelta(minutes=2)
    )
    assert slot is not None
    message = queue_email(to="ann@example.com")
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.TO_SEND and message.claim_token is None
    e = explain_message(message)
    todo = " ".join(e.what_to_do)
    assert "the one connection backend Relay allows is in use" in e.why
    assert "allows at most 1 connection at a time, and it is open now" in todo
    assert "held by host-b:worker-7" in todo
    assert "within seconds" not in todo
    assert dict(e.facts)["Backend connections"] == "at most 1; 1 open now"
    # Once the connection is given back, nothing holds it.
    dispatch.release_slot(slot)
    assert "held by host-b:worker-7" not in _todo(message)


# --------------------------------------------------------- other wording


def test_a_refused_connection_is_not_called_a_server_answer(
    make_smtp_server: Callable[..., Any],
    make_backend: Callable[..., Backend],
    run_worker: Callable[..., Any],
    operator_client: Client,
) -> None:
    server = make_smtp_server()
    port = make_backend(server).port
    server.stop()
    message = queue_email(to="ann@example.com")
    run_worker()
    message.refresh_from_db()
    assert message.reason_code == Reason.RETRY_SCHEDULED
    todo = _todo(message)
    assert f"{server.host}:{port} (backend Relay) refused the connection" in todo
    assert "no server answered" in todo
    assert "answered with a temporary failure" not in todo
    assert f"The next attempt is at {_fmt(message.next_attempt_at)}" in todo
    assert "check that the server is running" in todo
    html = operator_client.get(f"/messages/{message.pk}/").content.decode()
    assert "refused the connection" in html
    assert "answered with a temporary failure" not in html


def test_a_temporary_reply_is_still_called_one(
    smtp_server: Any, make_backend: Callable[..., Backend], run_worker: Callable[..., Any]
) -> None:
    make_backend(smtp_server)
    smtp_server.configure(rcpt_reply="450 4.2.0 Mailbox busy")
    message = queue_email(to="ann@example.com")
    run_worker()
    todo = _todo(message)
    assert "answered with a temporary failure: 450 4.2.0 Mailbox busy" in todo
    assert "refused the connection" not in todo


def test_a_failed_test_after_a_change_says_it_failed_not_that_it_was_not_tested(
    make_smtp_server: Callable[..., Any], make_backend: Callable[..., Backend]
) -> None:
    server = make_smtp_server(auth={"mailer": "right"})
    backend = make_backend(server, username="mailer", password="right")
    backend = save_backend_settings(backend=backend, data={"password": "wrong"}, actor="admin")
    message = queue_email(to="ann@example.com")
    validate_due()
    message.refresh_from_db()
    assert (message.status, message.reason_code) == (
        Status.BACKEND_TEST_REQUIRED,
        Reason.BACKEND_UNTESTED,
    )
    # Before any test of the new settings: not tested since the change.
    assert "The settings changed after the last test (which succeeded" in _todo(message)
    result = test_backend(backend, actor="admin")
    assert not result.ok and result.reason == "auth_failed"
    backend.refresh_from_db()
    e = explain_message(Message.objects.get(pk=message.pk))
    todo = " ".join(e.what_to_do)
    assert "not tested since" not in todo
    assert (
        f"The current settings were tested at {_fmt(backend.last_test_at)} and the test failed: "
        "Authentication failed: the account or password is wrong." in todo
    )
    assert "535" in todo  # the server's reply, from the stored result
    assert "Type the current password" in todo
    assert f"these settings were tested, at {_fmt(backend.last_test_at)}, and failed" in e.why


def test_a_not_sent_message_names_the_same_backend_in_its_fields_and_facts(
    stored_backend: Callable[..., Backend], viewer_client: Client
) -> None:
    stored_backend()
    contact = Contact.objects.create(name="Ann", email="ann@@example")
    message = queue_email(contact=contact, subject="Invoice")
    validate_due()
    message.refresh_from_db()
    assert message.status == Status.NOT_SENT and message.backend_id is None
    e = explain_message(message)
    said = "none chosen for this message; the default email backend is Relay"
    assert dict(e.facts)["Backend"] == f"{said} (smtp.example.com:587, encrypted with STARTTLS)"
    html = viewer_client.get(f"/messages/{message.pk}/").content.decode()
    # Named once, in the facts (the page repeats no fact in another section).
    assert (
        f"<dt>Backend</dt><dd>{said} (smtp.example.com:587, encrypted with STARTTLS)</dd>" in html
    )
    assert html.count("<dt>Backend</dt>") == 1
    assert "<dt>Backend</dt><dd>—</dd>" not in html


def test_a_message_with_its_backend_names_it_in_both_places(
    stored_backend: Callable[..., Backend], viewer_client: Client
) -> None:
    stored_backend()
    message = queue_email(to="bob@example.com")
    validate_due()
    html = viewer_client.get(f"/messages/{message.pk}/").content.decode()
    assert "<dt>Backend</dt><dd>Relay (smtp.example.com:587, encrypted with STARTTLS)</dd>" in html
    assert html.count("<dt>Backend</dt>") == 1


def test_send_outgoing_says_which_stuck_messages_wait_for_their_backend(
    stuck_backlog: _StuckBacklog,
) -> None:
    from outbound.services.operations import send_outgoing

    result = send_outgoing(actor="admin")
    assert result.text.startswith("3 stuck messages queued to be sent now.")
    assert _only_wait_for_relay(stuck_backlog) in result.text


def test_the_stuck_alert_names_what_only_waits_for_its_backend(
    stuck_backlog: _StuckBacklog,
) -> None:
    from outbound.models import Alert
    from outbound.services.alerts import check_alerts

    # Messages that only wait for the rate limit raise no alert (see
    # tests/test_alerts.py); one truly stuck beside them does, and names them.
    check_alerts()
    assert not Alert.objects.filter(kind=Alert.Kind.QUEUE_STUCK).exists()
    queue_email(to="later@example.com", send_at=stuck_backlog.late)
    check_alerts()
    alert = Alert.objects.get(kind=Alert.Kind.QUEUE_STUCK)
    expected = f"Among the stuck messages: {_only_wait_for_relay(stuck_backlog)}"
    assert expected in alert.body
