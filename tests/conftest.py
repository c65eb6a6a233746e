"""Shared fixtures: a real SMTP server (tests/smtpd.py), backends tested
against it, and a way to run the worker until nothing is due."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest_plugins = ["tests.smtpd"]


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
def run_worker() -> Callable[..., Any]:
    """Run a real worker until nothing is due."""
    from outbound.worker import Worker

    def run(concurrency: int = 1) -> Any:
        return Worker(concurrency=concurrency, once=True, name="test-worker").run()

    return run
