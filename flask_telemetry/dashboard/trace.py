"""A request's trace: its events in time, each a row of the list and a span
of the timeline, with its query profile's statements on the timeline."""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing as t

from ..storage.vocabulary import EventType
from . import charts, db_events, display


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Trace:
    """What the trace page shows of one request id's events."""

    #: The events, oldest first.
    events: list[t.Any]
    #: Each event with its offset (ms from the start) and its metadata as text.
    rows: list[dict[str, t.Any]]
    #: The timeline's spans: the events, then the profiled statements.
    spans: list[charts.Span]
    #: The request's ``http_request_end``, if stored.
    end: t.Any | None

    @classmethod
    def of(cls, events: t.Iterable[t.Any]) -> Trace:
        """The trace of ``events`` (at least one)."""
        events = sorted(events, key=lambda e: (e.occurred_at, e.id))
        # Offsets from the start of the request: the first event, or the
        # end of the request less its duration when that is earlier.
        first = min(
            e.occurred_at - dt.timedelta(milliseconds=display.duration(e))
            for e in events
        )
        spans = []
        rows = []
        for event in events:
            offset = _ms_between(first, event.occurred_at)
            spans.append(_span(event, offset))
            rows.append(
                {
                    "event": event,
                    "offset_ms": offset,
                    "metadata": display.pretty(event.metadata),
                }
            )
        end = next(
            (e for e in events if e.event_type == EventType.HTTP_REQUEST_END.value),
            None,
        )
        # A query profile's statements, from the start of the request.
        started = 0.0
        if end is not None:
            started = _ms_between(first, end.occurred_at) - display.duration(end)
        for event in events:
            if event.event_type == EventType.DB_QUERY_PROFILE.value:
                spans.extend(db_events.profile_spans(event.metadata, started))
        return cls(events=events, rows=rows, spans=spans, end=end)


def _span(event: t.Any, offset: float) -> charts.Span:
    """``event`` on the timeline: a point at ``offset`` (ms), or a request
    end as a bar of its duration ending there."""
    duration = display.duration(event)
    start, length = offset - duration, duration
    return charts.Span(
        label=event.event_type,
        start_ms=start,
        length_ms=length,
        css=f"span sev-{event.severity}",
        hint=f"{event.event_type} ({event.severity}) at +{offset:.3f} ms"
        + (f", {duration:.3f} ms" if length else ""),
    )


def _ms_between(first: dt.datetime, then: dt.datetime) -> float:
    return (then - first).total_seconds() * 1000.0
