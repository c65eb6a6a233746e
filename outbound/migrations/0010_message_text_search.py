"""Indexes for the Outgoing messages page's text search (a case-insensitive
substring of Message to, To user or Subject), one kind per database.

PostgreSQL: one trigram GIN index (pg_trgm) on the three columns joined by
newlines and upper-cased, the very expression ``outbound.selectors`` searches
with ``icontains`` (``UPPER((...)::text) LIKE UPPER('%x%')``), so a search is
answered from the index instead of reading every row. One index rather than
one per column: it costs bulk intake about half as much.

SQLite: an FTS5 table with the trigram tokenizer over the same three
columns, with the message table as its content, kept in step by triggers.
``outbound.selectors`` asks it for the ids holding every trigram of the text
(then checks the substring on the rows). ``detail=none`` keeps no positions:
a third cheaper per insert than the default, and the query needs none.

Neither is declared in Message.Meta: each exists on one database only.
"""

from django.db import migrations

# Must stay the expression of outbound.selectors.SearchText.
PG_INDEX = (
    "CREATE INDEX IF NOT EXISTS msg_search_trgm ON outbound_message USING gin "
    '((UPPER(("message_to" || E\'\\n\' || "to_user" || E\'\\n\' || "subject")::text)) '
    "gin_trgm_ops)"
)

SQLITE_CREATE = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS outbound_message_search USING fts5("
    "message_to, to_user, subject, content='outbound_message', content_rowid='id', "
    "tokenize='trigram', detail=none)",
    "CREATE TRIGGER IF NOT EXISTS outbound_message_search_ai "
    "AFTER INSERT ON outbound_message BEGIN "
    "INSERT INTO outbound_message_search(rowid, message_to, to_user, subject) "
    "VALUES (new.id, new.message_to, new.to_user, new.subject); END",
    "CREATE TRIGGER IF NOT EXISTS outbound_message_search_ad "
    "AFTER DELETE ON outbound_message BEGIN "
    "INSERT INTO outbound_message_search"
    "(outbound_message_search, rowid, message_to, to_user, subject) "
    "VALUES ('delete', old.id, old.message_to, old.to_user, old.subject); END",
    # Only when a searched column really changed: a full save() sets every
    # column, and status changes set none of these.
    "CREATE TRIGGER IF NOT EXISTS outbound_message_search_au "
    "AFTER UPDATE OF message_to, to_user, subject ON outbound_message "
    "WHEN old.message_to IS NOT new.message_to OR old.to_user IS NOT new.to_user "
    "OR old.subject IS NOT new.subject BEGIN "
    "INSERT INTO outbound_message_search"
    "(outbound_message_search, rowid, message_to, to_user, subject) "
    "VALUES ('delete', old.id, old.message_to, old.to_user, old.subject); "
    "INSERT INTO outbound_message_search(rowid, message_to, to_user, subject) "
    "VALUES (new.id, new.message_to, new.to_user, new.subject); END",
    # Index the messages already there.
    "INSERT INTO outbound_message_search(outbound_message_search) VALUES ('rebuild')",
]

SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS outbound_message_search_ai",
    "DROP TRIGGER IF EXISTS outbound_message_search_ad",
    "DROP TRIGGER IF EXISTS outbound_message_search_au",
    "DROP TABLE IF EXISTS outbound_message_search",
]


def create(apps, schema_editor):  # type: ignore[no-untyped-def]
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        schema_editor.execute(PG_INDEX)
    elif vendor == "sqlite":
        for sql in SQLITE_CREATE:
            schema_editor.execute(sql)


def drop(apps, schema_editor):  # type: ignore[no-untyped-def]
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS msg_search_trgm")
        # The extension stays: other objects may use it.
    elif vendor == "sqlite":
        for sql in SQLITE_DROP:
            schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("outbound", "0009_api_replay")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
