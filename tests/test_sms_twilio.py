"""SMS through Twilio's official SDK, pointed at a real local server that
speaks Twilio's Messages API (tests/twilio_server.py), and the signed delivery
receipts coming back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.test import Client

from outbound import secrets
from outbound.explain import explain_message
from outbound.models import Attempt, Backend, Event, GlobalSettings, Message
from outbound.services import intake, receipts
from outbound.services.backends import save_backend_settings, test_backend
from outbound.services.validation import validate_due
from outbound.states import Channel, Reason, Status
from tests.twilio_server import TwilioTestServer

pytestmark = pytest.mark.django_db(transaction=True)

PUBLIC = "http://testserver"
NUMBER = "+447400123456"


@pytest.fixture
def sms_on(db: None, settings: Any) -> GlobalSettings:
    settings.OUTBOUND_PUBLIC_URL = PUBLIC
    gs = GlobalSettings.load()
    gs.sms_enabled = True
    gs.default_region = "GB"
    gs.save()
    return gs


def _twilio(server: TwilioTestServer, *, token: str | None = None, **extra: Any) -> Backend:
    data = {
        "channel": "sms",
        "kind": "twilio",
        "name": "Twilio",
        "username": server.account_sid,
        "password": token or server.auth_token,
        "from_address": "+14155550100",
        "base_url": server.base_url,
        "timeout": 2,
        "is_default": True,
        **extra,
    }
    return save_backend_settings(data=data, actor="test")


@pytest.fixture
def twilio(sms_on: GlobalSettings, twilio_server: TwilioTestServer) -> Backend:
    backend = _twilio(twilio_server)
    assert test_backend(backend, actor="test").ok
    backend.refresh_from_db()
    return backend


def _send(run_worker: Callable[..., Any], to: str = NUMBER, body: str = "Hello") -> Message:
    message = intake.queue_sms(to=to, body=body)
    run_worker()
    message.refresh_from_db()
    return message


def test_untested_twilio_backend_holds_then_the_test_releases_and_sends(
    sms_on: GlobalSettings, twilio_server: TwilioTestServer, run_worker: Callable[..., Any]
) -> None:
    backend = _twilio(twilio_server)
    assert backend.host == "127.0.0.1"
    assert backend.secret and twilio_server.auth_token not in backend.secret
    message = intake.queue_sms(to=NUMBER, body="Your task is due")
    validate_due()
    message.refresh_from_db()
    assert message.status == Status.BACKEND_TEST_REQUIRED
    assert message.reason_code == Reason.BACKEND_UNTESTED
    assert twilio_server.requests == 0

    result = test_backend(backend, actor="test")
    assert result.ok, result
    assert all(twilio_server.auth_token not in line for line in result.transcript)
    message.refresh_from_db()
    assert message.status == Status.WAITING
    assert message.reason_code == Reason.RELEASED

    run_worker()
    message.refresh_from_db()
    assert message.status == Status.SENT, message.reason_text
    [created] = twilio_server.received
    assert created["To"] == NUMBER
    assert created["From"] == "+14155550100"
    assert created["Body"] == "Your task is due"
    assert created["StatusCallback"] == f"{PUBLIC}/hooks/sms/{backend.pk}/twilio"
    attempt = message.attempts.get()
    assert attempt.provider_id.startswith("SM")
    assert attempt.provider_id in message.reason_text
    assert attempt.smtp_code == 201


def test_a_wrong_auth_token_fails_the_test_as_an_authentication_error(
    sms_on: GlobalSettings, twilio_server: TwilioTestServer
) -> None:
    backend = _twilio(twilio_server, token="not-the-token")
    result = test_backend(backend, actor="test")
    assert not result.ok
    assert result.reason == "auth_failed"
    backend.refresh_from_db()
    assert backend.health == "failing"
    from outbound.web.test_advice import advice_for

    # Advice in Twilio's terms (the kind of the backend tested), not an SMTP
    # server's account and password.
    assert backend.kind == "twilio"
    headline = advice_for(result.reason, kind=backend.kind).headline
    assert "account SID or auth token is wrong" in headline


def test_an_invalid_number_at_twilio_is_not_sent_with_the_code(
    twilio: Backend, twilio_server: TwilioTestServer, run_worker: Callable[..., Any]
) -> None:
    twilio_server.invalid_numbers.add(NUMBER)
    message = _send(run_worker)
    assert message.status == Status.NOT_SENT
    assert message.reason_code == Reason.RECIPIENT_INVALID
    assert "21211" in message.reason_text or "21211" in message.attempts.get().enhanced_code
    assert message.attempts.get().outcome == Attempt.Outcome.PERMANENT


def test_bad_credentials_while_sending_hold_the_message_and_fail_the_backend(
    twilio: Backend,
    twilio_server: TwilioTestServer,
    run_worker: Callable[..., Any],
    make_smtp_server: Any,
    settings: Any,
) -> None:
    system_mail = make_smtp_server()
    settings.OUTBOUND_SYSTEM_MAIL_URL = f"smtp://{system_mail.host}:{system_mail.port}"
    gs = GlobalSettings.load()
    gs.backend_failure_email = "ops@example.com"
    gs.save()
    twilio_server.queue_failure(401, 20003, "Authenticate")
    message = _send(run_worker)
    [alert] = [m for m in system_mail.messages if b"backend Twilio is failing" in m.raw]
    assert alert.rcpt_tos == ["ops@example.com"]
    assert b"auth token" in alert.raw
    assert twilio_server.auth_token.encode() not in alert.raw
    assert message.status == Status.BACKEND_TEST_REQUIRED
    assert message.reason_code == Reason.BACKEND_AUTH_FAILED
    twilio.refresh_from_db()
    assert twilio.health == "failing"
    steps = " ".join(explain_message(message).what_to_do)
    assert "account SID or auth token" in steps


@pytest.mark.parametrize(("status", "code"), [(429, 20429), (500, None), (503, None)])
def test_rate_limits_and_server_errors_are_retried(
    twilio: Backend,
    twilio_server: TwilioTestServer,
    run_worker: Callable[..., Any],
    status: int,
    code: int | None,
) -> None:
    twilio_server.queue_failure(status, code, "Try later")
    message = _send(run_worker)
    assert message.status == Status.TO_SEND
    assert message.reason_code == Reason.RETRY_SCHEDULED
    assert str(status) in message.reason_text
    assert message.next_attempt_at is not None
    assert not message.possibly_delivered


def test_a_provider_that_never_answers_leaves_the_message_possibly_delivered(
    twilio: Backend, twilio_server: TwilioTestServer, run_worker: Callable[..., Any]
) -> None:
    twilio_server.hang = True
    message = _send(run_worker)
    assert message.status == Status.TO_SEND
    assert message.possibly_delivered
    assert message.attempts.get().phase == "data"
    assert "may have reached the recipient" in message.reason_text


def _send_losing_the_answer(
    twilio_server: TwilioTestServer, run_worker: Callable[..., Any]
) -> Message:
    """Twilio creates the SMS but its answer is lost: the message waits To
    send, possibly delivered. Twilio's later answers are no longer lost."""
    twilio_server.drop_after_create = True
    message = _send(run_worker)
    assert message.status == Status.TO_SEND
    assert message.possibly_delivered
    twilio_server.drop_after_create = False
    return message


def _retry_now(message: Message, run_worker: Callable[..., Any]) -> None:
    """Make the message's next attempt due and run the worker."""
    Message.objects.filter(pk=message.pk).update(next_attempt_at=message.created_at)
    run_worker()
    message.refresh_from_db()


def test_a_lost_answer_is_looked_up_so_the_sms_is_not_sent_twice(
    twilio: Backend, twilio_server: TwilioTestServer, run_worker: Callable[..., Any]
) -> None:
    message = _send_losing_the_answer(twilio_server, run_worker)
    [sid] = list(twilio_server.messages)
    _retry_now(message, run_worker)
    assert message.status == Status.SENT, message.reason_text
    assert len(twilio_server.received) == 1
    assert message.attempts.order_by("-id").first().provider_id == sid
    assert "found at Twilio after the interrupted send" in message.reason_text


def test_a_lookup_refused_by_twilio_sends_nothing_and_is_tried_again(
    twilio: Backend, twilio_server: TwilioTestServer, run_worker: Callable[..., Any]
) -> None:
    message = _send_losing_the_answer(twilio_server, run_worker)
    twilio_server.queue_failure(500, 20500, "Try later")
    _retry_now(message, run_worker)
    assert (message.status, message.reason_code) == (Status.TO_SEND, Reason.RETRY_SCHEDULED)
    assert "Try later" in message.reason_text
    assert message.possibly_delivered
    assert len(twilio_server.received) == 1
    _retry_now(message, run_worker)
    assert message.status == Status.SENT, message.reason_text
    assert len(twilio_server.received) == 1


# ------------------------------------------------------------------ receipts


def _post(client: Client, receipt: Any) -> Any:
    path = receipt.url.removeprefix(PUBLIC)
    return client.post(path, receipt.params, headers=receipt.headers)


def test_a_signed_receipt_is_recorded_in_the_history_and_on_the_page(
    twilio: Backend,
    twilio_server: TwilioTestServer,
    run_worker: Callable[..., Any],
    client: Client,
) -> None:
    message = _send(run_worker)
    sid = message.attempts.get().provider_id
    assert _post(client, twilio_server.receipt(sid, "sent")).status_code == 200
    assert _post(client, twilio_server.receipt(sid, "undelivered", error_code=30003)).status_code
    message.refresh_from_db()
    assert (message.status, message.receipt_status, message.receipt_code) == (
        Status.SENT,
        "undelivered",
        "30003",
    )
    # A late intermediate receipt does not replace the final one. (A late
    # "sent" identical to the first would be a replay: recorded once, see
    # test_a_replayed_receipt_is_recorded_once.)
    assert _post(client, twilio_server.receipt(sid, "queued")).status_code == 200
    message.refresh_from_db()
    assert message.receipt_status == "undelivered"
    notes = list(
        Event.objects.filter(message=message, kind="note").values_list("reason_code", flat=True)
    )
    assert notes == ["receipt_sent", "receipt_undelivered", "receipt_queued"]
    explanation = explain_message(message)
    steps = " ".join(explanation.what_to_do)
    assert "undelivered" in steps and "30003" in steps and "unreachable" in steps


def _receipt_notes(message: Message) -> list[str]:
    return list(
        Event.objects.filter(message=message, kind="note")
        .order_by("id")
        .values_list("reason_code", flat=True)
    )


def test_a_replayed_receipt_is_recorded_once(
    twilio: Backend,
    twilio_server: TwilioTestServer,
    run_worker: Callable[..., Any],
    client: Client,
) -> None:
    message = _send(run_worker)
    sid = message.attempts.get().provider_id
    delivered = twilio_server.receipt(sid, "delivered", done_date="2612080302")
    first = _post(client, delivered)
    assert first.status_code == 200 and first.json()["ok"] is True
    # Twilio retrying the callback, or anyone replaying the signed request.
    for _ in range(3):
        again = _post(client, delivered)
        assert again.status_code == 200, again.content
        assert "recorded already" in again.json()["message"]
    assert _receipt_notes(message) == ["receipt_delivered"]
    message.refresh_from_db()
    assert message.receipt_status == "delivered"


def test_an_older_failed_receipt_does_not_overwrite_a_later_delivered(
    twilio: Backend,
    twilio_server: TwilioTestServer,
    run_worker: Callable[..., Any],
    client: Client,
) -> None:
    message = _send(run_worker)
    sid = message.attempts.get().provider_id
    # The carrier says delivered at 03:05; a failure dated 03:01 arrives after it.
    early = twilio_server.receipt(sid, "delivered", done_date="2612080305")
    assert _post(client, early).status_code == 200
    late = twilio_server.receipt(sid, "failed", error_code=30008, done_date="2612080301")
    assert _post(client, late).status_code == 200
    message.refresh_from_db()
    assert (message.receipt_status, message.receipt_code) == ("delivered", "")
    assert message.receipt_at is not None
    assert message.receipt_at.isoformat().startswith("2026-12-08T03:05")
    assert _receipt_notes(message) == ["receipt_delivered", "receipt_failed"]
    note = Event.objects.filter(message=message, reason_code="receipt_failed").get()
    assert "older than the receipt on the page (delivered" in note.text
    # A receipt the provider dated later does replace it.
    newer = twilio_server.receipt(sid, "undelivered", error_code=30003, done_date="2612080309")
    assert _post(client, newer).status_code == 200
    message.refresh_from_db()
    assert (message.receipt_status, message.receipt_code) == ("undelivered", "30003")


def test_a_receipt_with_a_wrong_signature_is_403_and_changes_nothing(
    twilio: Backend,
    twilio_server: TwilioTestServer,
    run_worker: Callable[..., Any],
    client: Client,
) -> None:
    message = _send(run_worker)
    sid = message.attempts.get().provider_id
    receipt = twilio_server.receipt(sid, "delivered")
    forged = dict(receipt.params, MessageStatus="failed")
    response = client.post(receipt.url.removeprefix(PUBLIC), forged, headers=receipt.headers)
    assert response.status_code == 403
    missing = client.post(receipt.url.removeprefix(PUBLIC), receipt.params)
    assert missing.status_code == 403
    message.refresh_from_db()
    assert message.receipt_status == ""
    assert not Event.objects.filter(message=message, kind="note").exists()


def test_a_receipt_for_an_unknown_id_is_200_and_changes_nothing(
    twilio: Backend,
    twilio_server: TwilioTestServer,
    run_worker: Callable[..., Any],
    client: Client,
) -> None:
    message = _send(run_worker)
    sid = message.attempts.get().provider_id
    receipt = twilio_server.receipt(sid, "delivered")
    params = dict(receipt.params, MessageSid="SM" + "f" * 32, SmsSid="SM" + "f" * 32)
    from tests.twilio_server import twilio_signature

    signature = twilio_signature(receipt.url, params, twilio_server.auth_token)
    response = client.post(
        receipt.url.removeprefix(PUBLIC), params, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.receipt_status == ""
    assert not Event.objects.filter(kind="note").exists()


def test_a_signed_but_malformed_receipt_is_400(
    twilio: Backend, twilio_server: TwilioTestServer, client: Client
) -> None:
    from tests.twilio_server import twilio_signature

    url = f"{PUBLIC}/hooks/sms/{twilio.pk}/twilio"
    params = {"MessageSid": "SM" + "1" * 32, "MessageStatus": "exploded"}
    signature = twilio_signature(url, params, twilio_server.auth_token)
    response = client.post(
        url.removeprefix(PUBLIC), params, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 400
    assert "status must be one of" in response.json()["message"]


def test_gateway_receipts_need_the_shared_secret(
    sms_on: GlobalSettings, client: Client, stored_backend: Callable[..., Backend]
) -> None:
    gateway = stored_backend(
        name="Gateway",
        channel=Channel.SMS,
        kind="http",
        host="sms.example.com",
        receipt_secret=secrets.encrypt("shared-s3cret"),
    )
    message = intake.queue_sms(to=NUMBER, body="Hi")
    Attempt.objects.create(
        message=message,
        backend=gateway,
        started_at=message.created_at,
        outcome=Attempt.Outcome.SENT,
        provider_id="gw-42",
    )
    url = f"/hooks/sms/{gateway.pk}/http"
    body = {"id": "gw-42", "status": "delivered"}
    wrong = client.post(
        url, body, content_type="application/json", headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 403
    good = {"Authorization": "Bearer shared-s3cret"}
    broken = client.post(url, "{not json", content_type="application/json", headers=good)
    assert broken.status_code == 400
    no_id = client.post(url, {"status": "delivered"}, content_type="application/json", headers=good)
    assert no_id.status_code == 400
    message.refresh_from_db()
    assert message.receipt_status == ""
    odd = client.post(
        url,
        {"id": "gw-\ud800", "status": "delivered"},
        content_type="application/json",
        headers=good,
    )
    assert odd.status_code == 400
    unknown_backend = client.post(
        "/hooks/sms/999999/http", body, content_type="application/json", headers=good
    )
    assert unknown_backend.status_code == 404
    assert unknown_backend.json()["ok"] is False
    ok = client.post(url, body, content_type="application/json", headers=good)
    assert ok.status_code == 200
    message.refresh_from_db()
    assert message.receipt_status == "delivered"
    # A gateway whose ids are numbers: the send side kept "42" as text.
    Attempt.objects.filter(provider_id="gw-42").update(provider_id="42")
    numeric = client.post(
        url,
        {"id": 42, "status": "failed", "error_code": 7},
        content_type="application/json",
        headers=good,
    )
    assert numeric.status_code == 200
    message.refresh_from_db()
    assert (message.receipt_status, message.receipt_code) == ("failed", "7")


def _gateway_with_a_send(
    stored_backend: Callable[..., Backend], provider_id: str = "gw-77", **fields: Any
) -> tuple[Backend, Message]:
    gateway = stored_backend(
        **fields,
        name="Gateway",
        channel=Channel.SMS,
        kind="http",
        host="sms.example.com",
        receipt_secret=secrets.encrypt("shared-s3cret"),
    )
    message = intake.queue_sms(to=NUMBER, body="Hi")
    Attempt.objects.create(
        message=message,
        backend=gateway,
        started_at=message.created_at,
        outcome=Attempt.Outcome.SENT,
        provider_id=provider_id,
    )
    return gateway, message


def test_gateway_receipts_are_ordered_by_the_gateways_time_and_kept_once(
    sms_on: GlobalSettings, client: Client, stored_backend: Callable[..., Backend]
) -> None:
    gateway, message = _gateway_with_a_send(stored_backend)
    url = f"/hooks/sms/{gateway.pk}/http"
    good = {"Authorization": "Bearer shared-s3cret"}

    def post(body: Any) -> Any:
        return client.post(url, body, content_type="application/json", headers=good)

    delivered = {"id": "gw-77", "status": "delivered", "at": "2026-12-08T03:05:00Z"}
    assert post(delivered).status_code == 200
    assert post(delivered).json()["message"] == "This receipt (delivered) is recorded already."
    older = {"id": "gw-77", "status": "failed", "error_code": "9", "at": 1796698800}
    assert post(older).status_code == 200  # 2026-12-08 03:00:00 UTC, before delivered
    message.refresh_from_db()
    assert message.receipt_status == "delivered"
    assert _receipt_notes(message) == ["receipt_delivered", "receipt_failed"]
    for bad in ("yesterday", "2026-12-08T03:05:00", True, ["x"]):
        r = post({"id": "gw-77", "status": "delivered", "at": bad})
        assert r.status_code == 400, bad
        assert "at " in r.json()["message"] or r.json()["message"].startswith("at")
    assert _receipt_notes(message) == ["receipt_delivered", "receipt_failed"]


def test_webhook_404s_name_no_backend(
    sms_on: GlobalSettings,
    client: Client,
    stored_backend: Callable[..., Backend],
    twilio: Backend,
) -> None:
    gateway, _ = _gateway_with_a_send(stored_backend, is_default=False)
    answers = [
        client.post(f"/hooks/sms/{twilio.pk}/http", {}, content_type="application/json"),
        client.post(f"/hooks/sms/{gateway.pk}/twilio", {}),
        client.post("/hooks/sms/999999/twilio", {}),
        client.post("/hooks/sms/999999/http", {}, content_type="application/json"),
    ]
    for answer in answers:
        assert answer.status_code == 404
        # The same bare answer whatever exists: nothing to tell ids or kinds apart.
        assert answer.json() == {"ok": False, "message": "Not found."}


def test_the_receipt_service_checks_the_signature_itself(
    twilio: Backend, twilio_server: TwilioTestServer, run_worker: Callable[..., Any]
) -> None:
    message = _send(run_worker)
    sid = message.attempts.get().provider_id
    receipt = twilio_server.receipt(sid, "delivered")
    forged = dict(receipt.params, MessageStatus="failed")
    with pytest.raises(receipts.ReceiptRefused):
        receipts.receive_twilio_receipt(
            twilio, url=receipt.url, params=forged, signature=receipt.signature
        )
    with pytest.raises(receipts.ReceiptRefused):
        # Signed for another address than the one it arrived at.
        receipts.receive_twilio_receipt(
            twilio, url=f"{PUBLIC}/elsewhere", params=receipt.params, signature=receipt.signature
        )
    message.refresh_from_db()
    assert message.receipt_status == ""
    result = receipts.receive_twilio_receipt(
        twilio, url=receipt.url, params=receipt.params, signature=receipt.signature
    )
    assert (result.recorded, result.message_id) == (True, message.pk)
    message.refresh_from_db()
    assert message.receipt_status == "delivered"


def test_an_unreadable_secret_refuses_receipts_and_no_secret_is_logged_or_answered(
    twilio: Backend,
    twilio_server: TwilioTestServer,
    run_worker: Callable[..., Any],
    client: Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    message = _send(run_worker)
    receipt = twilio_server.receipt(message.attempts.get().provider_id, "delivered")
    path = receipt.url.removeprefix(PUBLIC)
    caplog.set_level("DEBUG")
    wrong = client.post(path, receipt.params, headers={"X-Twilio-Signature": "bm90IGl0"})
    assert wrong.status_code == 403
    # Encrypted under a key this deployment does not have.
    Backend.objects.filter(pk=twilio.pk).update(secret=Fernet(Fernet.generate_key()).encrypt(b"x"))
    unreadable = client.post(path, receipt.params, headers=receipt.headers)
    assert unreadable.status_code == 403
    assert unreadable.json()["message"] == "The receipt cannot be checked."
    assert any(
        r.levelname == "ERROR" and "cannot be read" in r.getMessage() for r in caplog.records
    )
    message.refresh_from_db()
    assert message.receipt_status == ""
    token = twilio_server.auth_token
    assert all(token not in r.getMessage() for r in caplog.records)
    assert token not in wrong.content.decode() + unreadable.content.decode()


def test_a_gateway_without_a_receipt_secret_refuses_receipts(
    sms_on: GlobalSettings,
    client: Client,
    stored_backend: Callable[..., Backend],
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = stored_backend(name="Gateway", channel=Channel.SMS, kind="http", host="gw.example")
    url = f"/hooks/sms/{gateway.pk}/http"
    body = {"id": "gw-1", "status": "delivered"}
    # Without a secret, no header, even an empty bearer, opens the hook.
    for header in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer"}):
        answer = client.post(url, body, content_type="application/json", headers=header)
        assert answer.status_code == 403, header
    Backend.objects.filter(pk=gateway.pk).update(receipt_secret=secrets.encrypt("shared-s3cret"))
    caplog.set_level("DEBUG")
    wrong = client.post(
        url, body, content_type="application/json", headers={"Authorization": "Bearer s3cret"}
    )
    assert wrong.status_code == 403
    # Deeper than the JSON parser goes: malformed, not a server error.
    deep = client.post(
        url,
        "[" * 60000,
        content_type="application/json",
        headers={"Authorization": "Bearer shared-s3cret"},
    )
    assert deep.status_code == 400
    assert all("shared-s3cret" not in r.getMessage() for r in caplog.records)
    assert "shared-s3cret" not in wrong.content.decode() + deep.content.decode()
