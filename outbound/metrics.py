"""The Prometheus metrics of /metrics, read from the database at each scrape.

A custom collector rather than counters kept in memory: the web process that
is scraped sends nothing, the workers are other processes (and hosts), and
the database is where every one of them writes. Each family is one grouped
or indexed query (the README lists what each costs); none reads per message.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from outbound.models import Alert, Attempt, Backend, Message
from outbound.selectors import oldest_due, worker_rows
from outbound.states import Status

# Seconds from a message's due time to Sent: a relay answering at once lands
# in the first buckets, a retry schedule in the last.
DELAY_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)
# The window of the histogram and of the attempt counts: recent enough to
# read from an index range, long enough for a scrape every minute.
WINDOW = timedelta(hours=1)


class OutboundCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        yield self._messages()
        yield self._oldest_due(now)
        yield self._attempts(now)
        yield self._due_to_sent(now)
        yield from self._workers(now)
        yield self._alerts()

    def _messages(self) -> Metric:
        family = GaugeMetricFamily(
            "outbound_messages",
            "Messages by status, channel and backend (none: no backend chosen yet).",
            labels=["status", "channel", "backend"],
        )
        names = dict(Backend.objects.values_list("pk", "name"))
        rows = Message.objects.values("status", "channel", "backend_id").annotate(n=Count("id"))
        for row in rows.order_by():
            backend = names.get(row["backend_id"], "none")
            family.add_metric([row["status"], row["channel"], backend], row["n"])
        return family

    def _oldest_due(self, now: datetime) -> Metric:
        due = oldest_due(now)
        age = max((now - due).total_seconds(), 0.0) if due is not None else 0.0
        return GaugeMetricFamily(
            "outbound_oldest_due_message_age_seconds",
            "How long the oldest due Waiting or To send message has been due (0: none due).",
            value=age,
        )

    def _attempts(self, now: datetime) -> Metric:
        family = GaugeMetricFamily(
            "outbound_attempts_last_hour",
            "Delivery attempts started in the last hour, by result class.",
            labels=["result"],
        )
        counts = dict.fromkeys(Attempt.Outcome.values, 0)
        rows = Attempt.objects.filter(started_at__gte=now - WINDOW).values("outcome")
        for row in rows.annotate(n=Count("id")).order_by():
            counts[row["outcome"]] = row["n"]
        for outcome, n in counts.items():
            family.add_metric([outcome], n)
        return family

    def _due_to_sent(self, now: datetime) -> Metric:
        # Messages due in the last hour and Sent: a range of msg_status_send_at.
        sent = Message.objects.filter(
            status=Status.SENT, send_at__gte=now - WINDOW, sent_at__isnull=False
        )
        delay = ExpressionWrapper(F("sent_at") - F("send_at"), output_field=DurationField())
        buckets = {
            f"le{i}": Count("id", filter=Q(sent_at__lte=F("send_at") + timedelta(seconds=b)))
            for i, b in enumerate(DELAY_BUCKETS)
        }
        got = sent.aggregate(total=Count("id"), delay=Sum(delay), **buckets)
        total_delay: timedelta | None = got["delay"]
        family = HistogramMetricFamily(
            "outbound_due_to_sent_seconds",
            "Time from due to Sent of the messages due in the last hour that are Sent.",
        )
        family.add_metric(
            [],
            [(str(b), got[f"le{i}"]) for i, b in enumerate(DELAY_BUCKETS)]
            + [("+Inf", got["total"])],
            max(total_delay.total_seconds(), 0.0) if total_delay else 0.0,
        )
        return family

    def _workers(self, now: datetime) -> Iterator[Metric]:
        rows = worker_rows(now)
        yield GaugeMetricFamily(
            "outbound_workers_alive",
            "Worker processes heard from within the silence threshold.",
            value=sum(1 for r in rows if r.alive),
        )
        ages = GaugeMetricFamily(
            "outbound_worker_heartbeat_age_seconds",
            "Seconds since each running worker process's last heartbeat.",
            labels=["worker", "host"],
        )
        for r in rows:
            if r.worker.stopped_at is None:
                ages.add_metric([r.worker.name, r.worker.hostname], r.silent_for.total_seconds())
        yield ages

    def _alerts(self) -> Metric:
        family = GaugeMetricFamily("outbound_open_alerts", "Open alerts by kind.", labels=["kind"])
        counts = dict.fromkeys(Alert.Kind.values, 0)
        rows = Alert.objects.filter(closed_at__isnull=True).values("kind").annotate(n=Count("id"))
        for row in rows.order_by():
            counts[row["kind"]] = row["n"]
        for kind, n in counts.items():
            family.add_metric([kind], n)
        return family
