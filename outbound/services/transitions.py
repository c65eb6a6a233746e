"""The only writer of a message's status.

Contract: a status change is a conditional UPDATE (``WHERE status IN (allowed
sources) [AND claim_token = token]``) plus an Event row, in one transaction.
If the row is no longer in a status the change may come from (someone else
moved it, or a worker lost its lease), nothing is written and False is
returned; a change the table forbids raises ``InvalidTransition``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from outbound.errors import InvalidTransition
from outbound.models import Event, Message
from outbound.states import Status, is_allowed, sources_for

# Marker meaning "do not fence on the claim token".
ANY_CLAIM = object()


@dataclass
class Change:
    """One status change to apply; used for single and batched changes."""

    message_id: int
    to: Status
    reason: str
    text: str
    expect: frozenset[Status] | None = None
    claim_token: uuid.UUID | object | None = ANY_CLAIM
    fields: dict[str, Any] = field(default_factory=dict)
    actor: str = "system"
    data: dict[str, Any] = field(default_factory=dict)


def _sources(to: Status, expect: Iterable[Status] | None) -> frozenset[Status]:
    allowed = sources_for(to)
    if expect is None:
        return allowed
    expect = frozenset(Status(s) for s in expect)
    forbidden = [s for s in expect if not is_allowed(s, to)]
    if forbidden:
        names = ", ".join(Status(s).label for s in forbidden)
        raise InvalidTransition(f"A message cannot go from {names} to {Status(to).label}.")
    return expect


def _apply(change: Change, now: datetime) -> Event | None:
    sources = _sources(change.to, change.expect)
    qs = Message.objects.filter(pk=change.message_id, status__in=list(sources))
    if isinstance(change.claim_token, uuid.UUID) or change.claim_token is None:
        qs = qs.filter(claim_token=change.claim_token)
    current: str | None
    if len(sources) == 1:
        # The only possible source: no need to read it first.
        current = next(iter(sources))
    else:
        # The source status is needed for the event; the UPDATE repeats the
        # condition so a concurrent change cannot slip between read and write.
        current = qs.values_list("status", flat=True).first()
        if current is None:
            return None
    updated = qs.filter(status=current).update(
        status=change.to,
        reason_code=change.reason,
        reason_text=change.text,
        status_changed_at=now,
        **change.fields,
    )
    if not updated:
        return None
    return Event(
        message_id=change.message_id,
        created_at=now,
        kind=Event.Kind.TRANSITION,
        from_status=current,
        to_status=change.to,
        reason_code=change.reason,
        text=change.text,
        actor=change.actor,
        data=change.data,
    )


def apply_changes(changes: Sequence[Change]) -> list[int]:
    """Apply several changes in one transaction; return the ids that changed."""
    if not changes:
        return []
    now = timezone.now()
    events: list[Event] = []
    with transaction.atomic():
        for change in changes:
            event = _apply(change, now)
            if event is not None:
                events.append(event)
        Event.objects.bulk_create(events)
    return [e.message_id for e in events]


def transition(
    message: Message | int,
    *,
    to: Status,
    reason: str,
    text: str,
    expect: Iterable[Status] | None = None,
    claim_token: uuid.UUID | object | None = ANY_CLAIM,
    fields: dict[str, Any] | None = None,
    actor: str = "system",
    data: dict[str, Any] | None = None,
) -> bool:
    """Move one message to ``to``; True if it moved.

    ``expect`` narrows the statuses it may come from (each must be allowed by
    the table); ``claim_token`` fences the write to the worker holding it.
    """
    message_id = message if isinstance(message, int) else message.pk
    change = Change(
        message_id=message_id,
        to=Status(to),
        reason=reason,
        text=text,
        expect=frozenset(expect) if expect is not None else None,
        claim_token=claim_token,
        fields=fields or {},
        actor=actor,
        data=data or {},
    )
    return bool(apply_changes([change]))


def transition_where(
    *,
    filters: dict[str, Any],
    to: Status,
    reason: str,
    text: str,
    expect: Iterable[Status],
    fields: dict[str, Any] | None = None,
    actor: str = "system",
    limit: int | None = None,
) -> list[int]:
    """Move every message matching ``filters`` (and in ``expect``) to ``to``.

    The rows are locked first so the events name exactly the rows changed.
    """
    sources = _sources(to, expect)
    now = timezone.now()
    with transaction.atomic():
        qs = (
            Message.objects.select_for_update()
            .filter(status__in=list(sources), **filters)
            .order_by("id")
            .values_list("id", "status")
        )
        rows = list(qs[:limit] if limit else qs)
        if not rows:
            return []
        ids = [r[0] for r in rows]
        for chunk_start in range(0, len(ids), 500):
            chunk = ids[chunk_start : chunk_start + 500]
            Message.objects.filter(pk__in=chunk).update(
                status=to,
                reason_code=reason,
                reason_text=text,
                status_changed_at=now,
                **(fields or {}),
            )
        Event.objects.bulk_create(
            [
                Event(
                    message_id=mid,
                    created_at=now,
                    kind=Event.Kind.TRANSITION,
                    from_status=src,
                    to_status=to,
                    reason_code=reason,
                    text=text,
                    actor=actor,
                )
                for mid, src in rows
            ],
            batch_size=500,
        )
    return ids


def record_event(
    message: Message | int,
    *,
    text: str,
    reason: str = "",
    kind: str = Event.Kind.NOTE,
    actor: str = "system",
    data: dict[str, Any] | None = None,
) -> Event:
    """Write a history line that is not a status change (an operator action, a note)."""
    message_id = message if isinstance(message, int) else message.pk
    return Event.objects.create(
        message_id=message_id,
        created_at=timezone.now(),
        kind=kind,
        reason_code=reason,
        text=text,
        actor=actor,
        data=data or {},
    )
