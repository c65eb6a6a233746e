"""A write that waits past the database's lock timeout answers 503 with
Retry-After (the page and the API alike), stores nothing, and the same
request succeeds once the lock is gone.

The lock is held by a second, real connection: on SQLite its BEGIN IMMEDIATE
takes the one write lock (the app's connection waits 0.2 s, its busy
timeout); on PostgreSQL it locks the contact table (the app's connection has
a lock_timeout of 0.2 s).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from outbound.models import Contact
from outbound.services.apikeys import create_api_key

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def lock_held_elsewhere() -> Iterator[None]:
    connection.ensure_connection()
    settings = connection.settings_dict
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            other: Any = sqlite3.connect(settings["NAME"], isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            cursor.execute("PRAGMA busy_timeout = 200")
        else:
            other = psycopg.connect(
                host=settings.get("HOST") or "127.0.0.1",
                port=settings.get("PORT") or 5432,
                user=settings.get("USER") or None,
                password=settings.get("PASSWORD") or None,
                dbname=settings["NAME"],
            )
            other.execute("LOCK TABLE outbound_contact IN ACCESS EXCLUSIVE MODE")
            cursor.execute("SET lock_timeout = '200ms'")
    try:
        yield
    finally:
        other.rollback() if connection.vendor != "sqlite" else other.execute("ROLLBACK")
        other.close()


def test_a_console_save_under_a_held_lock_is_503_with_retry_after(
    make_user: Any,
) -> None:
    make_user("otto", "Operator")
    client = Client()
    client.force_login(User.objects.get(username="otto"))
    form = {"name": "Ann", "email": "ann@example.com", "preferred_channel": "email"}
    with lock_held_elsewhere():
        response = client.post("/contacts/new/", form)
        assert response.status_code == 503
        assert response["Retry-After"] == "5"
        assert b"busy" in response.content and b"nothing was changed" in response.content
    assert not Contact.objects.exists()
    response = client.post("/contacts/new/", form)
    assert response.status_code == 302
    assert Contact.objects.get().name == "Ann"


def test_an_api_write_under_a_held_lock_is_503_in_the_envelope() -> None:
    _, key = create_api_key(name="t", scope="write", actor="t")
    client = Client(headers={"Authorization": f"Bearer {key}"})
    body = '{"name": "Ann", "email": "ann@example.com"}'
    assert client.get("/api/v1/contacts").status_code == 200  # the key's first use is written
    with lock_held_elsewhere():
        response = client.post("/api/v1/contacts", body, content_type="application/json")
        assert response.status_code == 503, response.content
        assert response["Retry-After"] == "5"
        answer = response.json()
        assert answer["code"] == "database_busy"
        assert answer["details"] == {"retry_after": 5}
    assert not Contact.objects.exists()
    response = client.post("/api/v1/contacts", body, content_type="application/json")
    assert response.status_code == 201
