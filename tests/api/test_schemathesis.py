"""Property-based run of the generated OpenAPI schema: every operation, with
an admin key, must answer without a 5xx and with a response the schema
describes. Seeded and bounded so it is repeatable and quick."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)


@pytest.fixture
def admin_key(db: None) -> Iterator[str]:
    from django.core import signals
    from django.core.cache import cache
    from django.db import close_old_connections

    from outbound.models import WorkerHeartbeat
    from outbound.services.apikeys import create_api_key

    # The WSGI handler closes the connection after each request, which would
    # end the test's transaction; Django's own test client unhooks it too.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    cache.clear()
    # A live worker, so /healthz answers 200 (its 503 is its documented job).
    now = timezone.now()
    WorkerHeartbeat.objects.create(name="fuzz", hostname="h", pid=1, started_at=now, last_seen=now)
    try:
        yield create_api_key(name="fuzz", scope="admin", actor="test")[1]
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_matches_its_schema_and_never_fails(case: Any, admin_key: str) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {admin_key}"},
        checks=[
            not_a_server_error,
            response_schema_conformance,
            status_code_conformance,
            content_type_conformance,
        ],
    )
