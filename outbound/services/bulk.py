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
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any, TypeVar, cast

from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from outbound.services.prepared import PLAIN_FIELDS, insert_converted

# Values of these exact types cannot change, and two equal ones of the same
# type convert alike (True == 1, but JSON writes them apart).
_IMMUTABLE = frozenset({type(None), bool, int, str, datetime, uuid.UUID})

M = TypeVar("M", bound=models.Model)


@dataclass(frozen=True)
class _Layout:
    """A model's concrete fields as ``Model.__init__`` takes them by position."""

    defaults: tuple[Any, ...]  # constant defaults; None where a callable gives it
    callables: tuple[tuple[int, Callable[[], Any]], ...]
    index: dict[str, int]  # field name and attname -> position
    relations: frozenset[str]  # names of the relation fields


_LAYOUTS: dict[type[models.Model], _Layout] = {}


def _layout(model: type[models.Model]) -> _Layout:
    layout = _LAYOUTS.get(model)
    if layout is None:
        fields = cast("list[models.Field[Any, Any]]", model._meta.concrete_fields)
        defaults: list[Any] = []
        callables: list[tuple[int, Callable[[], Any]]] = []
        index: dict[str, int] = {}
        for i, field in enumerate(fields):
            index[field.name] = index[field.attname] = i
            if field.has_default() and callable(field.default):
                callables.append((i, field.default))
                defaults.append(None)
            else:
                defaults.append(field.get_default())
        relations = frozenset(f.name for f in fields if f.is_relation)
        layout = _LAYOUTS[model] = _Layout(tuple(defaults), tuple(callables), index, relations)
    return layout


def new_instance(model: type[M], **values: Any) -> M:
    """``model(**values)``, by the quicker road of ``Model.__init__``: every
    concrete field's value by position (its default when not given), then
    the related objects given as instances. Django's keyword road looks each
    field up by name and costs several times more, once per row of a bulk
    intake."""
    layout = _layout(model)
    args = list(layout.defaults)
    for i, make in layout.callables:
        args[i] = make()
    related: list[tuple[str, models.Model]] = []
    for name, value in values.items():
        position = layout.index.get(name)
        if position is None:
            raise TypeError(f"{model.__name__} has no field {name}")
        if name in layout.relations and isinstance(value, models.Model):
            related.append((name, value))
            value = value.pk
        args[position] = value
    obj = model(*args)
    for name, instance in related:
        setattr(obj, name, instance)
    return obj


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
