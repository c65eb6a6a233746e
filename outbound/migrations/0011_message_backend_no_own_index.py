"""Drop the message table's own index on backend_id, the one Django makes for
every foreign key: msg_backend_status and msg_backend_created both begin
with backend_id and answer every query it could, and each index costs bulk
intake a little on every message.

By name, with SQL, rather than an AlterField: on SQLite that rebuilds the
whole table, and dropping the old table would drop the text search triggers
of migration 0010 with it. Django named the index the same way on both
databases.
"""

import django.db.models.deletion
from django.db import migrations, models

INDEX = "outbound_message_backend_id_7d06e6e5"


class Migration(migrations.Migration):
    dependencies = [("outbound", "0010_message_text_search")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="message",
                    name="backend",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="outbound.backend",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{INDEX}"',
                    reverse_sql=(
                        f'CREATE INDEX IF NOT EXISTS "{INDEX}" ON "outbound_message" ("backend_id")'
                    ),
                ),
            ],
        ),
    ]
