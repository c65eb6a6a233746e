"""Every error shape the API gives, through the real URL routing."""

from __future__ import annotations

import logging

import pytest
from django.db import DatabaseError, connection

from outbound.models import AuditEntry, Message
from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db


def test_malformed_json_is_400(api):
    body = assert_error(api.post("/messages", raw="{not json"), 400, "malformed_json")
    assert body["details"] == {}
    assert_error(api.post("/messages", raw=b"\xff\xfe"), 400, "malformed_json")


def test_a_body_that_is_not_an_object_is_422(api):
    assert_error(api.post("/messages", raw="[1, 2]"), 422, "invalid_input")


def test_unknown_fields_are_refused_by_name(api):
    body = assert_error(
        api.post("/messages", {"to": ["a@example.com"], "sujbect": "typo"}), 422, "invalid_input"
    )
    assert body["details"] == {"sujbect": ["Unknown field."]}
    assert Message.objects.count() == 0


def test_wrong_types_name_the_field(api):
    body = assert_error(api.post("/messages", {"to": "a@example.com", "subject": 5}), 422)
    assert {"to", "subject"} <= set(body["details"])


def test_over_long_values_are_422_not_a_database_error(api):
    body = assert_error(api.post("/messages", {"to": ["a@example.com"], "subject": "x" * 999}), 422)
    assert "subject" in body["details"]
    body = assert_error(api.post("/messages", {"to": ["a@example.com" * 30]}), 422)


def test_an_oversized_body_is_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    r = api.post("/messages", {"to": ["a@example.com"], "text": "x" * 5000})
    assert_error(r, 413, "payload_too_large")


def test_an_unknown_api_path_is_404_with_the_envelope(api):
    assert_error(api.get("/no-such-thing"), 404, "not_found")
    assert_error(api.post("/messages/1/explode"), 404, "not_found")


def test_an_unexpected_error_is_a_500_envelope_without_traceback(api, caplog):
    # A real fault, not a replaced function: the audit table that
    # send_outgoing writes to is dropped, inside the test's transaction (rolled
    # back after it, on SQLite and PostgreSQL alike), so the database itself
    # raises mid-request.
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {AuditEntry._meta.db_table}")
    with caplog.at_level(logging.ERROR, logger="outbound.api"):
        r = api.post("/send-outgoing")
    body = assert_error(r, 500, "internal_error")
    assert body["details"] == {}
    # The database's words (table name, error class) stay in the log.
    text = r.content.decode()
    assert AuditEntry._meta.db_table not in text
    for word in ("OperationalError", "ProgrammingError", "no such table", "does not exist"):
        assert word not in text
    assert "Traceback" not in text
    logged = [rec for rec in caplog.records if rec.exc_info]
    assert logged, "the error was not logged"
    assert isinstance(logged[0].exc_info[1], DatabaseError)


def test_openapi_schema_and_docs_are_served(anon):
    r = anon.client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    schema = r.json()
    assert "/api/v1/messages" in schema["paths"]
    assert "ErrorOut" in schema["components"]["schemas"]
    assert anon.client.get("/api/v1/docs").status_code == 200


def test_a_wrong_method_is_405_with_the_envelope_and_allow(api):
    r = api.get("/send-outgoing")
    body = assert_error(r, 405, "method_not_allowed")
    assert r["Allow"] == "POST"
    assert body["details"] == {"allowed_methods": ["POST"]}
    assert "GET" in body["message"] and "/api/v1/send-outgoing" in body["message"]
    # A path with several operations lists them all.
    r = api.put("/messages", {"to": ["a@example.com"]})
    body = assert_error(r, 405, "method_not_allowed")
    assert set(r["Allow"].split(", ")) == {"GET", "POST"}
    assert Message.objects.count() == 0
