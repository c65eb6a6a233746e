"""Idempotency keys belong to their caller: a message's key is unique
together with ``idempotency_scope`` (the API key or console user that sent
it; empty for the CLI and Python callers), no longer across every producer,
so two API keys using the same Idempotency-Key neither see each other's
message nor get a 409 from each other.

On SQLite, dropping the column's own UNIQUE makes Django rebuild the message
table, and dropping the old table drops the text search triggers of 0010
with it: they are made again, and the search index rebuilt, afterwards.
"""

import importlib

from django.db import migrations, models


def restore_search(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor != "sqlite":
        return
    search = importlib.import_module("outbound.migrations.0010_message_text_search")
    for sql in search.SQLITE_CREATE:
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("outbound", "0016_view_role")]

    operations = [
        migrations.AddField(
            model_name="message",
            name="idempotency_scope",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.AlterField(
            model_name="message",
            name="idempotency_key",
            field=models.CharField(blank=True, max_length=255, null=True),
        ),
        migrations.AddConstraint(
            model_name="message",
            constraint=models.UniqueConstraint(
                fields=("idempotency_scope", "idempotency_key"), name="msg_idempotency_scope_key"
            ),
        ),
        migrations.RunPython(restore_search, migrations.RunPython.noop, elidable=False),
    ]
