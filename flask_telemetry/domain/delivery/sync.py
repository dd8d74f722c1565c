"""Synchronous delivery: the writer thread stores the event while the caller
waits for it, up to one deadline."""

from __future__ import annotations

import threading
import time

from ...storage.row import TraceEvent
from ..mapping import Pending, build_event
from .background import BackgroundDelivery
from .batch import BatchStore, DatabaseDown, Outcome
from .breaker import CircuitBreaker, say_open
from .protocol import ForkGuard


class SyncDelivery:
    """Stores each event before ``record()`` returns, or within ``deadline``.

    The caller hands the event to a writer thread of its own and waits for
    the outcome, at most ``deadline`` seconds. The writer thread is the only
    one that talks to the database, one connection at a time, so telemetry
    never holds more than one connection of the application's pool however
    many requests record at once (events that arrive together are written
    with one INSERT), and no caller ever waits for a connection, a lock or a
    frozen server longer than the deadline.

    An event that misses the deadline stays with the writer and is stored
    or counted as dropped when its INSERT ends, never lost silently. A
    missed deadline makes the database suspect: until the writer has caught
    up with what was queued before it, callers queue their events and return
    at once, so a request recording several events waits about one deadline
    in all. A failure that took ``trip_after`` seconds or more (a lock,
    statement or connect timeout) opens the circuit breaker at once; while
    it is open events are dropped at once (``breaker_open``) until a probe
    succeeds.

    On an in-memory SQLite database the application and telemetry share one
    connection, so telemetry has no transaction of its own: committing would
    commit the application's pending work, and the connection cannot be
    used from the writer thread. Events are then written on the caller's
    thread, and held (up to ``max_pending``) while that connection is inside
    a transaction, to be written at the next ``record()`` or ``flush()``
    that finds it idle.
    """

    def __init__(
        self,
        store: BatchStore,
        breaker: CircuitBreaker,
        *,
        deadline: float,
        trip_after: float,
        max_pending: int,
        max_bytes: int,
        batch_size: int,
        shutdown_timeout: float,
        idle_disconnect: float | None = None,
    ) -> None:
        self.store = store
        self.breaker = breaker
        self.deadline = deadline
        self.max_pending = max_pending
        self._writer = BackgroundDelivery(
            store,
            breaker,
            queue_size=max_pending,
            max_bytes=max_bytes,
            batch_size=batch_size,
            flush_interval=1.0,
            shutdown_timeout=shutdown_timeout,
            max_retries=0,
            retry_backoff=0.0,
            wait_for_breaker=False,
            trip_after=trip_after,
            idle_disconnect=idle_disconnect,
        )
        self._put_lock = threading.Lock()  # sequence numbers in queue order
        self._suspect_until = 0  # wait again once the writer finished this one
        self._held: list[TraceEvent] = []
        self._lock = threading.Lock()
        self._fork = ForkGuard(self)

    def deliver(self, pending: Pending) -> None:
        """Store the event, waiting at most the deadline (or hold it, on a
        shared connection)."""
        self._fork.check()
        if self.store.writer.shares_connection:
            self._deliver_shared(build_event(pending))
            return
        if self.breaker.remaining():
            self.store.stats.drop("breaker_open")
            return
        writer = self._writer
        with self._put_lock:
            seq = writer.put(pending, wake=True)
        if seq is None or writer.finished() < self._suspect_until:
            return  # dropped and counted, or the database is suspect
        started = time.monotonic()
        if not writer.wait(seq, self.deadline):
            self._suspect_until = seq
            self.store.log.error(
                "deadline",
                "Telemetry gave up waiting for the database after %.0f ms; "
                "events are written in the background until it answers again",
                (time.monotonic() - started) * 1000,
            )

    def _deliver_shared(self, event: TraceEvent) -> None:
        with self._lock:
            if len(self._held) >= self.max_pending:
                self.store.stats.drop("queue_full")
                return
            self._held.append(event)
        self._drain()

    def _write(self, events: list[TraceEvent]) -> None:
        store = self.store
        outcome = Outcome()
        if not self.breaker.allow():
            outcome.drop("breaker_open", len(events))
            store.count(outcome)
            return
        rows = store.validate(events, outcome)
        try:
            store.insert(rows, outcome)
        except DatabaseDown as exc:
            opened = self.breaker.failure()
            outcome.drop("storage_error", len(exc.remaining))
            store.log.error("db", "Telemetry storage failed: %s", exc.failure)
            if opened:  # once per outage, not per failed probe
                say_open(store.log, self.breaker, exc.failure, dropping=True)
        else:
            if rows:
                self.breaker.success()
        store.count(outcome)

    def _drain(self) -> bool:
        with self._lock:
            if not self._held:
                return True
            if self.store.writer.connection_busy():
                return False
            events, self._held = self._held, []
            self._write(events)
            return True

    def flush(self, timeout: float | None = None) -> bool:
        """Write what is held or queued; True when nothing is left waiting."""
        self._fork.check()
        return self._drain() and self._writer.flush(timeout)

    def depth(self) -> int:
        """Events held or queued for the writer, not yet stored or dropped."""
        return len(self._held) + self._writer.depth()

    def close(self, timeout: float | None = None) -> None:
        """Write what is held if possible; count the rest as dropped at shutdown."""
        self._fork.check()
        if not self._drain():
            with self._lock:
                self.store.stats.drop("shutdown", len(self._held))
                self._held = []
        self._writer.close(timeout)

    def after_fork(self) -> None:
        """In a child: forget what the parent held (the parent writes it) and
        count from zero, with a fresh pool for the writer's engine."""
        self._held = []
        self._lock = threading.Lock()
        self._put_lock = threading.Lock()
        self._suspect_until = 0
        self._writer._fork.check()  # its own reset, once, whoever runs first
