"""Asynchronous delivery: a queue bounded in events and bytes, one writer thread."""

from __future__ import annotations

import atexit
import collections
import multiprocessing.util
import os
import threading
import time
import typing as t

from ...storage.pacing import paced
from ...storage.row import Values
from ..mapping import Pending, build_values
from .batch import BatchStore, DatabaseDown, Outcome, Row
from .breaker import CircuitBreaker, say_open
from .protocol import ForkGuard, weak_method
from .size import pending_bytes

_getpid = os.getpid


class BackgroundDelivery:
    """Queues events on the caller's thread; a writer thread inserts them in batches.

    ``deliver`` does no I/O and never waits: a queue holding ``queue_size``
    events or ``max_bytes`` bytes (an estimate of what the events queued or
    in the writer's hands occupy in memory, see
    :func:`.size.pending_bytes`) drops the new event
    (counted as ``queue_full``). The writer thread starts on first use; it
    takes up to ``batch_size`` events when that many are queued or every
    ``flush_interval`` seconds, and inserts each batch with one executemany.
    A failed batch is retried ``max_retries`` times with exponential backoff
    on the writer thread, then dropped (``storage_error``); while the breaker
    is open the writer waits for the cool-down instead of trying (or, with
    ``wait_for_breaker=False``, drops the batch as ``breaker_open``). A
    failure that took ``trip_after`` seconds or more (a timeout) opens the
    breaker at once.

    Idle: once ``idle_disconnect`` seconds have passed without a write, the
    writer releases what the store holds (the connection of telemetry's own
    pool, see :meth:`.BatchStore.release`), so that a quiet process holds
    no connection; the next batch opens one again. ``None`` keeps it.

    Pre-fork servers: in a child process (``os.register_at_fork``, and a pid
    check for servers that fork without running Python's fork hooks) the
    queue, the counters and the thread start afresh and the parent's pooled
    connections are never used.

    Shutdown: at interpreter exit (``atexit``, which gunicorn workers run as
    they exit; ``multiprocessing`` children, which end with ``os._exit``, run
    it through ``multiprocessing.util.Finalize``) or on :meth:`close`, the
    queue is flushed for at most ``shutdown_timeout`` seconds. What is still
    queued then is counted as ``shutdown``, and so is a batch whose INSERT
    is still running; if that INSERT ends after all, its events are counted
    again as what became of them (``written`` if it committed), never as
    both.
    """

    def __init__(
        self,
        store: BatchStore,
        breaker: CircuitBreaker,
        *,
        queue_size: int,
        max_bytes: int,
        batch_size: int,
        flush_interval: float,
        shutdown_timeout: float,
        max_retries: int,
        retry_backoff: float,
        wait_for_breaker: bool = True,
        trip_after: float | None = None,
        idle_disconnect: float | None = None,
    ) -> None:
        self.store = store
        self.breaker = breaker
        self.queue_size = queue_size
        self.max_bytes = max_bytes
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.shutdown_timeout = shutdown_timeout
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.wait_for_breaker = wait_for_breaker
        self.trip_after = trip_after
        self.idle_disconnect = idle_disconnect
        self._setup()
        self._fork = ForkGuard(self)
        atexit.register(weak_method(self, "close"))

    def _setup(self) -> None:
        self._queue: collections.deque[Pending] = collections.deque()
        self._sizes: collections.deque[int] = collections.deque()
        self._lock = threading.Lock()  # the queue, its sizes and _bytes together
        self._bytes = 0  # queued and in flight: freed once a batch is counted
        self._busy_bytes = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._stopped = False  # _stop.is_set(), read without a call on each put
        self._idle = threading.Condition()
        self._busy = 0  # events taken by the writer and not yet counted
        self._abandoned = 0  # of those, counted as shutdown by close()
        self._queued = 0  # events ever queued (their sequence numbers)
        self._finished = 0  # events taken out of the queue and counted
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- request thread ---------------------------------------------------

    def put(self, event: Pending, wake: bool = False) -> int | None:
        """Queue ``event``; return its sequence number, or None when dropped.

        The event is finished (stored or counted) once :meth:`finished`
        reaches its number. ``wake`` starts a write at once instead of at the
        next ``flush_interval``.
        """
        if self._fork.pid != _getpid():
            self._fork.check()
        size = pending_bytes(event)
        with self._lock:
            if self._stopped:
                reason = "shutdown"
            elif (
                len(self._queue) >= self.queue_size
                or self._bytes + size > self.max_bytes
            ):
                reason = "queue_full"
            else:
                reason = ""
                self._queue.append(event)
                self._sizes.append(size)
                self._bytes += size
                self._queued += 1
                seq = self._queued
        if reason:
            self.store.stats.drop(reason)
            return None
        if self._thread is None:
            self._start()
        if (wake or len(self._queue) >= self.batch_size) and not self._wake.is_set():
            self._wake.set()
        return seq

    #: Queue an event's checked values; the writer thread builds the row.
    #: Never blocks on I/O, never raises for a full queue. (``put`` itself:
    #: one call per event on the request thread, not two.)
    deliver = put

    def finished(self) -> int:
        """How many of the events queued so far are stored or counted."""
        return self._finished

    def wait(self, seq: int, timeout: float) -> bool:
        """Wait until the event numbered ``seq`` is finished; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._finished >= seq, timeout)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(
                    target=self._run, name="flask_telemetry-writer", daemon=True
                )
                thread.start()
                self._thread = thread
                # A multiprocessing child ends with os._exit, which skips
                # atexit: its own exit path runs these finalizers.
                multiprocessing.util.Finalize(
                    self, weak_method(self, "close"), exitpriority=100
                )

    def depth(self) -> int:
        """Events queued or being written, not yet counted."""
        return len(self._queue) + self._busy

    def queued_bytes(self) -> int:
        """The estimated memory held by the events queued or in flight."""
        return self._bytes

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
        with self._lock:
            self._stopped = True
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            # The writer stops at its next wait; only a database call already
            # under way (bounded by the writer's timeouts) can outlast this.
            thread.join(max(0.05, deadline - time.monotonic()))
        with self._idle:
            if self._busy and not self._abandoned:
                # Counted as shutdown for a process about to exit; if the
                # INSERT ends after all, the writer counts it as what it was.
                self._abandoned = self._busy
                self.store.stats.drop("shutdown", self._busy)
        with self._lock:
            left = len(self._queue)
            self._queue.clear()
            self._sizes.clear()
            self._bytes = self._busy_bytes
        if not self._busy:
            self.store.release()
        if left:
            self.store.stats.drop("shutdown", left)
            with self._idle:
                self._finished += left
                self._idle.notify_all()
            self.store.log.error(
                "shutdown", "Telemetry shutdown: %d queued event(s) not stored", left
            )

    def after_fork(self) -> None:
        """In a child: fresh queue, locks, counters and thread, and a fresh
        pool for the writer's engine."""
        self._setup()
        self.store.after_fork()

    # -- writer thread ----------------------------------------------------

    def _take(self) -> list[Pending]:
        with self._lock:
            size = min(self.batch_size, len(self._queue))
            batch = [self._queue.popleft() for _ in range(size)]
            self._busy_bytes = sum(self._sizes.popleft() for _ in range(size))
        return batch

    def _release_batch(self) -> None:
        with self._lock:
            self._bytes -= self._busy_bytes
            self._busy_bytes = 0

    def _run(self) -> None:
        last_write: float | None = None  # while holding a connection
        while not self._stop.is_set():
            self._wake.wait(self._wait_time(last_write))
            self._wake.clear()
            if (
                last_write is not None
                and not self._queue
                and self.idle_disconnect is not None
                and time.monotonic() - last_write >= self.idle_disconnect
            ):
                self.store.release()  # quiet: give the connection back
                last_write = None
            while self._queue and not self._stop.is_set():
                last_write = time.monotonic()
                with self._idle:
                    batch = self._take()
                    self._busy = len(batch)
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
                    if self._abandoned:
                        self.store.stats.undrop("shutdown", self._abandoned)
                        self._abandoned = 0
                    self.store.count(outcome)
                    self._finished += self._busy
                    self._busy = 0
                    del batch
                    self._release_batch()
                    self._idle.notify_all()
                last_write = time.monotonic()
            with self._idle:
                self._idle.notify_all()
        if not self._busy:
            self.store.release()  # stopped: close() may have left it to us

    def _wait_time(self, last_write: float | None) -> float:
        """Until the next flush, or the idle disconnect if that comes first."""
        if last_write is None or self.idle_disconnect is None:
            return self.flush_interval
        left = last_write + self.idle_disconnect - time.monotonic()
        return max(0.0, min(self.flush_interval, left))

    def _store(self, batch: list[Pending], outcome: Outcome) -> None:
        rows = self.store.validate(self._build(batch, outcome), outcome)
        attempt = 0
        failure: DatabaseDown | None = None
        while rows:
            admitted = self._admit(len(rows), outcome)
            if admitted == "dropped":
                return
            if admitted == "stopping":
                break
            started = time.monotonic()
            try:
                self.store.insert(rows, outcome)
            except DatabaseDown as exc:
                failure = exc
                rows = exc.remaining
                attempt += 1
                if self._retry(exc, time.monotonic() - started, attempt):
                    continue
                break
            self.breaker.success()
            return
        self._give_up(rows, failure, outcome)

    def _admit(
        self, count: int, outcome: Outcome
    ) -> t.Literal["insert", "dropped", "stopping"]:
        """Wait until the breaker lets a batch of ``count`` rows through.

        ``"insert"`` once it does; ``"dropped"`` when the batch is dropped as
        ``breaker_open`` instead of waiting (``wait_for_breaker=False``,
        counted in ``outcome``); ``"stopping"`` when the writer is shutting
        down meanwhile.
        """
        while True:
            wait = self.breaker.remaining()
            if wait and not self.wait_for_breaker:
                outcome.drop("breaker_open", count)
                return "dropped"
            if wait and self._stop.wait(wait):
                return "stopping"  # shutting down while the database is out
            if self.breaker.allow():
                return "insert"
            if not self.wait_for_breaker:
                outcome.drop("breaker_open", count)
                return "dropped"
            if self._stop.wait(0.05):
                return "stopping"

    def _retry(self, exc: DatabaseDown, took: float, attempt: int) -> bool:
        """After the ``attempt``-th failed INSERT, which took ``took`` seconds:
        tell the breaker, wait the backoff, and say whether to try again.

        False when the failure is not worth a retry, the retries are used up
        or the writer is shutting down.
        """
        if self.breaker.failure(
            trip=self.trip_after is not None and took >= self.trip_after
        ):  # it opened: once per outage, with the cause
            say_open(
                self.store.log,
                self.breaker,
                exc.failure,
                dropping=not self.wait_for_breaker,
            )
        if not exc.failure.retryable or attempt > self.max_retries:
            return False
        self.store.log.error("db", "Telemetry batch failed, retrying: %s", exc.failure)
        return not self._stop.wait(self.retry_backoff * 2 ** (attempt - 1))

    def _give_up(
        self, rows: list[Row], failure: DatabaseDown | None, outcome: Outcome
    ) -> None:
        """Count the rows not stored (as ``shutdown`` while the writer stops,
        else ``storage_error``) and log why."""
        reason = "shutdown" if self._stop.is_set() else "storage_error"
        outcome.drop(reason, len(rows))
        if rows:
            cause = failure.failure if failure is not None else "shutting down"
            self.store.log.error(
                "db",
                "Dropped %d telemetry event(s): storage failed: %s",
                len(rows),
                cause,
            )

    def _build(self, batch: list[Pending], outcome: Outcome) -> list[Values]:
        events = []
        for pending in paced(batch):  # the application's threads run between
            try:
                events.append(build_values(pending))
            except Exception as exc:  # our own bug: count it, keep the rest
                outcome.drop("invalid")
                self.store.log.error(
                    "build", "Telemetry could not build an event: %r", exc, exc=True
                )
        return events
