"""Asynchronous delivery: a bounded queue and one writer thread per process."""

from __future__ import annotations

import atexit
import collections
import threading
import time

from ...storage.row import Values
from ..mapping import Pending, build_values
from .batch import BatchStore, DatabaseDown, Outcome
from .breaker import CircuitBreaker
from .protocol import ForkGuard, weak_method


class BackgroundDelivery:
    """Queues events on the caller's thread; a writer thread inserts them in batches.

    ``deliver`` does no I/O, takes no lock and never waits: a full queue
    drops the new event (counted as ``queue_full``). The writer thread starts
    on first use; it takes up to ``batch_size`` events when that many are
    queued or every ``flush_interval`` seconds, and inserts each batch with
    one executemany. A failed batch is retried ``max_retries`` times with
    exponential backoff on the writer thread, then dropped
    (``storage_error``); while the breaker is open the writer waits for the
    cool-down instead of trying, and new events pile up to the queue size.

    Pre-fork servers: in a child process (``os.register_at_fork``, and a pid
    check for servers that fork without running Python's fork hooks) the
    queue, the counters and the thread start afresh and the parent's pooled
    connections are never used.

    Shutdown: at interpreter exit (``atexit``, which gunicorn workers run as
    they exit) or on :meth:`close`, the queue is flushed for at most
    ``shutdown_timeout`` seconds. What is still queued then, and a batch
    whose INSERT is still running, is counted as ``shutdown``.
    """

    def __init__(
        self,
        store: BatchStore,
        breaker: CircuitBreaker,
        *,
        queue_size: int,
        batch_size: int,
        flush_interval: float,
        shutdown_timeout: float,
        max_retries: int,
        retry_backoff: float,
    ) -> None:
        self.store = store
        self.breaker = breaker
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.shutdown_timeout = shutdown_timeout
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self._setup()
        self._fork = ForkGuard(self)
        atexit.register(weak_method(self, "close"))

    def _setup(self) -> None:
        self._queue: collections.deque[Pending] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._stopped = False  # _stop.is_set(), read without a call on each put
        self._idle = threading.Condition()
        self._busy = 0  # events taken by the writer and not yet counted
        self._abandoned = False
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- request thread ---------------------------------------------------

    def deliver(self, event: Pending) -> None:
        """Queue an event's checked values; the writer thread builds the row.
        Never blocks, never raises for a full queue."""
        self._fork.check()
        queue = self._queue
        if len(queue) >= self.queue_size:
            self.store.stats.drop("queue_full")
            return
        if self._stopped:
            self.store.stats.drop("shutdown")
            return
        queue.append(event)
        if self._thread is None:
            self._start()
        if self._stopped:
            self._reclaim(event)
        elif len(queue) >= self.batch_size and not self._wake.is_set():
            self._wake.set()

    def _reclaim(self, event: Pending) -> None:
        # Queued while close() ran: whoever takes the event out counts it.
        try:
            self._queue.remove(event)
        except ValueError:
            return  # close() or the writer took it
        self.store.stats.drop("shutdown")

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(
                    target=self._run, name="flask_telemetry-writer", daemon=True
                )
                thread.start()
                self._thread = thread

    def depth(self) -> int:
        """Events queued or being written, not yet counted."""
        return len(self._queue) + self._busy

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is written or dropped."""
        self._fork.check()
        if self._thread is None:
            return not self._queue
        self._wake.set()
        with self._idle:
            return self._idle.wait_for(
                lambda: not self._queue and not self._busy, timeout
            )

    def close(self, timeout: float | None = None) -> None:
        """Flush with a deadline, stop the writer, count what is left."""
        self._fork.check()
        if self._stop.is_set():
            return
        budget = self.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        self.flush(budget)
        self._stopped = True
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            # The writer stops at its next wait; only a database call already
            # under way (bounded by the writer's timeouts) can outlast this.
            thread.join(max(0.05, deadline - time.monotonic()))
        with self._idle:
            if self._busy:
                self._abandoned = True
                self.store.stats.drop("shutdown", self._busy)
                self._busy = 0
        left = 0
        while True:
            try:
                self._queue.popleft()
            except IndexError:
                break
            left += 1
        if left:
            self.store.stats.drop("shutdown", left)
            self.store.log.error(
                "shutdown", "Telemetry shutdown: %d queued event(s) not stored", left
            )

    def after_fork(self) -> None:
        """In a child: fresh queue, locks, counters and thread, and a fresh
        pool for the writer's engine."""
        self._setup()
        self.store.after_fork()

    # -- writer thread ----------------------------------------------------

    def _run(self) -> None:
        queue = self._queue
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            while queue and not self._stop.is_set():
                with self._idle:
                    size = min(self.batch_size, len(queue))
                    batch = [queue.popleft() for _ in range(size)]
                    self._busy = size
                outcome = Outcome()
                try:
                    self._store(batch, outcome)
                except Exception as exc:  # never let the thread die
                    outcome = Outcome()
                    outcome.drop("storage_error", len(batch))
                    self.store.log.error(
                        "writer", "Telemetry writer failed: %r", exc, exc=True
                    )
                with self._idle:
                    if not self._abandoned:
                        self.store.count(outcome)
                        self._busy = 0
                    self._idle.notify_all()
            with self._idle:
                self._idle.notify_all()

    def _store(self, batch: list[Pending], outcome: Outcome) -> None:
        rows = self.store.validate(self._build(batch, outcome), outcome)
        attempt = 0
        while rows:
            wait = self.breaker.remaining()
            if wait and self._stop.wait(wait):
                break  # shutting down while the database is out
            if not self.breaker.allow():
                if self._stop.wait(0.05):
                    break
                continue
            try:
                self.store.insert(rows, outcome)
            except DatabaseDown as exc:
                rows = exc.remaining
                self.breaker.failure()
                attempt += 1
                if not exc.failure.retryable or attempt > self.max_retries:
                    break
                self.store.log.error(
                    "db", "Telemetry batch failed, retrying: %s", exc.failure
                )
                if self._stop.wait(self.retry_backoff * 2 ** (attempt - 1)):
                    break
                continue
            self.breaker.success()
            return
        reason = "shutdown" if self._stop.is_set() else "storage_error"
        outcome.drop(reason, len(rows))
        if rows:
            self.store.log.error(
                "db", "Dropped %d telemetry event(s): storage failed", len(rows)
            )

    def _build(self, batch: list[Pending], outcome: Outcome) -> list[Values]:
        events = []
        for pending in batch:
            try:
                events.append(build_values(pending))
            except Exception as exc:  # our own bug: count it, keep the rest
                outcome.drop("invalid")
                self.store.log.error(
                    "build", "Telemetry could not build an event: %r", exc, exc=True
                )
        return events
