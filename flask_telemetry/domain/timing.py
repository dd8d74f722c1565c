"""``telemetry.timed()``: record a block or a function only when it is slow."""

from __future__ import annotations

import functools
import inspect
import time
import typing as t

from ..storage.vocabulary import Severity

F = t.TypeVar("F", bound=t.Callable[..., t.Any])


class Record(t.Protocol):
    """The shape of ``Telemetry.record`` that :class:`Timed` calls."""

    def __call__(
        self,
        event_type: t.Any,
        severity: t.Any = ...,
        *,
        metadata: t.Mapping[str, t.Any] | None = ...,
    ) -> None: ...


class Timed:
    """A context manager and decorator that times its block.

    When the block takes longer than ``threshold_ms`` it records
    ``event_type`` at ``severity`` with ``duration_ms`` and ``threshold_ms``
    added to ``metadata``. When the block raises and ``on_error`` is given,
    it records ``on_error`` at ``error_severity`` instead, with the
    exception's class name; the exception always propagates. As a
    decorator every call is timed on its own, ``async def`` functions
    included. One ``with`` statement at a time per object.
    """

    __slots__ = (
        "_record",
        "_started",
        "error_severity",
        "event_type",
        "metadata",
        "on_error",
        "severity",
        "threshold_ms",
    )

    def __init__(
        self,
        record: Record,
        event_type: t.Any,
        *,
        threshold_ms: float,
        severity: t.Any = Severity.WARNING,
        metadata: t.Mapping[str, t.Any] | None = None,
        on_error: t.Any = None,
        error_severity: t.Any = Severity.ERROR,
    ) -> None:
        if isinstance(threshold_ms, bool) or not isinstance(threshold_ms, (int, float)):
            raise TypeError(f"threshold_ms must be a number, not {threshold_ms!r}.")
        self._record = record
        self.event_type = event_type
        self.threshold_ms = threshold_ms
        self.severity = severity
        self.metadata = metadata
        self.on_error = on_error
        self.error_severity = error_severity
        self._started = 0.0

    def __enter__(self) -> Timed:
        self._started = time.perf_counter()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: t.Any, tb: t.Any) -> None:
        duration_ms = (time.perf_counter() - self._started) * 1000.0
        if kind is not None and self.on_error is not None:
            if issubclass(kind, Exception):
                self._emit(self.on_error, self.error_severity, duration_ms, kind)
            return
        if duration_ms > self.threshold_ms:
            self._emit(self.event_type, self.severity, duration_ms, kind)

    def _emit(
        self,
        event_type: t.Any,
        severity: t.Any,
        duration_ms: float,
        kind: type[BaseException] | None,
    ) -> None:
        metadata: dict[str, t.Any] = dict(self.metadata or {})
        metadata["duration_ms"] = round(duration_ms, 3)
        metadata["threshold_ms"] = self.threshold_ms
        if kind is not None:
            metadata["exception"] = kind.__name__
        try:
            self._record(event_type, severity, metadata=metadata)
        except Exception:  # TELEMETRY_STRICT raises; the block's own error wins
            if kind is None:
                raise

    def _copy(self) -> Timed:
        return Timed(
            self._record,
            self.event_type,
            threshold_ms=self.threshold_ms,
            severity=self.severity,
            metadata=self.metadata,
            on_error=self.on_error,
            error_severity=self.error_severity,
        )

    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def timed_async(*args: t.Any, **kwargs: t.Any) -> t.Any:
                with self._copy():
                    return await func(*args, **kwargs)

            return t.cast(F, timed_async)

        @functools.wraps(func)
        def timed(*args: t.Any, **kwargs: t.Any) -> t.Any:
            with self._copy():
                return func(*args, **kwargs)

        return t.cast(F, timed)
