"""The domain recorder: checks intent, maps it to a row, hands it to delivery."""

from __future__ import annotations

import datetime as dt
import enum
import json
import typing as t

from ..exceptions import TelemetryError, TelemetryStorageException
from ..storage import EventType, Severity, TraceEvent
from .actor import ActorType
from .intent import TraceIntent
from .log import RateLimitedLog
from .mapping import to_trace_event
from .stats import Stats


class Delivery(t.Protocol):
    """Where the recorder hands events: sync or background delivery."""

    def deliver(self, event: TraceEvent) -> None: ...
    def flush(self, timeout: float | None = None) -> bool: ...
    def depth(self) -> int: ...
    def close(self, timeout: float | None = None) -> None: ...
    def after_fork(self) -> None: ...


def _lookup(values: t.Iterable[str]) -> dict[str, str]:
    # A str Enum member hashes and compares like its value, so one dict
    # resolves both ``EventType.CACHE_HIT`` and ``"cache_hit"`` to the str.
    return {v: v for v in values}


class Recorder:
    """Best-effort recording: never raises for storage, drops bad arguments.

    A bad argument (unknown event type, severity or actor type, an actor id
    that is not an int, metadata that is not a JSON object) is counted as
    ``invalid`` and logged, or raised as :class:`TelemetryError` when
    ``strict``. Storage failures are counted and logged by the delivery and
    swallowed here as a last resort.
    """

    def __init__(
        self,
        delivery: Delivery,
        stats: Stats,
        log: RateLimitedLog,
        *,
        event_types: t.Iterable[str] = (),
        strict: bool = False,
    ) -> None:
        self.delivery = delivery
        self.stats = stats
        self.log = log
        self.strict = strict
        self._event_types = _lookup([e.value for e in EventType] + list(event_types))
        self._severities = _lookup(s.value for s in Severity)
        self._actor_types = _lookup(a.value for a in ActorType)

    def record(self, intent: TraceIntent) -> None:
        """Record one event; returns once it is stored (sync) or queued (async)."""
        self.stats.accept()
        try:
            event = self._map(intent)
        except TelemetryError as exc:
            self.stats.drop("invalid")
            if self.strict:
                raise
            self.log.error("invalid", "Dropped telemetry event: %s", exc)
            return
        try:
            self.delivery.deliver(event)
        except TelemetryStorageException as exc:
            self.stats.drop("storage_error")
            self.log.error("db", "Telemetry storage failed: %s", exc)
        except Exception as exc:  # the best-effort promise covers our own bugs
            self.stats.drop("storage_error")
            self.log.error("bug", "Telemetry delivery failed: %r", exc, exc=True)

    def _map(self, intent: TraceIntent) -> TraceEvent:
        event_type = _resolve(self._event_types, intent.event_type)
        if event_type is None:
            raise TelemetryError(f"Unknown event type {_shown(intent.event_type)}.")
        severity = _resolve(self._severities, intent.severity)
        if severity is None:
            raise TelemetryError(
                f"Unknown severity {_shown(intent.severity)}; "
                f"use one of {sorted(self._severities)}."
            )
        actor_type = _resolve(self._actor_types, intent.actor_type)
        if actor_type is None:
            raise TelemetryError(f"Unknown actor type {_shown(intent.actor_type)}.")
        actor_id = intent.actor_id
        if actor_id is not None and (type(actor_id) is not int):
            raise TelemetryError(
                f"actor_id must be an int, not {type(actor_id).__name__}."
            )
        metadata = intent.metadata
        if metadata is not None:
            if not isinstance(metadata, t.Mapping):
                raise TelemetryError(
                    f"metadata must be a mapping, not {type(metadata).__name__}."
                )
            if self.strict:
                _check_json(metadata)
        return to_trace_event(
            intent,
            dt.datetime.now(dt.UTC),
            event_type=event_type,
            severity=severity,
            actor_type=actor_type,
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for the delivery to store what was accepted so far."""
        return self.delivery.flush(timeout)


def _resolve(table: dict[str, str], value: object) -> str | None:
    try:
        return table.get(value)  # type: ignore[call-overload, no-any-return]
    except TypeError:  # unhashable
        return None


def _shown(value: object) -> str:
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    return repr(value)[:80]


def _check_json(metadata: t.Mapping[str, t.Any]) -> None:
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise TelemetryError(f"metadata is not JSON-serialisable: {exc}") from exc
