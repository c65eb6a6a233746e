"""Hand-written statements for the worker's hot paths.

The worker writes many rows per transaction: status changes, history lines,
attempts, recipients. Two things make Django's own ``bulk_create`` and
``bulk_update`` slow there:

- ``get_db_prep_save`` is correct for every field but costs microseconds per
  value; for text, numbers and booleans it returns the value unchanged, so
  ``prep_value`` skips it for those and keeps it for the rest (dates, UUIDs,
  JSON...).
- On SQLite one statement per row means one ``sqlite3_step`` per row, and
  Python's sqlite3 module lets go of the interpreter lock around each step:
  with the delivery threads busy, taking it back can cost more than the row.
  Rows are therefore sent several per statement (a multi-row INSERT, an
  ``UPDATE ... FROM (VALUES ...)``). PostgreSQL gets ``executemany``, which
  psycopg pipelines.

Values are converted with ``convert_rows`` (outside the transaction, where
possible) and written with ``insert_converted`` / ``update_converted``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, models

# Fields whose Python values the drivers take as they are.
PLAIN_FIELDS = (
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.BooleanField,
    models.FloatField,
)

# Rows per statement on SQLite (fewer when its limit on bound values is
# lower): past a few hundred, longer statements gain nothing.
ROWS_PER_STATEMENT = 200


def _same(value: Any) -> Any:
    return value


def prep_value(field: models.Field[Any, Any]) -> Callable[[Any], Any]:
    """A function turning a Python value of ``field`` into what the database
    driver of this thread's connection takes."""
    if isinstance(field, models.ForeignKey):
        return prep_value(field.target_field)
    if isinstance(field, PLAIN_FIELDS):
        return _same
    # The connection object itself, not the thread-local proxy: looked up per
    # value, the proxy costs more than the conversion.
    conn = connections[DEFAULT_DB_ALIAS]

    def generic(value: Any) -> Any:
        return field.get_db_prep_save(value, conn)

    if isinstance(field, models.DateTimeField) and settings.USE_TZ:
        return _aware_datetime(conn.vendor, conn.timezone, generic)
    return generic


def _aware_datetime(vendor: str, tz: Any, generic: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """What Django's conversion gives for an aware datetime (most of the
    worker's values: every status change, attempt and history line carries
    one), in one step; anything else goes to ``generic``. SQLite stores the
    naive time in the connection's time zone as text; psycopg takes the
    aware datetime itself."""
    fast: Callable[[datetime], Any]
    if vendor == "sqlite":
        fast = lambda value: str(value.astimezone(tz).replace(tzinfo=None))  # noqa: E731
    elif vendor == "postgresql":
        fast = _same
    else:
        return generic

    def convert(value: Any) -> Any:
        if isinstance(value, datetime) and value.utcoffset() is not None:
            return fast(value)
        return generic(value)

    return convert


def _fields(model: type[models.Model], names: Sequence[str]) -> list[models.Field[Any, Any]]:
    meta = model._meta
    return [cast("models.Field[Any, Any]", meta.get_field(n)) for n in names]


def convert_rows(
    model: type[models.Model], names: Sequence[str], rows: Sequence[Sequence[Any]]
) -> list[list[Any]]:
    """``rows`` (values of the fields ``names``, in that order; a row may end
    with one more value, the primary key, which is passed as it is) as the
    database driver takes them."""
    convert = [_remembering(prep_value(f)) for f in _fields(model, names)]
    n = len(convert)
    return [
        [conv(v) for conv, v in zip(convert, row[:n], strict=True)] + list(row[n:]) for row in rows
    ]


def _remembering(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``convert`` that reuses its last answer when given the same object
    again: a batch's rows mostly share their moment, claim token and empty
    data, and converting them costs microseconds each."""
    if convert is _same:
        return convert
    last: list[Any] = [_UNSET, None]

    def again(value: Any) -> Any:
        if value is last[0]:
            return last[1]
        last[0], last[1] = value, convert(value)
        return last[1]

    return again


_UNSET = object()


def _per_statement(cursor: Any, width: int) -> int:
    limit = cursor.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return max(1, min(ROWS_PER_STATEMENT, limit // width))


def insert_converted(
    model: type[models.Model], names: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert converted ``rows``; the database gives the ids."""
    if not rows:
        return
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in _fields(model, names))
    marks = "(" + ", ".join(["%s"] * len(names)) + ")"
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES "  # noqa: S608
    with connection.cursor() as cursor:
        if connection.vendor != "sqlite":
            cursor.executemany(sql + marks, rows)
            return
        per = _per_statement(cursor, len(names))
        for start in range(0, len(rows), per):
            part = rows[start : start + per]
            cursor.execute(sql + ", ".join([marks] * len(part)), [v for row in part for v in row])


def insert_values(
    model: type[models.Model], names: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert ``rows`` (Python values of the fields ``names``)."""
    insert_converted(model, names, convert_rows(model, names, rows))


def update_converted(
    model: type[models.Model], names: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Set the fields ``names`` of each row's record: every row holds the
    converted values, then the primary key."""
    if not rows:
        return
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = [quote(f.column) for f in _fields(model, names)]
    with connection.cursor() as cursor:
        if connection.vendor != "sqlite":
            sets = ", ".join(f"{c} = %s" for c in columns)
            cursor.executemany(f"UPDATE {table} SET {sets} WHERE id = %s", rows)  # noqa: S608
            return
        # VALUES rows name their columns column1, column2...; the key is last.
        sets = ", ".join(f"{c} = v.column{i}" for i, c in enumerate(columns, start=1))
        key = f"v.column{len(columns) + 1}"
        marks = "(" + ", ".join(["%s"] * (len(columns) + 1)) + ")"
        per = _per_statement(cursor, len(columns) + 1)
        for start in range(0, len(rows), per):
            part = rows[start : start + per]
            values = ", ".join([marks] * len(part))
            cursor.execute(
                f"UPDATE {table} SET {sets} FROM (VALUES {values}) AS v "  # noqa: S608
                f"WHERE {table}.id = {key}",
                [v for row in part for v in row],
            )
