"""A circuit breaker that stops trying a dead database for a while."""

from __future__ import annotations

import threading
import time
import typing as t

if t.TYPE_CHECKING:
    from ..log import RateLimitedLog

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; probes after ``cooldown``.

    While open, :meth:`allow` is False until the cool-down has passed; then it
    lets one caller through as a probe (half open). A success closes it, a
    failure opens it for another cool-down. A probe that never reports (its
    caller had nothing to write after all) is replaced by another one after a
    further cool-down, so the breaker cannot stay half open for ever.
    """

    def __init__(self, *, threshold: int, cooldown: float) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at = 0.0
        self.state = CLOSED

    def allow(self) -> bool:
        """Whether the caller may try the database now."""
        if self.state == CLOSED:
            return True
        with self._lock:
            if self.state != CLOSED:
                now = time.monotonic()
                if now < self._opened_at + self.cooldown:
                    return False
                # Open and cooled down, or a probe gone silent: probe now.
                self.state = HALF_OPEN
                self._opened_at = now
            return True

    def remaining(self) -> float:
        """Seconds until the next probe is allowed (0 when closed)."""
        if self.state == CLOSED:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown - time.monotonic())

    def success(self) -> None:
        """Record a successful write."""
        if self.state != CLOSED or self._failures:
            with self._lock:
                self._failures = 0
                self.state = CLOSED

    def failure(self, *, trip: bool = False) -> bool:
        """Record a failed write; ``trip`` (a timeout) opens the breaker at once.

        True when this failure opened a closed breaker (not a failed probe).
        """
        with self._lock:
            self._failures += 1
            if trip or self.state == HALF_OPEN or self._failures >= self.threshold:
                opened = self.state == CLOSED
                self.state = OPEN
                self._opened_at = time.monotonic()
                return opened
            return False


def say_open(
    log: RateLimitedLog, breaker: CircuitBreaker, cause: object, *, dropping: bool
) -> None:
    """Log, once per outage, that ``breaker`` opened and why: the one line an
    application without logging set up sees on stderr about it."""
    log.error(
        "breaker",
        "Telemetry's circuit breaker is open (%s): events are %s, and the "
        "database is tried again every %.0f s until it answers",
        cause,
        "dropped, not written" if dropping else "held in the queue",
        breaker.cooldown,
    )
