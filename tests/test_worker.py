"""The worker against a real SMTP server: every reply class, reuse, fencing,
reaping and the history it writes."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from outbound.models import Attempt, Backend, Event, GlobalSettings, Message, Recipient
from outbound.services import dispatch
from outbound.services.intake import queue_email
from outbound.states import Reason, Status

pytestmark = pytest.mark.django_db(transaction=True)


def _m(message: Message) -> Message:
    message.refresh_from_db()
    return message


def test_a_message_is_sent_with_reply_and_queue_id_stored(
    smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    make_backend(smtp_server)
    smtp_server.configure(data_reply="250 2.0.0 Ok: queued as 9EA7B1E0AE5")
    message = queue_email(to="Ann <ann@example.com>", subject="Your task", text="Hello")
    run_worker()
    m = _m(message)
    assert m.status == Status.SENT, m.reason_text
    assert m.sent_at is not None and m.attempt_count == 1
    assert "9EA7B1E0AE5" in m.reason_text
    attempt = Attempt.objects.get(message=m)
    assert (attempt.outcome, attempt.phase, attempt.smtp_code) == ("sent", "done", 250)
    assert attempt.provider_id == "9EA7B1E0AE5"
    received = smtp_server.messages
    assert len(received) == 1
    assert received[0].message_id == m.message_id
    assert received[0].rcpt_tos == ["ann@example.com"]
    assert b"Subject: Your task" in received[0].raw
    history = list(Event.objects.filter(message=m).values_list("to_status", flat=True))
    assert history == [Status.WAITING, Status.TO_SEND, Status.SENT]
    assert Backend.objects.get().sent_count == 1


def test_messages_share_one_connection(
    smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    make_backend(smtp_server)
    before = smtp_server.connections
    for i in range(5):
        queue_email(to=f"u{i}@example.com", subject=str(i))
    run_worker(concurrency=1)
    assert Message.objects.filter(status=Status.SENT).count() == 5
    assert smtp_server.connections - before == 1


def test_partially_refused_recipients_are_recorded_each(
    smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    make_backend(smtp_server)
    smtp_server.configure(rcpt_replies={"gone@example.com": "550 5.1.1 No such user"})
    message = queue_email(to="ann@example.com", cc="gone@example.com")
    run_worker()
    m = _m(message)
    assert m.status == Status.SENT
    assert m.reason_code == Reason.PARTIALLY_ACCEPTED
    assert "gone@example.com" in m.reason_text and "550" in m.reason_text
    outcomes = dict(m.recipients.values_list("address", "outcome"))
    assert outcomes == {"ann@example.com": "accepted", "gone@example.com": "refused"}
    assert smtp_server.messages[0].rcpt_tos == ["ann@example.com"]


def test_a_cc_deferred_with_451_while_the_to_was_accepted_is_deferred_not_refused(
    smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    from outbound.explain import explain_message

    make_backend(smtp_server)
    smtp_server.configure(rcpt_replies={"busy@example.com": "451 4.7.1 Greylisted, try later"})
    message = queue_email(to="ann@example.com", cc="busy@example.com", subject="Invoice")
    run_worker()
    m = _m(message)
    assert (m.status, m.reason_code) == (Status.SENT, Reason.PARTIALLY_ACCEPTED)
    assert "Refused recipients" not in m.reason_text
    assert "Deferred recipients (a temporary refusal; not retried" in m.reason_text
    assert "busy@example.com (451 4.7.1 Greylisted, try later)" in m.reason_text
    outcomes = dict(m.recipients.values_list("address", "outcome"))
    assert outcomes == {"ann@example.com": "accepted", "busy@example.com": "deferred"}
    assert smtp_server.messages[0].rcpt_tos == ["ann@example.com"]

    todo = explain_message(m).what_to_do
    text = " ".join(todo)
    assert "Check that the address is right: it went to ann@example.com." in todo
    assert "Fix those addresses" not in text
    assert "Deferred, not refused: the server answered busy@example.com with 451" in text
    assert "so busy@example.com did not get it" in text
    # No contact: re-sending uses no contact's data.
    assert "contact" not in todo[-1]


def test_a_temporary_failure_schedules_a_retry_then_gives_up_after_the_lifetime(
    smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    make_backend(smtp_server)
    smtp_server.configure(data_reply="451 4.3.0 Try again later")
    message = queue_email(to="ann@example.com")
    run_worker()
    m = _m(message)
    assert (m.status, m.reason_code) == (Status.TO_SEND, Reason.RETRY_SCHEDULED)
    assert m.next_attempt_at is not None and m.next_attempt_at > timezone.now()
    assert "451" in m.reason_text
    # The lifetime runs out: the next failure is final, with the last reply kept.
    settings = GlobalSettings.load()
    settings.retry_lifetime = timedelta(seconds=0)
    settings.save()
    Message.objects.filter(pk=m.pk).update(next_attempt_at=timezone.now())
    run_worker()
    m = _m(message)
    assert (m.status, m.reason_code) == (Status.NOT_SENT, Reason.RETRY_LIFETIME_OVER)
    assert "451 4.3.0 Try again later" in m.reason_text
    assert m.attempt_count == 2


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        ({"data_reply": "554 5.7.1 Message rejected as spam"}, Reason.REJECTED),
        ({"mail_reply": "553 5.7.1 Sender not allowed"}, Reason.SENDER_REFUSED),
        ({"rcpt_reply": "550 5.1.1 No such user"}, Reason.RECIPIENTS_REFUSED),
    ],
)
def test_permanent_refusals_are_not_sent_with_the_reply(
    smtp_server: Any, make_backend: Any, run_worker: Any, option: dict, reason: str
) -> None:
    make_backend(smtp_server)
    smtp_server.configure(**option)
    message = queue_email(to="ann@example.com")
    run_worker()
    m = _m(message)
    assert (m.status, m.reason_code) == (Status.NOT_SENT, reason)
    assert next(iter(option.values())).split(" ", 1)[1] in m.reason_text


def test_every_recipient_refused_is_recorded_with_its_own_reply(
    smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    make_backend(smtp_server)
    smtp_server.configure(
        rcpt_replies={
            "ann@example.com": "550 5.1.1 No such user",
            "bob@example.com": "553 5.7.1 Relaying denied",
        }
    )
    message = queue_email(to="ann@example.com", cc=["bob@example.com"])
    run_worker()
    assert _m(message).status == Status.NOT_SENT
    rows = {r.address: (r.outcome, r.code, r.reply) for r in _m(message).recipients.all()}
    assert rows == {
        "ann@example.com": (Recipient.Outcome.REFUSED, 550, "5.1.1 No such user"),
        "bob@example.com": (Recipient.Outcome.REFUSED, 553, "5.7.1 Relaying denied"),
    }


def test_552_to_rcpt_is_retried(smtp_server: Any, make_backend: Any, run_worker: Any) -> None:
    make_backend(smtp_server)
    smtp_server.configure(rcpt_reply="552 5.2.2 Mailbox full")
    message = queue_email(to="ann@example.com")
    run_worker()
    m = _m(message)
    # Mailbox full is temporary (RFC 5321 4.5.3.1.10): a retry is scheduled,
    # and the attempt says the recipient was deferred with the server's reply.
    assert (m.status, m.reason_code) == (Status.TO_SEND, Reason.RETRY_SCHEDULED)
    assert "552 5.2.2 Mailbox full" in m.reason_text
    assert m.next_attempt_at is not None and m.next_attempt_at > timezone.now()
    attempt = Attempt.objects.get(message=m)
    assert (attempt.outcome, attempt.phase, attempt.error_reason) == (
        "transient",
        "rcpt",
        "recipient_deferred",
    )
    assert (attempt.smtp_code, attempt.enhanced_code) == (552, "5.2.2")
    # Not refused: the recipient is still to be tried.
    assert list(m.recipients.values_list("address", "outcome")) == [
        ("ann@example.com", Recipient.Outcome.PENDING)
    ]
    assert smtp_server.messages == []


def test_refused_connection_is_retried(
    make_smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    server = make_smtp_server()
    backend = make_backend(server)
    server.stop()
    message = queue_email(to="ann@example.com")
    run_worker()
    m = _m(message)
    assert (m.status, m.reason_code) == (Status.TO_SEND, Reason.RETRY_SCHEDULED)
    assert Attempt.objects.get(message=m).error_reason == "connection_refused"
    assert Backend.objects.get(pk=backend.pk).health == "ok"


def test_authentication_failure_holds_the_backends_messages(
    make_smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    server = make_smtp_server(auth={"mailer": "right"})
    backend = make_backend(server, username="mailer", password="right")
    # The relay's password changes after the successful test.
    server.configure(auth={"mailer": "changed"})
    first = queue_email(to="a@example.com")
    second = queue_email(to="b@example.com")
    run_worker()
    for message in (first, second):
        m = _m(message)
        assert m.status == Status.BACKEND_TEST_REQUIRED
        assert m.reason_code == Reason.BACKEND_AUTH_FAILED, m.reason_text
    b = Backend.objects.get(pk=backend.pk)
    assert b.health == "failing" and b.health_reason == "auth_failed"
    assert server.messages == []
    # A message queued now is held at validation, without a connection.
    connections = server.connections
    third = queue_email(to="c@example.com")
    run_worker()
    assert _m(third).status == Status.BACKEND_TEST_REQUIRED
    assert server.connections == connections


def test_a_successful_test_releases_held_messages_and_they_go_out(
    make_smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    from outbound import secrets
    from outbound.services.backends import test_backend

    server = make_smtp_server(auth={"mailer": "new"})
    backend = make_backend(server, username="mailer", password="old", test=False)
    message = queue_email(to="a@example.com")
    run_worker()
    assert _m(message).status == Status.BACKEND_TEST_REQUIRED
    assert server.messages == []
    failed = test_backend(backend)
    assert not failed.ok and failed.reason == "auth_failed"
    Backend.objects.filter(pk=backend.pk).update(secret=secrets.encrypt("new"))
    backend.refresh_from_db()
    assert test_backend(backend).ok
    m = _m(message)
    assert (m.status, m.reason_code) == (Status.WAITING, Reason.RELEASED)
    run_worker()
    assert _m(message).status == Status.SENT
    assert len(server.messages) == 1


def test_drop_after_the_dot_is_retried_with_the_same_message_id(
    smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    make_backend(smtp_server)
    smtp_server.configure(drop_after_data=True)
    message = queue_email(to="a@example.com")
    run_worker()
    m = _m(message)
    assert m.status == Status.TO_SEND
    attempt = Attempt.objects.get(message=m)
    assert (attempt.outcome, attempt.phase) == ("transient", "data")
    smtp_server.configure(drop_after_data=False)
    Message.objects.filter(pk=m.pk).update(next_attempt_at=timezone.now())
    run_worker()
    assert _m(message).status == Status.SENT
    ids = [r.message_id for r in smtp_server.messages]
    assert ids == [m.message_id, m.message_id]


def _claimed(worker: str = "w1") -> list[dispatch.Job]:
    return dispatch.claim_batch(worker=worker, limit=10, lease=timedelta(seconds=30))


def test_an_expired_lease_after_data_is_retried_as_possibly_delivered(
    smtp_server: Any, make_backend: Any
) -> None:
    from outbound.services.validation import validate_due

    make_backend(smtp_server)
    message = queue_email(to="a@example.com")
    validate_due()
    [job] = _claimed()
    assert dispatch.journal_data_phase([job.attempt_id]) == {job.attempt_id}
    # The worker dies here; time passes beyond its lease.
    later = timezone.now() + timedelta(seconds=31)
    assert dispatch.reap_expired(now=later) == 1
    m = _m(message)
    assert (m.status, m.reason_code) == (Status.TO_SEND, Reason.INTERRUPTED)
    assert m.possibly_delivered and m.claim_token is None
    assert Attempt.objects.get(pk=job.attempt_id).outcome == "interrupted"
    assert "may have received it" in m.reason_text


def test_an_expired_lease_before_data_is_retried_freely(
    smtp_server: Any, make_backend: Any
) -> None:
    from outbound.services.validation import validate_due

    make_backend(smtp_server)
    message = queue_email(to="a@example.com")
    validate_due()
    _claimed()
    assert dispatch.reap_expired(now=timezone.now() + timedelta(seconds=31)) == 1
    m = _m(message)
    assert (m.reason_code, m.possibly_delivered) == (Reason.LEASE_EXPIRED, False)


def test_a_frozen_workers_late_write_changes_nothing(
    smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    from outbound.services.validation import validate_due

    make_backend(smtp_server)
    message = queue_email(to="a@example.com")
    validate_due()
    [job] = _claimed("frozen")
    outcome = dispatch.Deliverer().deliver(job)  # the frozen worker sends...
    dispatch.reap_expired(now=timezone.now() + timedelta(seconds=31))  # ...loses its lease
    run_worker()  # another worker sends it again
    sent = _m(message)
    assert sent.status == Status.SENT
    events = Event.objects.filter(message=sent).count()
    dispatch.record_outcomes([outcome])  # the frozen worker wakes up and records
    after = _m(message)
    assert after.claim_token is None and after.sent_at == sent.sent_at
    assert after.attempt_count == sent.attempt_count
    assert Event.objects.filter(message=after).count() == events


def test_settings_changed_after_the_claim_never_connect(
    smtp_server: Any, make_backend: Any
) -> None:
    from outbound.services.validation import validate_due

    backend = make_backend(smtp_server)
    message = queue_email(to="a@example.com")
    validate_due()
    [job] = _claimed()
    Backend.objects.filter(pk=backend.pk).update(settings_version=backend.settings_version + 1)
    connections = smtp_server.connections
    dispatch.record_outcomes([dispatch.Deliverer().deliver(job)])
    assert smtp_server.connections == connections
    assert _m(message).status == Status.BACKEND_TEST_REQUIRED


@pytest.mark.parametrize("change", ["settings", "failing"])
def test_a_backend_change_on_an_open_connection_holds_the_next_message_before_its_text(
    smtp_server: Any, make_backend: Any, change: str
) -> None:
    # The connection was opened and checked for the first message; the
    # backend changes before the second one: the journal refuses it before
    # its text leaves, on the connection already open.
    from outbound.services.validation import validate_due

    backend = make_backend(smtp_server)
    first = queue_email(to="a@example.com")
    second = queue_email(to="b@example.com")
    validate_due()
    jobs = _claimed()
    deliverer = dispatch.Deliverer()
    outcomes = [deliverer.deliver(jobs[0])]
    sessions = len(smtp_server.sessions)
    if change == "settings":
        Backend.objects.filter(pk=backend.pk).update(settings_version=backend.settings_version + 1)
    else:
        Backend.objects.filter(pk=backend.pk).update(health="failing")
    outcomes.append(deliverer.deliver(jobs[1]))
    deliverer.close()
    dispatch.record_outcomes(outcomes)
    assert _m(first).status == Status.SENT
    held = _m(second)
    assert held.status == Status.BACKEND_TEST_REQUIRED, held.reason_text
    assert "it was held before its text was sent" in held.reason_text
    assert [m.message_id for m in smtp_server.messages] == [first.message_id]
    assert len(smtp_server.sessions) == sessions
    assert Attempt.objects.get(message=held).phase != "data"


def test_claims_never_overlap() -> None:
    from outbound.models import Backend as B

    B.objects.create(name="x", is_default=True, health="ok", tested_version=1)
    for i in range(20):
        m = queue_email(to=f"u{i}@example.com", from_address="f@example.com")
        Message.objects.filter(pk=m.pk).update(status=Status.TO_SEND)
    a = _claimed("a")
    b = _claimed("b")
    c = _claimed("c")
    ids = [j.message_id for j in a + b + c]
    assert len(ids) == 20 and len(set(ids)) == 20
    assert Attempt.objects.count() == 20
    assert {j.claim_token for j in a}.isdisjoint({j.claim_token for j in b})


def test_released_jobs_return_to_the_queue(smtp_server: Any, make_backend: Any) -> None:
    from outbound.services.validation import validate_due

    make_backend(smtp_server)
    message = queue_email(to="a@example.com")
    validate_due()
    jobs = _claimed()
    assert dispatch.release_jobs(jobs) == 1
    m = _m(message)
    assert m.claim_token is None and m.status == Status.TO_SEND
    assert not Attempt.objects.filter(message=m).exists()
    assert Recipient.objects.filter(message=m).count() == 1


def test_claim_token_is_uuid(smtp_server: Any, make_backend: Any) -> None:
    from outbound.services.validation import validate_due

    make_backend(smtp_server)
    queue_email(to="a@example.com")
    validate_due()
    [job] = _claimed()
    assert isinstance(job.claim_token, uuid.UUID)


def test_repeated_throttling_pauses_the_whole_backend(
    smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    backend = make_backend(smtp_server)
    smtp_server.configure(data_reply="451 4.7.1 Rate limited, slow down")
    for i in range(4):
        queue_email(to=f"u{i}@example.com")
    run_worker()
    b = Backend.objects.get(pk=backend.pk)
    assert b.paused_until is not None and b.paused_until > timezone.now()
    assert Message.objects.filter(status=Status.TO_SEND).count() == 4
    # Due again, but the backend is paused: nothing is claimed for it.
    smtp_server.configure(data_reply=None)
    Message.objects.update(next_attempt_at=timezone.now())
    assert _claimed() == []
    Backend.objects.filter(pk=backend.pk).update(paused_until=None)
    run_worker()
    assert Message.objects.filter(status=Status.SENT).count() == 4


def test_throttling_spread_over_batches_pauses_the_backend(
    smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    backend = make_backend(smtp_server)
    smtp_server.configure(data_reply="421 4.7.0 Slow down")
    for i in range(3):
        queue_email(to=f"u{i}@example.com")
        run_worker()  # one message per batch
        b = Backend.objects.get(pk=backend.pk)
        assert (b.paused_until is not None) == (i == 2), (i, b.throttle_strikes)
    # An accepted message clears the strikes.
    Backend.objects.filter(pk=backend.pk).update(paused_until=None, throttle_strikes=2)
    smtp_server.configure(data_reply=None)
    queue_email(to="ok@example.com")
    run_worker()
    assert Backend.objects.get(pk=backend.pk).throttle_strikes == 0


def test_the_connection_cap_holds_across_threads_and_workers(
    make_smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    import threading

    from outbound.models import BackendSlot

    server = make_smtp_server(delay=0.05)
    make_backend(server, max_connections=2)
    for i in range(12):
        queue_email(to=f"u{i}@example.com")
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, server.open_connections)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for _ in range(30):
            if Message.objects.filter(status=Status.SENT).count() == 12:
                break
            run_worker(concurrency=4)
            time.sleep(0.2)
    finally:
        done.set()
        sampler.join()
    assert Message.objects.filter(status=Status.SENT).count() == 12
    assert 1 <= peak <= 2
    # Deferred messages were handed back without counting an attempt.
    assert set(Message.objects.values_list("attempt_count", flat=True)) == {1}
    assert not BackendSlot.objects.exists()


def test_an_unexpected_error_while_sending_is_retried_not_left_claimed(
    smtp_server: Any, make_backend: Any, run_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A library failing in a way nobody classified (here the email package's
    # date formatting) must not strand the message until its lease ends.
    make_backend(smtp_server)
    message = queue_email(to="a@example.com", subject="Hi", text="Hello")

    def broken(*_: object) -> str:
        raise RuntimeError("formatting failed")

    monkeypatch.setattr("outbound.compose.format_datetime", broken)
    started = time.monotonic()
    run_worker()
    assert time.monotonic() - started < 10
    m = _m(message)
    assert m.status == Status.TO_SEND and m.claim_token is None
    assert m.reason_code == Reason.RETRY_SCHEDULED
    assert "Internal error while sending: RuntimeError: formatting failed" in m.reason_text
    assert not m.possibly_delivered
    attempt = Attempt.objects.get(message=m)
    assert (attempt.outcome, attempt.error_reason) == ("transient", "internal_error")
    assert smtp_server.messages == []

    monkeypatch.undo()
    Message.objects.filter(pk=m.pk).update(next_attempt_at=timezone.now())
    run_worker()
    assert _m(message).status == Status.SENT


def test_journal_requests_from_many_threads_are_each_answered(
    smtp_server: Any, make_backend: Any
) -> None:
    # Eight delivery threads ask at once: some commit a group for the others
    # (group commit without a thread of its own). Every request is answered
    # for itself: those of a backend changed since the claim are refused,
    # the rest are journalled, and no thread is left waiting.
    import threading

    from django.db import connections

    from outbound.services.validation import validate_due
    from outbound.worker import Worker

    good = make_backend(smtp_server)
    changed = make_backend(smtp_server, name="Changed", is_default=False)
    for i in range(16):
        queue_email(to=f"u{i}@example.com", backend=changed if i % 4 == 0 else good)
    validate_due()
    jobs = dispatch.claim_batch(worker="w", limit=20, lease=timedelta(seconds=30))
    assert len(jobs) == 16
    Backend.objects.filter(pk=changed.pk).update(settings_version=2)
    worker = Worker(concurrency=8, once=True, name="w")
    start = threading.Barrier(8)
    answers: dict[int, str] = {}

    def deliver(share: list[dispatch.Job]) -> None:
        try:
            start.wait()
            for job in share:
                try:
                    worker._journal(job.attempt_id)()
                    answers[job.attempt_id] = "journalled"
                except dispatch.BackendChanged:
                    answers[job.attempt_id] = "refused"
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver, args=(jobs[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    expected = {
        j.attempt_id: "refused" if j.backend_id == changed.pk else "journalled" for j in jobs
    }
    assert answers == expected
    phases = dict(Attempt.objects.values_list("id", "phase"))
    assert {a for a, p in phases.items() if p == "data"} == {
        a for a, v in expected.items() if v == "journalled"
    }
    assert worker._journal_pending == [] and worker._journal_leaders == 0
