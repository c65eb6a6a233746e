"""The three probes in-process: /livez needs no database, /readyz follows the
database's record of applied migrations, /healthz keeps the worker view; none
is behind the login or the https redirect."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client

pytestmark = pytest.mark.django_db


def _latest_migration() -> tuple[str, str]:
    """(latest outbound migration, the one before it), as the code ships them."""
    from django.db.migrations.loader import MigrationLoader

    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    (leaf,) = graph.leaf_nodes("outbound")
    (parent,) = [p for p in graph.node_map[leaf].parents if p.key[0] == "outbound"]
    return leaf[1], parent.key[1]


def test_livez_answers_without_a_single_query(django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(0):
        r = Client().get("/livez")
    assert r.status_code == 200
    assert r.json() == {"live": True}
    assert "no-cache" in r["Cache-Control"]


def test_without_a_worker_livez_and_readyz_are_200_while_healthz_is_503() -> None:
    client = Client()
    assert client.get("/livez").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "database": True, "pending_migrations": []}
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json()["workers_alive"] == 0


def test_readyz_is_503_naming_a_migration_the_database_has_not_applied() -> None:
    # The database's record says the latest migration was never applied
    # (the test's transaction puts the row back afterwards).
    latest, _ = _latest_migration()
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM django_migrations WHERE app = %s AND name = %s",
            ["outbound", latest],
        )
    r = Client().get("/readyz")
    assert r.status_code == 503
    assert r.json() == {
        "ready": False,
        "database": True,
        "pending_migrations": [f"outbound.{latest}"],
    }
    assert Client().get("/livez").status_code == 200


@pytest.mark.parametrize("url", ["/livez", "/readyz", "/healthz"])
def test_probes_are_not_redirected_to_https_nor_sent_to_the_login(url: str, settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^livez$", r"^readyz$", r"^metrics$"]
    client = Client()
    # The console itself is redirected to https (so the exemption is what lets
    # the probes through), and over https it asks for a login.
    assert client.get("/").status_code == 301
    r = client.get(url)
    assert r.status_code in (200, 503), r
    assert r["Content-Type"] == "application/json"
