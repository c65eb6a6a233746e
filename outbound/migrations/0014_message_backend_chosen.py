"""Whether a message's backend was named at intake, or is its channel's
default as validation found it.

Until now validation wrote the default backend into the message, and from
then on the two could not be told apart: a message held for a failing
default stayed tied to it after the administrator made another backend the
default. From now on only a backend named at intake binds the message.

The column is added with SQL rather than an AddField: on SQLite a NOT NULL
column with a default makes Django rebuild the whole table, and dropping
the old table would drop the text search triggers of migration 0010 with
it (as 0011 explains). The column's database default only fills the rows
already there; on PostgreSQL it is dropped again, as Django leaves none.

For the messages already stored: one still Waiting as intake left it
(queued or scheduled, never validated) with a backend has its backend from
intake, so it is marked chosen. Every other message follows the default;
for one that went through a named backend and is re-sent later, that means
the current default. No stored fact says which it was.
"""

from django.db import migrations, models


def add_column(apps, schema_editor):  # type: ignore[no-untyped-def]
    schema_editor.execute(
        'ALTER TABLE "outbound_message" ADD COLUMN "backend_chosen" boolean NOT NULL DEFAULT FALSE'
    )
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            'ALTER TABLE "outbound_message" ALTER COLUMN "backend_chosen" DROP DEFAULT'
        )


def drop_column(apps, schema_editor):  # type: ignore[no-untyped-def]
    schema_editor.execute('ALTER TABLE "outbound_message" DROP COLUMN "backend_chosen"')


def mark_chosen(apps, schema_editor):  # type: ignore[no-untyped-def]
    Message = apps.get_model("outbound", "Message")
    Message.objects.filter(
        status="waiting", reason_code__in=["queued", "scheduled"], backend__isnull=False
    ).update(backend_chosen=True)


class Migration(migrations.Migration):
    dependencies = [
        ("outbound", "0013_attempt_updates_in_place"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="message",
                    name="backend_chosen",
                    field=models.BooleanField(default=False),
                ),
            ],
            database_operations=[migrations.RunPython(add_column, drop_column)],
        ),
        migrations.RunPython(mark_chosen, migrations.RunPython.noop),
    ]
