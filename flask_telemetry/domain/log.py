"""The ``flask_telemetry`` logger: rate-limited, and heard without any setup.

An application that configured no logging still sees telemetry's failures:
the logger's own handler (:class:`_StderrFallback`, after Flask's
``default_handler`` and Python's last-resort handler) writes a warning or
an error to stderr when no other handler would show it, the first of each
kind at once and then a few lines a minute at most. Once the application
configures logging (``logging.basicConfig``, ``dictConfig``, a handler on
``flask_telemetry`` or the root logger), it stays silent.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
import typing as t

logger = logging.getLogger("flask_telemetry")


class _Window:
    """At most ``per_minute`` admissions per key; counts what it held back."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int, int]] = {}

    def admit(self, key: str) -> tuple[bool, int]:
        """Return (admit it?, admissions held back in the previous window)."""
        now = time.monotonic()
        with self._lock:
            start, sent, held = self._windows.get(key, (now, 0, 0))
            carried = 0
            if now - start >= 60.0:
                start, sent, carried, held = now, 0, held, 0
            if sent < self.per_minute:
                if len(self._windows) >= 256 and key not in self._windows:
                    self._windows.clear()  # bounded, whatever the keys
                self._windows[key] = (start, sent + 1, held)
                return True, carried
            self._windows[key] = (start, sent, held + 1)
            return False, 0


class _StderrFallback(logging.Handler):
    """Writes ``flask_telemetry`` warnings and errors to stderr when nothing
    else would show them, a few lines a minute per kind of message."""

    def __init__(self, per_minute: int = 3) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(
            logging.Formatter("[%(asctime)s] %(levelname)s in %(name)s: %(message)s")
        )
        self._window = _Window(per_minute)

    def handle(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level or _handled_elsewhere(record, self):
            return False
        admitted, held = self._window.admit(str(record.msg))
        if not admitted:
            return False
        if held:
            record = logging.makeLogRecord(record.__dict__)
            record.msg = f"{record.msg} ({held} similar line(s) not shown)"
        return super().handle(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def _handled_elsewhere(record: logging.LogRecord, me: logging.Handler) -> bool:
    """Whether a handler other than ``me`` on the way up would take ``record``."""
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if handler is not me and record.levelno >= handler.level:
                return True
        if not current.propagate:
            return False
        current = current.parent
    return False


#: The one fallback handler, replaced (not added twice) on a reload.
for _old in [h for h in logger.handlers if type(h).__name__ == "_StderrFallback"]:
    logger.removeHandler(_old)
_fallback = _StderrFallback()
logger.addHandler(_fallback)


class RateLimitedLog:
    """Logs at most ``per_minute`` lines per key, then says how many it held back."""

    def __init__(self, per_minute: int = 5) -> None:
        self.per_minute = per_minute
        self._window = _Window(per_minute)

    def error(self, key: str, message: str, *args: object, exc: bool = False) -> None:
        """Log ``message`` at ERROR unless ``key`` has used up its minute."""
        admitted, held = self._window.admit(key)
        if not admitted:
            return
        if held:
            message += f" ({held} similar message(s) suppressed)"
        logger.error(message, *args, exc_info=exc)


#: psycopg's own warning when a pipeline whose batch failed is closed: the
#: failure itself reaches telemetry's log with its cause; this adds nothing.
_DRIVER_NOISE = ("error ignored terminating",)
_quiet = threading.local()


class _DriverNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            getattr(_quiet, "on", False)
            and isinstance(record.msg, str)
            and record.msg.startswith(_DRIVER_NOISE)
        )


_driver_filter = _DriverNoise()
logging.getLogger("psycopg").addFilter(_driver_filter)


@contextlib.contextmanager
def driver_noise_muted() -> t.Iterator[None]:
    """Around telemetry's own database calls: the driver's warnings about
    cleaning up after a failure telemetry reports itself are not shown."""
    previous = getattr(_quiet, "on", False)
    _quiet.on = True
    try:
        yield
    finally:
        _quiet.on = previous
