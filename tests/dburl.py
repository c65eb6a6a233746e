"""The test database as a DATABASE_URL, for the subprocesses the tests start
(the `outbound` console script, worker processes): they must use the very
database this test session set up, with the same user and password."""

from __future__ import annotations

from urllib.parse import quote


def database_url() -> str:
    """A URL for the default connection's current database (the test one once
    pytest-django has set it up), on SQLite or PostgreSQL."""
    from django.db import connection

    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    user = quote(s.get("USER") or "")
    password = f":{quote(s['PASSWORD'])}" if s.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"
