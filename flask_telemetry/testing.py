"""Capture the events an application records, in its own tests, without a database.

:func:`capture` swaps the delivery of one application for an in-memory
:class:`TelemetryCapture` while the ``with`` block runs::

    from flask_telemetry import EventType
    from flask_telemetry.testing import capture

    def test_cache_miss_is_traced(app):
        with capture(app) as captured:
            app.test_client().get("/catalogue")
        captured.assert_recorded(EventType.CACHE_MISS, metadata={"key": "catalogue"})

Every event still goes through the same checks as in production: the
recorder's argument checks and then :class:`TelemetryEventSchema`, the
marshmallow schema the database writer validates rows with. An event the
writer would reject is kept in :attr:`TelemetryCapture.rejected` instead of
:attr:`TelemetryCapture.events`, so a test notices it.

With pytest, the ``telemetry_capture`` fixture does the same around a test
(see :mod:`flask_telemetry.pytest_plugin`).
"""

from __future__ import annotations

import contextlib
import enum
import threading
import typing as t

import marshmallow as ma
from flask import Flask

from ._wiring import app_state
from .domain.mapping import Pending, build_event
from .storage.row import TraceEvent, as_row
from .storage.schema import TelemetryEventSchema

if t.TYPE_CHECKING:
    from .domain.delivery.stats import Stats

__all__ = ["TelemetryCapture", "TelemetryEventSchema", "TraceEvent", "capture"]


class _Unset(enum.Enum):
    UNSET = enum.auto()


_UNSET = _Unset.UNSET


def _value(value: object) -> object:
    """The stored form of an enum member (its value); anything else as is."""
    return value.value if isinstance(value, enum.Enum) else value


class TelemetryCapture:
    """An in-memory delivery: keeps validated events in a list instead of storing them.

    It implements the same delivery interface as the database deliveries, so
    the application's :class:`~flask_telemetry.Telemetry` keeps working as
    usual (``record()``, ``flush()``, ``stats()``) while it is installed.
    Usually made by :func:`capture` rather than directly.

    :param event_types: the application's own event type values, accepted
        beside :class:`~flask_telemetry.EventType` (as the writer does).
    :param stats: counters to keep exact (the ones behind
        :meth:`Telemetry.stats <flask_telemetry.Telemetry.stats>`): captured
        events count as written, rejected ones as dropped (``invalid``).
    """

    def __init__(
        self, *, event_types: t.Iterable[str] = (), stats: Stats | None = None
    ) -> None:
        self._schema = TelemetryEventSchema(event_types=event_types)
        self._stats = stats
        self._lock = threading.Lock()
        #: The events recorded so far, oldest first, as the writer would store them.
        self.events: list[TraceEvent] = []
        #: Events the writer's schema refused, with the schema's messages.
        self.rejected: list[tuple[TraceEvent, dict[str, t.Any]]] = []

    # -- the delivery interface ---------------------------------------------

    def deliver(self, pending: Pending) -> None:
        """Build the event now and :meth:`keep` it."""
        self.keep(build_event(pending))

    def keep(self, event: TraceEvent) -> None:
        """Validate ``event`` with :class:`TelemetryEventSchema` and keep it."""
        try:
            loaded: TraceEvent = self._schema.load(as_row(event))
        except ma.ValidationError as exc:
            with self._lock:
                self.rejected.append((event, t.cast(dict[str, t.Any], exc.messages)))
            if self._stats is not None:
                self._stats.drop("invalid")
            return
        with self._lock:
            self.events.append(loaded)
        if self._stats is not None:
            self._stats.wrote(1)

    def flush(self, timeout: float | None = None) -> bool:
        """Nothing is ever pending: always True."""
        return True

    def depth(self) -> int:
        """Nothing is ever queued: always 0."""
        return 0

    def close(self, timeout: float | None = None) -> None:
        """Nothing to close."""

    def after_fork(self) -> None:
        """Nothing to reset."""

    # -- inspecting ---------------------------------------------------------

    @property
    def event_types(self) -> list[str]:
        """The ``event_type`` of every captured event, oldest first."""
        return [e.event_type for e in self.events]

    def clear(self) -> None:
        """Forget every captured and rejected event."""
        with self._lock:
            self.events.clear()
            self.rejected.clear()

    def find(
        self,
        event_type: enum.Enum | str | None = None,
        severity: enum.Enum | str | None = None,
        *,
        metadata: t.Mapping[str, t.Any] | None = None,
        **fields: t.Any,
    ) -> list[TraceEvent]:
        """The captured events that match, oldest first.

        ``event_type`` and ``severity`` take enum members or their values;
        ``metadata`` matches when each of its keys is present with an equal
        value (other keys may be there too); any other keyword names a
        :class:`~flask_telemetry.testing.TraceEvent` field that must be equal,
        for example ``actor_type="user"``, ``actor_id=7`` or
        ``route_name="catalogue"`` (``actor_id=None`` matches events without
        an actor id).
        """
        wanted = self._criteria(event_type, severity, fields)
        with self._lock:
            events = list(self.events)
        return [e for e in events if not _mismatches(e, wanted, metadata)]

    def assert_recorded(
        self,
        event_type: enum.Enum | str,
        severity: enum.Enum | str | None = None,
        *,
        metadata: t.Mapping[str, t.Any] | None = None,
        count: int | None = None,
        **fields: t.Any,
    ) -> TraceEvent:
        """Fail unless a matching event was recorded; return the first match.

        Takes the same criteria as :meth:`find`. With ``count``, exactly that
        many events must match. The failure message lists what was recorded,
        says why the closest events did not match, and shows rejected events.
        """
        matches = self.find(event_type, severity, metadata=metadata, **fields)
        if matches and (count is None or len(matches) == count):
            return matches[0]
        wanted = self._criteria(event_type, severity, fields)
        described = _describe(wanted, metadata)
        if matches:
            raise AssertionError(
                f"Expected {count} {described} event(s), found {len(matches)}.\n"
                + self._report(wanted, metadata)
            )
        raise AssertionError(
            f"No {described} event was recorded.\n" + self._report(wanted, metadata)
        )

    def assert_not_recorded(
        self,
        event_type: enum.Enum | str,
        severity: enum.Enum | str | None = None,
        *,
        metadata: t.Mapping[str, t.Any] | None = None,
        **fields: t.Any,
    ) -> None:
        """Fail if any event matching the criteria of :meth:`find` was recorded."""
        matches = self.find(event_type, severity, metadata=metadata, **fields)
        if matches:
            wanted = self._criteria(event_type, severity, fields)
            raise AssertionError(
                f"Expected no {_describe(wanted, metadata)} event, "
                f"found {len(matches)}:\n"
                + "\n".join(f"  - {_show(e)}" for e in matches)
            )

    # -- helpers ------------------------------------------------------------

    @staticmethod
    def _criteria(
        event_type: object, severity: object, fields: t.Mapping[str, t.Any]
    ) -> dict[str, object]:
        unknown = set(fields) - set(TraceEvent.__dataclass_fields__) - {"metadata"}
        if unknown:
            raise TypeError(
                f"Unknown event field(s) {sorted(unknown)}; fields are "
                f"{sorted(TraceEvent.__dataclass_fields__)}."
            )
        wanted: dict[str, object] = {k: _value(v) for k, v in fields.items()}
        if event_type is not None:
            wanted["event_type"] = _value(event_type)
        if severity is not None:
            wanted["severity"] = _value(severity)
        return wanted

    def _report(
        self, wanted: dict[str, object], metadata: t.Mapping[str, t.Any] | None
    ) -> str:
        with self._lock:
            events = list(self.events)
            rejected = list(self.rejected)
        lines = [f"Recorded events ({len(events)}):"]
        for event in events:
            lines.append(f"  - {_show(event)}")
            if event.event_type == wanted.get("event_type"):
                for why in _mismatches(event, wanted, metadata):
                    lines.append(f"      {why}")
        if not events:
            lines.append("  (none)")
        if rejected:
            lines.append(
                f"Rejected by the schema, as the database writer would "
                f"({len(rejected)}):"
            )
            lines.extend(f"  - {_show(e)}: {errors}" for e, errors in rejected)
        return "\n".join(lines)


def _mismatches(
    event: TraceEvent,
    wanted: t.Mapping[str, object],
    metadata: t.Mapping[str, t.Any] | None,
) -> list[str]:
    """Why ``event`` does not match; empty when it does."""
    reasons = [
        f"{name} is {getattr(event, name)!r}, expected {value!r}"
        for name, value in wanted.items()
        if getattr(event, name) != value
    ]
    if metadata is not None:
        actual = event.metadata or {}
        for key, value in metadata.items():
            if key not in actual:
                reasons.append(f"metadata has no key {key!r}")
            elif actual[key] != value:
                reasons.append(
                    f"metadata[{key!r}] is {actual[key]!r}, expected {value!r}"
                )
    return reasons


def _describe(
    wanted: t.Mapping[str, object], metadata: t.Mapping[str, t.Any] | None
) -> str:
    parts = [str(wanted.get("event_type", "any"))]
    parts += [f"{k}={v!r}" for k, v in wanted.items() if k != "event_type"]
    if metadata is not None:
        parts.append(f"metadata ⊇ {dict(metadata)!r}")
    return " ".join(parts)


def _show(event: TraceEvent) -> str:
    shown = f"{event.event_type} ({event.severity}, {event.actor_type}"
    if event.actor_id is not None:
        shown += f" {event.actor_id}"
    shown += ")"
    if event.route_name is not None:
        shown += f" route={event.route_name!r}"
    if event.metadata is not None:
        shown += f" metadata={event.metadata!r}"
    return shown


@contextlib.contextmanager
def capture(app: Flask) -> t.Iterator[TelemetryCapture]:
    """Capture ``app``'s telemetry in memory for the ``with`` block.

    The application's delivery (sync or background) is set aside and put
    back afterwards; nothing reaches the database meanwhile, and no database
    connection is needed. Captures nest: the inner one sees the events
    recorded inside it. With ``TELEMETRY_ENABLED = False`` nothing is
    recorded, so nothing is captured.

    :raises RuntimeError: when telemetry is not initialised on ``app``.
    """
    state = app_state(app)
    with contextlib.ExitStack() as stack:
        with app.app_context():
            captured = TelemetryCapture(
                event_types=state.event_types, stats=state.stats
            )
            stack.enter_context(state.delivering_to(captured))
        yield captured
