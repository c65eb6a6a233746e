"""Server time of the Outgoing messages page over a million messages.

Fills a benchmark database (once; later runs reuse it) with N messages spread
over a year, then requests the page through Django's test client as a logged-in
administrator and prints the median and 95th percentile of the server time,
plain and with each filter, on SQLite and PostgreSQL.

    .venv/bin/python bench/pages.py [-n 1000000] [--requests 30] [--only sqlite]

The SQLite file is bench-pages.sqlite3 in OUTBOUND_VAR_DIR (default var/).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import ensure_pg_database  # noqa: E402

TARGET_MS = 300.0
STATUS_MIX = [
    ("sent", 900),
    ("not_sent", 50),
    ("waiting", 15),
    ("to_send", 15),
    ("backend_test_required", 10),
    ("cancelled", 10),
]


def _setup(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("OUTBOUND_LOG_LEVEL", "WARNING")
    import django

    django.setup()


def fill(n: int) -> None:
    from outbound.models import Message

    have = Message.objects.count()
    if have >= n:
        print(f"database already holds {have} messages")
    else:
        _fill_rows(n, have)
    # A production database keeps its statistics fresh (autovacuum); a table
    # just filled in bulk has none yet, and the planner needs them.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")


def _fill_rows(n: int, have: int) -> None:
    from django.db import transaction
    from django.utils import timezone

    from outbound.models import Backend, Message

    relay = Backend.objects.get_or_create(
        name="Relay", defaults={"host": "smtp.example.com", "is_default": True}
    )[0]
    spare = Backend.objects.get_or_create(name="Bulk relay", defaults={"host": "bulk.example"})[0]
    statuses = [s for s, weight in STATUS_MIX for _ in range(weight)]
    now = timezone.now()
    step = timedelta(days=365) / n
    start = time.perf_counter()
    chunk = 10_000
    for first in range(have, n, chunk):
        rows = []
        for i in range(first, min(first + chunk, n)):
            created = now - step * (n - i)
            status = statuses[i % len(statuses)]
            rows.append(
                Message(
                    channel="email",
                    to=[f"user{i}@example{i % 997}.com"],
                    message_to=f"user{i}@example{i % 997}.com",
                    to_user=f"User {i}",
                    from_address="noreply@platform.example",
                    subject=f"Task {i} is waiting for you",
                    text_body="Hello",
                    status=status,
                    reason_code="accepted" if status == "sent" else "queued",
                    reason_text="",
                    status_changed_at=created,
                    created_at=created,
                    send_at=created,
                    next_attempt_at=created if status in ("waiting", "to_send") else None,
                    sent_at=created if status == "sent" else None,
                    message_id=f"<{uuid.uuid4().hex}@platform.example>",
                    backend=relay if i % 10 else spare,
                    source="workflow",
                )
            )
        with transaction.atomic():
            Message.objects.bulk_create(rows, batch_size=2000)
        done = min(first + chunk, n)
        if done % 100_000 == 0 or done == n:
            rate = (done - have) / (time.perf_counter() - start)
            print(f"  filled {done} ({rate:.0f} rows/s)", flush=True)


def measure(requests: int) -> list[tuple[str, float, float]]:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from outbound.models import Backend

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    User = get_user_model()
    admin = User.objects.filter(username="bench-admin").first() or User.objects.create_superuser(
        "bench-admin", "", "bench-password-unused"
    )
    client = Client()
    client.force_login(admin)
    spare = Backend.objects.get(name="Bulk relay")
    from outbound.selectors import MessageFilters, message_page

    older = message_page(MessageFilters()).older
    cases = [
        ("plain", {}),
        ("status=not_sent", {"status": "not_sent"}),
        ("status=waiting", {"status": "waiting"}),
        ("channel=email", {"channel": "email"}),
        ("backend=Bulk relay", {"backend": str(spare.pk)}),
        ("date range (one week)", {"date_from": "2026-06-01", "date_to": "2026-06-07"}),
        ("text: common", {"q": "example1"}),
        ("text: one address", {"q": "user123456@"}),
        ("text: a rare name", {"q": "User 123456"}),
    ]
    if older is not None:
        cases.append(("second page (cursor)", {"before": older.encode()}))
    results = []
    for name, params in cases:
        times = []
        for _ in range(requests):
            start = time.perf_counter()
            response = client.get("/", params)
            times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, (name, response.status_code)
        times.sort()
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        results.append((name, statistics.median(times), p95))
    return results


def run(database: str, n: int, requests: int, pg_url: str) -> None:
    if database == "sqlite":
        var_dir = Path(os.environ.get("OUTBOUND_VAR_DIR", ROOT / "var"))
        var_dir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{var_dir / 'bench-pages.sqlite3'}"
    else:
        ensure_pg_database(pg_url)
        url = pg_url
    _setup(url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(f"\n{database}: Outgoing messages page over {n} messages, {requests} requests each")
    fill(n)
    print(f"{'case':<26}{'median ms':>12}{'p95 ms':>10}  target p95 < {TARGET_MS:.0f} ms")
    for name, median, p95 in measure(requests):
        mark = "ok" if p95 < TARGET_MS else "SLOW"
        print(f"{name:<26}{median:>12.1f}{p95:>10.1f}  {mark}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument(
        "--pg-url", default="postgres://postgres@127.0.0.1:5432/outbound_bench_pages"
    )
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    if args.only:
        run(args.only, args.n, args.requests, args.pg_url)
        return
    # Django is configured once per process: one process per database.
    for name in ("sqlite", "postgresql"):
        subprocess.run(
            [
                sys.executable,
                __file__,
                "-n",
                str(args.n),
                "--requests",
                str(args.requests),
                "--pg-url",
                args.pg_url,
                "--only",
                name,
            ],
            check=False,
        )


if __name__ == "__main__":
    main()
