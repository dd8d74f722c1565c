"""Synchronous delivery: one INSERT on the caller's thread, guarded by a breaker."""

from __future__ import annotations

import threading

from ...storage.row import TraceEvent
from ..mapping import Pending, build_event
from .batch import BatchStore, DatabaseDown, Outcome
from .breaker import CircuitBreaker
from .protocol import ForkGuard


class SyncDelivery:
    """Writes each event before ``record()`` returns.

    Failures are counted and logged, never raised. The writer's connect, lock
    and statement timeouts bound what one event can cost the caller; after
    ``threshold`` failures in a row the breaker opens and events are dropped
    at once (``breaker_open``) until a probe succeeds, so a dead database
    costs a request at most those timeouts, and only until the breaker opens.

    On an in-memory SQLite database the application and telemetry share one
    connection, so telemetry has no transaction of its own: committing would
    commit the application's pending work. Events are then held (up to
    ``max_pending``) while that connection is inside a transaction and written
    at the next ``record()`` or ``flush()`` that finds it idle.
    """

    def __init__(
        self, store: BatchStore, breaker: CircuitBreaker, *, max_pending: int
    ) -> None:
        self.store = store
        self.breaker = breaker
        self.max_pending = max_pending
        self._held: list[TraceEvent] = []
        self._lock = threading.Lock()
        self._fork = ForkGuard(self)

    def deliver(self, pending: Pending) -> None:
        """Build the event and store it now (or hold it, on a shared connection)."""
        event = build_event(pending)
        self._fork.check()
        if self.store.writer.shares_connection:
            with self._lock:
                if len(self._held) >= self.max_pending:
                    self.store.stats.drop("queue_full")
                    return
                self._held.append(event)
            self._drain()
            return
        self._write([event])

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
            self.breaker.failure()
            outcome.drop("storage_error", len(exc.remaining))
            store.log.error("db", "Telemetry storage failed: %s", exc.failure)
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
        """Write what is held; True when nothing is left waiting."""
        return self._drain()

    def depth(self) -> int:
        """Events held, waiting for the shared connection to be idle."""
        return len(self._held)

    def close(self, timeout: float | None = None) -> None:
        """Write what is held if possible; count the rest as dropped at shutdown."""
        if not self._drain():
            with self._lock:
                self.store.stats.drop("shutdown", len(self._held))
                self._held = []

    def after_fork(self) -> None:
        """In a child: forget what the parent held (the parent writes it) and
        count from zero, with a fresh pool for the writer's engine."""
        self._held = []
        self._lock = threading.Lock()
        self.store.after_fork()
