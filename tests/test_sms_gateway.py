"""SMS through a real local HTTP gateway: the backend's "Connections at
most" (how many requests the provider gets at once, across delivery threads
and workers), and the Message-IDs an SMS carries."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from outbound.errors import InvalidInput
from outbound.models import Backend, BackendSlot, GlobalSettings, Message, Suppression
from outbound.selectors import backend_rows
from outbound.services.backends import save_backend_settings, send_test_sms
from outbound.services.intake import queue_sms
from outbound.states import Status
from tests.http_gateway_server import GatewayTestServer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def gateway() -> Iterator[GatewayTestServer]:
    with GatewayTestServer() as started:
        yield started


def _gateway_backend(gateway: GatewayTestServer, **extra: Any) -> Backend:
    GlobalSettings.objects.update_or_create(pk=1, defaults={"sms_enabled": True})
    backend = save_backend_settings(
        data={
            "name": "Gateway",
            "channel": "sms",
            "kind": "http",
            "url": gateway.url("/v1/messages"),
            "body_template": json.dumps({"to": "{to}", "text": "{body}", "ref": "{message_id}"}),
            "from_address": "Acme",
            "is_default": True,
            **extra,
        },
        actor="admin",
    )
    # As a successful test leaves it; this test is about sending.
    Backend.objects.filter(pk=backend.pk).update(health="ok", tested_version=1)
    return Backend.objects.get(pk=backend.pk)


def test_the_cap_holds_the_gateway_to_that_many_requests_at_once(
    gateway: GatewayTestServer, run_worker: Callable[..., Any]
) -> None:
    gateway.delay = 0.05
    backend = _gateway_backend(gateway, max_connections=2)
    # The Settings page shows the cap of an SMS backend as of an SMTP one.
    [row] = [r for r in backend_rows() if r.backend.pk == backend.pk]
    assert (row.max_connections, row.connections_open) == (2, 0)
    for i in range(12):
        queue_sms(to=f"+4915112345{i:03d}", body=f"Code {i}")
    for _ in range(30):
        if Message.objects.filter(status=Status.SENT).count() == 12:
            break
        run_worker(concurrency=4)
        # What found every slot taken is due again a second later.
        time.sleep(0.3)
    assert Message.objects.filter(status=Status.SENT).count() == 12
    assert len(gateway.requests) == 12
    assert gateway.peak == 2
    # Messages that found every slot taken were handed back, not attempted.
    assert set(Message.objects.values_list("attempt_count", flat=True)) == {1}
    assert not BackendSlot.objects.exists()


def test_without_a_cap_the_threads_send_side_by_side(
    gateway: GatewayTestServer, run_worker: Callable[..., Any]
) -> None:
    gateway.delay = 0.05
    _gateway_backend(gateway)
    for i in range(12):
        queue_sms(to=f"+4915112345{i:03d}", body=f"Code {i}")
    run_worker(concurrency=4)
    assert Message.objects.filter(status=Status.SENT).count() == 12
    assert gateway.peak > 2


def test_an_sms_message_id_takes_the_domain_the_platform_mails_from(
    gateway: GatewayTestServer, run_worker: Callable[..., Any]
) -> None:
    backend = _gateway_backend(gateway)
    GlobalSettings.objects.filter(pk=1).update(default_from="robot@platform.example")
    queue_sms(to="+4915112345678", body="Your code")
    run_worker()
    result = send_test_sms(backend, to="+4915112345679", actor="admin")
    assert result.ok, result.text
    refs = [r.json["ref"] for r in gateway.requests]
    assert len(refs) == 2
    assert all(re.fullmatch(r"<[0-9a-f.]+@platform\.example>", ref) for ref in refs), refs


def test_a_test_sms_to_a_blocked_number_is_refused_and_not_sent(
    gateway: GatewayTestServer,
) -> None:
    backend = _gateway_backend(gateway)
    Suppression.objects.create(kind="number", value="+4915112345679", reason="asked us to stop")
    with pytest.raises(InvalidInput) as refused:
        send_test_sms(backend, to="+49 151 12345679", actor="admin")
    assert "is on the blocklist as +4915112345679 (asked us to stop)" in str(
        refused.value.errors["to"]
    )
    assert gateway.requests == []
