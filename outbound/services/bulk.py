"""Bulk INSERT with one prepared statement, for intake's hot path.

Django's ``bulk_create`` compiles every value of every row into its SQL one
by one; for a message of some 45 columns that is most of what bulk intake
costs. ``insert_rows`` prepares the statement once and hands all rows to
``executemany``. Ids are taken before the insert (PostgreSQL: from the
table's sequence; SQLite: after the highest id ever used, under the write
lock an IMMEDIATE transaction holds from its start), so the caller gets its
objects back with their primary keys, as from ``bulk_create``.

Only for plain rows: no signals, no ``auto_now``, no multi-table models.
Other databases fall back to ``bulk_create``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

_PLAIN = (
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.BooleanField,
    models.FloatField,
)


def _converter(field: models.Field[Any, Any], conn: BaseDatabaseWrapper) -> Callable[[Any], Any]:
    if isinstance(field, _PLAIN) and not field.is_relation:
        return lambda value: value
    return lambda value: field.get_db_prep_save(value, conn)


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
    converters = [_converter(f, conn) for f in fields]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {quote(table)} ({columns}) VALUES ({marks})"  # noqa: S608
    rows = []
    for obj, pk in zip(objs, ids, strict=True):
        obj.pk = pk
        rows.append(
            [
                convert(getattr(obj, f.attname))
                for f, convert in zip(fields, converters, strict=True)
            ]
        )
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias
