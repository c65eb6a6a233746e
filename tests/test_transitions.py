"""The transition table, walked whole through the one function that applies it.

The allowed moves are written out below from what each status means (the
status table in DESIGN.md, with the README's design notes), not read from
``states.TRANSITIONS``: a change to the table has to be made here too, on
purpose, or a test fails."""

from __future__ import annotations

import itertools

import pytest
from django.utils import timezone

from outbound.errors import InvalidTransition
from outbound.models import Event, Message
from outbound.services import transitions
from outbound.services.intake import queue_email
from outbound.states import TRANSITIONS, Status

S = Status

pytestmark = pytest.mark.django_db


def _message_in(status: Status) -> Message:
    message = queue_email(to="someone@example.com", subject="hello")
    Message.objects.filter(pk=message.pk).update(status=status)
    return message


ALL_PAIRS = list(itertools.product(list(Status), list(Status)))

# Where each status may go, from its meaning. ``None`` is "created".
ALLOWED: dict[Status | None, set[Status]] = {
    # Every message starts Waiting, whoever made it.
    None: {S.WAITING},
    # Waiting: validated (To send), found unsendable (Not sent), held for its
    # backend (Backend test required), withdrawn (Cancelled); Waiting again
    # when an operator makes it due now or the backend's allowance holds it.
    S.WAITING: {S.WAITING, S.TO_SEND, S.NOT_SENT, S.BACKEND_TEST_REQUIRED, S.CANCELLED},
    # To send: accepted (Sent), refused for good (Not sent), a configuration
    # failure (Backend test required), a retry scheduled (To send), withdrawn.
    S.TO_SEND: {S.TO_SEND, S.SENT, S.NOT_SENT, S.BACKEND_TEST_REQUIRED, S.CANCELLED},
    # Sent and Not sent leave only when an operator re-sends them. Sent is
    # never turned into anything else: not To send, not Not sent.
    S.SENT: {S.WAITING},
    S.NOT_SENT: {S.WAITING},
    # Held until a backend test succeeds, which makes it Waiting. Cancelled on
    # purpose (README design notes): cancelling a group must withdraw its held
    # messages too. Never straight to To send or Sent: it is validated again.
    S.BACKEND_TEST_REQUIRED: {S.WAITING, S.CANCELLED},
    # Final.
    S.CANCELLED: set(),
}


def test_the_table_allows_exactly_the_moves_the_statuses_mean() -> None:
    assert {source: set(targets) for source, targets in TRANSITIONS.items()} == ALLOWED


def test_labels_are_the_platforms_words() -> None:
    assert [s.label for s in Status] == [
        "Waiting",
        "To send",
        "Sent",
        "Not sent",
        "Backend test required",
        "Cancelled",
    ]


@pytest.mark.parametrize(("source", "target"), ALL_PAIRS, ids=lambda s: str(s))
def test_every_pair_is_applied_or_refused_as_the_table_says(source: Status, target: Status) -> None:
    message = _message_in(source)
    events_before = Event.objects.filter(message=message).count()
    allowed = target in ALLOWED[source]
    if allowed:
        moved = transitions.transition(
            message, to=target, reason="test", text="walked", expect=[source]
        )
        assert moved
        message.refresh_from_db()
        assert message.status == target
        event = Event.objects.filter(message=message).latest("id")
        assert (event.from_status, event.to_status, event.text) == (source, target, "walked")
    else:
        with pytest.raises(InvalidTransition):
            transitions.transition(
                message, to=target, reason="test", text="walked", expect=[source]
            )
        # Without ``expect`` the table alone decides: nothing moves either.
        assert not transitions.transition(message, to=target, reason="test", text="walked")
        message.refresh_from_db()
        assert message.status == source
        assert Event.objects.filter(message=message).count() == events_before


def test_cancelled_is_final() -> None:
    assert TRANSITIONS[Status.CANCELLED] == frozenset()


def test_a_change_from_a_status_the_row_left_writes_nothing() -> None:
    message = _message_in(Status.SENT)
    moved = transitions.transition(
        message, to=Status.TO_SEND, reason="validated", text="x", expect=[Status.WAITING]
    )
    assert not moved
    message.refresh_from_db()
    assert message.status == Status.SENT


def test_claim_token_fences_the_write() -> None:
    import uuid

    message = _message_in(Status.TO_SEND)
    token = uuid.uuid4()
    Message.objects.filter(pk=message.pk).update(claim_token=token, lease_until=timezone.now())
    stale = transitions.transition(
        message, to=Status.SENT, reason="accepted", text="late", claim_token=uuid.uuid4()
    )
    assert not stale
    assert Message.objects.get(pk=message.pk).status == Status.TO_SEND
    fresh = transitions.transition(
        message, to=Status.SENT, reason="accepted", text="ok", claim_token=token
    )
    assert fresh
    assert Message.objects.get(pk=message.pk).status == Status.SENT


def test_transition_where_moves_only_matching_rows_and_writes_one_event_each() -> None:
    a = _message_in(Status.TO_SEND)
    b = _message_in(Status.TO_SEND)
    c = _message_in(Status.SENT)
    moved = transitions.transition_where(
        filters={"pk__in": [a.pk, b.pk, c.pk]},
        to=Status.BACKEND_TEST_REQUIRED,
        reason="backend_failing",
        text="held",
        expect=[Status.TO_SEND],
    )
    assert sorted(moved) == sorted([a.pk, b.pk])
    assert Message.objects.get(pk=c.pk).status == Status.SENT
    assert Event.objects.filter(to_status=Status.BACKEND_TEST_REQUIRED).count() == 2
