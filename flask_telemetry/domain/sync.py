"""Synchronous delivery: one INSERT on the caller's thread, guarded by a breaker."""

from __future__ import annotations

import threading

from ..storage import StorageFailure, TraceEvent
from .breaker import CircuitBreaker
from .store import BatchStore


class SyncDelivery:
    """Writes each event before ``record()`` returns.

    Failures are counted and logged, never raised. With the breaker open the
    event is dropped at once, so a dead database costs a request at most the
    writer's timeouts, and only until the breaker opens.

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
        self._pending: list[TraceEvent] = []
        self._lock = threading.Lock()

    def deliver(self, event: TraceEvent) -> None:
        """Store one event now (or hold it, on a shared connection)."""
        if self.store.writer.shares_connection:
            with self._lock:
                if len(self._pending) >= self.max_pending:
                    self.store.stats.drop("queue_full")
                    return
                self._pending.append(event)
            self._drain()
            return
        self._write([event])

    def _write(self, events: list[TraceEvent]) -> None:
        stats = self.store.stats
        if not self.breaker.allow():
            stats.drop("breaker_open", len(events))
            return
        rows = self.store.validate(events)
        try:
            self.store.insert(rows)
        except StorageFailure as exc:
            self.breaker.failure()
            stats.drop("storage_error", len(rows))
            self.store.log.error("db", "Telemetry storage failed: %s", exc)
            return
        self.breaker.success()

    def _drain(self) -> bool:
        with self._lock:
            if not self._pending:
                return True
            if self.store.writer.connection_busy():
                return False
            events, self._pending = self._pending, []
            self._write(events)
            return True

    def flush(self, timeout: float | None = None) -> bool:
        """Write what is held; True when nothing is left waiting."""
        return self._drain()

    def depth(self) -> int:
        """Events held, waiting for the shared connection to be idle."""
        return len(self._pending)

    def close(self, timeout: float | None = None) -> None:
        """Write what is held if possible; count the rest as dropped at shutdown."""
        if not self._drain():
            with self._lock:
                self.store.stats.drop("shutdown", len(self._pending))
                self._pending = []

    def after_fork(self) -> None:
        """Forget what the parent held: the parent writes it."""
        self._pending = []
        self._lock = threading.Lock()
