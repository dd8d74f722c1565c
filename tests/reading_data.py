"""Rows for the reading tests, stored through the writer, and references."""

from __future__ import annotations

import bisect
import datetime as dt
import math
import typing as t

import sqlalchemy as sa

from conftest import Bundle
from flask_telemetry.storage import TraceEvent, TraceWriter

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def engine_of(bundle: Bundle) -> sa.Engine:
    with bundle.app.app_context():
        return bundle.db.engines[None]


def store(bundle: Bundle, events: t.Sequence[TraceEvent]) -> None:
    """Insert ``events`` with the writer's own validation and conversion."""
    engine = engine_of(bundle)
    writer = TraceWriter(lambda: engine, bundle.traces)
    rows, rejected = writer.validate(list(events))
    assert not rejected, rejected
    for start in range(0, len(rows), 1000):
        writer.insert(rows[start : start + 1000])


def event(**values: t.Any) -> TraceEvent:
    base: dict[str, t.Any] = {
        "actor_type": "system",
        "event_type": "cache_miss",
        "severity": "info",
        "occurred_at": NOW - dt.timedelta(minutes=5),
    }
    base.update(values)
    return TraceEvent(**base)


def request_end(
    route: str | None,
    duration_ms: float,
    *,
    status: int = 200,
    sample_rate: float | None = None,
    exception: str | None = None,
    slow: bool = False,
    at: dt.datetime | None = None,
) -> TraceEvent:
    """An ``http_request_end`` row with the metadata the request hooks write."""
    metadata: dict[str, t.Any] = {
        "method": "GET",
        "status": status,
        "duration_ms": duration_ms,
    }
    if exception is not None:
        metadata["exception"] = exception
    elif slow:
        metadata["slow"] = True
    if sample_rate is not None:
        metadata["sample_rate"] = sample_rate
    return event(
        event_type="http_request_end",
        severity="error" if exception else "warning" if slow else "info",
        route_name=route,
        request_id="r" + str(abs(hash((route, duration_ms, at)))),
        metadata=metadata,
        occurred_at=at or NOW - dt.timedelta(minutes=10),
    )


def linear(values: t.Sequence[float], p: float) -> float:
    """The linear method (numpy's default), straight from its definition."""
    ordered = sorted(values)
    h = p * (len(ordered) - 1)
    low, high = math.floor(h), math.ceil(h)
    return ordered[low] + (ordered[high] - ordered[low]) * (h - low)


def weighted(pairs: t.Sequence[tuple[float, float]], p: float) -> float:
    """The documented weighted method, as a piecewise-linear function.

    Knots at (S_{k-1}, x_k) and (S_k - 1, x_k); the value at p * (W - 1)
    is interpolated between the knots around it.
    """
    ordered = sorted(pairs)
    positions: list[float] = []
    values: list[float] = []
    cumulative = 0.0
    for value, weight in ordered:
        positions += [cumulative, cumulative + weight - 1]
        values += [value, value]
        cumulative += weight
    h = p * (cumulative - 1)
    index = bisect.bisect_left(positions, h)
    if index >= len(positions):
        return values[-1]
    if positions[index] == h or index == 0:
        return values[index]
    x0, x1 = positions[index - 1], positions[index]
    y0, y1 = values[index - 1], values[index]
    return y0 + (y1 - y0) * (h - x0) / (x1 - x0)
