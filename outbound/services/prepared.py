"""Values for hand-written prepared statements on the hot paths.

The worker and bulk intake write many rows with one parametrised statement
and ``executemany``. Django's ``get_db_prep_save`` is correct for every field
but costs a few microseconds per value; for text, numbers and booleans it
returns the value unchanged, so ``prep_value`` skips it for those and keeps
it for the rest (dates, UUIDs, JSON...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from django.db import DEFAULT_DB_ALIAS, connection, connections, models

_PLAIN = (
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.BooleanField,
    models.FloatField,
)


def _same(value: Any) -> Any:
    return value


def prep_value(field: models.Field[Any, Any]) -> Callable[[Any], Any]:
    """A function turning a Python value of ``field`` into what the database
    driver of this thread's connection takes."""
    if isinstance(field, models.ForeignKey):
        return prep_value(field.target_field)
    if isinstance(field, _PLAIN):
        return _same
    # The connection object itself, not the thread-local proxy: looked up per
    # value, the proxy costs more than the conversion.
    conn = connections[DEFAULT_DB_ALIAS]
    return lambda value: field.get_db_prep_save(value, conn)


def insert_values(
    model: type[models.Model], names: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert ``rows`` (values of the fields ``names``, in that order) with
    one prepared statement; the database gives the ids."""
    if not rows:
        return
    meta = model._meta
    fields = [cast("models.Field[Any, Any]", meta.get_field(n)) for n in names]
    convert = [prep_value(f) for f in fields]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({marks})"  # noqa: S608
    params = [[conv(v) for conv, v in zip(convert, row, strict=True)] for row in rows]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
