"""Idempotency-Key on the create endpoints: a replay by the same caller gets
the first response (status and body) whatever happened since; a different
body is 409; refused requests store nothing; old answers are pruned."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from outbound.models import ApiReplay, Message
from outbound.services import operations
from outbound.services.replays import prune_replays
from outbound.states import Status
from tests.api.conftest import Api, assert_error

pytestmark = pytest.mark.django_db

EMAIL = {"to": ["ann@example.com"], "subject": "Reminder", "text": "Hello"}
BATCH = {
    "messages": [
        {"to": ["ann@example.com"], "subject": "One"},
        {"to": ["bob@example.com"], "subject": "Two"},
    ]
}


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


def test_a_replay_returns_the_first_response_not_the_current_state(api: Api) -> None:
    first = api.post("/messages", EMAIL, headers=key("order-1"))
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    message = Message.objects.get()
    operations.cancel_message(message, actor="test")
    assert Message.objects.get().status == Status.CANCELLED

    # Same content with keys in another order and other spacing is the same request.
    reordered = '{"text": "Hello",  "subject": "Reminder", "to": ["ann@example.com"]}'
    again = api.post("/messages", raw=reordered, headers=key("order-1"))
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert again.json()["status"] == "waiting"
    assert Message.objects.count() == 1
    assert ApiReplay.objects.count() == 1


def test_the_same_key_with_another_body_is_409_and_writes_nothing(api: Api) -> None:
    api.post("/messages", EMAIL, headers=key("order-2"))
    r = api.post("/messages", {**EMAIL, "subject": "Other"}, headers=key("order-2"))
    body = assert_error(r, 409, "idempotency_conflict")
    assert "Idempotency-Key" in body["details"]
    assert "different request body" in body["message"]
    # The key used on the other create endpoint is a conflict too.
    r = api.post("/messages/batch", BATCH, headers=key("order-2"))
    assert_error(r, 409, "idempotency_conflict")
    assert Message.objects.count() == 1
    assert ApiReplay.objects.count() == 1


def test_batch_replay_creates_nothing_and_returns_the_first_response(api: Api) -> None:
    first = api.post("/messages/batch", BATCH, headers=key("import-7"))
    assert first.status_code == 201 and first.json()["count"] == 2
    again = api.post("/messages/batch", BATCH, headers=key("import-7"))
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert Message.objects.count() == 2
    changed = {"messages": [BATCH["messages"][0]]}
    r = api.post("/messages/batch", changed, headers=key("import-7"))
    assert_error(r, 409, "idempotency_conflict")
    assert Message.objects.count() == 2
    # Without a key every call creates.
    assert api.post("/messages/batch", BATCH).status_code == 201
    assert Message.objects.count() == 4


def test_a_refused_request_stores_nothing_and_frees_the_key(api: Api) -> None:
    bad = {"messages": [{"contact_id": 999999, "subject": "x"}]}
    assert_error(api.post("/messages/batch", bad, headers=key("k-3")), 422, "invalid_input")
    assert_error(api.post("/messages", {"contact_id": 999999}, headers=key("k-4")), 422)
    assert ApiReplay.objects.count() == 0 and Message.objects.count() == 0
    assert api.post("/messages/batch", BATCH, headers=key("k-3")).status_code == 201
    assert Message.objects.count() == 2


def test_keys_are_per_caller(api_as: Callable[[str], Api]) -> None:
    one, other = api_as("write"), api_as("write")
    assert one.post("/messages/batch", BATCH, headers=key("shared")).status_code == 201
    # Another key's "shared" is its own: a different body is no conflict.
    r = other.post("/messages/batch", {"messages": BATCH["messages"][:1]}, headers=key("shared"))
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    assert Message.objects.count() == 3
    # A console user is a caller of its own too.
    console = Client()
    console.force_login(User.objects.create_superuser("ada", "ada@example.com", "pw-pw-pw-pw"))
    r = console.post(
        "/api/v1/messages/batch",
        BATCH,
        content_type="application/json",
        headers={"Idempotency-Key": "shared"},
    )
    assert r.status_code == 201, r.content
    assert "Idempotent-Replayed" not in r.headers
    owners = set(ApiReplay.objects.values_list("owner", flat=True))
    assert len(owners) == 3 and "user:ada" in owners
    again = console.post(
        "/api/v1/messages/batch",
        BATCH,
        content_type="application/json",
        headers={"Idempotency-Key": "shared"},
    )
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Message.objects.count() == 5


def test_stored_answers_are_pruned_after_a_day_and_the_message_key_still_holds(
    api: Api,
) -> None:
    first = api.post("/messages", EMAIL, headers=key("order-9"))
    api.post("/messages/batch", BATCH, headers=key("batch-9"))
    assert prune_replays() == 0
    with time_machine.travel(timezone.now() + timedelta(hours=25)):
        assert prune_replays() == 2
        assert ApiReplay.objects.count() == 0
        # The message keeps its key: a late repeat still creates nothing and
        # answers with the message as it is now.
        again = api.post("/messages", EMAIL, headers=key("order-9"))
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert Message.objects.filter(idempotency_key="order-9").count() == 1


def test_two_api_keys_with_the_same_key_get_their_own_messages(
    api_as: Callable[[str], Api],
) -> None:
    one, other = api_as("write"), api_as("write")
    mine = one.post("/messages", EMAIL, headers=key("order-1"))
    assert mine.status_code == 201, mine.content
    # Another body under the same key by another API key: no 409.
    theirs = other.post("/messages", {**EMAIL, "subject": "Their own"}, headers=key("order-1"))
    assert theirs.status_code == 201, theirs.content
    # The same body: its own new message, not a look at the other key's.
    same = api_as("write").post("/messages", EMAIL, headers=key("order-1"))
    assert same.status_code == 201, same.content
    ids = {mine.json()["id"], theirs.json()["id"], same.json()["id"]}
    assert len(ids) == 3
    assert Message.objects.filter(idempotency_key="order-1").count() == 3
    # Once the stored answers are forgotten, each key still finds only its own.
    with time_machine.travel(timezone.now() + timedelta(hours=25)):
        prune_replays()
        again = other.post("/messages", {**EMAIL, "subject": "Their own"}, headers=key("order-1"))
    assert again.status_code == 200 and again.json()["id"] == theirs.json()["id"]
    assert again.json()["subject"] == "Their own"


def test_the_cli_and_python_keys_stay_apart_from_the_apis(api: Api) -> None:
    from outbound.services.intake import queue_email

    python = queue_email(to=["ann@example.com"], subject="Reminder", idempotency_key="k-7")
    assert queue_email(to=["ann@example.com"], subject="Reminder", idempotency_key="k-7") == python
    r = api.post("/messages", EMAIL, headers=key("k-7"))
    assert r.status_code == 201 and r.json()["id"] != python.pk
