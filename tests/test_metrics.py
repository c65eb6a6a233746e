"""/metrics: the Prometheus text format read from the database, after real
sends through a worker; open to loopback, elsewhere only with the token."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from outbound.models import Alert, WorkerHeartbeat
from outbound.services.intake import queue_email

pytestmark = pytest.mark.django_db(transaction=True)


def _scrape(client: Client, **extra: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics", **extra)
    assert r.status_code == 200, r.content
    assert r["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(r.content.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_metrics_after_real_sends_count_what_the_worker_did(
    smtp_server: Any, make_backend: Any, run_worker: Any
) -> None:
    make_backend(smtp_server, name="Relay")
    smtp_server.configure(rcpt_replies={"gone@example.com": "550 5.1.1 No such user"})
    queue_email(to="gone@example.com", subject="Hi", text="Hello")
    for n in range(3):
        queue_email(to=f"ann{n}@example.com", subject="Hi", text="Hello")
    run_worker()
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        name="w1", hostname="host-a", pid=1, started_at=now, last_seen=now - timedelta(seconds=4)
    )
    Alert.objects.create(kind="queue_stuck", key="queue", opened_at=now, subject="s", body="b")

    m = _scrape(Client())
    assert (
        m[("outbound_messages", (("backend", "Relay"), ("channel", "email"), ("status", "sent")))]
        == 3
    )
    assert (
        m[
            (
                "outbound_messages",
                (("backend", "Relay"), ("channel", "email"), ("status", "not_sent")),
            )
        ]
        == 1
    )
    assert not [k for k in m if k[0] == "outbound_messages" and ("status", "waiting") in k[1]]
    assert m[("outbound_oldest_due_message_age_seconds", ())] == 0
    assert m[("outbound_attempts_last_hour", (("result", "sent"),))] == 3
    assert m[("outbound_attempts_last_hour", (("result", "permanent"),))] == 1
    assert m[("outbound_attempts_last_hour", (("result", "transient"),))] == 0
    assert m[("outbound_due_to_sent_seconds_count", ())] == 3
    assert m[("outbound_due_to_sent_seconds_bucket", (("le", "+Inf"),))] == 3
    assert m[("outbound_due_to_sent_seconds_bucket", (("le", "60.0"),))] == 3
    assert 0 <= m[("outbound_due_to_sent_seconds_sum", ())] < 60
    assert m[("outbound_workers_alive", ())] == 1
    age = m[("outbound_worker_heartbeat_age_seconds", (("host", "host-a"), ("worker", "w1")))]
    assert 4 <= age < 60
    assert m[("outbound_open_alerts", (("kind", "queue_stuck"),))] == 1
    assert m[("outbound_open_alerts", (("kind", "no_worker"),))] == 0


def test_the_oldest_due_message_is_aged_from_its_due_time(db: None) -> None:
    queue_email(to="ann@example.com", subject="Hi", send_at=timezone.now() - timedelta(minutes=10))
    age = _scrape(Client())[("outbound_oldest_due_message_age_seconds", ())]
    assert 600 <= age < 700


def test_another_address_without_the_token_is_401(settings: Any) -> None:
    settings.OUTBOUND_METRICS_TOKEN = "s3cret-token"
    client = Client(REMOTE_ADDR="203.0.113.9")
    r = client.get("/metrics")
    assert r.status_code == 401
    assert b"outbound_messages" not in r.content
    assert r["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong-token").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="s3cret-token").status_code == 401
    scraped = _scrape(client, HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert scraped[("outbound_workers_alive", ())] == 0


def test_with_no_token_set_only_loopback_is_answered(settings: Any) -> None:
    settings.OUTBOUND_METRICS_TOKEN = ""
    client = Client(REMOTE_ADDR="10.0.0.7")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    assert _scrape(Client(REMOTE_ADDR="::1"))
