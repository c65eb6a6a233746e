"""What the schema itself must give the hot paths (migration 0013), and
what migrating keeps (0014)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from outbound.models import Attempt
from outbound.services.intake import queue_email

pytestmark = pytest.mark.django_db


def test_attempts_have_no_lone_backend_index() -> None:
    # attempt_backend_started begins with backend_id; a second index on the
    # column alone would only cost every attempt written.
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "outbound_attempt")
    indexed = [c["columns"] for c in constraints.values() if c["index"]]
    assert ["backend_id", "started_at"] in indexed
    assert ["backend_id"] not in indexed


def test_attempt_updates_stay_on_their_page_on_postgresql() -> None:
    """The journal and the recorder update columns no index holds: with room
    left on the page (fill factor 70) PostgreSQL writes those updates as
    heap-only tuples, with no index entry. With the default fill factor a
    page of fresh inserts is full and nearly every update moves the row."""
    if connection.vendor != "postgresql":
        # SQLite has no fill factor; the test of the index above runs there.
        assert connection.vendor == "sqlite"
        return
    message = queue_email(to="ann@example.com", subject="Hello", text="Hi")
    now = timezone.now()
    Attempt.objects.bulk_create(
        [Attempt(message=message, started_at=now, worker="w") for _ in range(1000)]
    )
    changed = Attempt.objects.filter(message=message).update(phase="data")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_stat_get_xact_tuples_hot_updated('outbound_attempt'::regclass), "
            "(SELECT reloptions FROM pg_class WHERE oid = 'outbound_attempt'::regclass)"
        )
        hot, options = cursor.fetchone()
    assert changed == 1000
    # About 0.3 / 0.7 of a page's rows fit again in its free room.
    assert hot >= 250, f"only {hot} of 1000 updates were heap-only"
    assert "fillfactor=70" in options


@pytest.mark.django_db(transaction=True)
def test_marking_chosen_backends_keeps_stored_messages_and_their_search() -> None:
    """Migration 0014 on a database with messages: one still as intake left
    it keeps its named backend, a validated one follows the default, and the
    text search still finds what is stored and what comes after (on SQLite
    a table rebuild would have dropped its triggers)."""
    from django.db.migrations.executor import MigrationExecutor

    from outbound.models import Backend, Message
    from outbound.selectors import MessageFilters

    backend = Backend.objects.create(name="Relay", host="localhost", from_address="a@example.com")
    named = queue_email(to="named@example.com", subject="Named relay", backend=backend)
    validated = queue_email(to="other@example.com", subject="Validated one")
    executor = MigrationExecutor(connection)
    executor.migrate([("outbound", "0013_attempt_updates_in_place")])
    old = executor.loader.project_state(("outbound", "0013_attempt_updates_in_place")).apps
    old.get_model("outbound", "Message").objects.filter(pk=validated.pk).update(
        backend_id=backend.pk, reason_code="validated", status="to_send"
    )
    executor = MigrationExecutor(connection)
    executor.migrate([("outbound", "0014_message_backend_chosen")])
    chosen = dict(Message.objects.values_list("pk", "backend_chosen"))
    assert chosen == {named.pk: True, validated.pk: False}
    # Forward to the newest migrations again: the rest of the run (and the
    # queue_email below) expects today's schema, not 0014's.
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    later = queue_email(to="later@example.com", subject="Queued after the migration")
    for text, pk in [("Named relay", named.pk), ("after the migration", later.pk)]:
        found = MessageFilters(q=text).apply(Message.objects.all())
        assert list(found.values_list("pk", flat=True)) == [pk]
