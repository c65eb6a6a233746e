"""Bulk INSERT with statements built once, for intake's hot path.

Django's ``bulk_create`` compiles every value of every row into its SQL one
by one; for a message of some 45 columns that is most of what bulk intake
costs. ``insert_rows`` builds its statement once and converts only the
values that need it: text, numbers and booleans go as they are, and a value
that repeats across the rows (the batch's one timestamp, a missing backend,
an empty list) is converted once. Ids are taken before the insert
(PostgreSQL: from the table's sequence; SQLite: after the highest id ever
used, under the write lock an IMMEDIATE transaction holds from its start),
so the caller gets its objects back with their primary keys, as from
``bulk_create``.

On SQLite one INSERT carries several rows (``prepared.insert_converted``). A table with
a trigger (the message table's search index, migration 0010) makes SQLite
keep a statement journal, a copy of every page a statement changes; with
one row per statement that copied a page of each of the table's indexes for
every message, about 60 of the 90 µs SQLite spent on one. PostgreSQL takes
the rows with ``executemany``.

Only for plain rows: no signals, no ``auto_now``, no multi-table models.
Other databases fall back to ``bulk_create``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any, cast

from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from outbound.services.prepared import PLAIN_FIELDS, insert_converted

# Values of these exact types cannot change, and two equal ones of the same
# type convert alike (True == 1, but JSON writes them apart).
_IMMUTABLE = frozenset({type(None), bool, int, str, datetime, uuid.UUID})


def _converter(
    field: models.Field[Any, Any], conn: BaseDatabaseWrapper
) -> Callable[[Any], Any] | None:
    """How a value of ``field`` is converted for the database; None when it
    goes as it is."""
    if isinstance(field, PLAIN_FIELDS) and not field.is_relation:
        return None
    prep = field.get_db_prep_save
    memo: dict[tuple[type, Any], Any] = {}

    def convert(value: Any) -> Any:
        kind = type(value)
        if kind in _IMMUTABLE:
            key = (kind, value)
        elif (kind is list or kind is dict) and not value:
            # Empty: converts alike whichever object holds it.
            key = (kind, None)
        else:
            return prep(value, conn)
        try:
            return memo[key]
        except KeyError:
            memo[key] = converted = prep(value, conn)
            return converted

    return convert


def _take_ids(table: str, count: int) -> list[int] | None:
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                [table, count],
            )
            return [row[0] for row in cursor.fetchall()]
        if connection.vendor == "sqlite":
            # AUTOINCREMENT never hands out an id twice, even of a deleted
            # row: start after both the highest row and the highest ever used.
            cursor.execute(f"SELECT MAX(id) FROM {quote(table)}")  # noqa: S608
            highest = cursor.fetchone()[0] or 0
            cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [table])
            row = cursor.fetchone()
            base = max(highest, row[0] if row else 0)
            return list(range(base + 1, base + count + 1))
    return None


def insert_rows(model: type[models.Model], objs: Sequence[models.Model]) -> None:
    """Insert ``objs`` (unsaved, no primary key) and give each its id.

    Must run inside a transaction: on SQLite the ids are only safe under the
    write lock the transaction holds.
    """
    if not objs:
        return
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("insert_rows must run inside a transaction")
    meta = model._meta
    table = meta.db_table
    ids = _take_ids(table, len(objs))
    if ids is None:
        model.objects.bulk_create(objs, batch_size=500)  # type: ignore[attr-defined]
        return
    fields = [cast("models.Field[Any, Any]", f) for f in meta.concrete_fields]
    # The connection itself, not the thread-local proxy: looked up per value,
    # the proxy costs more than the conversion.
    conn = connections[DEFAULT_DB_ALIAS]
    converters = [
        (i, convert) for i, f in enumerate(fields) if (convert := _converter(f, conn)) is not None
    ]
    names = [f.attname for f in fields]
    values_of = attrgetter(*names) if len(names) > 1 else lambda obj: (getattr(obj, names[0]),)
    rows = []
    for obj, pk in zip(objs, ids, strict=True):
        obj.pk = pk
        row = list(values_of(obj))
        for i, convert in converters:
            row[i] = convert(row[i])
        rows.append(row)
    insert_converted(model, [f.name for f in fields], rows)
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias
