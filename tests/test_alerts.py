"""Alerts to the Backend Failure Email that must not cry wolf: a stuck queue
that only moves at its backend's pace, a failed backend test that holds no
message, an "all clear" for an incident nobody was told of. Real SMTP
servers (the relay and the deployment's system mail), the real worker."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from typing import Any

import pytest
from django.utils import timezone

from outbound.models import Alert, Attempt, Backend, Message
from outbound.selectors import RATE_WINDOW, held_stuck, rate_pace, rate_slots, rate_window
from outbound.services import dispatch
from outbound.services.alerts import check_alerts
from outbound.services.backends import save_backend_settings, test_backend
from outbound.services.intake import queue_email
from outbound.services.operations import cancel_message
from outbound.services.validation import validate_due
from outbound.states import Status
from tests.relays import relay_settings

pytestmark = pytest.mark.django_db(transaction=True)


def _mailed(server: Any, needle: str) -> list[str]:
    """Subject and text of the alerts mailed to the Backend Failure Email
    that contain ``needle``."""
    found = []
    for m in server.messages:
        if m.rcpt_tos != ["ops@example.com"]:
            continue
        parsed = message_from_bytes(m.raw, policy=policy.default)
        text = f"Subject: {parsed['Subject']}\n\n{parsed.get_content()}"
        if needle in text:
            found.append(text)
    return found


def _held_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("Messages held as"))


def _clock(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%H:%M:%S")


def _open(kind: str) -> Alert | None:
    return Alert.objects.filter(kind=kind, closed_at__isnull=True).first()


# --------------------------------------------------------------- stuck queue


@pytest.fixture
def paced_backlog(
    smtp_server: Any, make_backend: Callable[..., Backend], run_worker: Callable[..., Any]
) -> tuple[Backend, datetime]:
    """A backend limited to one message a minute and four messages due an
    hour ago (past the 15-minute stuck threshold): one worker round sends
    one, the other three wait for the next slots."""
    backend = make_backend(smtp_server, rate_per_minute=1)
    late = timezone.now() - timedelta(hours=1)
    for i in range(4):
        queue_email(to=f"u{i}@example.com", send_at=late)
    run_worker()
    assert Message.objects.filter(status=Status.SENT).count() == 1
    assert Message.objects.filter(status=Status.TO_SEND, claim_token__isnull=True).count() == 3
    return backend, late


def test_a_backlog_that_only_waits_for_the_rate_limit_raises_no_stuck_alert(
    paced_backlog: tuple[Backend, datetime], system_mail: Any
) -> None:
    # The worker ran the check itself; run it again on the facts as they are.
    check_alerts()
    assert held_stuck()[0].count == 3  # past the threshold, yet only paced
    assert not Alert.objects.filter(kind=Alert.Kind.QUEUE_STUCK).exists()
    assert _mailed(system_mail, "stuck") == []


def test_a_truly_stuck_message_raises_it_naming_the_paced_ones_and_clears_after(
    paced_backlog: tuple[Backend, datetime], system_mail: Any
) -> None:
    _, late = paced_backlog
    # Due an hour ago and never validated (no worker ran since): stuck.
    lost = queue_email(to="lost@example.com", send_at=late)
    check_alerts()
    alert = _open(Alert.Kind.QUEUE_STUCK)
    assert alert is not None
    assert "4 messages have been Waiting or To send for more than 0:15:00" in alert.body
    slot = _clock(Attempt.objects.get().started_at + RATE_WINDOW)
    assert (
        "Among the stuck messages: 3 of them only wait for backend Relay: its rate limit of 1 "
        f"a minute (next slot at {slot}); they cannot leave sooner." in alert.body
    )
    [mail] = _mailed(system_mail, "Subject: Outbound: messages are stuck")
    assert "3 of them only wait for backend Relay" in mail
    # Where it went, in the console's own time format.
    assert re.fullmatch(
        r"Mailed to ops@example\.com at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC "
        r"\(the server answered 250\)\.",
        Alert.objects.get(pk=alert.pk).delivery,
    )

    # The stuck one is cancelled: what is left only waits for the rate limit.
    assert cancel_message(lost, actor="admin").ok
    check_alerts()
    alert.refresh_from_db()
    assert alert.closed_at is not None
    [clear] = _mailed(system_mail, "all clear, no message is stuck")
    assert "3 messages are still more than 0:15:00 past their due time" in clear
    # Nothing more while only the pace holds them back.
    check_alerts()
    assert Alert.objects.filter(kind=Alert.Kind.QUEUE_STUCK).count() == 1
    assert len(_mailed(system_mail, "stuck")) == 2


def test_a_rate_limit_slot_left_unused_for_over_a_minute_is_stuck(
    paced_backlog: tuple[Backend, datetime], system_mail: Any
) -> None:
    """A slot that opened moments ago, or a message that became due moments
    ago, is for a worker's next round: the pace. A slot nobody took for more
    than a minute, for a message due as long, is not."""
    attempt = Attempt.objects.get()
    waiting = Message.objects.filter(status=Status.TO_SEND)
    now = timezone.now()
    # The one start was 90 s ago: its slot opened 30 s ago.
    Attempt.objects.filter(pk=attempt.pk).update(started_at=now - timedelta(seconds=90))
    waiting.update(next_attempt_at=now - timedelta(minutes=5))
    check_alerts()
    assert _open(Alert.Kind.QUEUE_STUCK) is None
    # The one start was 3 minutes ago: its slot has been free for 2 minutes,
    # but the messages only became due now (as validation leaves them).
    Attempt.objects.filter(pk=attempt.pk).update(started_at=now - timedelta(minutes=3))
    waiting.update(next_attempt_at=now)
    check_alerts()
    assert _open(Alert.Kind.QUEUE_STUCK) is None
    # Both for minutes: the oldest due message could have left; it is stuck.
    waiting.update(next_attempt_at=now - timedelta(minutes=5))
    [group] = held_stuck()
    assert group.count == 2
    check_alerts()
    alert = _open(Alert.Kind.QUEUE_STUCK)
    assert alert is not None
    assert "Among the stuck messages: 2 of them only wait for backend Relay" in alert.body
    assert len(_mailed(system_mail, "Subject: Outbound: messages are stuck")) == 1


def test_a_paused_backend_raises_no_stuck_alert(
    smtp_server: Any,
    make_backend: Callable[..., Backend],
    run_worker: Callable[..., Any],
    system_mail: Any,
) -> None:
    backend = make_backend(smtp_server)
    pause_end = timezone.now() + timedelta(minutes=10)
    Backend.objects.filter(pk=backend.pk).update(paused_until=pause_end)
    late = timezone.now() - timedelta(hours=1)
    for i in range(2):
        queue_email(to=f"u{i}@example.com", send_at=late)
    run_worker()
    assert Message.objects.filter(status=Status.TO_SEND).count() == 2
    check_alerts()
    assert not Alert.objects.filter(kind=Alert.Kind.QUEUE_STUCK).exists()
    # The pause is lifted and no worker sends them: now they are stuck.
    Backend.objects.filter(pk=backend.pk).update(paused_until=None)
    check_alerts()
    alert = _open(Alert.Kind.QUEUE_STUCK)
    assert alert is not None and "Among the stuck messages" not in alert.body


def test_a_message_being_sent_is_not_stuck_until_its_lease_runs_out(
    smtp_server: Any, make_backend: Callable[..., Backend], system_mail: Any
) -> None:
    make_backend(smtp_server)
    queue_email(to="ann@example.com", send_at=timezone.now() - timedelta(hours=1))
    validate_due()
    # A worker claims it (and is about to send it): leaving right now.
    [job] = dispatch.claim_batch(worker="host-b:worker-1", limit=10, lease=timedelta(minutes=1))
    check_alerts()
    assert _open(Alert.Kind.QUEUE_STUCK) is None
    # The worker died with it: its lease ran out and nobody sends it.
    Message.objects.filter(pk=job.message_id).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )
    check_alerts()
    assert _open(Alert.Kind.QUEUE_STUCK) is not None
    assert len(_mailed(system_mail, "Subject: Outbound: messages are stuck")) == 1


def test_the_rate_pace_agrees_with_the_full_window(
    smtp_server: Any, make_backend: Callable[..., Backend], run_worker: Callable[..., Any]
) -> None:
    """The two reads of ``rate_pace`` say what ``rate_slots`` says from every
    start of the minute: how many it counts and when the next slot opens."""
    backend = make_backend(smtp_server)
    for i in range(4):
        queue_email(to=f"u{i}@example.com")
    run_worker()
    now = timezone.now()
    ids = list(Attempt.objects.order_by("id").values_list("id", flat=True))
    assert len(ids) == 4
    for pk, ago in zip(ids, (70, 50, 30, 10), strict=True):
        Attempt.objects.filter(pk=pk).update(started_at=now - timedelta(seconds=ago))
    for offset in (0, 15, 35, 55, 75):
        at = now + timedelta(seconds=offset)
        for rate in range(1, 7):
            starts = rate_window(backend.pk, at)
            pace = rate_pace(backend.pk, rate, at)
            assert pace.started == len(starts), (offset, rate)
            assert pace.next_slot == rate_slots(starts, rate, at, 1)[0], (offset, rate)
    # Three a minute: the three newest are in the minute, the next slot
    # opens when the oldest of them (50 s ago) leaves it.
    assert rate_pace(backend.pk, 3, now).next_slot == now + timedelta(seconds=10)
    # Four a minute: one is free, since the fourth newest start (70 s ago)
    # left the minute 10 s ago; five a minute: free since ever.
    assert rate_pace(backend.pk, 4, now, free_since=True).free_since == now - timedelta(seconds=10)
    assert rate_pace(backend.pk, 5, now, free_since=True).free_since is None


# ----------------------------------------------------------- failing backend


def _failing_relay(make_smtp_server: Callable[..., Any], **extra: Any) -> Backend:
    """A backend whose server wants another password: its test fails."""
    relay = make_smtp_server(auth={"mailer": "right"})
    backend = save_backend_settings(
        data=relay_settings(relay, username="mailer", password="wrong", **extra), actor="admin"
    )
    assert not test_backend(backend, actor="admin").ok
    return backend


def test_a_failed_test_with_nothing_held_mails_nothing_until_messages_are_held(
    make_smtp_server: Callable[..., Any], system_mail: Any
) -> None:
    # The operator's own test fails: the page says so; nothing is held.
    backend = _failing_relay(make_smtp_server)
    check_alerts()
    assert not Alert.objects.filter(kind=Alert.Kind.BACKEND_FAILING).exists()
    assert _mailed(system_mail, "backend Relay") == []

    # A message arrives and is held for the failing backend: the minute
    # check tells the Backend Failure Email.
    message = queue_email(to="ann@example.com")
    validate_due()
    message.refresh_from_db()
    assert message.status == Status.BACKEND_TEST_REQUIRED
    check_alerts()
    [mail] = _mailed(system_mail, "Subject: Outbound: backend Relay is failing")
    assert _held_line(mail).endswith(": 1")

    # Fixed and tested: all clear, the message goes out.
    backend = save_backend_settings(backend=backend, data={"password": "right"}, actor="admin")
    assert test_backend(backend, actor="admin").ok
    assert len(_mailed(system_mail, "all clear, backend Relay works again")) == 1
    assert _open(Alert.Kind.BACKEND_FAILING) is None


def test_a_fixed_backend_whose_failure_was_never_mailed_sends_no_all_clear(
    make_smtp_server: Callable[..., Any], system_mail: Any
) -> None:
    backend = _failing_relay(make_smtp_server)
    backend = save_backend_settings(backend=backend, data={"password": "right"}, actor="admin")
    assert test_backend(backend, actor="admin").ok
    assert system_mail.messages == []
    assert not Alert.objects.exists()


def test_the_default_backend_counts_what_follows_the_default_not_what_another_holds(
    make_smtp_server: Callable[..., Any], system_mail: Any
) -> None:
    """Held for a backend: named to it, or (for its channel's default) left to
    the default. A message named to another failing backend is not the
    default's: only that backend is reported."""
    _failing_relay(make_smtp_server)
    other = _failing_relay(make_smtp_server, name="Other", is_default=False)
    named = queue_email(to="bob@example.com", backend="Other")
    validate_due()
    named.refresh_from_db()
    assert (named.status, named.backend_id) == (Status.BACKEND_TEST_REQUIRED, other.pk)
    check_alerts()
    assert _mailed(system_mail, "backend Relay is failing") == []
    assert len(_mailed(system_mail, "backend Other is failing")) == 1

    # A message left to the default is held for Relay, the default.
    queue_email(to="ann@example.com")
    validate_due()
    check_alerts()
    [mail] = _mailed(system_mail, "backend Relay is failing")
    assert _held_line(mail).endswith(": 1")
    [other_mail] = _mailed(system_mail, "backend Other is failing")
    assert _held_line(other_mail).endswith(": 1")
