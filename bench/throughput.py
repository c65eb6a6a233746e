"""Throughput of the outbox against a local SMTP sink, beside a raw smtplib
loop measured in the same run.

For each database (SQLite always; PostgreSQL when reachable) and each relay
(instant, 20 ms per message) it queues N messages with bulk intake, drains
them with a real worker in this process, and prints messages per second next
to raw smtplib sending the same bytes over one reused connection (and, for
the concurrency 8 cases, from 8 threads with a connection each: what the
sink itself takes at that concurrency). The last columns are the CPU time
per message of this process: the worker's threads while draining, and the
raw smtplib loop's (the sink runs in a process of its own). The raw loop
runs once before the worker and once after, and the rate shown is their
mean: on a shared machine the speed of the moment drifts, and one
measurement on one side only would tilt the ratio.

    .venv/bin/python bench/throughput.py [-n 10000] [--pg-url URL] [--only sqlite]
        [--processes 2] [--cases c1,c8,slow,path,c1v]

The ``c1v`` case is ``c1`` with the messages validated before the clock
starts: the worker claims, delivers and records them. The ``path`` case
times the delivery path alone (one thread, the messages
validated and claimed beforehand, the journal committed before each body,
the results recorded afterwards): what one worker at concurrency 1 could
reach if its bookkeeping cost nothing.

With ``--processes P`` the concurrency 8 cases run as ``outbound worker
--once --processes P --concurrency 8/P`` (P processes of 8/P threads); the
time then includes starting those processes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import smtplib
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import ensure_pg_database  # noqa: E402


def _setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("OUTBOUND_LOG_LEVEL", "WARNING")
    os.environ.setdefault("OUTBOUND_POLL_INTERVAL", "0.02")
    import django

    django.setup()


def _sink_process(delay: float, conn: Connection) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.smtpd import SmtpTestServer

    with SmtpTestServer(delay=delay) as server:
        conn.send((server.host, server.port))
        conn.recv()


@contextmanager
def sink(delay: float) -> Iterator[tuple[str, int]]:
    """The SMTP sink in a process of its own, as a real relay would be: in
    this process it would compete with the worker for the interpreter lock."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_sink_process, args=(delay, child), daemon=True)
    process.start()
    try:
        host, port = parent.recv()
        yield host, port
    finally:
        parent.send("stop")
        process.join(10)


def sample_message() -> bytes:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = "noreply@example.com"
    msg["To"] = "user@example.com"
    msg["Subject"] = "Message 0"
    msg["Message-ID"] = "<sample@example.com>"
    msg.set_content("Hello " * 40)
    return msg.as_bytes()


def raw_smtplib(address: tuple[str, int], n: int, payload: bytes) -> float:
    host, port = address
    with smtplib.SMTP(host, port) as client:
        start = time.perf_counter()
        for i in range(n):
            client.sendmail("noreply@example.com", [f"user{i}@example.com"], payload)
        elapsed = time.perf_counter() - start
    return n / elapsed


def _drain_in_processes(processes: int, concurrency: int) -> None:
    import subprocess

    from django.db import connection

    # The children read DATABASE_URL, which _setup_django set for this run.
    connection.close()
    env = dict(os.environ)
    outbound = str(Path(sys.executable).with_name("outbound"))
    command = [outbound, "worker", "--once", "--processes", str(processes)]
    command += ["--concurrency", str(concurrency // processes), "--name", "bench"]
    subprocess.run(command, env=env, check=True, stderr=subprocess.DEVNULL)


def raw_smtplib_threads(address: tuple[str, int], n: int, payload: bytes, threads: int) -> float:
    """Raw smtplib from ``threads`` threads, one reused connection each: what
    the sink itself can take at that concurrency."""
    from concurrent.futures import ThreadPoolExecutor

    host, port = address
    per_thread = max(n // threads, 1)

    def loop(t: int) -> None:
        with smtplib.SMTP(host, port) as client:
            for i in range(per_thread):
                client.sendmail("noreply@example.com", [f"user{t}.{i}@example.com"], payload)

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(loop, range(threads)))
    return per_thread * threads / (time.perf_counter() - start)


def _bench_backend(host: str, port: int) -> None:
    """The sink as the default backend, tested (so messages may leave)."""
    from outbound.models import Backend
    from outbound.services.backends import test_backend

    backend = Backend.objects.create(
        name="bench",
        host=host,
        port=port,
        security="none",
        from_address="noreply@example.com",
        is_default=True,
    )
    assert test_backend(backend).ok


def _queue(n: int) -> float:
    """Queue ``n`` messages with bulk intake, 1,000 a call; the intake rate."""
    from outbound.services.intake import queue_emails

    items = [
        {"to": f"user{i}@example.com", "subject": f"Message {i}", "text": "Hello " * 40}
        for i in range(n)
    ]
    start = time.perf_counter()
    for chunk in range(0, n, 1000):
        queue_emails(items[chunk : chunk + 1000])
    return n / (time.perf_counter() - start)


def _assert_all_sent(n: int) -> None:
    from outbound.models import Message
    from outbound.states import Status

    sent = Message.objects.filter(status=Status.SENT).count()
    assert sent == n, f"only {sent} of {n} sent"


def run_case(
    n: int, concurrency: int, delay: float, processes: int = 1, *, validated: bool = False
) -> dict[str, float]:
    """Queue ``n`` messages and drain them with the worker. With ``validated``
    the messages are validated before the clock starts (the worker only
    claims, delivers and records): what validation costs the drain."""
    from django.core.management import call_command

    from outbound.services.validation import validate_due
    from outbound.worker import Worker

    call_command("flush", interactive=False, verbosity=0)
    with sink(delay) as (host, port):
        _bench_backend(host, port)
        raw_n = min(n, 2000) if delay == 0 else min(n, 200)
        raw_before = raw_smtplib((host, port), raw_n, sample_message())
        intake_rate = _queue(n)
        while validated and validate_due(limit=1000):
            pass
        start = time.perf_counter()
        cpu = time.process_time()
        if processes > 1:
            _drain_in_processes(processes, concurrency)
        else:
            Worker(concurrency=concurrency, once=True, name="bench").run()
        drain_rate = n / (time.perf_counter() - start)
        # The worker's threads run in this process (the sink in its own).
        drain_cpu = (time.process_time() - cpu) / n if processes == 1 else 0.0
        _assert_all_sent(n)
        cpu = time.process_time()
        raw_rate = (raw_before + raw_smtplib((host, port), raw_n, sample_message())) / 2
        raw_cpu = (time.process_time() - cpu) / raw_n
        raw_threads = 0.0
        if concurrency > 1:
            raw_threads = raw_smtplib_threads(
                (host, port), raw_n * 2, sample_message(), concurrency
            )
    return {
        "intake": intake_rate,
        "drain": drain_rate,
        "raw": raw_rate,
        "raw_threads": raw_threads,
        "drain_cpu": drain_cpu,
        "raw_cpu": raw_cpu,
    }


def run_path_case(n: int) -> dict[str, float]:
    """The delivery path alone: the messages are validated and claimed
    before the clock starts, then one thread delivers them over one
    connection, committing each one's data-phase journal before its body, as
    the worker does; recording the results afterwards is not timed. What
    the worker adds beyond this is the bookkeeping done in the same
    interpreter meanwhile (validation, claim, recording)."""
    from django.core.management import call_command

    from outbound.services import dispatch
    from outbound.services.validation import validate_due

    call_command("flush", interactive=False, verbosity=0)
    with sink(0.0) as (host, port):
        _bench_backend(host, port)
        _queue(n)
        while validate_due(limit=1000):
            pass
        jobs: list[dispatch.Job] = []
        while batch := dispatch.claim_batch(worker="bench", limit=1000, lease=timedelta(hours=1)):
            jobs += batch
        raw_n = min(n, 2000)
        raw_before = raw_smtplib((host, port), raw_n, sample_message())
        deliverer = dispatch.Deliverer()
        start = time.perf_counter()
        cpu = time.process_time()
        outcomes = [deliverer.deliver(job) for job in jobs]
        drain_rate = len(jobs) / (time.perf_counter() - start)
        drain_cpu = (time.process_time() - cpu) / len(jobs)
        deliverer.close()
        for chunk in range(0, len(outcomes), 100):
            dispatch.record_outcomes(outcomes[chunk : chunk + 100])
        _assert_all_sent(n)
        cpu = time.process_time()
        raw_rate = (raw_before + raw_smtplib((host, port), raw_n, sample_message())) / 2
        raw_cpu = (time.process_time() - cpu) / raw_n
    return {
        "intake": 0.0,
        "drain": drain_rate,
        "raw": raw_rate,
        "raw_threads": 0.0,
        "drain_cpu": drain_cpu,
        "raw_cpu": raw_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=10000)
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/outbound_bench")
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument(
        "--processes", type=int, default=1, help="worker processes for the concurrency 8 cases"
    )
    parser.add_argument(
        "--cases",
        default="c1,c8,slow,path",
        help="any of c1,c1v,c8,slow,path (c1v: concurrency 1 with the messages validated "
        "beforehand; path: the delivery path alone, see run_path_case)",
    )
    args = parser.parse_args()
    database = args.only or os.environ.get("BENCH_DATABASE")
    if database is None:
        # Each database needs its own process (Django is configured once).
        import subprocess

        for name in ("sqlite", "postgresql"):
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "-n",
                    str(args.n),
                    "--pg-url",
                    args.pg_url,
                    "--only",
                    name,
                    "--processes",
                    str(args.processes),
                    "--cases",
                    args.cases,
                ],
                check=False,
            )
        return
    if database == "sqlite":
        tmp = tempfile.mkdtemp(dir=os.environ.get("OUTBOUND_VAR_DIR"))
        url = f"sqlite:///{tmp}/bench.sqlite3"
    else:
        ensure_pg_database(args.pg_url)
        url = args.pg_url
    _setup_django(url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(f"\n{database}: {args.n} messages per case")
    print(
        f"{'relay':<10}{'worker':<26}{'outbound msg/s':>16}{'raw smtplib msg/s':>20}"
        f"{'ratio':>8}{'raw, same threads':>19}{'intake msg/s':>14}"
        f"{'CPU ms/msg: worker':>20}{'raw':>6}"
    )
    cases = {
        "c1": (0.0, 1),
        "c1v": (0.0, 1),
        "c8": (0.0, 8),
        "slow": (0.02, 8),
        "path": (0.0, 1),
    }
    for case in args.cases.split(","):
        delay, concurrency = cases[case]
        n = args.n if delay == 0 else min(args.n, 3000)
        processes = args.processes if concurrency > 1 else 1
        if case == "path":
            r = run_path_case(n)
        else:
            r = run_case(n, concurrency, delay, processes, validated=case == "c1v")
        relay = "instant" if delay == 0 else "20 ms"
        worker_cpu = f"{r['drain_cpu'] * 1000:.2f}" if r["drain_cpu"] else "-"
        if case == "path":
            label = "delivery path only"
        elif case == "c1v":
            label = "concurrency 1, validated"
        elif processes > 1:
            label = f"{processes} proc x {concurrency // processes} threads"
        else:
            label = f"concurrency {concurrency}"
        # The 20 ms case is set beside the sink's own ceiling ("raw, same
        # threads"), not beside one raw connection: no ratio.
        ratio = f"{r['drain'] / r['raw']:.0%}" if delay == 0 else "-"
        print(
            f"{relay:<10}{label:<26}{r['drain']:>16.0f}"
            f"{r['raw']:>20.0f}{ratio:>8}"
            f"{(str(round(r['raw_threads'])) if r['raw_threads'] else '-'):>19}"
            f"{(str(round(r['intake'])) if r['intake'] else '-'):>14}"
            f"{worker_cpu:>20}"
            f"{r['raw_cpu'] * 1000:>6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
