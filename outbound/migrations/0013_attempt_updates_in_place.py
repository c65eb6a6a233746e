"""Attempt rows are written three times in a few milliseconds: inserted at
the claim, their phase set by the data-phase journal, their outcome set by
the recorder. Neither update touches an indexed column, so PostgreSQL can
make both "heap-only" (the new row version on the same page, no index entry
written) when the page has room; with the default fill factor of 100 a page
of fresh inserts has none, and every journal and record wrote six index
entries. A fill factor of 70 leaves that room for pages written from now on.

The foreign key's own index on backend_id goes: attempt_backend_started
begins with the same column.

SQLite has no fill factor; there only the index goes.
"""

import django.db.models.deletion
from django.db import migrations, models


def fill_factor(value: int):  # type: ignore[no-untyped-def]
    def apply(apps, schema_editor):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"ALTER TABLE outbound_attempt SET (fillfactor = {value})")

    return apply


class Migration(migrations.Migration):
    dependencies = [("outbound", "0012_ratewindow")]

    operations = [
        migrations.AlterField(
            model_name="attempt",
            name="backend",
            field=models.ForeignKey(
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="outbound.backend",
            ),
        ),
        migrations.RunPython(fill_factor(70), fill_factor(100), elidable=False),
    ]
