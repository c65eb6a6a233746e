"""Shared fixtures: a real SMTP server (tests/smtpd.py), backends tested
against it, and a way to run the worker until nothing is due."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["tests.smtpd", "tests.twilio_server", "tests.http_gateway_server"]

# DEBUG is off in the tests, as in production, so the key checks apply: the
# test session uses keys of its own, in this process (set below, since
# pytest-django has read the settings already) and in every `outbound`
# subprocess the tests start (they inherit this environment).
os.environ.setdefault("DJANGO_SECRET_KEY", "tests-" + "k3y" * 20)
os.environ.setdefault("OUTBOUND_SECRET_KEYS", "VGVzdHMgb2YgT3V0Ym91bmQsIG5vdCBmb3IgdXNlISE=")
# The tests' Twilio and gateway simulators listen on http://127.0.0.1.
os.environ.setdefault("OUTBOUND_ALLOW_LOOPBACK_HTTP", "1")


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    settings.SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
    settings.OUTBOUND_SECRET_KEYS = os.environ["OUTBOUND_SECRET_KEYS"]
    settings.OUTBOUND_ALLOW_LOOPBACK_HTTP = os.environ["OUTBOUND_ALLOW_LOOPBACK_HTTP"] == "1"


def pytest_sessionstart(session: pytest.Session) -> None:
    # Django deletes an old SQLite test database file but not its -wal and
    # -shm companions; a stale WAL next to a new file breaks other processes'
    # connections ("disk I/O error"). Start clean.
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        name = db.get("TEST", {}).get("NAME")
        if name:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{name}{suffix}").unlink(missing_ok=True)


@pytest.fixture(scope="session", autouse=True)
def _no_sessions_left_at_the_end(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Set up after the test database and torn down just before it: on
    PostgreSQL the database can only be dropped once no other session uses
    it, and the browser tests' live server leaves one behind (pytest-django
    issue 429). Give such sessions a moment to end, then end them."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    others = (
        "SELECT pid FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        for _ in range(50):
            cursor.execute(others)
            if not cursor.fetchall():
                return
            time.sleep(0.1)
        cursor.execute(f"SELECT pg_terminate_backend(pid) FROM ({others}) AS left_over")  # noqa: S608


@pytest.fixture(autouse=True)
def _fast_worker(settings: Any) -> None:
    settings.OUTBOUND_POLL_INTERVAL = 0.05
    settings.OUTBOUND_LEASE_SECONDS = 30


@pytest.fixture
def make_backend(db: None, settings: Any) -> Iterator[Callable[..., Any]]:
    """Create an SMTP backend for a test server and run the real backend test."""
    from outbound import secrets
    from outbound.models import Backend
    from outbound.services.backends import test_backend

    def factory(server: Any, *, name: str = "Relay", test: bool = True, **fields: Any) -> Any:
        password = fields.pop("password", "")
        if getattr(server, "ca_file", None):
            settings.OUTBOUND_SMTP_CAFILE = server.ca_file
        defaults = {
            "host": server.host,
            "port": server.port,
            "security": fields.pop("security", "none"),
            "from_address": "noreply@example.com",
            "is_default": True,
            "timeout": 5,
            "secret": secrets.encrypt(password),
        }
        defaults.update(fields)
        backend = Backend.objects.create(name=name, **defaults)
        if test:
            result = test_backend(backend, actor="test")
            assert result.ok, result
            backend.refresh_from_db()
        return backend

    yield factory


@pytest.fixture
def stored_backend(db: None) -> Callable[..., Any]:
    """A backend row as a successful test leaves it, without a server: for
    tests of validation, pages and explanations that never connect."""
    from outbound.models import Backend

    def factory(**fields: Any) -> Any:
        values: dict[str, Any] = {
            "name": "Relay",
            "host": "smtp.example.com",
            "port": 587,
            "from_address": "noreply@example.com",
            "is_default": True,
            "health": "ok",
            "tested_version": 1,
            "settings_version": 1,
        }
        values.update(fields)
        return Backend.objects.create(**values)

    return factory


@pytest.fixture
def run_worker() -> Callable[..., Any]:
    """Run a real worker until nothing is due."""
    from outbound.worker import Worker

    def run(concurrency: int = 1) -> Any:
        return Worker(concurrency=concurrency, once=True, name="test-worker").run()

    return run


@pytest.fixture
def system_mail(make_smtp_server: Callable[..., Any], settings: Any) -> Any:
    """The deployment's system mail, and ops@example.com as the Backend
    Failure Email: every alert mailed lands in this server."""
    from outbound.models import GlobalSettings

    server = make_smtp_server()
    settings.OUTBOUND_SYSTEM_MAIL_URL = f"smtp://{server.host}:{server.port}"
    gs = GlobalSettings.load()
    gs.backend_failure_email = "ops@example.com"
    gs.save()
    return server
