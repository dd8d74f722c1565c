"""The ``flask_telemetry`` logger, with rate limiting for repeated failures."""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("flask_telemetry")
logger.addHandler(logging.NullHandler())


class RateLimitedLog:
    """Logs at most ``per_minute`` lines per key, then says how many it held back."""

    def __init__(self, per_minute: int = 5) -> None:
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int, int]] = {}

    def _admit(self, key: str) -> tuple[bool, int]:
        """Return (log it?, lines held back in the previous window)."""
        now = time.monotonic()
        with self._lock:
            start, sent, held = self._windows.get(key, (now, 0, 0))
            carried = 0
            if now - start >= 60.0:
                start, sent, carried, held = now, 0, held, 0
            if sent < self.per_minute:
                self._windows[key] = (start, sent + 1, held)
                return True, carried
            self._windows[key] = (start, sent, held + 1)
            return False, 0

    def error(self, key: str, message: str, *args: object, exc: bool = False) -> None:
        """Log ``message`` at ERROR unless ``key`` has used up its minute."""
        admitted, held = self._admit(key)
        if not admitted:
            return
        if held:
            message += f" ({held} similar message(s) suppressed)"
        logger.error(message, *args, exc_info=exc)
