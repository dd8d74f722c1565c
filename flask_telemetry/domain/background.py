"""Asynchronous delivery: a bounded queue and one writer thread per process."""

from __future__ import annotations

import atexit
import collections
import os
import threading
import typing as t
import weakref

from ..storage import StorageFailure, TraceEvent
from .breaker import CircuitBreaker
from .store import BatchStore


def _weak_call(obj: t.Any, name: str) -> t.Callable[..., None]:
    """A callback that does nothing once ``obj`` is gone (for atexit and fork hooks)."""
    ref = weakref.ref(obj)

    def call(*args: t.Any) -> None:
        target = ref()
        if target is not None:
            getattr(target, name)(*args)

    return call


class BackgroundDelivery:
    """Queues events on the caller's thread; a writer thread inserts them in batches.

    ``deliver`` does no I/O and never waits: a full queue drops the new event
    (counted as ``queue_full``). The writer thread starts on first use and
    again in a child process after fork; it takes up to ``batch_size`` events
    when that many are queued or every ``flush_interval`` seconds, and inserts
    each batch with one executemany. A failed batch is retried ``max_retries``
    times with exponential backoff on the writer thread, then dropped; while
    the breaker is open the writer waits for the cool-down instead of trying.
    At interpreter exit the queue is flushed for at most ``shutdown_timeout``
    seconds and what is left is counted as ``shutdown``.
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
        os.register_at_fork(after_in_child=_weak_call(self, "after_fork"))
        atexit.register(_weak_call(self, "close"))

    def _setup(self) -> None:
        self._queue: collections.deque[TraceEvent] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._busy = False
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- request thread ---------------------------------------------------

    def deliver(self, event: TraceEvent) -> None:
        """Queue one event; never blocks, never raises for a full queue."""
        queue = self._queue
        if len(queue) >= self.queue_size or self._stop.is_set():
            self.store.stats.drop(
                "queue_full" if not self._stop.is_set() else "shutdown"
            )
            return
        queue.append(event)
        if self._thread is None:
            self._start()
        if len(queue) >= self.batch_size and not self._wake.is_set():
            self._wake.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(
                    target=self._run, name="flask_telemetry-writer", daemon=True
                )
                thread.start()
                self._thread = thread

    def depth(self) -> int:
        """Events queued and not yet taken by the writer."""
        return len(self._queue)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is written or dropped."""
        if self._thread is None:
            return not self._queue
        self._wake.set()
        with self._idle:
            return self._idle.wait_for(
                lambda: not self._queue and not self._busy, timeout
            )

    def close(self, timeout: float | None = None) -> None:
        """Flush with a deadline, stop the writer, count what is left."""
        if self._stop.is_set():
            return
        deadline = self.shutdown_timeout if timeout is None else timeout
        self.flush(deadline)
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(0.5)
        left = len(self._queue)
        self._queue.clear()
        if left:
            self.store.stats.drop("shutdown", left)
            self.store.log.error(
                "shutdown", "Telemetry shutdown: %d queued event(s) not stored", left
            )

    def after_fork(self) -> None:
        """In a child: fresh queue, locks and thread; no inherited connections."""
        self._setup()
        self.store.stats.reset()
        self.store.writer.forget_engine()

    # -- writer thread ----------------------------------------------------

    def _run(self) -> None:
        queue = self._queue
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            while queue:
                with self._idle:
                    self._busy = True
                size = min(self.batch_size, len(queue))
                batch = [queue.popleft() for _ in range(size)]
                try:
                    self._store(batch)
                except Exception as exc:  # never let the thread die
                    self.store.stats.drop("storage_error", len(batch))
                    self.store.log.error("writer", "Telemetry writer failed: %r", exc)
                finally:
                    with self._idle:
                        self._busy = False
                        self._idle.notify_all()
                if self._stop.is_set():
                    break
            with self._idle:
                self._idle.notify_all()
            if self._stop.is_set():
                return

    def _store(self, batch: list[TraceEvent]) -> None:
        rows = self.store.validate(batch)
        attempt = 0
        while rows:
            wait = self.breaker.remaining()
            if wait and self._stop.wait(wait):
                break  # shutting down while the database is out
            if not self.breaker.allow():
                self._stop.wait(0.05)
                continue
            try:
                self.store.insert(rows)
            except StorageFailure as exc:
                self.breaker.failure()
                attempt += 1
                if not exc.retryable or attempt > self.max_retries:
                    break
                self.store.log.error("db", "Telemetry batch failed, retrying: %s", exc)
                if self._stop.wait(self.retry_backoff * 2 ** (attempt - 1)):
                    break
                continue
            self.breaker.success()
            return
        self.store.stats.drop("storage_error", len(rows))
        self.store.log.error(
            "db", "Dropped %d telemetry event(s): storage failed", len(rows)
        )
