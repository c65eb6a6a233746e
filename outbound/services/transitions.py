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

from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from outbound.errors import InvalidTransition
from outbound.models import Event, Message
from outbound.services.prepared import convert_rows, insert_converted, update_converted
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


def _apply(change: Change, now: datetime) -> str | None:
    """Apply one change on its own; the status it came from, or None."""
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
    return current


def apply_changes(changes: Sequence[Change]) -> list[int]:
    """Apply several changes in one transaction; return the ids that changed.

    Everything that does not depend on the rows' current state (statement
    parameters, history lines) is prepared before the transaction opens: on
    SQLite the transaction holds the one write lock, which the worker's
    journal waits for before every message body.
    """
    if not changes:
        return []
    now = timezone.now()
    counts: dict[int, int] = {}
    for change in changes:
        counts[change.message_id] = counts.get(change.message_id, 0) + 1
    # Plain values go through one prepared statement per shape; expressions
    # (F(), Coalesce) and a message changed twice in one call go one by one.
    plain = [
        c
        for c in changes
        if counts[c.message_id] == 1
        and not any(hasattr(v, "resolve_expression") for v in c.fields.values())
    ]
    plain_ids = {id(c) for c in plain}
    prepared = _prepare_plain(plain, now)
    # No savepoint when the caller already holds a transaction: nothing here
    # is retried on its own.
    with transaction.atomic(savepoint=False):
        events = _apply_plain(prepared)
        for change in changes:
            if id(change) in plain_ids:
                continue
            source = _apply(change, now)
            if source is not None:
                row = convert_rows(Event, EVENT_FIELDS, [_event_row(change, source, now)])[0]
                events.append((change.message_id, row))
        insert_converted(Event, EVENT_FIELDS, [row for _, row in events])
    return [message_id for message_id, _ in events]


# The columns of a history line, in the order ``_event_row`` gives them.
EVENT_FIELDS = (
    "message",
    "created_at",
    "kind",
    "from_status",
    "to_status",
    "reason_code",
    "text",
    "actor",
    "data",
)
_SOURCE = EVENT_FIELDS.index("from_status")
# What every status change sets, before the change's own fields.
CHANGE_FIELDS = ("status", "reason_code", "reason_text", "status_changed_at")


def _event_row(change: Change, source: str, now: datetime) -> list[Any]:
    """The history line of an applied change, as ``EVENT_FIELDS`` values."""
    return [
        change.message_id,
        now,
        Event.Kind.TRANSITION,
        source,
        change.to,
        change.reason,
        change.text,
        change.actor,
        change.data,
    ]


@dataclass
class _Planned:
    """One plain change, its UPDATE row and history line, converted for the
    database (the history line's source status is filled in once known)."""

    change: Change
    sources: frozenset[Status]
    update: list[Any]
    event: list[Any]


def _prepare_plain(
    changes: Sequence[Change], now: datetime
) -> dict[tuple[str, ...], list[_Planned]]:
    """The plain changes grouped by the fields they set, converted."""
    groups: dict[tuple[str, ...], list[Change]] = {}
    for c in changes:
        groups.setdefault(tuple(sorted(c.fields)), []).append(c)
    planned: dict[tuple[str, ...], list[_Planned]] = {}
    for names, members in groups.items():
        updates = convert_rows(
            Message,
            (*CHANGE_FIELDS, *names),
            [
                [
                    c.to,
                    c.reason,
                    c.text,
                    now,
                    *(v.pk if isinstance(v, Model) else v for v in (c.fields[n] for n in names)),
                    c.message_id,
                ]
                for c in members
            ],
        )
        events = convert_rows(Event, EVENT_FIELDS, [_event_row(c, "", now) for c in members])
        planned[names] = [
            _Planned(c, _sources(c.to, c.expect), u, e)
            for c, u, e in zip(members, updates, events, strict=True)
        ]
    return planned


def _apply_plain(
    prepared: dict[tuple[str, ...], list[_Planned]],
) -> list[tuple[int, list[Any]]]:
    """The same conditional change as ``_apply`` for many rows at once.

    Inside the caller's transaction the rows are read (and locked, where the
    database can) in id order; the ones still in an allowed status and held
    by the expected claim are updated, a few statements per set of fields.
    Returns the applied changes' message ids and history lines.
    """
    if not prepared:
        return []
    ids = sorted(p.change.message_id for members in prepared.values() for p in members)
    rows = _current(ids)
    events: list[tuple[int, list[Any]]] = []
    for names, members in prepared.items():
        updates = []
        for p in members:
            c = p.change
            row = rows.get(c.message_id)
            if row is None or row[0] not in p.sources:
                continue
            fenced = isinstance(c.claim_token, uuid.UUID) or c.claim_token is None
            if fenced and row[1] != _token(c.claim_token):
                continue
            updates.append(p.update)
            p.event[_SOURCE] = row[0]
            events.append((c.message_id, p.event))
        update_converted(Message, (*CHANGE_FIELDS, *names), updates)
    return events


def _current(ids: list[int]) -> dict[int, tuple[str, Any]]:
    """Status and claim token (as the database stores it) of these messages,
    read in id order and, where the database can, locked. Plain SQL: this
    runs inside the worker's write transactions, which the journal waits for.
    """
    quote = connection.ops.quote_name
    table = quote(Message._meta.db_table)
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    rows: dict[int, tuple[str, Any]] = {}
    with connection.cursor() as cursor:
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ", ".join(["%s"] * len(part))
            cursor.execute(
                f"SELECT id, status, claim_token FROM {table} "  # noqa: S608
                f"WHERE id IN ({marks}) ORDER BY id{lock}",
                part,
            )
            rows.update((mid, (st, tok)) for mid, st, tok in cursor.fetchall())
    return rows


def _token(token: object) -> Any:
    """A claim token as the database stores it (None stays None)."""
    if token is None:
        return None
    return _TOKEN_FIELD.get_db_prep_value(token, connection)


_TOKEN_FIELD = Message._meta.get_field("claim_token")


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
