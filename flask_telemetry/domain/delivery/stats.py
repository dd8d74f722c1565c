"""Counters of what happened to every event, exact across threads."""

from __future__ import annotations

import itertools
import threading
import typing as t

#: Why an event was not stored.
DROP_REASONS = (
    "invalid",  # bad record() argument or a row the schema rejected
    "queue_full",  # queue at TELEMETRY_QUEUE_SIZE or TELEMETRY_QUEUE_MAX_BYTES
    "storage_error",  # the database refused the row or was unreachable
    "breaker_open",  # the circuit breaker was open: the database was not tried
    "shutdown",  # still queued when the shutdown timeout ran out
    # Recorded outside an app context while the Telemetry object serves
    # several apps: it could belong to any of them (counted in each).
    "no_app",
    # Left out on purpose by TELEMETRY_SAMPLE_RATE: a routine request event
    # that was not kept. Not a loss: alert on the other reasons.
    "sampled_out",
)


class Stats:
    """Thread-safe counters. ``accepted == written + sum(dropped) + queue_depth``.

    ``queue_depth`` is what was accepted and is not yet stored or dropped:
    queued, in an INSERT under way, or being handed over. It is derived from
    the other counters under the same lock, so every snapshot balances,
    whichever thread reads it and whatever the writer is doing; that it
    returns to zero is what shows that every event was counted once.
    ``accept()``, called for every event on the caller's thread, is the one
    count that takes no lock (see ``__init__``): an event is accepted before
    it can be written or dropped, so a snapshot never counts more events
    written or dropped than accepted.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Accepting is counted on every request, so it takes no lock: the
        # next() of an itertools.count is one C call, which the GIL makes
        # atomic. Reading it takes a number too: snapshots, under the lock,
        # count their reads and subtract them.
        self._accepts = itertools.count()
        self._reads = 0
        #: Count one event handed to the recorder (returns a number to ignore).
        self.accept: t.Callable[[], object] = self._accepts.__next__
        self.written = 0
        self.batches = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)

    def reset(self) -> None:
        """Start from zero (in a child process after fork)."""
        self.__init__()  # type: ignore[misc]

    @property
    def accepted(self) -> int:
        """Events handed to the recorder so far."""
        with self._lock:
            return self._accepted()

    def _accepted(self) -> int:
        # Under the lock: every accept() before this call is counted.
        self._reads += 1
        return next(self._accepts) - self._reads + 1

    def wrote(self, count: int) -> None:
        """Count one successful INSERT of ``count`` rows."""
        with self._lock:
            self.written += count
            self.batches += 1

    def drop(self, reason: str, count: int = 1) -> None:
        """Count ``count`` events dropped for ``reason``."""
        with self._lock:
            self.dropped[reason] += count

    def undrop(self, reason: str, count: int) -> None:
        """Take back ``count`` events counted as dropped for ``reason``: they
        are about to be counted by their real outcome."""
        with self._lock:
            self.dropped[reason] -= count

    def snapshot(self) -> dict[str, t.Any]:
        """A consistent copy of the counters."""
        with self._lock:
            dropped = dict(self.dropped)
            accepted = self._accepted()
            return {
                "accepted": accepted,
                "written": self.written,
                "batches": self.batches,
                "dropped": dropped,
                "queue_depth": accepted - self.written - sum(dropped.values()),
            }
