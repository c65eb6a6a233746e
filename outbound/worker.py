"""The `outbound worker` process: validate, claim, deliver, record, reap.

At concurrency 1 the main thread does it all in turn: it validates and
claims a batch, delivers it over one connection, journalling each attempt
before its body, and records the results; a heartbeat thread keeps the
leases and the heartbeat fresh meanwhile. One interpreter runs one thread
at a time, and handing each message between threads cost more than the
bookkeeping itself (bench/RESULTS.md, 2026-12-06).

At concurrency N > 1 the main thread validates, claims batches and keeps
leases and the heartbeat fresh; N delivery threads each keep their own connections and
commit the data-phase journal of the attempts about to send their body
(group commit: one thread writes every request waiting at that moment); one
recorder thread writes results in batches so the delivery threads never
wait for the database after the body has left. On SQLite these threads take
turns at one write lock, the journal first (services/writegate.py).
SIGTERM (or SIGINT) stops claiming, lets the messages being sent finish,
and hands back the claimed messages that were not started.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import close_old_connections, connection, connections
from django.utils import timezone

from outbound import conf
from outbound.errors import BackendConfigurationError
from outbound.logcontext import in_current_context, log_context
from outbound.models import GlobalSettings, WorkerHeartbeat
from outbound.services import alerts, dispatch, replays

logger = logging.getLogger(__name__)

_STOP = object()
ALERT_CHECK_INTERVAL = 60.0
# Leases last minutes (at least seconds): looking for expired ones once a
# second is soon enough, and every round cost a query per claimed batch.
REAP_INTERVAL = 1.0
RECORD_BATCH = 50
# How long a thread may keep the interpreter lock while another waits for
# it (Python's default is 5 ms): a delivery thread whose reply has arrived
# must not wait behind the recorder's or the claim's Python work.
SWITCH_INTERVAL = 0.0002
RECORD_GATHER_SECONDS = 0.05
# A delivery connection unused this long is closed (and its server slot freed).
IDLE_CLOSE_SECONDS = 30.0


@dataclass
class _JournalRequest:
    attempt_id: int
    # Set when the request is committed (``done``) or its thread is to
    # commit the next group.
    wake: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    error: str = ""
    # The backend changed or failed since the claim: the body must not leave.
    refused: bool = False


@dataclass
class WorkerStats:
    claimed: int = 0
    recorded: int = 0
    validated: int = 0
    reaped: int = 0


class Worker:
    def __init__(self, *, concurrency: int = 4, once: bool = False, name: str = "") -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self.once = once
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.tuning = conf.worker_tuning()
        self.lease = timedelta(seconds=self.tuning.lease_seconds)
        self.stopping = threading.Event()
        # Set when the main loop should look for work before its next poll:
        # the delivery queue ran low, or the worker is stopping.
        self._wake = threading.Event()
        self._low_water = max(concurrency * 2, self.tuning.batch_size // 2)
        self.jobs: queue.Queue[dispatch.Job | object] = queue.Queue()
        # Data-phase journal requests not yet committed, and how many
        # delivery threads are committing a group now. PostgreSQL commits
        # from several connections at once (one WAL flush serves them), so
        # two groups may be in flight; SQLite has one write lock.
        self._journal_lock = threading.Lock()
        self._journal_pending: list[_JournalRequest] = []
        self._journal_leaders = 0
        self._journal_max_leaders = 1 if connection.vendor == "sqlite" else 2
        # Results, for the recorder thread.
        self.writes: queue.Queue[object] = queue.Queue()
        self.in_flight: dict[uuid.UUID, int] = {}
        self.in_flight_lock = threading.Lock()
        self.failed_backends: dict[int, tuple[int, BackendConfigurationError]] = {}
        self.stats = WorkerStats()
        self._threads: list[threading.Thread] = []
        self._last_beat = 0.0
        self._last_alert_check = 0.0
        self._last_reap = -REAP_INTERVAL
        # Concurrency 1: the main thread delivers (see the module's docstring).
        self.inline = concurrency == 1
        self._deliverer: dispatch.Deliverer | None = None
        self._last_delivery = 0.0

    # ------------------------------------------------------------- lifecycle

    def request_stop(self, *_: object) -> None:
        if not self.stopping.is_set():
            logger.info("worker %s stopping: finishing messages in flight", self.name)
        self.stopping.set()
        self._wake.set()

    @contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        for s in old:
            signal.signal(s, self.request_stop)
        try:
            yield
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    def run(self) -> WorkerStats:
        switch = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL)
        try:
            return self._run()
        finally:
            sys.setswitchinterval(switch)

    def _run(self) -> WorkerStats:
        # Every line of this worker, its threads' included, names it.
        with self._signals(), log_context(worker=self.name):
            self._beat(force=True)
            self._start_threads()
            try:
                self._loop()
            finally:
                self._shutdown()
        return self.stats

    def _start_threads(self) -> None:
        if self.inline:
            beat = threading.Thread(
                target=in_current_context(self._beat_loop), name="heartbeat", daemon=True
            )
            beat.start()
            self._threads.append(beat)
            return
        for i in range(self.concurrency):
            t = threading.Thread(
                target=in_current_context(self._deliver_loop), name=f"deliver-{i}", daemon=True
            )
            t.start()
            self._threads.append(t)
        recorder = threading.Thread(
            target=in_current_context(self._write_loop), name="writer", daemon=True
        )
        recorder.start()
        self._recorder = recorder

    def _loop(self) -> None:
        while not self.stopping.is_set():
            self._wake.clear()
            try:
                busy = self._step()
                if busy:
                    continue
                # With --once: nothing could be validated or claimed this
                # round (what is left waits for its time, a paused backend or
                # a rate limit) and nothing is in flight.
                if self.once and self._idle():
                    break
            except Exception:
                # A database hiccup must not kill the worker: log, drop the
                # connection, pause, and go on. Claimed work is protected by
                # leases and fencing.
                logger.exception("worker %s: error in the main loop", self.name)
                connections.close_all()
                self.stopping.wait(1.0)
                continue
            # Until the next poll, or until the delivery queue runs low.
            self._wake.wait(self.tuning.poll_interval if not self.once else 0.05)

    def _step(self) -> int:
        """One round: reap, and when the delivery queue runs low, claim what is
        To send and validate (and claim at once) what is Waiting; heartbeat.

        Validation keeps pace with delivery rather than running ahead: a
        message validated when a delivery thread is ready for it goes
        straight to that thread, with nothing read twice. Meanwhile a
        backlog stays Waiting.

        Returns how many messages it validated or claimed.
        """
        low_water = self._low_water
        if time.monotonic() - self._last_reap >= REAP_INTERVAL:
            # Broken or expired connections are dropped on the reaper's beat:
            # on SQLite (no persistent connections) every round reopened the
            # database file and ran its PRAGMAs again.
            close_old_connections()
            self._last_reap = time.monotonic()
            self.stats.reaped += dispatch.reap_expired()
        if self.inline:
            return self._step_inline()
        validated = claimed = 0
        if self.jobs.qsize() < low_water:
            # Retries, released and handed-back messages first: they are older.
            claimed = self._enqueue(
                dispatch.claim_batch(
                    worker=self.name, limit=self.tuning.batch_size, lease=self.lease
                )
            )
            if self.jobs.qsize() < low_water:
                validated, fresh = dispatch.validate_and_claim(
                    worker=self.name, limit=self.tuning.batch_size, lease=self.lease
                )
                self.stats.validated += validated
                claimed += self._enqueue(fresh)
        self._beat()
        self._housekeeping()
        return validated + claimed

    def _housekeeping(self) -> None:
        if time.monotonic() - self._last_alert_check > ALERT_CHECK_INTERVAL:
            self._last_alert_check = time.monotonic()
            alerts.check_alerts()
            # Housekeeping on the same beat: stored API answers expire after a day.
            replays.prune_replays()

    def _step_inline(self) -> int:
        """Concurrency 1: claim a batch (retries and handed-back messages
        first, then validate what is Waiting), deliver it here, one message
        after the other, and record the results as they gather. A stop
        request hands back what was not started."""
        limit = self.tuning.batch_size
        jobs = dispatch.claim_batch(worker=self.name, limit=limit, lease=self.lease)
        validated = 0
        if len(jobs) < self._low_water:
            validated, fresh = dispatch.validate_and_claim(
                worker=self.name, limit=limit - len(jobs), lease=self.lease
            )
            self.stats.validated += validated
            jobs += fresh
        # Retries and fresh messages come under two claim tokens.
        self._register(jobs)
        self.stats.claimed += len(jobs)
        try:
            # Before the batch is sent, as the threaded worker does while its
            # delivery threads send; a failure here must not keep the batch
            # from going out.
            try:
                self._housekeeping()
            except Exception:
                logger.exception("worker %s: alert check failed", self.name)
            if jobs:
                self._deliver_inline(jobs)
            elif self._deliverer and time.monotonic() - self._last_delivery > IDLE_CLOSE_SECONDS:
                self._deliverer.close()
        finally:
            # After an error nothing more of this batch is sent or recorded
            # here: its leases are no longer kept, and the reaper takes the
            # messages back when they run out (as after a crash).
            with self.in_flight_lock:
                self.in_flight.clear()
        return validated + len(jobs)

    def _deliver_inline(self, jobs: list[dispatch.Job]) -> None:
        if self._deliverer is None:
            self._deliverer = self._new_deliverer()
        pending: list[dispatch.Outcome] = []
        try:
            settings = GlobalSettings.load()
            gather_until = 0.0
            for index, job in enumerate(jobs):
                if self.stopping.is_set():
                    left = jobs[index:]
                    dispatch.release_jobs(left)
                    self._done([j.claim_token for j in left])
                    break
                # While the server takes in this body, the next one is built.
                after = jobs[index + 1] if index + 1 < len(jobs) else None
                prepare = functools.partial(dispatch.Deliverer.prepare, after) if after else None
                outcome = self._deliver_one(self._deliverer, job, meanwhile=prepare)
                if outcome is not None:
                    if not pending:
                        gather_until = time.monotonic() + RECORD_GATHER_SECONDS
                    pending.append(outcome)
                if len(pending) >= RECORD_BATCH or (pending and time.monotonic() >= gather_until):
                    batch, pending = pending, []
                    self._record(batch, settings)
            if pending:
                batch, pending = pending, []
                self._record(batch, settings)
        finally:
            self._last_delivery = time.monotonic()

    def _register(self, jobs: list[dispatch.Job]) -> None:
        """Count the jobs in flight under their claim tokens (the heartbeat
        extends the leases by token)."""
        with self.in_flight_lock:
            for job in jobs:
                token = job.claim_token
                self.in_flight[token] = self.in_flight.get(token, 0) + 1

    def _enqueue(self, batch: list[dispatch.Job]) -> int:
        if batch:
            self._register(batch)
            for job in batch:
                self.jobs.put(job)
            self.stats.claimed += len(batch)
        return len(batch)

    def _idle(self) -> bool:
        with self.in_flight_lock:
            return not self.in_flight

    def _shutdown(self) -> None:
        self.stopping.set()
        # Jobs not yet started go back to the queue for another worker.
        unstarted: list[dispatch.Job] = []
        while True:
            try:
                item = self.jobs.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, dispatch.Job):
                unstarted.append(item)
        if unstarted:
            released = dispatch.release_jobs(unstarted)
            self._done([j.claim_token for j in unstarted])
            logger.info("worker %s released %s unstarted messages", self.name, released)
        deadline = time.monotonic() + self.tuning.lease_seconds
        if self.inline:
            # The main thread finished its batch (or handed it back) before
            # coming here; the heartbeat thread sees ``stopping``.
            if self._deliverer is not None:
                self._deliverer.close()
        else:
            for _ in self._threads:
                self.jobs.put(_STOP)
        for t in self._threads:
            t.join(timeout=max(deadline - time.monotonic(), 0.1))
        if not self.inline:
            self.writes.put(_STOP)
            self._recorder.join(timeout=max(deadline - time.monotonic(), 1))
        WorkerHeartbeat.objects.filter(name=self.name).update(
            stopped_at=timezone.now(), last_seen=timezone.now(), processed=self.stats.recorded
        )

    # --------------------------------------------------------------- threads

    def _new_deliverer(self) -> dispatch.Deliverer:
        return dispatch.Deliverer(
            journal=self._journal,
            holder=f"{self.name}/{threading.current_thread().name}",
            slot_lease=self.lease,
        )

    def _deliver_loop(self) -> None:
        deliverer = self._new_deliverer()
        try:
            while True:
                try:
                    item = self.jobs.get(timeout=IDLE_CLOSE_SECONDS)
                except queue.Empty:
                    # Idle: do not hold connections (and their server slots) open.
                    deliverer.close()
                    continue
                if item is _STOP:
                    break
                assert isinstance(item, dispatch.Job)
                if self.jobs.qsize() < self._low_water:
                    self._wake.set()
                if self.stopping.is_set():
                    dispatch.release_jobs([item])
                    self._done([item.claim_token])
                    continue
                outcome = self._deliver_one(deliverer, item)
                if outcome is not None:
                    self.writes.put(outcome)
        finally:
            deliverer.close()
            connections.close_all()

    def _deliver_one(
        self,
        deliverer: dispatch.Deliverer,
        job: dispatch.Job,
        meanwhile: Callable[[], None] | None = None,
    ) -> dispatch.Outcome | None:
        """Deliver one claimed job; its outcome to record, or None when
        there is nothing to record (handed back, or left to the reaper)."""
        try:
            with log_context(
                message_id=job.message_id, backend_id=job.backend_id, claim_token=job.claim_token
            ):
                outcome = deliverer.deliver(
                    job, failed_backends=self.failed_backends, meanwhile=meanwhile
                )
        except Exception:  # the worker goes on whatever one message does
            logger.exception(
                "unexpected error delivering message %s",
                job.message_id,
                extra={"message_id": str(job.message_id), "backend_id": str(job.backend_id)},
            )
            # Nothing to record: the heartbeat stops keeping its lease,
            # which then expires, and the reaper takes the message back as
            # after a crash (possibly delivered if its journal says the body
            # may have left). Without this a --once worker would wait for it
            # for ever.
            self._done([job.claim_token])
            return None
        if outcome.busy:
            dispatch.release_jobs([job], delay=dispatch.BUSY_RETRY)
            self._done([job.claim_token])
            return None
        return outcome

    def _beat_loop(self) -> None:
        """Concurrency 1: the heartbeat beside the main thread, which may be
        waiting on a slow server while the leases run."""
        try:
            while not self.stopping.wait(self.tuning.heartbeat_interval):
                try:
                    self._beat(force=True)
                except Exception:
                    logger.exception("worker %s: heartbeat failed", self.name)
                    connections.close_all()
        finally:
            connections.close_all()

    def _journal(self, attempt_id: int) -> Callable[[], None]:
        """The data-phase journal of one attempt, as a function the transport
        calls before the message body leaves (with PIPELINING, right after
        the envelope was written, so the commit runs while the server reads
        it). It returns once the attempt's journal is committed, raising
        ``JournalError`` or ``BackendChanged`` when the body must not leave.

        Group commit without a thread of its own: the first delivery thread
        to ask commits every request waiting at that moment (its own
        included), on its own database connection; those that ask meanwhile
        wait, and the first of them commits the next group. With one
        delivery thread every journal is written where it is needed, with no
        hand-over between threads."""
        request = _JournalRequest(attempt_id)
        timeout = self.tuning.lease_seconds

        def wait() -> None:
            self._journal_group(request, timeout)
            if request.error:
                raise dispatch.JournalError(request.error)
            if request.refused:
                raise dispatch.BackendChanged()

        return wait

    def _journal_group(self, request: _JournalRequest, timeout: float) -> None:
        with self._journal_lock:
            self._journal_pending.append(request)
            lead = self._journal_leaders < self._journal_max_leaders
            if lead:
                self._journal_leaders += 1
        if not lead:
            if not request.wake.wait(timeout=timeout):
                with self._journal_lock:
                    if not request.wake.is_set():
                        self._journal_pending.remove(request)
                        raise dispatch.JournalError("the journal did not answer in time")
            if request.done:
                return
            # Promoted: the previous group's committer handed over to us.
        with self._journal_lock:
            group, self._journal_pending = self._journal_pending, []
        try:
            self._commit_journal(group)
        finally:
            with self._journal_lock:
                # The first waiter not yet woken commits the next group (one
                # woken already is about to, for another committer).
                waiting = [r for r in self._journal_pending if not r.wake.is_set()]
                if waiting:
                    waiting[0].wake.set()
                else:
                    self._journal_leaders -= 1

    def _write_loop(self) -> None:
        """The worker's recorder: results are gathered for a moment and
        written in small transactions."""
        settings = GlobalSettings.load()
        pending: list[dispatch.Outcome] = []
        gather_until = 0.0
        stop = False
        try:
            while not stop or pending:
                item: object | None
                if stop:
                    item = None
                else:
                    left = gather_until - time.monotonic()
                    try:
                        if not pending:
                            item = self.writes.get()
                        elif left > 0:
                            item = self.writes.get(timeout=left)
                        else:
                            item = self.writes.get_nowait()
                    except queue.Empty:
                        item = None
                while item is not None:
                    if item is _STOP:
                        stop = True
                    else:
                        assert isinstance(item, dispatch.Outcome)
                        if not pending:
                            gather_until = time.monotonic() + RECORD_GATHER_SECONDS
                        pending.append(item)
                    try:
                        item = self.writes.get_nowait()
                    except queue.Empty:
                        item = None
                due = stop or len(pending) >= RECORD_BATCH or time.monotonic() >= gather_until
                if pending and due:
                    batch, pending = pending[:RECORD_BATCH], pending[RECORD_BATCH:]
                    gather_until = time.monotonic()
                    self._record(batch, settings)
        finally:
            connections.close_all()

    def _commit_journal(self, requests: list[_JournalRequest]) -> None:
        try:
            journalled = dispatch.journal_data_phase([r.attempt_id for r in requests])
            for r in requests:
                r.refused = r.attempt_id not in journalled
        except Exception as err:  # the bodies are not sent; the messages are retried
            logger.exception("could not journal %s attempts", len(requests))
            for r in requests:
                r.error = f"the journal could not be written: {err.__class__.__name__}"
        for r in requests:
            r.done = True
            r.wake.set()

    def _record(self, batch: list[dispatch.Outcome], settings: GlobalSettings) -> None:
        try:
            dispatch.record_outcomes(batch, settings=settings)
        except Exception:
            # Unrecorded results are reaped after the lease: an attempt that
            # reached data is then marked possibly delivered.
            logger.exception("could not record %s outcomes", len(batch))
        self.stats.recorded += len(batch)
        self._done([o.job.claim_token for o in batch])

    def _done(self, tokens: list[uuid.UUID]) -> None:
        with self.in_flight_lock:
            for token in tokens:
                left = self.in_flight.get(token, 0) - 1
                if left <= 0:
                    self.in_flight.pop(token, None)
                else:
                    self.in_flight[token] = left

    # ------------------------------------------------------------- heartbeat

    def _beat(self, *, force: bool = False) -> None:
        now_mono = time.monotonic()
        if not force and now_mono - self._last_beat < self.tuning.heartbeat_interval:
            return
        self._last_beat = now_mono
        now = timezone.now()
        with self.in_flight_lock:
            tokens = list(self.in_flight)
        dispatch.extend_leases(tokens, lease=self.lease)
        dispatch.renew_slots(holder_prefix=f"{self.name}/", lease=self.lease)
        WorkerHeartbeat.objects.update_or_create(
            name=self.name,
            defaults={
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "concurrency": self.concurrency,
                "last_seen": now,
                "processed": self.stats.recorded,
                "stopped_at": None,
            },
            create_defaults={
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "concurrency": self.concurrency,
                "started_at": now,
                "last_seen": now,
            },
        )


# ------------------------------------------------------------ supervisor

# A child that crashes more often than this within RESTART_WINDOW seconds is
# not restarted again: the supervisor stops the others and exits 1.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0


def worker_command(concurrency: int) -> list[str]:
    """The command line of one ``outbound worker`` child process, run by this
    Python whether or not the ``outbound`` script is on the PATH."""
    return [
        sys.executable,
        "-c",
        "import sys; from outbound.cli import main; main(['outbound', *sys.argv[1:]])",
        "worker",
        "--concurrency",
        str(concurrency),
    ]


class Supervisor:
    """``outbound worker --processes N``: N worker processes, each with its own
    delivery threads and database connection, so they run on separate cores
    (one interpreter lock per process).

    The parent does no database work. It forwards SIGTERM/SIGINT to the
    children and waits for them (each finishes what it is sending and hands
    the rest back); it restarts a child that dies on its own (what the child
    had claimed is reaped after its lease, like any lost worker's), and gives
    up with exit status 1 when children keep crashing. With ``once`` it
    returns when every child has found nothing more to do.
    """

    def __init__(
        self, *, processes: int, concurrency: int, once: bool = False, name: str = ""
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be at least 1")
        self.processes = processes
        self.concurrency = concurrency
        self.once = once
        self.name = name
        self.stopping = threading.Event()
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.restarts: list[float] = []
        self.generation = 0

    def _command(self, index: int) -> list[str]:
        command = worker_command(self.concurrency)
        if self.once:
            command.append("--once")
        if self.name:
            # A restarted child gets a name of its own: connection slots and
            # heartbeats are keyed by name, and the dead one's must expire.
            suffix = f"r{self.generation}" if self.generation else ""
            command += ["--name", f"{self.name}-{index}{suffix}"]
        return command

    def _start(self, index: int) -> None:
        self.children[index] = subprocess.Popen(self._command(index))

    def request_stop(self, *_: object) -> None:
        self.stopping.set()

    def run(self) -> int:
        """Run the children until stopped (or, with ``once``, done); the exit status."""
        old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        for s in old:
            signal.signal(s, self.request_stop)
        try:
            for i in range(self.processes):
                self._start(i)
            status = self._supervise()
        finally:
            self._stop_children()
            for s, handler in old.items():
                signal.signal(s, handler)
        return status

    def _supervise(self) -> int:
        finished: set[int] = set()
        while not self.stopping.wait(0.2):
            for index, child in list(self.children.items()):
                code = child.poll()
                if code is None or index in finished:
                    continue
                if code == 0 and self.once:
                    finished.add(index)
                    continue
                now = time.monotonic()
                self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW] + [now]
                if len(self.restarts) > MAX_RESTARTS:
                    logger.error(
                        "worker process %s exited with %s; too many restarts, stopping",
                        child.pid,
                        code,
                    )
                    return 1
                logger.warning("worker process %s exited with %s; restarting", child.pid, code)
                self.generation += 1
                self._start(index)
            if self.once and len(finished) == len(self.children):
                return 0
        return 0

    def _stop_children(self) -> None:
        running = [c for c in self.children.values() if c.poll() is None]
        for child in running:
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + conf.worker_tuning().lease_seconds + 30
        for child in running:
            try:
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                logger.error("worker process %s did not stop in time; killing it", child.pid)
                child.kill()
                child.wait()
